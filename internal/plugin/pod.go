package plugin

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
)

// ErrNoPod is returned when no running, ready kubelogd pod was found.
var ErrNoPod = errors.New("no kubelogd pod")

// ErrForbidden is returned when the user may not list kubelogd's pods or exec into them.
var ErrForbidden = errors.New("permission denied")

// containerName is the container of deploy/base's pod template.
const containerName = "kubelogd"

// Target is the kubelogd container to run tail in.
type Target struct {
	Pod       *corev1.Pod
	Container corev1.Container
}

// FindPod returns a running, ready pod matching selector in namespace. With several
// (replicas in HA share one output directory), any one serves: the first by name, so that
// repeated runs use the same pod.
func FindPod(ctx context.Context, pods corev1client.PodsGetter, namespace, selector string) (Target, error) {
	list, err := pods.Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
	switch {
	case apierrors.IsForbidden(err):
		return Target{}, fmt.Errorf("%w: the plugin needs to list pods in namespace %q (verbs get and list on pods); check with `kubectl auth can-i list pods -n %s`: %v",
			ErrForbidden, namespace, namespace, err)
	case err != nil:
		return Target{}, fmt.Errorf("listing kubelogd pods in namespace %q: %w", namespace, err)
	}
	items := list.Items
	slices.SortFunc(items, func(a, b corev1.Pod) int { return strings.Compare(a.Name, b.Name) })
	var notReady []string
	for i := range items {
		p := &items[i]
		if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning && podReady(p) {
			return Target{Pod: p, Container: kubelogdContainer(p)}, nil
		}
		notReady = append(notReady, fmt.Sprintf("%s (%s)", p.Name, podState(p)))
	}
	if len(notReady) > 0 {
		return Target{}, fmt.Errorf("%w running and ready in namespace %q with label selector %q: %s",
			ErrNoPod, namespace, selector, strings.Join(notReady, ", "))
	}
	return Target{}, fmt.Errorf("%w in namespace %q with label selector %q: is kubelogd installed elsewhere? Name its namespace with --kubelogd-namespace",
		ErrNoPod, namespace, selector)
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// podState says briefly why a pod is not used.
func podState(p *corev1.Pod) string {
	switch {
	case p.DeletionTimestamp != nil:
		return "terminating"
	case p.Status.Phase == "":
		return string(corev1.PodPending)
	case p.Status.Phase != corev1.PodRunning:
		return string(p.Status.Phase)
	default:
		return "not ready"
	}
}

// kubelogdContainer is the container named kubelogd, else the pod's first one.
func kubelogdContainer(p *corev1.Pod) corev1.Container {
	for _, c := range p.Spec.Containers {
		if c.Name == containerName {
			return c
		}
	}
	return p.Spec.Containers[0]
}

// flagValue returns the value of --name in a container's args (--name=v or --name v).
func flagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
		if a == "--"+name && i+1 < len(args) {
			return args[i+1], true
		}
	}
	return "", false
}

// RemoteCommand is the command line run in the container: the image's entrypoint (or the
// container's command), "tail", the daemon's own --output-dir and --format unless args
// set them (the tree is where the daemon writes, whatever the image default), then args.
func RemoteCommand(c corev1.Container, args []string) []string {
	cmd := []string{"/kubelogd"}
	if len(c.Command) > 0 {
		cmd = []string{c.Command[0]}
	}
	cmd = append(cmd, "tail")
	daemonArgs := append(slices.Clone(c.Command[min(1, len(c.Command)):]), c.Args...)
	for _, name := range []string{"output-dir", "format"} {
		if v, ok := flagValue(daemonArgs, name); ok && !hasFlag(args, name) {
			cmd = append(cmd, "--"+name+"="+v)
		}
	}
	return append(cmd, args...)
}
