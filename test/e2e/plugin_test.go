package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/kubelogd/kubelogd/internal/testing/cluster"
	"github.com/kubelogd/kubelogd/internal/testing/fakekubelet"
)

// pluginBuild builds cmd/kubectl-kubelogd once per test binary, with the race detector.
var pluginBuild = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "kubectl-kubelogd-e2e-")
	if err != nil {
		return "", err
	}
	pluginBinDir = dir
	bin := filepath.Join(dir, "kubectl-kubelogd")
	out, err := exec.Command("go", "build", "-race", "-o", bin, "github.com/kubelogd/kubelogd/cmd/kubectl-kubelogd").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("building kubectl-kubelogd: %v\n%s", err, out)
	}
	return bin, nil
})

// pluginBinDir is removed by TestMain.
var pluginBinDir string

// pluginCluster is a control plane whose kubelet runs exec commands with the kubelogd
// binary under test (as /kubelogd, the image's entrypoint), a kubelogd pod from
// deploy/base's template reading tree, and a collected tree of three containers.
type pluginCluster struct {
	c    *cluster.Cluster
	k    *fakekubelet.Kubelet
	bin  string // kubectl-kubelogd
	tree string // the kubelogd pod's --output-dir
	pod  string // the running, ready kubelogd pod
}

const pluginNS = "kubelogd"

func newPluginCluster(t *testing.T) *pluginCluster {
	t.Helper()
	bin, err := pluginBuild()
	if err != nil {
		t.Fatal(err)
	}
	c, _ := cluster.New(t)
	ctx := context.Background()
	k, err := c.StartKubelet(ctx, "exec-node", func(cfg *fakekubelet.Config) {
		cfg.Exec = fakekubelet.ExecLocal(map[string]string{"/kubelogd": kubelogdBin})
	})
	if err != nil {
		t.Fatal(err)
	}
	tree := t.TempDir()
	writeTree(t, tree, "shop/web-1/app.log",
		"2026-11-27T03:04:05.000000001Z GET /products/42 200 3ms",
		"2026-11-27T03:04:07.000000000Z GET /cart 200 1ms")
	writeTree(t, tree, "shop/web-2/app.log",
		"2026-11-27T03:04:06.000000000Z GET /products/7 500 12ms",
		"2026-11-27T03:04:08.000000000Z GET /health 200 0ms")
	writeTree(t, tree, "other/db-0/db.log",
		"2026-11-27T03:04:05.500000000Z checkpoint complete",
		"2026-11-27T03:04:09.000000000Z vacuum --context=full")
	p := &pluginCluster{c: c, k: k, bin: bin, tree: tree, pod: "kubelogd-7d9c5-x2k4p"}

	// Decoys the plugin must pass over: a kubelogd pod that is not ready (first by name),
	// and a ready one in another namespace.
	p.kubelogdPod(t, pluginNS, "kubelogd-0-pending", false)
	p.kubelogdPod(t, "elsewhere", "kubelogd-elsewhere", true)
	p.kubelogdPod(t, pluginNS, p.pod, true)
	return p
}

// kubelogdPod creates a pod from deploy/base's template on the exec node, with --output-dir
// pointing at the tree (the volume's stand-in), and starts it if ready.
func (p *pluginCluster) kubelogdPod(t *testing.T, ns, name string, ready bool) {
	t.Helper()
	ctx := context.Background()
	fatalIf(t, p.c.EnsureNamespace(ctx, ns))
	fatalIf(t, p.c.EnsureServiceAccount(ctx, ns, "kubelogd"))
	tmpl := baseDeployment(t).Spec.Template
	pod := &corev1.Pod{ObjectMeta: tmpl.ObjectMeta, Spec: tmpl.Spec}
	pod.Namespace, pod.Name, pod.Spec.NodeName = ns, name, p.k.NodeName()
	c := &pod.Spec.Containers[0]
	for i, a := range c.Args {
		if strings.HasPrefix(a, "--output-dir=") {
			c.Args[i] = "--output-dir=" + p.tree
		}
	}
	if _, err := p.c.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if ready {
		fatalIf(t, p.k.StartContainer(ctx, ns, name, c.Name))
	}
}

func writeTree(t *testing.T, root, rel string, lines ...string) {
	t.Helper()
	path := filepath.Join(root, rel)
	fatalIf(t, os.MkdirAll(filepath.Dir(path), 0o750))
	fatalIf(t, os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o640))
}

func appendTree(t *testing.T, root, rel, line string) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(root, rel), os.O_APPEND|os.O_WRONLY, 0)
	fatalIf(t, err)
	_, err = f.WriteString(line + "\n")
	fatalIf(t, err)
	fatalIf(t, f.Close())
}

// run runs kubectl-kubelogd to its end and returns stdout, stderr and the exit code.
func (p *pluginCluster) run(t *testing.T, kubeconfig string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, p.bin, append([]string{"--kubeconfig", kubeconfig}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil && cmd.ProcessState == nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), cmd.ProcessState.ExitCode()
}

// localTail runs kubelogd tail on the tree directly, as the reference output.
func (p *pluginCluster) localTail(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(kubelogdBin, append([]string{"tail", "--output-dir=" + p.tree, "--color=never"}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, io.Discard
	err := cmd.Run()
	if err != nil && cmd.ProcessState == nil {
		t.Fatal(err)
	}
	return out.String(), cmd.ProcessState.ExitCode()
}

// TestPlugin runs kubectl-kubelogd against a real API server whose kubelet serves exec by
// running kubelogd tail on a tree: the pod it picks, the bytes it prints over each
// protocol, a follow, and the errors a user can act on.
func TestPlugin(t *testing.T) {
	p := newPluginCluster(t)
	admin := p.c.Kubeconfig

	t.Run("output", func(t *testing.T) {
		for _, tc := range []struct {
			name, protocol string
			args           []string
			contains       string
		}{
			{name: "websocket", protocol: "websocket", args: []string{"-n", "shop", "web", "--timestamps"}, contains: "shop/web-2/app 2026-11-27T03:04:06"},
			{name: "spdy", protocol: "spdy", args: []string{"-n", "shop", "web", "--timestamps"}, contains: "shop/web-2/app 2026-11-27T03:04:06"},
			{name: "auto", protocol: "auto", args: []string{"--grep", "GET|checkpoint", "-o", "json"}, contains: `"line":"checkpoint complete"`},
			// A value that looks like a plugin flag stays with tail's flag.
			{name: "flag-values", protocol: "auto", args: []string{"-An", "other", "--grep", "--context"}, contains: "vacuum --context=full"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				before := len(p.k.ExecRequests())
				want, wantCode := p.localTail(t, tc.args...)
				got, stderr, code := p.run(t, admin, append([]string{"--exec-protocol", tc.protocol}, tc.args...)...)
				if code != wantCode || got != want {
					t.Fatalf("kubectl kubelogd %q: exit %d, output\n%s\nwant exit %d, output\n%s\nstderr: %s", tc.args, code, got, wantCode, want, stderr)
				}
				if !strings.Contains(got, tc.contains) {
					t.Fatalf("output lacks %q:\n%s", tc.contains, got)
				}
				reqs := p.k.ExecRequests()
				if len(reqs) != before+1 {
					t.Fatalf("%d exec requests, want 1", len(reqs)-before)
				}
				r := reqs[before]
				wantCmd := append([]string{"/kubelogd", "tail", "--output-dir=" + p.tree, "--color=never"}, tc.args...)
				if r.Namespace != pluginNS || r.Pod != p.pod || r.Container != "kubelogd" || !slices.Equal(r.Command, wantCmd) || r.TTY || r.Stdin {
					t.Fatalf("exec request %+v, want %s/%s/kubelogd %q without TTY or stdin", r, pluginNS, p.pod, wantCmd)
				}
			})
		}
	})

	t.Run("terminal", func(t *testing.T) { testPluginTerminal(t, p) })

	t.Run("exit-code", func(t *testing.T) {
		_, stderr, code := p.run(t, admin, "-n", "shop", "no-such-pod")
		if code != 1 || !strings.Contains(stderr, "no matching container logs") {
			t.Fatalf("exit %d, stderr %q; want the remote tail's 1 and its message", code, stderr)
		}
		_, stderr, code = p.run(t, admin, "--since", "yesterday")
		if code != 2 || !strings.Contains(stderr, `invalid --since "yesterday"`) {
			t.Fatalf("exit %d, stderr %q; want 2 for an invalid flag", code, stderr)
		}
	})

	t.Run("follow", func(t *testing.T) { testPluginFollow(t, p) })

	t.Run("no-pod", func(t *testing.T) {
		fatalIf(t, p.c.EnsureNamespace(context.Background(), "logging"))
		_, stderr, code := p.run(t, admin, "--kubelogd-namespace", "logging", "-n", "shop")
		for _, want := range []string{`namespace "logging"`, `label selector "app.kubernetes.io/name=kubelogd"`, "--kubelogd-namespace"} {
			if code != 1 || !strings.Contains(stderr, want) {
				t.Fatalf("exit %d, stderr %q; want 1 and %q", code, stderr, want)
			}
		}
	})

	t.Run("no-exec-permission", func(t *testing.T) {
		kc := p.oncallKubeconfig(t, "reader", []rbacv1.PolicyRule{{
			APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list"},
		}})
		_, stderr, code := p.run(t, kc, "-n", "shop")
		for _, want := range []string{"verb create on resource pods/exec", "kubectl auth can-i create pods --subresource=exec -n kubelogd"} {
			if code != 1 || !strings.Contains(stderr, want) {
				t.Fatalf("exit %d, stderr %q; want 1 and %q", code, stderr, want)
			}
		}
	})

	t.Run("exec-create-without-get", func(t *testing.T) {
		// SPDY (a POST) needs create alone; a WebSocket exec (a GET) needs get as well.
		kc := p.oncallKubeconfig(t, "creator", []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list"}},
			{APIGroups: []string{""}, Resources: []string{"pods/exec"}, Verbs: []string{"create"}},
		})
		_, stderr, code := p.run(t, kc, "--exec-protocol", "websocket", "-n", "shop")
		for _, want := range []string{"verb get on resource pods/exec", "kubectl auth can-i get pods --subresource=exec -n kubelogd"} {
			if code != 1 || !strings.Contains(stderr, want) {
				t.Fatalf("exit %d, stderr %q; want 1 and %q", code, stderr, want)
			}
		}
		want, _ := p.localTail(t, "-n", "shop")
		got, stderr, code := p.run(t, kc, "-n", "shop")
		if code != 0 || got != want {
			t.Fatalf("auto falls back to SPDY: exit %d, output\n%s\nwant\n%s\nstderr: %s", code, got, want, stderr)
		}
	})

	t.Run("oncall-role", func(t *testing.T) {
		// The shipped example Role is enough, and the plugin needs nothing cluster-wide.
		data, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy/oncall/role.yaml"))
		fatalIf(t, err)
		var role rbacv1.Role
		if _, _, err := scheme.Codecs.UniversalDeserializer().Decode(data, nil, &role); err != nil {
			t.Fatalf("decoding deploy/oncall/role.yaml: %v", err)
		}
		kc := p.oncallKubeconfig(t, "oncall", role.Rules)
		args := []string{"-n", "shop", "--timestamps"}
		want, _ := p.localTail(t, args...)
		for _, protocol := range []string{"websocket", "spdy"} {
			got, stderr, code := p.run(t, kc, append([]string{"--exec-protocol", protocol}, args...)...)
			if code != 0 || got != want {
				t.Fatalf("over %s with deploy/oncall/role.yaml: exit %d, output\n%s\nwant\n%s\nstderr: %s", protocol, code, got, want, stderr)
			}
		}
	})
}

// oncallKubeconfig creates a ServiceAccount bound to a Role with rules in kubelogd's
// namespace only, and returns a kubeconfig holding just its token.
func (p *pluginCluster) oncallKubeconfig(t *testing.T, name string, rules []rbacv1.PolicyRule) string {
	t.Helper()
	ctx := context.Background()
	rbac := p.c.Client.RbacV1()
	fatalIf(t, p.c.EnsureServiceAccount(ctx, pluginNS, name))
	_, err := rbac.Roles(pluginNS).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules}, metav1.CreateOptions{})
	fatalIf(t, err)
	_, err = rbac.RoleBindings(pluginNS).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: pluginNS}},
	}, metav1.CreateOptions{})
	fatalIf(t, err)
	kc, _ := serviceAccountKubeconfig(t, p.c, pluginNS, name)
	return kc
}

// testPluginFollow starts kubectl kubelogd -f, waits for the tree's lines, appends one to
// the tree and waits for it, then stops the plugin: it exits 0, and the remote tail ends
// at its next write, when it finds its output closed.
func testPluginFollow(t *testing.T, p *pluginCluster) {
	cmd := exec.Command(p.bin, "--kubeconfig", p.c.Kubeconfig, "-f", "-n", "shop", "web-1")
	stdout, err := cmd.StdoutPipe()
	fatalIf(t, err)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	fatalIf(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := make(chan string, 100)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	next := func(want string) {
		t.Helper()
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("output ended before %q; stderr: %s", want, stderr.String())
			}
			if l != want {
				t.Fatalf("line %q, want %q", l, want)
			}
		case <-time.After(time.Minute):
			t.Fatalf("no line %q within a minute; stderr: %s", want, stderr.String())
		}
	}
	next("shop/web-1/app GET /products/42 200 3ms")
	next("shop/web-1/app GET /cart 200 1ms")
	appendTree(t, p.tree, "shop/web-1/app.log", "2026-11-27T03:05:00.000000000Z POST /checkout 201 40ms")
	next("shop/web-1/app POST /checkout 201 40ms")

	fatalIf(t, cmd.Process.Signal(syscall.SIGTERM))
	for range lines {
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("kubectl kubelogd -f after SIGTERM: %v; stderr: %s", err, stderr.String())
	}
	// The session is gone: the remote tail's next write fails and it exits.
	i := 0
	eventually(t, time.Minute, "the remote kubelogd tail to exit", func() (bool, string) {
		if n := p.k.RunningExecs(); n > 0 {
			i++
			appendTree(t, p.tree, "shop/web-1/app.log", fmt.Sprintf("2026-11-27T03:06:%02d.000000000Z after %d", i%60, i))
			return false, fmt.Sprintf("%d exec sessions still running", n)
		}
		return true, ""
	})
}

// testPluginTerminal runs the plugin on a pseudo-terminal: it must ask for a TTY and
// stdin (so that Ctrl-C typed in raw mode reaches the remote terminal), leave --color to
// the remote tail, and print its output unchanged. The fake kubelet runs the command
// without a terminal of its own, so the remote output carries no colour here.
func testPluginTerminal(t *testing.T, p *pluginCluster) {
	master, slave := openPTY(t)
	args := []string{"-n", "shop", "web"}
	before := len(p.k.ExecRequests())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, p.bin, append([]string{"--kubeconfig", p.c.Kubeconfig}, args...)...)
	var stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, &stderr
	fatalIf(t, cmd.Start())
	fatalIf(t, slave.Close())
	out := make(chan []byte, 1)
	go func() {
		// Reading the master ends with EIO once the last holder of the slave closed it.
		b, _ := io.ReadAll(master)
		out <- b
	}()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("kubectl kubelogd on a terminal: %v; stderr: %s", err, stderr.String())
	}
	got := string(<-out)
	want, _ := p.localTail(t, args...)
	if got != want {
		t.Fatalf("on a terminal: output\n%q\nwant\n%q\nstderr: %s", got, want, stderr.String())
	}
	reqs := p.k.ExecRequests()
	if len(reqs) != before+1 {
		t.Fatalf("%d exec requests, want 1", len(reqs)-before)
	}
	wantCmd := append([]string{"/kubelogd", "tail", "--output-dir=" + p.tree}, args...)
	if r := reqs[before]; !r.TTY || !r.Stdin || !slices.Equal(r.Command, wantCmd) {
		t.Fatalf("exec request %+v, want %q with TTY and stdin", r, wantCmd)
	}
}

// openPTY opens a pseudo-terminal pair; the master is closed when the test ends.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { _ = master.Close() })
	fd := int(master.Fd())
	fatalIf(t, unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0))
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	fatalIf(t, err)
	slave, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	fatalIf(t, err)
	return master, slave
}
