// Package kubelogdproc builds the kubelogd binary that the end-to-end tests and the soak
// run, starts it as a child process with its output captured, and stops it. What differs
// between those suites (extra flags, how long a SIGTERM may take, what a failure reports)
// stays with them: this package only does what both do alike.
package kubelogdproc

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Build builds kubelogd as the test suites run it — with the race detector and the
// failpoint build tag, whose crash points the release build leaves out — into a new
// temporary directory whose name starts with pattern. It returns the binary's path and a
// function that removes the directory. The go command's output goes to os.Stderr.
// A suite calls it once, from TestMain.
func Build(pattern string) (bin string, cleanup func(), err error) {
	dir, err := os.MkdirTemp("", pattern)
	if err != nil {
		return "", nil, err
	}
	cleanup = func() { _ = os.RemoveAll(dir) }
	bin = filepath.Join(dir, "kubelogd")
	build := exec.Command("go", "build", "-race", "-tags", "failpoint", "-o", bin, "github.com/kubelogd/kubelogd/cmd/kubelogd")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("building kubelogd: %w", err)
	}
	return bin, cleanup, nil
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Options say how StartDaemon runs kubelogd against a test cluster.
type Options struct {
	// Kubeconfig is the cluster's kubeconfig file (--kubeconfig).
	Kubeconfig string
	// OutputDir is where kubelogd writes (--output-dir).
	OutputDir string
	// Env is added to the test binary's environment, for example to arm failpoints.
	Env []string
	// Args come after the flags StartDaemon sets, in this order.
	Args []string
}

// StartDaemon starts bin with --kubeconfig, --output-dir, --metrics-addr on a free
// loopback port and --log-level debug, followed by o.Args, as Start does. It returns the
// process and the base URL of its metrics server.
func StartDaemon(bin string, o Options) (p *Proc, metrics string, err error) {
	port, err := FreePort()
	if err != nil {
		return nil, "", err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	args := append([]string{"--kubeconfig", o.Kubeconfig, "--output-dir", o.OutputDir,
		"--metrics-addr", addr, "--log-level", "debug"}, o.Args...)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), o.Env...)
	if p, err = Start(cmd); err != nil {
		return nil, "", err
	}
	return p, "http://" + addr, nil
}

// Proc is a started kubelogd process. Its output is kept whole, so that a failure can
// show what kubelogd said long before it.
type Proc struct {
	// Cmd is the started command; read Cmd.ProcessState only once Done is closed.
	Cmd  *exec.Cmd
	out  syncBuffer
	done chan struct{}
}

// Start starts cmd, capturing its standard output and error (Output) and setting a
// parent-death signal of SIGKILL on its SysProcAttr (created if nil), so that the process
// dies with the test binary and a killed test leaves none behind. A goroutine waits for
// the process and closes Done when it has exited.
func Start(cmd *exec.Cmd) (*Proc, error) {
	p := &Proc{Cmd: cmd, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = &p.out, &p.out
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = cmd.Wait(); close(p.done) }()
	return p, nil
}

// Output returns everything the process wrote to its standard output and error so far.
func (p *Proc) Output() string { return p.out.String() }

// Done is closed once the process has exited and Cmd.ProcessState is set.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Kill sends SIGKILL, if the process still runs, and waits for it to exit.
func (p *Proc) Kill() {
	if !p.Exited() {
		_ = p.Cmd.Process.Kill()
	}
	<-p.done
}

// Term sends SIGTERM and waits up to grace for the process to exit. It reports whether
// the process exited; one still running is left running, since what to do then (fail,
// ask for a goroutine dump, kill) is the caller's choice. The exit code is the caller's
// to judge too.
func (p *Proc) Term(grace time.Duration) bool {
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return true
	case <-time.After(grace):
		return false
	}
}

// syncBuffer is a strings.Builder that exec.Cmd's copying goroutine writes while a test
// reads it.
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
