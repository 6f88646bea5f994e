package plugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/term"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	utilexec "k8s.io/client-go/util/exec"

	"github.com/kubelogd/kubelogd/internal/tail"
)

// Main runs kubectl kubelogd with the arguments after the command name and returns the
// exit code: the remote kubelogd tail's, 2 for invalid flags, 1 when the pod could not be
// found or reached. env looks up environment variables (os.LookupEnv). Errors are written
// to stderr; a cancelled ctx (Ctrl-C without a terminal) ends a --follow with 0.
func Main(ctx context.Context, args []string, env func(string) (string, bool), stdin io.Reader, stdout, stderr io.Writer) int {
	o, err := ParseArgs(args)
	if err != nil {
		fmt.Fprintln(stderr, "kubectl kubelogd:", err)
		return 2
	}
	if o.Help {
		fmt.Fprint(stdout, Usage())
		return 0
	}
	// Tail's own checks, here, so that a typo fails before any cluster access. Times are
	// passed on as written: the remote tail resolves --since 15m against its own clock.
	noEnv := func(string) (string, bool) { return "", false }
	if _, err := tail.ParseArgs(o.TailArgs, noEnv, time.Now(), io.Discard); err != nil {
		fmt.Fprintln(stderr, "kubectl kubelogd:", err)
		return 2
	}
	tty := isTerminal(stdout)
	tailArgs := o.TailArgs
	if _, noColor := env("NO_COLOR"); !hasFlag(tailArgs, "color") && (!tty || noColor) {
		tailArgs = append([]string{"--color=never"}, tailArgs...)
	}

	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = o.Kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules,
		&clientcmd.ConfigOverrides{CurrentContext: o.Context}).ClientConfig()
	if err != nil {
		fmt.Fprintln(stderr, "kubectl kubelogd: loading the kubeconfig:", err)
		return 1
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		fmt.Fprintln(stderr, "kubectl kubelogd:", err)
		return 1
	}
	target, err := FindPod(ctx, client.CoreV1(), o.Namespace, o.Selector)
	if err != nil {
		fmt.Fprintln(stderr, "kubectl kubelogd:", err)
		return 1
	}

	s := &Session{Target: target, Command: RemoteCommand(target.Container, tailArgs), TTY: tty,
		Stdout: stdout, Stderr: stderr, Protocol: o.Protocol}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if tty {
		// The local terminal in raw mode sends Ctrl-C as a key to the remote terminal,
		// whose line discipline turns it into SIGINT for the remote tail.
		if in, ok := stdin.(*os.File); ok && term.IsTerminal(int(in.Fd())) {
			if state, err := term.MakeRaw(int(in.Fd())); err == nil {
				defer func() { _ = term.Restore(int(in.Fd()), state) }()
				s.Stdin = in
			}
		}
		s.Sizes = newSizeQueue(ctx, stdout.(*os.File))
	}
	err = Exec(ctx, cfg, client, s)
	var exitErr utilexec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exitErr) && exitErr.Exited():
		// The remote tail said why on stderr (or the terminal).
		return exitErr.ExitStatus()
	case ctx.Err() != nil:
		return 0
	default:
		fmt.Fprintln(stderr, "kubectl kubelogd:", err)
		return 1
	}
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
