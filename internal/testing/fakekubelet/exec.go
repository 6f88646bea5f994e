package fakekubelet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	utilexec "k8s.io/utils/exec"
)

// ExecRequest is one exec the kubelet received: the container, the command and the
// streams the client asked for.
type ExecRequest struct {
	// Namespace, Pod and Container are taken from the request path.
	Namespace, Pod, Container string
	// Command is the command line, from the repeated "command" query parameter.
	Command []string
	// Stdin and TTY are the client's "input" and "tty" parameters.
	Stdin, TTY bool
	// Env is the container's environment as NAME=value: the literal values of its spec's
	// env (valueFrom is not resolved).
	Env []string
}

// Executor runs a command in a container for the kubelet's /exec: stdin is nil unless the
// client asked for it, stderr is nil with a TTY. A command that exits non-zero returns an
// error implementing k8s.io/utils/exec.ExitError, which the kubelet reports to the client as
// the NonZeroExitCode status with that code, as the container runtime does.
type Executor func(ctx context.Context, req ExecRequest, stdin io.Reader, stdout, stderr io.WriteCloser) error

// execAdapter is the Executor as the kubelet's streaming server calls it.
type execAdapter struct {
	run Executor
	req ExecRequest
}

func (a execAdapter) ExecInContainer(ctx context.Context, _, _, _ string, _ []string, in io.Reader, out, errw io.WriteCloser, _ bool, _ <-chan remotecommand.TerminalSize, _ time.Duration) error {
	return a.run(ctx, a.req, in, out, errw)
}

// serveExec is the kubelet's /exec/{ns}/{pod}/{container} (GET for WebSocket, POST for
// SPDY): the apiserver proxies pods/exec here with its kubelet client certificate. Like the
// kubelet it checks the pod and the container, then hands the upgrade to the CRI streaming
// server's remote-command protocol (k8s.io/cri-streaming ServeExec: SPDY v1–v4 and
// WebSocket channel protocols; a v1.37 apiserver translates a client's v5 WebSocket to
// SPDY for a node that does not declare ExtendWebSocketsToKubelet, as this one does not).
func (k *Kubelet) serveExec(w http.ResponseWriter, r *http.Request) {
	if !k.beginHandler() {
		http.Error(w, "kubelet is shutting down", http.StatusServiceUnavailable)
		return
	}
	defer k.handlers.Done()

	ns, name, container := r.PathValue("podNamespace"), r.PathValue("podID"), r.PathValue("containerName")
	opts, err := remotecommand.NewOptions(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	k.mu.Lock()
	status, pod, found := k.podForLogs(ns, name)
	k.mu.Unlock()
	if !found {
		http.Error(w, "pod does not exist", http.StatusNotFound)
		return
	}
	cs, ok := findStatus(status.ContainerStatuses, container)
	if _, _, inSpec := containerSpec(pod, container); !inSpec || !ok || cs.State.Running == nil {
		// The kubelet finds the container among the runtime's running ones.
		http.Error(w, fmt.Sprintf("container not found (%q)", container), http.StatusNotFound)
		return
	}
	req := ExecRequest{Namespace: ns, Pod: name, Container: container,
		Command: r.URL.Query()["command"], Stdin: opts.Stdin, TTY: opts.TTY, Env: containerEnv(pod, container)}
	k.mu.Lock()
	k.execs = append(k.execs, req)
	run := k.cfg.Exec
	k.execRunning++
	k.mu.Unlock()
	defer func() {
		k.mu.Lock()
		k.execRunning--
		k.mu.Unlock()
	}()
	if run == nil {
		run = func(context.Context, ExecRequest, io.Reader, io.WriteCloser, io.WriteCloser) error {
			return errors.New("fakekubelet: no Config.Exec to run commands with")
		}
	}

	// A hijacked connection does not cancel the request's context: Close ends the command.
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stop := context.AfterFunc(k.ctx, cancel)
	defer stop()
	// The kubelet's defaults: --streaming-connection-idle-timeout 4h, 30 s to create streams.
	remotecommand.ServeExec(w, r.WithContext(ctx), execAdapter{run: run, req: req}, name, string(pod.UID), container,
		req.Command, opts, 4*time.Hour, remotecommand.DefaultStreamCreationTimeout, remotecommand.SupportedStreamingProtocols)
}

// containerEnv returns a container's literal env values as NAME=value.
func containerEnv(pod *v1.Pod, name string) []string {
	var env []string
	for _, list := range [][]v1.Container{pod.Spec.Containers, pod.Spec.InitContainers} {
		for _, c := range list {
			if c.Name != name {
				continue
			}
			for _, e := range c.Env {
				if e.ValueFrom == nil {
					env = append(env, e.Name+"="+e.Value)
				}
			}
		}
	}
	return env
}

// ExecRequests returns the exec requests received so far, in order.
func (k *Kubelet) ExecRequests() []ExecRequest {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]ExecRequest(nil), k.execs...)
}

// RunningExecs is the number of exec sessions whose command has not returned yet.
func (k *Kubelet) RunningExecs() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.execRunning
}

// ExecLocal returns an Executor that runs commands as local processes: paths maps a
// command's path in the container (such as /kubelogd) to a local executable, and any other
// command fails as a runtime fails for a missing executable. The process gets the
// container's env and "/" as working directory, and no pseudo-terminal: with a TTY its
// stderr goes to stdout, as on a terminal. Its output goes through pipes; once a write to
// the client fails (the session is gone), the pipe is closed, so the process's next write
// fails (EPIPE), as a process in a container sees when its exec session ends.
func ExecLocal(paths map[string]string) Executor {
	return func(ctx context.Context, req ExecRequest, stdin io.Reader, stdout, stderr io.WriteCloser) error {
		if len(req.Command) == 0 {
			return errors.New("no command given")
		}
		bin, ok := paths[req.Command[0]]
		if !ok {
			return fmt.Errorf("OCI runtime exec failed: exec failed: unable to start container process: exec: %q: executable file not found in $PATH: unknown", req.Command[0])
		}
		cmd := exec.CommandContext(ctx, bin, req.Command[1:]...)
		cmd.Env, cmd.Dir = req.Env, "/"
		var stdinPipe io.WriteCloser
		if stdin != nil {
			// Not cmd.Stdin: Wait would wait for its copy, which ends only when the client
			// closes stdin, not when the process exits.
			w, err := cmd.StdinPipe()
			if err != nil {
				return err
			}
			stdinPipe = w
		}
		var pipes []io.ReadCloser
		var dsts []io.Writer
		if stdout != nil {
			r, err := cmd.StdoutPipe()
			if err != nil {
				return err
			}
			pipes, dsts = append(pipes, r), append(dsts, stdout)
			if req.TTY {
				cmd.Stderr = cmd.Stdout
			}
		}
		if stderr != nil && !req.TTY {
			r, err := cmd.StderrPipe()
			if err != nil {
				return err
			}
			pipes, dsts = append(pipes, r), append(dsts, stderr)
		}
		if err := cmd.Start(); err != nil {
			return err
		}
		if stdinPipe != nil {
			// Ends when the session's stdin does, which closes once this Executor returned
			// (Wait closes the pipe after the process exits).
			go func() {
				_, _ = io.Copy(stdinPipe, stdin)
				_ = stdinPipe.Close()
			}()
		}
		var wg sync.WaitGroup
		for i, r := range pipes {
			wg.Go(func() {
				_, _ = io.Copy(dsts[i], r)
				// EOF or a failed write to the client: closing the read end makes the
				// process's next write fail instead of blocking on a full pipe.
				_ = r.Close()
			})
		}
		// Wait closes the pipes: it must come after the copies have read everything.
		wg.Wait()
		err := cmd.Wait()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return &utilexec.ExitErrorWrapper{ExitError: ee}
		}
		return err
	}
}
