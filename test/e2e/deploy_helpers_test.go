package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

// restrictedPod makes a test pod meet the restricted Pod Security level.
func restrictedPod(p *corev1.Pod) {
	p.Spec.SecurityContext = &corev1.PodSecurityContext{
		RunAsNonRoot:   new(true),
		RunAsUser:      new(int64(1000)),
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
	for i := range p.Spec.Containers {
		p.Spec.Containers[i].SecurityContext = &corev1.SecurityContext{
			AllowPrivilegeEscalation: new(false),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		}
	}
}

// wantObjects checks that the rendered objects are exactly the given Kind/namespace/name.
func wantObjects(t *testing.T, objs []*unstructured.Unstructured, want ...string) {
	t.Helper()
	var got []string
	for _, o := range objs {
		got = append(got, o.GetKind()+"/"+o.GetNamespace()+"/"+o.GetName())
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("rendered objects:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// checkSingleWriter checks a Deployment of one kubelogd, which locks its volume.
func checkSingleWriter(t *testing.T, dep *appsv1.Deployment) {
	t.Helper()
	if dep.Spec.Replicas == nil || *dep.Spec.Replicas != 1 || dep.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		t.Errorf("replicas %v, strategy %s: want 1 replica and Recreate (one writer on a ReadWriteOnce volume)", dep.Spec.Replicas, dep.Spec.Strategy.Type)
	}
}

// checkDeployment checks the Deployment as the API server stored it: what the
// kustomization promises survived validation and defaulting, the hardening every kubelogd
// Deployment has.
func checkDeployment(t *testing.T, dep *appsv1.Deployment) {
	t.Helper()
	spec := dep.Spec.Template.Spec
	psc := spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser != 65532 ||
		psc.RunAsGroup == nil || *psc.RunAsGroup != 65532 || psc.FSGroup == nil || *psc.FSGroup != 65532 ||
		psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod securityContext %+v: want runAsNonRoot, UID, GID and fsGroup 65532, seccomp RuntimeDefault", psc)
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(spec.Containers))
	}
	c := spec.Containers[0]
	csc := c.SecurityContext
	if csc == nil || csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation ||
		csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem || csc.Privileged != nil && *csc.Privileged ||
		csc.Capabilities == nil || !slices.Equal(csc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(csc.Capabilities.Add) > 0 {
		t.Errorf("container securityContext %+v: want no privilege escalation, read-only root, all capabilities dropped", csc)
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := c.Resources.Requests[r]; !ok {
			t.Errorf("no %s request", r)
		}
		if _, ok := c.Resources.Limits[r]; !ok {
			t.Errorf("no %s limit", r)
		}
	}
	i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "GOMEMLIMIT" })
	if i < 0 || c.Env[i].ValueFrom == nil || c.Env[i].ValueFrom.ResourceFieldRef == nil || c.Env[i].ValueFrom.ResourceFieldRef.Resource != "limits.memory" {
		t.Errorf("env %v: want GOMEMLIMIT from resourceFieldRef limits.memory", c.Env)
	}
	for _, p := range []struct {
		name, path string
		probe      *corev1.Probe
	}{{"liveness", "/healthz", c.LivenessProbe}, {"readiness", "/readyz", c.ReadinessProbe}} {
		if p.probe == nil || p.probe.HTTPGet == nil || p.probe.HTTPGet.Path != p.path || p.probe.HTTPGet.Port.String() != "metrics" {
			t.Errorf("%s probe %+v: want HTTP GET %s on port metrics", p.name, p.probe, p.path)
		}
	}
	if len(c.Ports) != 1 || c.Ports[0].Name != "metrics" || c.Ports[0].ContainerPort != 8080 {
		t.Errorf("container ports %v: want metrics 8080", c.Ports)
	}
	// --config names a file in a ConfigMap volume mounted as a directory (a subPath
	// mount is never updated, so a reload would never see a change).
	i = slices.IndexFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, "--config=") })
	if i < 0 {
		t.Errorf("args %q: want --config, the file of the ConfigMap kubelogd-config", c.Args)
	} else {
		path := strings.TrimPrefix(c.Args[i], "--config=")
		ok := slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool {
			v := slices.IndexFunc(spec.Volumes, func(v corev1.Volume) bool { return v.Name == m.Name })
			return v >= 0 && spec.Volumes[v].ConfigMap != nil && strings.HasSuffix(spec.Volumes[v].ConfigMap.Name, "-config") &&
				m.SubPath == "" && path == m.MountPath+"/config.yaml"
		})
		if !ok {
			t.Errorf("--config=%s is not config.yaml in a volume of a ConfigMap <name>-config mounted without subPath (mounts %v)", path, c.VolumeMounts)
		}
	}
	if g := spec.TerminationGracePeriodSeconds; g == nil || *g < 30 {
		t.Errorf("terminationGracePeriodSeconds %v: want at least 30 for the final flush", g)
	}
	if spec.AutomountServiceAccountToken != nil && !*spec.AutomountServiceAccountToken {
		t.Error("automountServiceAccountToken is false: kubelogd needs the token in the cluster")
	}
}

// checkWiring checks what schema validation cannot: the names that tie the objects
// together resolve on the server.
func checkWiring(t *testing.T, client kubernetes.Interface, dep *appsv1.Deployment, service string, mode corev1.PersistentVolumeAccessMode) {
	t.Helper()
	ctx := context.Background()
	spec := dep.Spec.Template.Spec
	if _, err := client.CoreV1().ServiceAccounts(dep.Namespace).Get(ctx, spec.ServiceAccountName, metav1.GetOptions{}); err != nil {
		t.Errorf("serviceAccountName %q: %v", spec.ServiceAccountName, err)
	}
	for _, v := range spec.Volumes {
		if v.PersistentVolumeClaim == nil {
			continue
		}
		pvc, err := client.CoreV1().PersistentVolumeClaims(dep.Namespace).Get(ctx, v.PersistentVolumeClaim.ClaimName, metav1.GetOptions{})
		if err != nil {
			t.Errorf("volume %s: %v", v.Name, err)
		} else if !slices.Equal(pvc.Spec.AccessModes, []corev1.PersistentVolumeAccessMode{mode}) {
			t.Errorf("PVC %s access modes %v, want %s", pvc.Name, pvc.Spec.AccessModes, mode)
		}
	}
	svc, err := client.CoreV1().Services(dep.Namespace).Get(ctx, service, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range svc.Spec.Selector {
		if dep.Spec.Template.Labels[k] != v {
			t.Errorf("Service selector %v does not select the pod template's labels %v", svc.Spec.Selector, dep.Spec.Template.Labels)
		}
	}
	if len(svc.Spec.Selector) == 0 {
		t.Error("Service has no selector")
	}
	for _, p := range svc.Spec.Ports {
		if p.Port != 8080 {
			t.Errorf("Service port %d, want 8080", p.Port)
		}
		tp := p.TargetPort.IntVal
		if p.TargetPort.StrVal != "" {
			tp = containerPort(t, spec.Containers[0], p.TargetPort.StrVal)
		}
		if tp != 8080 {
			t.Errorf("Service targets container port %d, want 8080", tp)
		}
	}
}

// checkPodSecurity creates the Deployment's pod (a server-side dry run) in its namespace:
// PodSecurity admission enforces the namespace's level on pods, not on Deployments, so
// this is where a violation would surface. A pod without the capabilities drop must be
// rejected, or the check proves nothing.
func checkPodSecurity(t *testing.T, cfg *rest.Config, dep *appsv1.Deployment) {
	t.Helper()
	ctx := context.Background()
	cfg = rest.CopyConfig(cfg)
	w := &warningRecorder{}
	cfg.WarningHandler = w
	client, err := kubernetes.NewForConfig(cfg)
	fatalIf(t, err)
	ns, err := client.CoreV1().Namespaces().Get(ctx, dep.Namespace, metav1.GetOptions{})
	fatalIf(t, err)
	if lvl := ns.Labels["pod-security.kubernetes.io/enforce"]; lvl != "restricted" {
		t.Errorf("namespace %s enforces Pod Security level %q, want restricted", ns.Name, lvl)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: dep.Name + "-admission-check", Namespace: dep.Namespace, Labels: dep.Spec.Template.Labels},
		Spec:       *dep.Spec.Template.Spec.DeepCopy(),
	}
	dry := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldValidation: "Strict"}
	if _, err := client.CoreV1().Pods(dep.Namespace).Create(ctx, pod, dry); err != nil {
		t.Errorf("the Deployment's pod is not admitted: %v", err)
	}
	if msgs := w.take(); len(msgs) > 0 {
		t.Errorf("admitting the Deployment's pod: warnings %q", msgs)
	}
	weak := pod.DeepCopy()
	weak.Spec.Containers[0].SecurityContext.Capabilities = nil
	if _, err := client.CoreV1().Pods(dep.Namespace).Create(ctx, weak, dry); !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "PodSecurity") {
		t.Errorf("a pod without dropped capabilities: %v, want a PodSecurity rejection", err)
	}
}

// checkOwners: what kubelogd created belongs to its user and the volume's group.
func checkOwners(t *testing.T, dir string, uid, gid uint32) {
	t.Helper()
	err := filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err != nil || path == dir {
			return err
		}
		st := info.Sys().(*syscall.Stat_t)
		if st.Uid != uid || st.Gid != gid {
			t.Errorf("%s owned by %d:%d, want %d:%d", path, st.Uid, st.Gid, uid, gid)
		}
		return nil
	})
	fatalIf(t, err)
}

// checkMemLimit: the Go runtime took GOMEMLIMIT, as resolved from the memory limit.
func checkMemLimit(t *testing.T, r *podRun) {
	t.Helper()
	want, err := strconv.ParseFloat(r.env["GOMEMLIMIT"], 64)
	if err != nil {
		t.Fatalf("GOMEMLIMIT=%q: %v", r.env["GOMEMLIMIT"], err)
	}
	resp, err := http.Get(r.Metrics + "/metrics")
	fatalIf(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	fatalIf(t, err)
	for _, l := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(l, "go_gc_gomemlimit_bytes "); ok {
			if got, _ := strconv.ParseFloat(v, 64); got != want {
				t.Errorf("go_gc_gomemlimit_bytes %s, want GOMEMLIMIT %s", v, r.env["GOMEMLIMIT"])
			}
			return
		}
	}
	t.Errorf("no go_gc_gomemlimit_bytes in /metrics")
}

// checkNoStrayFiles: with readOnlyRootFilesystem, the volume is the only place kubelogd
// can write. Nothing in the usual writable places belongs to its user, except under
// this run's own directory and other runs of these tests.
func checkNoStrayFiles(t *testing.T, uid uint32, own string, since time.Time) {
	t.Helper()
	for _, root := range []string{os.TempDir(), "/var/tmp", "/dev/shm"} {
		_ = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil // vanished or unreadable: not ours
			}
			if path == own || d.IsDir() && strings.HasPrefix(d.Name(), "kubelogd-pod-") {
				return filepath.SkipDir
			}
			info, err := d.Info()
			if err != nil {
				return nil
			}
			if st, ok := info.Sys().(*syscall.Stat_t); ok && st.Uid == uid && info.ModTime().After(since) {
				t.Errorf("kubelogd wrote %s outside its volume", path)
			}
			return nil
		})
	}
}

// logLevels counts kubelogd's JSON log lines by level.
func logLevels(t *testing.T, out string) map[string]int {
	t.Helper()
	levels := map[string]int{}
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if _, rest, ok := strings.Cut(l, `"level":"`); ok {
			lvl, _, _ := strings.Cut(rest, `"`)
			levels[lvl]++
		} else if strings.TrimSpace(l) != "" {
			levels["unstructured"]++
		}
	}
	return levels
}

// repoRoot is the module root; tests run in test/e2e.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found above test/e2e: %v", err)
	}
	return root
}

// kubectl returns bin/kubectl, which renders the kustomizations exactly as
// `kubectl apply -k` does (its kustomize is pinned with the control plane).
func kubectl(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("KUBELOGD_BIN_DIR")
	if dir == "" {
		dir = filepath.Join(repoRoot(t), "bin")
	}
	bin := filepath.Join(dir, "kubectl")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s missing: run `make kubectl` (kubectl kustomize renders deploy/)", bin)
	}
	return bin
}

var renderCache sync.Map // kustomization dir → rendered YAML

// renderKustomization returns the objects of a kustomization under the repository root, in the
// order kustomize emits them.
func renderKustomization(t *testing.T, kustomization string) []*unstructured.Unstructured {
	t.Helper()
	out, ok := renderCache.Load(kustomization)
	if !ok {
		cmd := exec.Command(kubectl(t), "kustomize", filepath.Join(repoRoot(t), kustomization))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		b, err := cmd.Output()
		if err != nil {
			t.Fatalf("kubectl kustomize %s: %v\n%s", kustomization, err, stderr.String())
		}
		out, _ = renderCache.LoadOrStore(kustomization, b)
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(out.([]byte)), 4096)
	var objs []*unstructured.Unstructured
	for {
		var o unstructured.Unstructured
		if err := dec.Decode(&o.Object); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decoding the rendered %s: %v", kustomization, err)
		}
		if len(o.Object) > 0 {
			objs = append(objs, &o)
		}
	}
	if len(objs) == 0 {
		t.Fatalf("%s renders no objects", kustomization)
	}
	return objs
}

// findObject returns the rendered object of a kind and name, converted to its typed form.
func findObject[T any](t *testing.T, objs []*unstructured.Unstructured, kind, name string) *T {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			var typed T
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &typed); err != nil {
				t.Fatalf("converting %s %s: %v", kind, name, err)
			}
			return &typed
		}
	}
	t.Fatalf("no %s %s among the rendered objects", kind, name)
	return nil
}

// warningRecorder collects the API server's warning headers (deprecations, PodSecurity).
type warningRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warningRecorder) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, text)
}

func (w *warningRecorder) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := w.msgs
	w.msgs = nil
	return m
}

// applier applies objects with server-side apply, as `kubectl apply --server-side`
// does, with strict field validation: a misspelt field is an error, not silently dropped.
type applier struct {
	dyn    dynamic.Interface
	mapper meta.RESTMapper
	warn   *warningRecorder
}

func newApplier(t *testing.T, cfg *rest.Config) *applier {
	t.Helper()
	cfg = rest.CopyConfig(cfg)
	w := &warningRecorder{}
	cfg.WarningHandler = w
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &applier{dyn: dyn, mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc)), warn: w}
}

// apply applies one object (a server-side dry run if dryRun) and returns the server's
// answer or its error.
func (a *applier) apply(ctx context.Context, o *unstructured.Unstructured, dryRun bool) (*unstructured.Unstructured, error) {
	gvk := o.GroupVersionKind()
	m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", gvk.Kind, o.GetName(), err)
	}
	var ri dynamic.ResourceInterface = a.dyn.Resource(m.Resource)
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		if o.GetNamespace() == "" {
			return nil, fmt.Errorf("%s %s: namespaced but rendered without a namespace", gvk.Kind, o.GetName())
		}
		ri = a.dyn.Resource(m.Resource).Namespace(o.GetNamespace())
	}
	body, err := o.MarshalJSON()
	if err != nil {
		return nil, err
	}
	opts := metav1.PatchOptions{FieldManager: "kubelogd-e2e", FieldValidation: "Strict", Force: new(true)}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	out, err := ri.Patch(ctx, o.GetName(), types.ApplyPatchType, body, opts)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", gvk.Kind, o.GetName(), err)
	}
	return out, nil
}

// clusterScoped reports whether the API server serves o's kind without a namespace.
func (a *applier) clusterScoped(t *testing.T, o *unstructured.Unstructured) bool {
	t.Helper()
	gvk := o.GroupVersionKind()
	m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		t.Fatalf("%s %s: %v", gvk.Kind, o.GetName(), err)
	}
	return m.Scope.Name() == meta.RESTScopeNameRoot
}

// applyAll applies the objects like `kubectl apply --server-side`: each is first
// accepted by a server-side dry run, then applied. Cluster-scoped objects go first, since
// a dry run of an object in a namespace that does not exist yet fails. Every object must
// be accepted without a warning.
func applyAll(t *testing.T, cfg *rest.Config, objs []*unstructured.Unstructured) {
	t.Helper()
	ctx := context.Background()
	a := newApplier(t, cfg)
	var cluster, namespaced []*unstructured.Unstructured
	for _, o := range objs {
		if a.clusterScoped(t, o) {
			cluster = append(cluster, o)
		} else {
			namespaced = append(namespaced, o)
		}
	}
	for _, group := range [][]*unstructured.Unstructured{cluster, namespaced} {
		for _, dryRun := range []bool{true, false} {
			for _, o := range group {
				if _, err := a.apply(ctx, o, dryRun); err != nil {
					t.Fatalf("apply (dry run %v): %v", dryRun, err)
				}
				if w := a.warn.take(); len(w) > 0 {
					t.Errorf("apply %s %s (dry run %v): warnings %q", o.GetKind(), o.GetName(), dryRun, w)
				}
			}
		}
	}
}

func fatalIf(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// namespaceAdmin returns a client config for a ServiceAccount "team-admin" that may do
// everything within namespace ns and nothing outside it, as a team's admin (the built-in
// "admin" ClusterRole is aggregated by the controller-manager, which this control plane
// does not run).
func (e *env) namespaceAdmin(ns string) *rest.Config {
	t, ctx := e.t, context.Background()
	t.Helper()
	fatalIf(t, e.c.EnsureServiceAccount(ctx, ns, "team-admin"))
	_, err := e.c.Client.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "team-admin"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{"*"}, Resources: []string{"*"}, Verbs: []string{"*"}}},
	}, metav1.CreateOptions{})
	fatalIf(t, err)
	_, err = e.c.Client.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "team-admin"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "team-admin"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: ns, Name: "team-admin"}},
	}, metav1.CreateOptions{})
	fatalIf(t, err)
	cfg, err := e.c.ServiceAccountConfig(ctx, ns, "team-admin")
	fatalIf(t, err)
	return cfg
}

// checkClusterInstall checks what the cluster-wide install (deploy/, or the chart's
// cluster mode) left on the API server, and returns its Deployment: the hardened single
// writer on a ReadWriteOnce volume, its ClusterRoleBinding to the Deployment's
// ServiceAccount, and a pod the restricted Pod Security level admits.
func (e *env) checkClusterInstall() *appsv1.Deployment {
	t, ctx := e.t, context.Background()
	t.Helper()
	dep, err := e.c.Client.AppsV1().Deployments("kubelogd").Get(ctx, "kubelogd", metav1.GetOptions{})
	fatalIf(t, err)
	checkDeployment(t, dep)
	checkSingleWriter(t, dep)
	checkWiring(t, e.c.Client, dep, "kubelogd-metrics", corev1.ReadWriteOnce)
	crb, err := e.c.Client.RbacV1().ClusterRoleBindings().Get(ctx, "kubelogd", metav1.GetOptions{})
	fatalIf(t, err)
	if want := (rbacv1.Subject{Kind: "ServiceAccount", Name: dep.Spec.Template.Spec.ServiceAccountName, Namespace: dep.Namespace}); !slices.Equal(crb.Subjects, []rbacv1.Subject{want}) ||
		crb.RoleRef.Kind != "ClusterRole" || crb.RoleRef.Name != "kubelogd" {
		t.Errorf("ClusterRoleBinding binds %v to %v, want the Deployment's ServiceAccount %v to ClusterRole kubelogd", crb.Subjects, crb.RoleRef, want)
	}
	checkPodSecurity(t, e.c.Config, dep)
	return dep
}
