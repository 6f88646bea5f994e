package plugin

import (
	"fmt"
	"strings"

	"github.com/spf13/pflag"

	"github.com/kubelogd/kubelogd/internal/tail"
)

// DefaultNamespace is where deploy/ installs kubelogd.
const DefaultNamespace = "kubelogd"

// DefaultSelector selects kubelogd's pods: the label of deploy/base's pod template.
const DefaultSelector = "app.kubernetes.io/name=kubelogd"

// Protocols of --exec-protocol.
const (
	ProtocolAuto      = "auto"
	ProtocolWebSocket = "websocket"
	ProtocolSPDY      = "spdy"
)

// Options are the plugin's own flags and the arguments passed on to `kubelogd tail`.
type Options struct {
	// Namespace is kubelogd's namespace (--kubelogd-namespace).
	Namespace string
	// Selector selects kubelogd's pods (--kubelogd-selector).
	Selector string
	// Kubeconfig and Context choose the cluster, as for kubectl.
	Kubeconfig, Context string
	// Protocol is auto (WebSocket, then SPDY when the upgrade fails), websocket or spdy.
	Protocol string
	// TailArgs are the remaining arguments, in order, for the remote `kubelogd tail`.
	TailArgs []string
	// Help is set by -h or --help.
	Help bool
}

// pluginFlags returns the plugin's own flags, bound to o.
func pluginFlags(o *Options) *pflag.FlagSet {
	fs := pflag.NewFlagSet("kubectl kubelogd", pflag.ContinueOnError)
	fs.SortFlags = false
	fs.StringVar(&o.Namespace, "kubelogd-namespace", DefaultNamespace, "the namespace kubelogd runs in (not -n, which selects the namespaces to read)")
	fs.StringVar(&o.Selector, "kubelogd-selector", DefaultSelector, "label selector of kubelogd's pods")
	fs.StringVar(&o.Kubeconfig, "kubeconfig", "", "path to the kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
	fs.StringVar(&o.Context, "context", "", "the kubeconfig context to use (default: the current one)")
	fs.StringVar(&o.Protocol, "exec-protocol", ProtocolAuto, "how to reach the pod: auto (WebSocket, SPDY if the upgrade fails), websocket or spdy")
	fs.BoolVarP(&o.Help, "help", "h", false, "show this help")
	return fs
}

// ParseArgs separates the plugin's flags from `kubelogd tail`'s, which are passed on
// unchanged and in order. It knows which of tail's flags take a value, so that a value
// such as `--grep --context` stays with its flag.
func ParseArgs(args []string) (Options, error) {
	var o Options
	own := pluginFlags(&o)
	tailFlags := tail.FlagSet()
	// takesValue reports whether a tail flag reads the next argument as its value.
	takesValue := func(f *pflag.Flag) bool { return f != nil && f.NoOptDefVal == "" }
	var ownArgs []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			o.TailArgs = append(o.TailArgs, args[i:]...)
			i = len(args)
		case strings.HasPrefix(a, "--"):
			name, _, hasValue := strings.Cut(a[2:], "=")
			if f := own.Lookup(name); f != nil {
				ownArgs = append(ownArgs, a)
				if !hasValue && f.NoOptDefVal == "" && i+1 < len(args) {
					i++
					ownArgs = append(ownArgs, args[i])
				}
				continue
			}
			f := tailFlags.Lookup(name)
			if f == nil {
				return o, fmt.Errorf("unknown flag: --%s (see kubectl kubelogd --help)", name)
			}
			o.TailArgs = append(o.TailArgs, a)
			if !hasValue && takesValue(f) && i+1 < len(args) {
				i++
				o.TailArgs = append(o.TailArgs, args[i])
			}
		case strings.HasPrefix(a, "-") && len(a) > 1:
			// Shorthands, possibly combined (-fn shop, -nshop): the first one that takes
			// a value takes the rest of the argument, or else the next argument.
			if a == "-h" {
				o.Help = true
				continue
			}
			o.TailArgs = append(o.TailArgs, a)
			for j := 1; j < len(a); j++ {
				f := tailFlags.ShorthandLookup(a[j : j+1])
				if f == nil {
					return o, fmt.Errorf("unknown shorthand flag: %q in %s (see kubectl kubelogd --help)", a[j], a)
				}
				if takesValue(f) {
					if j == len(a)-1 && i+1 < len(args) {
						i++
						o.TailArgs = append(o.TailArgs, args[i])
					}
					break
				}
			}
		default:
			o.TailArgs = append(o.TailArgs, a)
		}
	}
	if err := own.Parse(ownArgs); err != nil {
		return o, fmt.Errorf("%w (see kubectl kubelogd --help)", err)
	}
	switch o.Protocol {
	case ProtocolAuto, ProtocolWebSocket, ProtocolSPDY:
	default:
		return o, fmt.Errorf("invalid --exec-protocol %q: use auto, websocket or spdy", o.Protocol)
	}
	if o.Namespace == "" {
		return o, fmt.Errorf("--kubelogd-namespace must not be empty")
	}
	return o, nil
}

// hasFlag reports whether args (tail's, as passed on) set the long flag name, before any "--".
func hasFlag(args []string, name string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		if a == "--"+name || strings.HasPrefix(a, "--"+name+"=") {
			return true
		}
	}
	return false
}

const usageHead = `Usage: kubectl kubelogd [POD] [flags]

Print the container logs kubelogd collected, read inside a running kubelogd pod: the
plugin finds the pod in --kubelogd-namespace and runs ` + "`kubelogd tail`" + ` there through the API
server (pods/exec), with the arguments given here. It needs pods get/list and pods/exec
create (and get, for WebSocket) in kubelogd's namespace, nothing else (see the README).

On a terminal the command runs with a TTY: colours work and Ctrl-C stops the remote tail.
Otherwise it is given --color never and ends when its output is closed.

Examples:
  kubectl kubelogd -n shop web --since 15m
  kubectl kubelogd -l app=api --grep 'timeout|refused' --tail 50
  kubectl kubelogd -n shop -c proxy -f
  kubectl kubelogd --kubelogd-namespace logging --context prod -n shop -f

Plugin flags:
`

// Usage returns the help text of kubectl kubelogd.
func Usage() string {
	var o Options
	return usageHead + pluginFlags(&o).FlagUsages() + "\nFlags of kubelogd tail, passed on:\n" + tail.FlagSet().FlagUsages() +
		"\nExit status: that of the remote kubelogd tail (0, 1 when nothing matched, 2 for invalid\nflags), or 1 when the pod could not be reached.\n"
}
