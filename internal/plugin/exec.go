package plugin

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"
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
	if missing := missingExecVerbs(ctx, client, s.Target); len(missing) > 0 {
		return fmt.Errorf("%w: %s (%v)", ErrForbidden, forbiddenMessage(s.Target, missing), err)
	}
	return fmt.Errorf("exec into pod %s/%s: %w", s.Target.Pod.Namespace, s.Target.Pod.Name, err)
}

// forbiddenMessage explains which verbs on pods/exec the user lacks and how to check.
// create is what exec is; since v1.35 the API server also checks get, the verb of the
// WebSocket upgrade (a GET), while SPDY (a POST) needs create alone.
func forbiddenMessage(t Target, missing []string) string {
	ns := t.Pod.Namespace
	var b strings.Builder
	fmt.Fprintf(&b, "you may not exec into kubelogd's pod %s/%s: ", ns, t.Pod.Name)
	if slices.Contains(missing, "create") {
		fmt.Fprintf(&b, "the plugin needs verb create on resource pods/exec in namespace %q", ns)
		if slices.Contains(missing, "get") {
			b.WriteString(", and get for WebSocket")
		}
	} else {
		fmt.Fprintf(&b, "WebSocket exec needs verb get on resource pods/exec in namespace %q besides create (or use --exec-protocol spdy)", ns)
	}
	b.WriteString(" (deploy/oncall/role.yaml is such a Role). Check with:")
	for _, verb := range missing {
		fmt.Fprintf(&b, "\n  kubectl auth can-i %s pods --subresource=exec -n %s", verb, ns)
	}
	b.WriteString("\n")
	return b.String()
}

// missingExecVerbs asks with SelfSubjectAccessReviews, which every authenticated user may
// create, whether the user may create and get pods/exec on the target pod, and returns
// the verbs denied. An error of the review itself counts as allowed: then the original
// error is all there is to say.
func missingExecVerbs(ctx context.Context, client kubernetes.Interface, t Target) []string {
	var missing []string
	for _, verb := range []string{"create", "get"} {
		r, err := client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: t.Pod.Namespace, Verb: verb, Resource: "pods", Subresource: "exec", Name: t.Pod.Name,
			}},
		}, metav1.CreateOptions{})
		if err == nil && !r.Status.Allowed {
			missing = append(missing, verb)
		}
	}
	return missing
}

func stderrFor(s *Session) io.Writer {
	if s.TTY {
		return nil
	}
	return s.Stderr
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
