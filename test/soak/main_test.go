// Package soak is kubelogd's seeded, randomized, model-based soak (issue 14, "The method"):
// one seed drives a schedule that composes faults over more than twenty containers on the
// test control plane (a real kube-apiserver and etcd, the fake kubelet rendering logs with
// cri-client's ReadLogs) while the containers log, and at the end a model of what the
// schedule did judges every container's file: every line once and in order, except where
// the schedule made lines unavailable, where exactly one marker with the right reason
// must stand.
//
// `go test ./test/soak` runs one fixed and one random seed for 90 s each; SOAK_SEED and
// SOAK_DURATION choose one seed and its length (`make soak SEED=... DURATION=30m`).
// KUBELOGD_E2E_LOGDIR keeps kubelogd's whole output and both sides' files of a failed run.
package soak

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// kubelogdBin is the binary under test, built once by TestMain with the race detector.
var kubelogdBin string

func TestMain(m *testing.M) {
	os.Exit(func() int {
		dir, err := os.MkdirTemp("", "kubelogd-soak-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		kubelogdBin = filepath.Join(dir, "kubelogd")
		// -tags failpoint: the soak's failpoint steps arm internal/failpoint, which the release build leaves out.
		build := exec.Command("go", "build", "-race", "-tags", "failpoint", "-o", kubelogdBin, "github.com/kubelogd/kubelogd/cmd/kubelogd")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building kubelogd:", err)
			return 1
		}
		return m.Run()
	}())
}

// daemon is one run of the kubelogd process. The soak starts many over a schedule; each
// keeps its whole output, so that a failure can show what kubelogd said about a container.
type daemon struct {
	cmd     *exec.Cmd
	out     *syncBuffer
	done    chan struct{}
	metrics string // base URL of the metrics server
	started time.Time
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startDaemon runs kubelogd with the environment additions (failpoints) and arguments.
// The process dies with the test binary (Pdeathsig), so a killed test leaves none behind.
func startDaemon(environ []string, kubeconfig, dir string, args ...string) (*daemon, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	all := append([]string{"--kubeconfig", kubeconfig, "--output-dir", dir,
		"--metrics-addr", fmt.Sprintf("127.0.0.1:%d", port), "--log-level", "debug"}, args...)
	d := &daemon{out: &syncBuffer{}, done: make(chan struct{}), metrics: fmt.Sprintf("http://127.0.0.1:%d", port), started: time.Now()}
	d.cmd = exec.Command(kubelogdBin, all...)
	d.cmd.Env = append(os.Environ(), environ...)
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = d.cmd.Wait(); close(d.done) }()
	return d, nil
}

// exited reports whether the process has ended.
func (d *daemon) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL (if it still runs) and waits for the exit.
func (d *daemon) kill() {
	if !d.exited() {
		_ = d.cmd.Process.Kill()
	}
	<-d.done
}

// term sends SIGTERM and waits up to grace for the exit. It returns an error if kubelogd
// did not exit in time (it is killed then) or exited with a non-zero code.
func (d *daemon) term(grace time.Duration) error {
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(grace):
		d.kill()
		return fmt.Errorf("kubelogd (pid %d) did not exit within %s of SIGTERM", d.cmd.Process.Pid, grace)
	}
	if code := d.cmd.ProcessState.ExitCode(); code != 0 {
		return fmt.Errorf("kubelogd (pid %d) exited with %d after SIGTERM:\n%s", d.cmd.Process.Pid, code, lastLines(d.out.String(), 20))
	}
	return nil
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	all := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(all) > n {
		all = all[len(all)-n:]
	}
	return strings.Join(all, "\n")
}

// eventually polls cond every interval until it holds or timeout passes, and returns the
// last detail cond gave when it did not hold.
func eventually(timeout, interval time.Duration, cond func() (bool, string)) (ok bool, detail string) {
	deadline := time.Now().Add(timeout)
	for {
		if ok, detail = cond(); ok {
			return true, ""
		}
		if time.Now().After(deadline) {
			return false, detail
		}
		time.Sleep(interval)
	}
}
