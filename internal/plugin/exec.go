package plugin

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"sync/atomic"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/streaming/pkg/httpstream"
)

// Session is one run of the remote command: where, what, and the local streams.
type Session struct {
	Target  Target
	Command []string
	// TTY runs the command with a terminal; Stderr is then not used (a terminal has one
	// output), and Stdin, when set, carries the keys typed, Ctrl-C among them.
	TTY   bool
	Stdin io.Reader
	// Stdout and Stderr receive the command's output.
	Stdout, Stderr io.Writer
	// Sizes reports the local terminal's size, with TTY.
	Sizes remotecommand.TerminalSizeQueue
	// Protocol is ProtocolAuto, ProtocolWebSocket or ProtocolSPDY.
	Protocol string
}

// execURL is the pods/exec subresource URL for s.
func execURL(client kubernetes.Interface, s *Session) *url.URL {
	return client.CoreV1().RESTClient().Post().
		Namespace(s.Target.Pod.Namespace).Resource("pods").Name(s.Target.Pod.Name).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{
			Container: s.Target.Container.Name,
			Command:   s.Command,
			Stdin:     s.Stdin != nil,
			Stdout:    true,
			Stderr:    !s.TTY,
			TTY:       s.TTY,
		}, scheme.ParameterCodec).URL()
}

// newExecutor returns the executor for the protocol: WebSocket (v5.channel.k8s.io, which
// the API server translates for kubelets that speak only SPDY) first and SPDY when the
// upgrade fails, as kubectl exec does; or one of them alone.
func newExecutor(cfg *rest.Config, u *url.URL, protocol string) (remotecommand.Executor, error) {
	spdy := func() (remotecommand.Executor, error) { return remotecommand.NewSPDYExecutor(cfg, "POST", u) }
	ws := func() (remotecommand.Executor, error) {
		return remotecommand.NewWebSocketExecutor(cfg, "GET", u.String())
	}
	switch protocol {
	case ProtocolSPDY:
		return spdy()
	case ProtocolWebSocket:
		return ws()
	}
	w, err := ws()
	if err != nil {
		return nil, err
	}
	s, err := spdy()
	if err != nil {
		return nil, err
	}
	return remotecommand.NewFallbackExecutor(w, s, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})
}

// Exec runs s's command in its pod and streams its output until it ends or ctx is done.
// A command that exits non-zero gives a k8s.io/client-go/util/exec.ExitError. When the
// session could not be opened because the user may not create pods/exec there, the error
// wraps ErrForbidden and says how to check.
func Exec(ctx context.Context, cfg *rest.Config, client kubernetes.Interface, s *Session) error {
	exec, err := newExecutor(cfg, execURL(client, s), s.Protocol)
	if err != nil {
		return fmt.Errorf("preparing exec into pod %s/%s: %w", s.Target.Pod.Namespace, s.Target.Pod.Name, err)
	}
	out := &countingWriter{w: s.Stdout}
	err = exec.StreamWithContext(ctx, remotecommand.StreamOptions{
		Stdin: s.Stdin, Stdout: out, Stderr: stderrFor(s), Tty: s.TTY, TerminalSizeQueue: s.Sizes,
	})
	if err == nil || ctx.Err() != nil || out.n.Load() > 0 {
		return err
	}
	// The upgrade's error is text by the time it gets here (a 403 of the WebSocket attempt
	// is wrapped, that of SPDY flattened): ask the API server whether exec is allowed.
	if allowed, rerr := canExec(ctx, client, s.Target); rerr == nil && !allowed {
		ns := s.Target.Pod.Namespace
		return fmt.Errorf("%w: you may not exec into kubelogd's pod %s/%s: the plugin needs verb create on resource pods/exec in namespace %q (see the README for a Role). Check with:\n  kubectl auth can-i create pods --subresource=exec -n %s\n(%v)",
			ErrForbidden, ns, s.Target.Pod.Name, ns, ns, err)
	}
	return fmt.Errorf("exec into pod %s/%s: %w", s.Target.Pod.Namespace, s.Target.Pod.Name, err)
}

func stderrFor(s *Session) io.Writer {
	if s.TTY {
		return nil
	}
	return s.Stderr
}

// canExec asks with a SelfSubjectAccessReview, which every authenticated user may create,
// whether the user may create pods/exec on the target pod.
func canExec(ctx context.Context, client kubernetes.Interface, t Target) (bool, error) {
	r, err := client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
		Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: t.Pod.Namespace, Verb: "create", Resource: "pods", Subresource: "exec", Name: t.Pod.Name,
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		return false, err
	}
	return r.Status.Allowed, nil
}

// countingWriter counts the bytes written, to tell a session that never opened from one
// that failed later. The executor writes from its own goroutines.
type countingWriter struct {
	w io.Writer
	n atomic.Int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}
