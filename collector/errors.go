package collector

import (
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// Why a read of a container's log ended short of the instance's end. Each maps to a reason
// of kubelogd_reconnects_total (reasonFor); readInstance decides what follows.
var (
	// errNoPrevious: previous=true found no terminated instance.
	errNoPrevious = errors.New("no previous instance")
	// errTornLine: a follow stream ended in the middle of a line.
	errTornLine = errors.New("stream ended in the middle of a line")
	// errShortReplay: a resumed stream ended before the lines already written were replayed.
	errShortReplay = errors.New("resumed stream ended before reaching the last line written")
	// errBodyError: the kubelet wrote an error text into the stream after answering 200.
	errBodyError = errors.New("kubelet error inside the log stream")
	// errInstanceReplaced: a resumed stream served lines of a newer instance than the
	// cursor's (the container restarted while the pod watch was blind or late).
	errInstanceReplaced = errors.New("the log stream served a newer instance of the container")
	// errOtherPod: the pod of the target's name is not the target's pod UID any more.
	errOtherPod = errors.New("the pod of that name has another UID")
)

// The causes with which the watchdog cancels an open stream (see watchdog).
var (
	// errStalled: the kubelet has lines the open stream did not deliver (a dead node or
	// kubelet gives a stalled stream, not an error).
	errStalled = errors.New("stream stalled")
	// errLifetime: the stream reached its maximum lifetime and is reopened.
	errLifetime = errors.New("stream reached its maximum lifetime")
	// errClockStep: the kubelet holds lines after the last one written that are stamped
	// before the stream's sinceTime, which hides them (the node's clock stepped back).
	errClockStep = errors.New("the kubelet holds lines stamped before the resume point (node clock stepped back?)")
	// errDemoted: the stream stayed idle while a busier polled container waited for its
	// follow slot (see budget).
	errDemoted = errors.New("idle stream demoted to polling")
)

// podGone reports whether err is the API server's own answer that the pod object does
// not exist (it fetches the pod before proxying a log request): the pod was deleted,
// which says nothing about its log. A 404 from the kubelet names pods/log instead.
func podGone(err error) bool {
	var status apierrors.APIStatus
	if !apierrors.IsNotFound(err) || !errors.As(err, &status) {
		return false
	}
	d := status.Status().Details
	return d != nil && d.Kind == "pods"
}

// reasonFor names why a read ended, for kubelogd_reconnects_total.
func reasonFor(err error) string {
	var status apierrors.APIStatus
	switch {
	case err == nil:
		return reasonEOF
	case errors.Is(err, errStalled), errors.Is(err, errClockStep):
		return reasonStall
	case errors.Is(err, errLifetime):
		return reasonLifetime
	case errors.Is(err, errDemoted):
		return reasonDemoted
	case errors.Is(err, errTornLine):
		return reasonTornLine
	case errors.Is(err, errShortReplay), errors.Is(err, errInstanceReplaced):
		return reasonShortReplay
	case errors.Is(err, errBodyError):
		return reasonBodyError
	case apierrors.IsForbidden(err):
		return reasonForbidden
	case errors.As(err, &status):
		return reasonHTTPError
	default:
		return reasonAPIServer
	}
}

// unparsed says why a line without a timestamp ends the stream. A stream cut inside the
// timestamp of its last line is a torn line, read again on resume. Anything else is not a
// line of the container: after the 200 the kubelet reports failures inside the body,
// without timestamp or newline.
func unparsed(line []byte, complete bool) error {
	if !complete && timestampPrefix(line) {
		return errTornLine
	}
	return fmt.Errorf("%w: %q", errBodyError, truncate(line, 200))
}

// timestampPrefix reports whether b can be the start of an RFC 3339 timestamp.
func timestampPrefix(b []byte) bool {
	if len(b) == 0 || len(b) > len(timeLayout) {
		return false
	}
	for _, c := range b {
		if !(c >= '0' && c <= '9' || c == '-' || c == ':' || c == 'T' || c == '.' || c == 'Z' || c == '+') {
			return false
		}
	}
	return true
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}
