package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/buildkit/frontend/dockerfile/parser"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubelogd/kubelogd/internal/rbac"
)

// TestDeployBase applies deploy/ to a real API server (server-side dry run, then for
// real, strict field validation, no warnings), checks what the server stored, admits its
// pod under the namespace's restricted Pod Security level, and then runs kubelogd the way
// that pod would run: the container's args and env, UID/GID 65532 with fsGroup, the
// volume's mount path replaced by a directory, the probes over HTTP on the container
// port, and as its client nothing but a token minted for the ServiceAccount. It collects
// pods in several namespaces, writes nothing outside the volume and stops within the
// termination grace period.
func TestDeployBase(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	objs := renderKustomization(t, "deploy")
	wantObjects(t, objs, "Namespace//kubelogd", "ServiceAccount/kubelogd/kubelogd", "ClusterRole//kubelogd",
		"ClusterRoleBinding//kubelogd", "ConfigMap/kubelogd/kubelogd-config", "PersistentVolumeClaim/kubelogd/kubelogd-logs",
		"Deployment/kubelogd/kubelogd", "Service/kubelogd/kubelogd-metrics")
	applyAll(t, e.c.Config, objs)

	dep := e.checkClusterInstall()

	// Pods in several namespaces, kubelogd's own included, with lines before it starts.
	refs := []ref{{"team-a", "web", "app"}, {"team-a", "web", "sidecar"}, {"team-b", "api", "app"}, {"kubelogd", "probe", "app"}}
	e.pod("team-a", "web", nil, "app", "sidecar")
	e.pod("team-b", "api", nil, "app")
	e.pod("kubelogd", "probe", restrictedPod, "app") // kubelogd's namespace enforces it
	for _, r := range refs {
		e.start(r.ns, r.pod, r.container)
		e.emit(r.ns, r.pod, r.container, 20)
	}

	kc, saCfg := serviceAccountKubeconfig(t, e.c, "kubelogd", "kubelogd")
	saClient, err := kubernetes.NewForConfig(saCfg)
	fatalIf(t, err)
	// The same check kubelogd makes at start, as the ServiceAccount: all granted.
	fatalIf(t, rbac.CheckSelf(ctx, saClient, nil))

	start := time.Now()
	r := runAsPod(t, dep, kc, findObject[corev1.ConfigMap](t, objs, "ConfigMap", "kubelogd-config"))
	c := dep.Spec.Template.Spec.Containers[0]
	r.waitProbe("liveness probe", c.LivenessProbe, 30*time.Second)
	r.waitProbe("readiness probe", c.ReadinessProbe, 60*time.Second)

	// It really runs as the pod's user, without capabilities.
	pid := r.Cmd.Process.Pid
	uid, gid, fsGroup := securityIDs(t, dep.Spec.Template.Spec, c)
	if got, want := procStatus(t, pid, "Uid"), strings.Repeat(fmt.Sprint(uid)+" ", 4); got+" " != want {
		t.Errorf("kubelogd runs with UIDs %s, want %d", got, uid)
	}
	if got := procStatus(t, pid, "Gid"); !strings.HasPrefix(got, fmt.Sprint(gid)+" ") {
		t.Errorf("kubelogd runs with GIDs %s, want %d", got, gid)
	}
	if got := procStatus(t, pid, "CapEff"); strings.Trim(got, "0") != "" {
		t.Errorf("kubelogd has effective capabilities %s, want none", got)
	}

	for _, ref := range refs {
		e.emit(ref.ns, ref.pod, ref.container, 30)
	}
	for _, ref := range refs {
		e.waitCollected(r.Dir, ref.ns, ref.pod, ref.container)
	}
	checkModes(t, r.Dir)
	checkOwners(t, r.Dir, uid, fsGroup)
	checkMemLimit(t, r)

	// SIGTERM: a clean exit, well within the grace period before the kubelet's SIGKILL.
	stopped := time.Now()
	r.stop()
	grace := time.Duration(*dep.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second
	if took := time.Since(stopped); took > grace/4 {
		t.Errorf("kubelogd took %s to stop, too close to terminationGracePeriodSeconds (%s)", took, grace)
	} else {
		t.Logf("stopped in %s (grace period %s)", took.Round(time.Millisecond), grace)
	}
	checkNoStrayFiles(t, uid, filepath.Dir(r.Dir), start)
}

// TestDeployNamespaced applies deploy/namespaced/ as an admin of one namespace with no
// cluster-wide rights, and runs kubelogd as its pod would: it collects its namespace,
// does not see pods elsewhere, and has no warning to log about it.
func TestDeployNamespaced(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	objs := renderKustomization(t, "deploy/namespaced")
	ns := objs[0].GetNamespace()
	wantObjects(t, objs, "ServiceAccount/"+ns+"/kubelogd", "Role/"+ns+"/kubelogd", "RoleBinding/"+ns+"/kubelogd",
		"ConfigMap/"+ns+"/kubelogd-config", "PersistentVolumeClaim/"+ns+"/kubelogd-logs", "Deployment/"+ns+"/kubelogd", "Service/"+ns+"/kubelogd-metrics")

	// The team's namespace and its admin exist already: everything within the namespace,
	// nothing outside it (the built-in "admin" ClusterRole is aggregated by the
	// controller-manager, which this control plane does not run). The team admin applies
	// the overlay.
	fatalIf(t, e.c.EnsureNamespace(ctx, ns))
	applyAll(t, e.namespaceAdmin(ns), objs)

	dep, err := e.c.Client.AppsV1().Deployments(ns).Get(ctx, "kubelogd", metav1.GetOptions{})
	fatalIf(t, err)
	checkDeployment(t, dep)
	checkSingleWriter(t, dep)
	checkWiring(t, e.c.Client, dep, "kubelogd-metrics", corev1.ReadWriteOnce)
	rb, err := e.c.Client.RbacV1().RoleBindings(ns).Get(ctx, "kubelogd", metav1.GetOptions{})
	fatalIf(t, err)
	if want := (rbacv1.Subject{Kind: "ServiceAccount", Name: "kubelogd", Namespace: ns}); !slices.Equal(rb.Subjects, []rbacv1.Subject{want}) || rb.RoleRef.Kind != "Role" {
		t.Errorf("RoleBinding binds %v to %v, want %v to the Role", rb.Subjects, rb.RoleRef, want)
	}

	mine := []ref{{ns, "web", "app"}, {ns, "web", "sidecar"}, {ns, "batch", "app"}}
	others := []ref{{"elsewhere", "other", "app"}, {"default", "stranger", "app"}}
	e.pod(ns, "web", nil, "app", "sidecar")
	e.pod(ns, "batch", nil, "app")
	e.pod("elsewhere", "other", nil, "app")
	e.pod("default", "stranger", nil, "app")
	for _, r := range append(slices.Clone(mine), others...) {
		e.start(r.ns, r.pod, r.container)
		e.emit(r.ns, r.pod, r.container, 20)
	}

	kc, saCfg := serviceAccountKubeconfig(t, e.c, ns, "kubelogd")
	saClient, err := kubernetes.NewForConfig(saCfg)
	fatalIf(t, err)
	fatalIf(t, rbac.CheckSelf(ctx, saClient, []string{ns}))
	for _, other := range []string{"elsewhere", "default"} {
		if _, err := saClient.CoreV1().Pods(other).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("the namespaced ServiceAccount lists pods in %s: %v, want Forbidden", other, err)
		}
	}

	r := runAsPod(t, dep, kc, findObject[corev1.ConfigMap](t, objs, "ConfigMap", "kubelogd-config"))
	if !slices.Contains(r.Cmd.Args, "--namespace="+ns) {
		t.Fatalf("kubelogd args %q: want --namespace=%s from the downward API", r.Cmd.Args, ns)
	}
	r.waitProbe("readiness probe", dep.Spec.Template.Spec.Containers[0].ReadinessProbe, 60*time.Second)
	for _, ref := range append(slices.Clone(mine), others...) {
		e.emit(ref.ns, ref.pod, ref.container, 10)
	}
	for _, ref := range mine {
		e.waitCollected(r.Dir, ref.ns, ref.pod, ref.container)
	}
	// Its own namespace is on disk; give the others the same chance, then check.
	time.Sleep(2 * time.Second)
	for _, other := range []string{"elsewhere", "default"} {
		if _, err := os.Stat(filepath.Join(r.Dir, other)); !os.IsNotExist(err) {
			t.Errorf("%s was collected (stat: %v), want nothing outside %s", other, err, ns)
		}
	}
	r.stop()
	// No error storm: a namespaced kubelogd never touches what it may not see.
	if levels := logLevels(t, r.Output()); levels["WARN"]+levels["ERROR"] > 0 {
		t.Errorf("kubelogd logged %d warnings and %d errors:\n%s", levels["WARN"], levels["ERROR"], r.Output())
	} else {
		t.Logf("log levels: %v", levels)
	}
}

// TestDockerfileMatchesDeployment: the image runs as the Deployment's user, exposes its
// port, has its entrypoint and default args, a static binary from pinned base images,
// and an output directory owned by its user at the Deployment's mount path. Without
// -short the build stage is replayed on this machine (no container daemon is needed):
// the .dockerignore'd context, the stage's ENV and ARGs, its RUN commands.
func TestDockerfileMatchesDeployment(t *testing.T) {
	stages := parseDockerfile(t)
	if len(stages) != 2 {
		t.Fatalf("%d stages, want a build stage and a runtime stage", len(stages))
	}
	build, final := stages[0], stages[1]

	// Pinned base images; the builder's Go is the one go.mod asks for.
	gomod, err := os.ReadFile(filepath.Join(repoRoot(t), "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	want := goDirective.FindStringSubmatch(string(gomod))
	got := regexp.MustCompile(`^golang:(\d+)\.(\d+)\.(\d+)(-[a-z0-9]+)?$`).FindStringSubmatch(build.image)
	if got == nil {
		t.Errorf("build stage FROM %s: want golang:<major.minor.patch> (a pinned tag)", build.image)
	} else if got[1] != want[1] || got[2] != want[2] || atoi(got[3]) < atoi(want[3]) {
		t.Errorf("build stage FROM %s, but go.mod says go %s.%s.%s", build.image, want[1], want[2], want[3])
	}
	if final.image != "gcr.io/distroless/static-debian12:nonroot" {
		t.Errorf("runtime stage FROM %s, want gcr.io/distroless/static-debian12:nonroot", final.image)
	}
	if build.name == "" {
		t.Fatal("build stage has no name (FROM … AS build)")
	}

	// A static, trimmed binary.
	benv := build.env()
	if benv["CGO_ENABLED"] != "0" {
		t.Errorf("build stage ENV CGO_ENABLED=%q, want 0 (a static binary for distroless/static)", benv["CGO_ENABLED"])
	}
	var goBuild string
	for _, n := range build.all("run") {
		if cmd := strings.Join(instArgs(n), " "); strings.Contains(cmd, "go build") {
			goBuild = cmd
		}
	}
	for _, w := range []string{"-trimpath", "./cmd/kubelogd", "-o "} {
		if !strings.Contains(goBuild, w) {
			t.Errorf("go build command %q lacks %q", goBuild, w)
		}
	}

	// The runtime stage against the Deployment.
	dep := baseDeployment(t)
	spec := dep.Spec.Template.Spec
	c := spec.Containers[0]
	psc := spec.SecurityContext
	if wantUser := fmt.Sprintf("%d:%d", *psc.RunAsUser, *psc.RunAsGroup); instArgs(final.one(t, "user"))[0] != wantUser {
		t.Errorf("USER %s, but the Deployment runs as %s", instArgs(final.one(t, "user"))[0], wantUser)
	}
	var exposed []string
	for _, n := range final.all("expose") {
		exposed = append(exposed, instArgs(n)...)
	}
	for _, p := range c.Ports {
		if !slices.Contains(exposed, strconv.Itoa(int(p.ContainerPort))) && !slices.Contains(exposed, fmt.Sprintf("%d/%s", p.ContainerPort, strings.ToLower(string(p.Protocol)))) {
			t.Errorf("container port %s %d is not EXPOSEd (EXPOSE %v)", p.Name, p.ContainerPort, exposed)
		}
	}
	ep := final.one(t, "entrypoint")
	if ep.Attributes["json"] != true || len(instArgs(ep)) != 1 {
		t.Fatalf("ENTRYPOINT %v: want the exec form with just the binary", instArgs(ep))
	}
	if len(c.Command) != 0 {
		t.Errorf("the Deployment overrides the image's ENTRYPOINT with %q", c.Command)
	}
	// The Deployment adds only its config file, which the image does not hold (it comes
	// from the ConfigMap volume; see checkDeployment).
	cmd := final.one(t, "cmd")
	args := slices.DeleteFunc(slices.Clone(c.Args), func(a string) bool { return strings.HasPrefix(a, "--config=") })
	if cmd.Attributes["json"] != true || !slices.Equal(instArgs(cmd), args) {
		t.Errorf("CMD %q, Deployment args %q: want the same but --config (exec form)", instArgs(cmd), c.Args)
	}
	// The binary and the output directory come from the build stage.
	copies := map[string]*parser.Node{}
	for _, n := range final.all("copy") {
		v := instArgs(n)
		if instFlag(n, "from") != build.name {
			t.Errorf("runtime stage COPY %v not from the build stage", v)
		}
		copies[v[len(v)-1]] = n
	}
	binCopy := copies[instArgs(ep)[0]]
	if binCopy == nil {
		t.Fatalf("ENTRYPOINT %s is not copied from the build stage", instArgs(ep)[0])
	}
	if src := instArgs(binCopy)[0]; !strings.Contains(goBuild, "-o "+src+" ") {
		t.Errorf("the entrypoint is copied from %s, but go build writes elsewhere: %q", src, goBuild)
	}
	i := slices.IndexFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == "logs" })
	if i < 0 || len(c.VolumeMounts) > 2 {
		t.Fatalf("volume mounts %v: want logs, and config beside it", c.VolumeMounts)
	}
	mount := c.VolumeMounts[i].MountPath
	if !slices.Contains(c.Args, "--output-dir="+mount) {
		t.Errorf("Deployment args %q do not write to the volume at %s", c.Args, mount)
	}
	dirCopy := copies[mount]
	if dirCopy == nil {
		t.Errorf("the image has no %s (the output directory) owned by its user", mount)
	} else if got := instFlag(dirCopy, "chown"); got != instArgs(final.one(t, "user"))[0] {
		t.Errorf("%s is owned by %q in the image, want the USER %s", mount, got, instArgs(final.one(t, "user"))[0])
	}

	if testing.Short() {
		return
	}
	out, ctxDir := replayBuildStage(t, build, goBuild)
	bin := filepath.Join(out, strings.TrimPrefix(instArgs(binCopy)[0], "/out/"))
	checkStaticBinary(t, bin)
	// -trimpath: the build directory appears nowhere in the binary.
	if data, err := os.ReadFile(bin); err != nil {
		t.Fatal(err)
	} else if bytes.Contains(data, []byte(ctxDir)) {
		t.Errorf("the binary contains the build directory %s: not built with -trimpath", ctxDir)
	}
	if v, err := exec.Command(bin, "--version").Output(); err != nil || strings.TrimSpace(string(v)) != "kubelogd "+benv["VERSION"] {
		t.Errorf("%s --version = %q, %v; want kubelogd %s", bin, v, err, benv["VERSION"])
	}
	if dirCopy != nil {
		if fi, err := os.Stat(filepath.Join(out, strings.TrimPrefix(instArgs(dirCopy)[0], "/out/"))); err != nil || !fi.IsDir() {
			t.Errorf("the build stage does not create %s: %v", instArgs(dirCopy)[0], err)
		}
	}
}
