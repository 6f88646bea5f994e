package fakekubelet

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/client-go/util/exec"
)

// execClient opens an exec session on the kubelet directly, as the apiserver does, over
// SPDY or the kubelet's WebSocket protocol (v4.channel.k8s.io).
func (e *env) execClient(t *testing.T, protocol, ns, pod, container string, command ...string) remotecommand.Executor {
	t.Helper()
	pems, err := servingCert()
	if err != nil {
		t.Fatal(err)
	}
	q := url.Values{"command": command, "output": {"1"}, "error": {"1"}}
	u := &url.URL{Scheme: "https", Host: fmt.Sprintf("127.0.0.1:%d", e.k.Port()),
		Path: fmt.Sprintf("/exec/%s/%s/%s", ns, pod, container), RawQuery: q.Encode()}
	cfg := &rest.Config{Host: "https://" + u.Host, TLSClientConfig: rest.TLSClientConfig{CAData: pems[0]}}
	var ex remotecommand.Executor
	if protocol == "spdy" {
		ex, err = remotecommand.NewSPDYExecutor(cfg, "POST", u)
	} else {
		ex, err = remotecommand.NewWebSocketExecutorForProtocols(cfg, "GET", u.String(), "v4.channel.k8s.io")
	}
	if err != nil {
		t.Fatal(err)
	}
	return ex
}

func TestExec(t *testing.T) {
	for _, protocol := range []string{"spdy", "websocket"} {
		t.Run(protocol, func(t *testing.T) {
			e := newEnv(t, func(c *Config) { c.Exec = ExecLocal(map[string]string{"/bin/sh": "/bin/sh"}) })
			pod := e.podSpec("ns", "p", "c")
			pod.Spec.Containers[0].Env = append(pod.Spec.Containers[0].Env, envVar("GREETING", "hello"))
			e.create(t, pod)
			if err := e.k.StartContainer(t.Context(), "ns", "p", "c"); err != nil {
				t.Fatal(err)
			}

			var out, errOut strings.Builder
			err := e.execClient(t, protocol, "ns", "p", "c", "/bin/sh", "-c", `echo "$GREETING $(pwd)"; echo oops >&2; exit 3`).
				StreamWithContext(t.Context(), remotecommand.StreamOptions{Stdout: &out, Stderr: &errOut})
			var exit utilexec.ExitError
			if !errors.As(err, &exit) || exit.ExitStatus() != 3 {
				t.Fatalf("error %v, want exit status 3", err)
			}
			if out.String() != "hello /\n" || errOut.String() != "oops\n" {
				t.Fatalf("stdout %q, stderr %q", out.String(), errOut.String())
			}
			reqs := e.k.ExecRequests()
			if len(reqs) != 1 || reqs[0].Pod != "p" || reqs[0].Command[0] != "/bin/sh" || reqs[0].TTY {
				t.Fatalf("requests %+v", reqs)
			}

			err = e.execClient(t, protocol, "ns", "p", "c", "/bin/bash").
				StreamWithContext(t.Context(), remotecommand.StreamOptions{Stdout: io.Discard, Stderr: io.Discard})
			if err == nil || !strings.Contains(err.Error(), `exec: "/bin/bash": executable file not found`) {
				t.Fatalf("unknown command: error %v", err)
			}
			err = e.execClient(t, protocol, "ns", "p", "nope", "/bin/sh").
				StreamWithContext(t.Context(), remotecommand.StreamOptions{Stdout: io.Discard, Stderr: io.Discard})
			if err == nil {
				t.Fatal("exec into a container that does not exist succeeded")
			}
		})
	}
}

// TestExecClientGone checks that a command whose session ended exits at its next write.
func TestExecClientGone(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Exec = ExecLocal(map[string]string{"/bin/sh": "/bin/sh"}) })
	e.running(t, "ns", "p", "c")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- e.execClient(t, "spdy", "ns", "p", "c", "/bin/sh", "-c", "while :; do echo tick; sleep 0.05; done").
			StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: pw, Stderr: io.Discard})
		pw.Close()
	}()
	if line, err := bufio.NewReader(pr).ReadString('\n'); err != nil || line != "tick\n" {
		t.Fatalf("first line %q, %v", line, err)
	}
	cancel()
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	<-done
	deadline := time.Now().Add(30 * time.Second)
	for e.k.RunningExecs() > 0 {
		if time.Now().After(deadline) {
			t.Fatal("the command still runs 30 s after its session ended")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func envVar(name, value string) v1.EnvVar { return v1.EnvVar{Name: name, Value: value} }
