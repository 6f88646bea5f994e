package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/client-go/rest"

	"github.com/kubelogd/kubelogd/internal/testing/cluster"
	"github.com/kubelogd/kubelogd/internal/testing/configmap"
	"github.com/kubelogd/kubelogd/internal/testing/kubelogdproc"
)

// podRun is kubelogd started the way the kubelet would start the pod template: the
// container's args and env (downward API resolved), its user, group and fsGroup, its
// volume mount replaced by a directory, its port mapped to a free local one.
type podRun struct {
	*daemon
	container corev1.Container
	env       map[string]string
	listen    int32 // the container port kubelogd listens on
	port      int   // the local port standing in for it
}

// runAsPod starts kubelogd as the Deployment's pod would run, with kubeconfig standing
// in for the mounted ServiceAccount token ($KUBECONFIG, used when kubelogd is not in a
// cluster). The volume's directory is podRun.Dir. The ConfigMaps that the pod mounts
// must be among configMaps: each is laid out as the kubelet's atomic writer does, and
// the args that name a path under its mount path are pointed at that directory.
func runAsPod(t *testing.T, dep *appsv1.Deployment, kubeconfig string, configMaps ...*corev1.ConfigMap) *podRun {
	t.Helper()
	tmpl := dep.Spec.Template
	if len(tmpl.Spec.Containers) != 1 || len(tmpl.Spec.InitContainers) != 0 {
		t.Fatalf("pod template has %d containers and %d init containers, want exactly one container",
			len(tmpl.Spec.Containers), len(tmpl.Spec.InitContainers))
	}
	c := tmpl.Spec.Containers[0]
	if len(c.Command) != 0 {
		t.Fatalf("container command %q overrides the image's entrypoint", c.Command)
	}
	uid, gid, fsGroup := securityIDs(t, tmpl.Spec, c)

	// A private directory standing in for the container's filesystem: the binary, the
	// volume, the credentials; traversable by the container's user.
	root, err := os.MkdirTemp("", "kubelogd-pod-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(root) })
	fatalIf(t, os.Chmod(root, 0o755))
	bin := filepath.Join(root, "kubelogd")
	fatalIf(t, copyFileMode(kubelogdBin, bin, 0o755))
	kc := filepath.Join(root, "kubeconfig")
	fatalIf(t, copyFileMode(kubeconfig, kc, 0o400))
	fatalIf(t, os.Chown(kc, int(uid), int(gid)))

	// The volume as the kubelet prepares it for fsGroup: group-owned by fsGroup,
	// group-writable, setgid; the owner stays root.
	dir := filepath.Join(root, "volume")
	fatalIf(t, os.Mkdir(dir, 0o700))
	fatalIf(t, os.Chown(dir, 0, int(fsGroup)))
	fatalIf(t, os.Chmod(dir, 0o770|os.ModeSetgid))
	mounts := map[string]string{}
	cmMounts := map[string]string{} // mount path → directory, of the ConfigMap volumes
	for _, m := range c.VolumeMounts {
		i := slices.IndexFunc(tmpl.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == m.Name })
		switch {
		case i >= 0 && tmpl.Spec.Volumes[i].ConfigMap != nil:
			cmMounts[m.MountPath] = configMapVolume(t, root, tmpl.Spec.Volumes[i], m, configMaps)
		case i < 0 || tmpl.Spec.Volumes[i].PersistentVolumeClaim == nil:
			t.Fatalf("volume mount %s is not a PersistentVolumeClaim or a ConfigMap", m.Name)
		default:
			mounts[m.MountPath] = dir
		}
	}
	if len(mounts) != 1 {
		t.Fatalf("%d volume mounts, want the one PersistentVolumeClaim", len(mounts))
	}

	env := podEnv(t, dep.Namespace, dep.Name+"-pod", tmpl.Spec, c)
	args := make([]string, len(c.Args))
	for i, a := range c.Args {
		args[i] = expandVars(a, env)
	}
	// The output directory: the mount path, replaced by the volume's directory.
	i := slices.IndexFunc(args, func(a string) bool { return strings.HasPrefix(a, "--output-dir=") })
	if i < 0 {
		t.Fatalf("args %q do not set --output-dir: the image default would be used, not the volume", args)
	}
	out := strings.TrimPrefix(args[i], "--output-dir=")
	if mounts[out] == "" {
		t.Fatalf("--output-dir=%s is not the mount path of the volume (mounts %v)", out, mounts)
	}
	args[i] = "--output-dir=" + mounts[out]
	// Paths into ConfigMap volumes (--config=/etc/kubelogd/config.yaml).
	for j, a := range args {
		for path, d := range cmMounts {
			if name, value, ok := strings.Cut(a, "="); ok && strings.HasPrefix(value, path+"/") {
				args[j] = name + "=" + d + strings.TrimPrefix(value, path)
			}
		}
	}
	// The metrics port: a container port, mapped to a free local port.
	i = slices.IndexFunc(args, func(a string) bool { return strings.HasPrefix(a, "--metrics-addr=") })
	if i < 0 {
		t.Fatalf("args %q do not set --metrics-addr", args)
	}
	_, portStr, _ := strings.Cut(strings.TrimPrefix(args[i], "--metrics-addr="), ":")
	listen, err := strconv.Atoi(portStr)
	if err != nil || !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return int(p.ContainerPort) == listen }) {
		t.Fatalf("kubelogd listens on %s, which is not a container port (%v)", args[i], c.Ports)
	}
	local := freePort(t)
	args[i] = fmt.Sprintf("--metrics-addr=127.0.0.1:%d", local)

	// The environment the container gets: its env, distroless's PATH and HOME (which
	// does not exist here: kubelogd must not need it), and the client configuration.
	environ := []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/home/nonroot", "KUBECONFIG=" + kc}
	for _, e := range c.Env {
		environ = append(environ, e.Name+"="+env[e.Name])
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = "/"
	cmd.Env = environ
	// kubelogdproc.Start adds the parent-death signal.
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{fsGroup}},
	}
	t.Logf("running as %d:%d (groups %d): kubelogd %s", uid, gid, fsGroup, strings.Join(args, " "))
	p, err := kubelogdproc.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	d := watched(t, &daemon{Proc: p, t: t, Metrics: fmt.Sprintf("http://127.0.0.1:%d", local), Dir: dir})
	return &podRun{daemon: d, container: c, env: env, listen: int32(listen), port: local}
}

// configMapVolume lays out the ConfigMap of volume v as the kubelet does (symlinks
// through ..data to a timestamped directory, files 0644: the defaultMode) under root,
// readable by any user, and returns its directory.
func configMapVolume(t *testing.T, root string, v corev1.Volume, m corev1.VolumeMount, configMaps []*corev1.ConfigMap) string {
	t.Helper()
	i := slices.IndexFunc(configMaps, func(cm *corev1.ConfigMap) bool { return cm.Name == v.ConfigMap.Name })
	if i < 0 {
		t.Fatalf("volume %s mounts ConfigMap %s, which the test did not pass to runAsPod", m.Name, v.ConfigMap.Name)
	}
	if len(v.ConfigMap.Items) > 0 || m.SubPath != "" {
		t.Fatalf("volume %s: items and subPath are not laid out here (a subPath mount is never updated anyway)", m.Name)
	}
	dir := filepath.Join(root, "configmap-"+v.Name)
	fatalIf(t, configmap.Write(dir, configMaps[i].Data))
	return dir
}

// securityIDs returns the UID, GID and fsGroup the pod runs with; the container's
// securityContext wins over the pod's, as in the kubelet.
func securityIDs(t *testing.T, spec corev1.PodSpec, c corev1.Container) (uid, gid, fsGroup uint32) {
	t.Helper()
	psc := spec.SecurityContext
	if psc == nil || psc.FSGroup == nil {
		t.Fatal("pod template has no fsGroup: the volume would not be writable for a non-root user")
	}
	var u, g *int64 = psc.RunAsUser, psc.RunAsGroup
	if csc := c.SecurityContext; csc != nil {
		if csc.RunAsUser != nil {
			u = csc.RunAsUser
		}
		if csc.RunAsGroup != nil {
			g = csc.RunAsGroup
		}
	}
	if u == nil || g == nil || *u == 0 {
		t.Fatal("pod template does not set a non-root runAsUser and a runAsGroup")
	}
	return uint32(*u), uint32(*g), uint32(*psc.FSGroup)
}

// containerPort resolves a probe's or Service's named port to the container's port.
func containerPort(t *testing.T, c corev1.Container, name string) int32 {
	t.Helper()
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	t.Fatalf("container has no port named %q (ports %v)", name, c.Ports)
	return 0
}

// probe performs an HTTP probe of the container the way the kubelet does (a status from
// 200 to 399 succeeds), against the local port standing in for the container port.
func (r *podRun) probe(p *corev1.Probe) (bool, string) {
	r.t.Helper()
	if p == nil || p.HTTPGet == nil {
		r.t.Fatal("probe is not an HTTP GET")
	}
	if p.HTTPGet.Scheme != "" && p.HTTPGet.Scheme != corev1.URISchemeHTTP {
		r.t.Fatalf("probe scheme %s, want HTTP", p.HTTPGet.Scheme)
	}
	port := p.HTTPGet.Port.IntVal
	if p.HTTPGet.Port.StrVal != "" {
		port = containerPort(r.t, r.container, p.HTTPGet.Port.StrVal)
	}
	if port != r.listen {
		r.t.Fatalf("probe targets port %s (%d), kubelogd listens on %d", p.HTTPGet.Port.String(), port, r.listen)
	}
	timeout := time.Duration(max(p.TimeoutSeconds, 1)) * time.Second
	client := &http.Client{Timeout: timeout}
	resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d%s", r.port, p.HTTPGet.Path))
	if err != nil {
		return false, err.Error()
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode >= 200 && resp.StatusCode < 400, fmt.Sprintf("%d %s", resp.StatusCode, bytes.TrimSpace(body))
}

// waitProbe waits until a probe succeeds, failing if kubelogd exits first.
func (r *podRun) waitProbe(what string, p *corev1.Probe, timeout time.Duration) {
	r.t.Helper()
	eventually(r.t, timeout, what, func() (bool, string) {
		select {
		case <-r.Done():
			r.t.Fatalf("kubelogd exited (code %d) before %s succeeded:\n%s", r.Cmd.ProcessState.ExitCode(), what, r.Output())
		default:
		}
		return r.probe(p)
	})
}

// waitExit waits for kubelogd to exit on its own and returns its exit code.
func (r *podRun) waitExit(timeout time.Duration) int {
	r.t.Helper()
	select {
	case <-r.Done():
		return r.Cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		r.t.Fatalf("kubelogd still running after %s:\n%s", timeout, tail(r.Output(), 50))
		return -1
	}
}

// podEnv resolves the container's env as the kubelet does: literal values with $(VAR)
// references to earlier variables, and the downward API (fieldRef, resourceFieldRef).
func podEnv(t *testing.T, ns, podName string, spec corev1.PodSpec, c corev1.Container) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = expandVars(e.Value, env)
		case e.ValueFrom.FieldRef != nil:
			switch e.ValueFrom.FieldRef.FieldPath {
			case "metadata.namespace":
				env[e.Name] = ns
			case "metadata.name":
				env[e.Name] = podName
			case "spec.serviceAccountName":
				env[e.Name] = spec.ServiceAccountName
			case "spec.nodeName":
				env[e.Name] = "fake-node"
			default:
				t.Fatalf("env %s: fieldRef %s not emulated", e.Name, e.ValueFrom.FieldRef.FieldPath)
			}
		case e.ValueFrom.ResourceFieldRef != nil:
			env[e.Name] = resourceValue(t, c, e.ValueFrom.ResourceFieldRef)
		default:
			t.Fatalf("env %s: source not emulated", e.Name)
		}
	}
	return env
}

// resourceValue is the kubelet's rendering of a resourceFieldRef: the quantity divided by
// the divisor (default 1), rounded up.
func resourceValue(t *testing.T, c corev1.Container, ref *corev1.ResourceFieldSelector) string {
	t.Helper()
	if ref.ContainerName != "" && ref.ContainerName != c.Name {
		t.Fatalf("resourceFieldRef of another container %s", ref.ContainerName)
	}
	kind, name, _ := strings.Cut(ref.Resource, ".")
	list := c.Resources.Limits
	if kind == "requests" {
		list = c.Resources.Requests
	}
	q, ok := list[corev1.ResourceName(name)]
	if !ok {
		// The kubelet would use the node's allocatable: not what a manifest should rely on.
		t.Fatalf("resourceFieldRef %s: the container sets no %s", ref.Resource, ref.Resource)
	}
	divisor := resource.MustParse("1")
	if !ref.Divisor.IsZero() {
		divisor = ref.Divisor
	}
	if name == "cpu" {
		return strconv.FormatInt(int64(math.Ceil(float64(q.MilliValue())/float64(divisor.MilliValue()))), 10)
	}
	return strconv.FormatInt(int64(math.Ceil(float64(q.Value())/float64(divisor.Value()))), 10)
}

var varRef = regexp.MustCompile(`\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)`)

// expandVars replaces $(VAR) with the variable's value as the kubelet does in args and env:
// $$ is a literal $, and a reference to an undefined variable stays as written.
func expandVars(s string, env map[string]string) string {
	return varRef.ReplaceAllStringFunc(s, func(m string) string {
		if m == "$$" {
			return "$"
		}
		if v, ok := env[m[2:len(m)-1]]; ok {
			return v
		}
		return m
	})
}

func copyFileMode(src, dst string, mode os.FileMode) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.WriteFile(dst, data, mode); err != nil {
		return err
	}
	return os.Chmod(dst, mode)
}

// serviceAccountKubeconfig mints a token for a ServiceAccount with the TokenRequest API
// and writes a kubeconfig that holds only that token.
func serviceAccountKubeconfig(t *testing.T, c *cluster.Cluster, ns, name string) (string, *rest.Config) {
	t.Helper()
	cfg, err := c.ServiceAccountConfig(context.Background(), ns, name)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), ns+"-"+name+".kubeconfig")
	fatalIf(t, cluster.WriteKubeconfig(cfg, path))
	return path, cfg
}

// procStatus returns a field of /proc/<pid>/status, e.g. "Uid" or "CapEff".
func procStatus(t *testing.T, pid int, field string) string {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			return strings.Join(strings.Fields(v), " ")
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return ""
}
