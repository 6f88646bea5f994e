package fakekubelet

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/go-logr/logr"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cri-client/pkg/logs"
	"k8s.io/klog/v2"
)

// Request records one log request the kubelet received.
type Request struct {
	// Namespace, Pod and Container are taken from the request path.
	Namespace, Pod, Container string
	// Time is when the request arrived.
	Time time.Time
	// Query is the query string as received (the apiserver's rendering of PodLogOptions).
	Query url.Values
	// Options are the parsed options; zero when the query did not parse.
	Options v1.PodLogOptions
	// Status is the HTTP status answered: 200 for every stream, including those that
	// then carry an error text in the body.
	Status int
	// Ended is when the handler returned, its answer complete; zero while it runs. With
	// Time it tells which reads were open when a line was appended.
	Ended time.Time
}

// serveContainerLogs is the kubelet's GET /containerLogs/{ns}/{pod}/{container}, following
// kubelet server.getContainerLogs and Kubelet.GetKubeletContainerLogs: errors found before
// the stream starts are HTTP errors; once the zero-byte write has committed a 200, errors
// are written into the body.
func (k *Kubelet) serveContainerLogs(w http.ResponseWriter, r *http.Request) {
	if !k.beginHandler() {
		http.Error(w, "kubelet is shutting down", http.StatusServiceUnavailable)
		return
	}
	defer k.handlers.Done()

	ns, name, container := r.PathValue("podNamespace"), r.PathValue("podID"), r.PathValue("containerName")
	req := &Request{Namespace: ns, Pod: name, Container: container, Time: time.Now(), Query: r.URL.Query()}
	k.mu.Lock()
	k.requests = append(k.requests, req)
	fail := k.faults.takeFailure(ns, name, container, req.Time)
	k.mu.Unlock()
	defer func() {
		k.mu.Lock()
		req.Ended = time.Now()
		k.mu.Unlock()
	}()
	reply := func(code int, msg string) {
		k.mu.Lock()
		req.Status = code
		k.mu.Unlock()
		// The kubelet's go-restful WriteError: the status and the bare message.
		w.WriteHeader(code)
		_, _ = w.Write([]byte(msg))
	}
	if fail != nil {
		reply(fail.code, fail.body)
		return
	}

	opts, code, msg := parseLogOptions(r.URL.Query())
	if code != 0 {
		reply(code, msg)
		return
	}
	k.mu.Lock()
	req.Options = *opts
	status, spec, found := k.podForLogs(ns, name)
	if found && opts.Previous && k.faults.forgets(ns, name, container) {
		status = withoutPrevious(status, container)
	}
	k.mu.Unlock()
	if !found {
		reply(http.StatusNotFound, fmt.Sprintf("pod %q does not exist", name))
		return
	}
	if _, _, ok := containerSpec(spec, container); !ok {
		reply(http.StatusNotFound, fmt.Sprintf("container %q not found in pod %q", container, name))
		return
	}
	containerID, err := validateContainerLogStatus(name, status, container, opts.Previous)
	if err != nil {
		reply(http.StatusBadRequest, err.Error())
		return
	}

	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	ctx = klog.NewContext(ctx, logr.FromSlogHandler(k.log.Handler()))
	s := &stream{k: k, w: w, ctx: ctx, cancel: cancel, follow: opts.Follow,
		ns: ns, pod: name, container: container}
	if f, ok := w.(http.Flusher); ok {
		s.flusher = f
	}
	k.mu.Lock()
	if sc := k.faults.takeScript(ns, name, container, opts.Follow); sc != nil {
		s.script = &scriptState{Script: *sc}
	}
	k.streams[s] = struct{}{}
	if s.follow {
		k.follows++
		k.maxFollows = max(k.maxFollows, k.follows)
	}
	req.Status = http.StatusOK
	k.mu.Unlock()
	defer func() {
		k.mu.Lock()
		delay := k.closeDelay
		k.mu.Unlock()
		if s.follow && delay > 0 && r.Context().Err() != nil {
			time.Sleep(delay)
		}
		k.mu.Lock()
		delete(k.streams, s)
		if s.follow {
			k.follows--
		}
		k.mu.Unlock()
	}()

	err = k.readLogs(ctx, s, containerID, opts)
	cause := context.Cause(ctx)
	if ctx.Err() == nil {
		cause = nil
	}
	var injected *injectedError
	switch {
	case errors.As(cause, &injected):
		_, _ = w.Write([]byte(injected.text))
	case errors.Is(cause, endCut):
		// Ends the connection (HTTP/1.1) or resets the stream (HTTP/2) without the
		// terminating chunk, as a kubelet that dies does; net/http recovers this panic.
		panic(http.ErrAbortHandler)
	case cause != nil:
		// EndFollow, Close or the client went away: end the body cleanly.
	case err != nil:
		// After the 200 the kubelet's WriteError can only add the text to the body.
		_, _ = w.Write([]byte(err.Error()))
	}
}

// readLogs is GetKubeletContainerLogs from the zero-byte write on: the write commits the 200
// (and is where a stall holds back the headers), the runtime gives the log path, and the
// kubelet's ReadLogs streams the file.
func (k *Kubelet) readLogs(ctx context.Context, s *stream, containerID string, opts *v1.PodLogOptions) error {
	if _, err := s.Write([]byte{}); err != nil {
		return err
	}
	resp, err := k.runtime.ContainerStatus(ctx, containerID, false)
	if err != nil || resp.GetStatus() == nil {
		return fmt.Errorf("unable to retrieve container logs for %s%s", containerIDPrefix, containerID)
	}
	// kuberuntime.ReadLogs: sinceSeconds is relative to now; a later sinceTime wins.
	lopts := &logs.LogOptions{
		TailLines:  opts.TailLines,
		LimitBytes: opts.LimitBytes,
		Follow:     opts.Follow,
		Timestamp:  opts.Timestamps,
	}
	if opts.SinceSeconds != nil {
		lopts.Since = time.Now().Add(-time.Duration(*opts.SinceSeconds) * time.Second)
	}
	if opts.SinceTime != nil && opts.SinceTime.After(lopts.Since) {
		lopts.Since = opts.SinceTime.Time
	}
	k.mu.Lock()
	exhausted := k.faults.inotifyExhausted
	k.mu.Unlock()
	if opts.Follow && exhausted {
		// ReadLogs reads to the end of the file, then fails to create its watcher.
		lopts.Follow = false
		if err := logs.ReadLogs(ctx, resp.GetStatus().GetLogPath(), containerID, lopts, streamRuntime{k.runtime, s}, s, s); err != nil {
			return err
		}
		return errors.New(InotifyError)
	}
	return logs.ReadLogs(ctx, resp.GetStatus().GetLogPath(), containerID, lopts, streamRuntime{k.runtime, s}, s, s)
}

// podForLogs returns the status and spec logs are served from: the status the fake kubelet
// last computed for the pod, or, for a pod bound to it that no verb touched yet, the pod as
// its watch saw it (the kubelet falls back to the API's status the same way). Called with
// k.mu held.
func (k *Kubelet) podForLogs(namespace, name string) (*v1.PodStatus, *v1.Pod, bool) {
	if uid, ok := k.byName[namespace+"/"+name]; ok {
		if ps := k.state[uid]; !ps.deleted && ps.status != nil {
			return ps.status, ps.pod, true
		}
	}
	obj, ok, err := k.pods.GetIndexer().GetByKey(namespace + "/" + name)
	if err != nil || !ok {
		return nil, nil, false
	}
	pod := obj.(*v1.Pod)
	if pod.Spec.NodeName != k.cfg.NodeName {
		return nil, nil, false
	}
	return &pod.Status, pod, true
}

// validateContainerLogStatus is the kubelet's function of that name: it picks the container
// ID to read from the status, or explains why there are no logs.
func validateContainerLogStatus(podName string, status *v1.PodStatus, container string, previous bool) (string, error) {
	cs, found := findStatus(status.ContainerStatuses, container)
	if !found {
		cs, found = findStatus(status.InitContainerStatuses, container)
	}
	if !found {
		cs, found = findStatus(status.EphemeralContainerStatuses, container)
	}
	if !found {
		return "", fmt.Errorf("container %q in pod %q is not available", container, podName)
	}
	last := cs.LastTerminationState
	waiting, running, terminated := cs.State.Waiting, cs.State.Running, cs.State.Terminated
	var id string
	switch {
	case previous:
		if last.Terminated == nil || last.Terminated.ContainerID == "" {
			return "", fmt.Errorf("previous terminated container %q in pod %q not found", container, podName)
		}
		id = last.Terminated.ContainerID
	case running != nil:
		id = cs.ContainerID
	case terminated != nil:
		id = terminated.ContainerID
		if id == "" {
			if last.Terminated == nil || last.Terminated.ContainerID == "" {
				return "", fmt.Errorf("container %q in pod %q is terminated", container, podName)
			}
			id = last.Terminated.ContainerID
		}
	case last.Terminated != nil:
		if last.Terminated.ContainerID == "" {
			return "", fmt.Errorf("container %q in pod %q is terminated", container, podName)
		}
		id = last.Terminated.ContainerID
	case waiting != nil:
		switch waiting.Reason {
		case "ErrImagePull":
			return "", fmt.Errorf("container %q in pod %q is waiting to start: image can't be pulled", container, podName)
		case "ImagePullBackOff":
			return "", fmt.Errorf("container %q in pod %q is waiting to start: trying and failing to pull image", container, podName)
		default:
			return "", fmt.Errorf("container %q in pod %q is waiting to start: %v", container, podName, waiting.Reason)
		}
	default:
		return "", fmt.Errorf("container %q in pod %q is waiting to start - no logs yet", container, podName)
	}
	// The runtime knows the ID without its "<runtime>://" scheme.
	if i := strings.Index(id, "://"); i >= 0 {
		id = id[i+3:]
	}
	return id, nil
}

// withoutPrevious returns a copy of status in which the container has no last state.
func withoutPrevious(status *v1.PodStatus, container string) *v1.PodStatus {
	st := status.DeepCopy()
	for _, list := range [][]v1.ContainerStatus{st.ContainerStatuses, st.InitContainerStatuses, st.EphemeralContainerStatuses} {
		for i := range list {
			if list[i].Name == container {
				list[i].LastTerminationState = v1.ContainerState{}
			}
		}
	}
	return st
}

func findStatus(statuses []v1.ContainerStatus, name string) (v1.ContainerStatus, bool) {
	for _, s := range statuses {
		if s.Name == name {
			return s, true
		}
	}
	return v1.ContainerStatus{}, false
}

// parseLogOptions decodes the query into PodLogOptions and validates them as the kubelet
// does. A non-zero code is the HTTP status to answer with msg.
func parseLogOptions(q url.Values) (opts *v1.PodLogOptions, code int, msg string) {
	const undecodable = `{"message": "Unable to decode query."}`
	// Backwards compatibility for the "tail" parameter; "all" means no tail.
	if tail := q.Get("tail"); tail != "" {
		q = cloneValues(q)
		q.Set("tailLines", tail)
		if tail == "all" {
			q.Del("tailLines")
		}
	}
	opts = &v1.PodLogOptions{Container: q.Get("container")}
	var err error
	boolParam := func(key string, dst *bool) {
		if v := q.Get(key); v != "" && err == nil {
			*dst, err = strconv.ParseBool(v)
		}
	}
	intParam := func(key string, dst **int64) {
		if v := q.Get(key); v != "" && err == nil {
			var n int64
			n, err = strconv.ParseInt(v, 10, 64)
			*dst = &n
		}
	}
	boolParam("follow", &opts.Follow)
	boolParam("previous", &opts.Previous)
	boolParam("timestamps", &opts.Timestamps)
	boolParam("insecureSkipTLSVerifyBackend", &opts.InsecureSkipTLSVerifyBackend)
	intParam("sinceSeconds", &opts.SinceSeconds)
	intParam("tailLines", &opts.TailLines)
	intParam("limitBytes", &opts.LimitBytes)
	if v := q.Get("sinceTime"); v != "" && err == nil {
		var t metav1.Time
		err = t.UnmarshalQueryParameter(v)
		opts.SinceTime = &t
	}
	if v := q.Get("stream"); v != "" {
		opts.Stream = &v
	}
	if err != nil {
		return nil, http.StatusBadRequest, undecodable
	}

	invalid := (opts.TailLines != nil && *opts.TailLines < 0) ||
		(opts.LimitBytes != nil && *opts.LimitBytes < 1) ||
		(opts.SinceSeconds != nil && opts.SinceTime != nil) ||
		(opts.SinceSeconds != nil && *opts.SinceSeconds < 1)
	if opts.Stream != nil {
		switch *opts.Stream {
		case v1.LogStreamAll:
		case v1.LogStreamStdout, v1.LogStreamStderr:
			invalid = invalid || opts.TailLines != nil
		default:
			invalid = true
		}
	}
	if invalid {
		return nil, http.StatusUnprocessableEntity, `{"message": "Invalid request."}`
	}
	// PodLogsQuerySplitStreams is alpha and off by default in v1.37.
	if opts.Stream != nil && *opts.Stream != v1.LogStreamAll {
		return nil, http.StatusBadRequest, fmt.Sprintf("unable to return the given log stream: %q. Please enable PodLogsQuerySplitStreams feature gate in kubelet", *opts.Stream)
	}
	return opts, 0, ""
}

func cloneValues(q url.Values) url.Values {
	out := make(url.Values, len(q))
	for k, v := range q {
		out[k] = append([]string(nil), v...)
	}
	return out
}
