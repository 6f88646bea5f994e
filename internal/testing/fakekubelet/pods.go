package fakekubelet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	critest "k8s.io/cri-api/pkg/apis/testing"
)

// containerIDPrefix is the runtime scheme of container IDs in pod status.
const containerIDPrefix = "containerd://"

// podState is what the fake kubelet knows about one pod UID: its containers' instances and
// the status it last computed. It lives on after the pod is deleted so that Emitted and
// Instances still answer; guarded by Kubelet.mu.
type podState struct {
	ns, name string
	uid      types.UID
	dir      string // <Dir>/<ns>_<name>_<uid>, as the kubelet lays out /var/log/pods
	// pod is the object as last read from the API; its spec names the containers.
	pod *v1.Pod
	// status is the status last computed, nil before the first verb. Logs are served from
	// it, as the kubelet serves them from its status manager's cache rather than the API.
	status     *v1.PodStatus
	containers map[string]*containerState
	// phase overrides the derived phase when set (SetPhase).
	phase v1.PodPhase
	// terminal is set when a graceful deletion stopped the containers: the phase becomes
	// Succeeded or Failed whatever the restart policy, as the kubelet does on deletion.
	terminal bool
	// deleted is set once the pod is gone from the API; its logs are no longer served.
	deleted bool
}

// containerKind tells which list of the pod spec a container is in.
type containerKind int

const (
	regularContainer containerKind = iota
	initContainer
	ephemeralContainer
)

// containerState is one container name of a pod, with every instance it ever ran.
type containerState struct {
	name      string
	kind      containerKind
	image     string
	instances []*instance
}

// current is the newest instance, nil before the container first started.
func (c *containerState) current() *instance {
	if len(c.instances) == 0 {
		return nil
	}
	return c.instances[len(c.instances)-1]
}

// instance is one run of a container: one container ID and one CRI log file.
type instance struct {
	id           string // runtime ID, without the containerd:// prefix
	restartCount int32
	path         string
	f            *os.File // open for appending while running; nil after it exited
	running      bool
	startedAt    time.Time
	finishedAt   time.Time
	exitCode     int32
	reason       string
	lines        []Line // application lines written, in file order
}

func (in *instance) closeFile() {
	if in.f != nil {
		_ = in.f.Close()
		in.f = nil
	}
}

// StartContainer starts a new instance of a container (regular, init or ephemeral; add an
// ephemeral container through the API's ephemeralcontainers subresource first): a new
// container ID, a new CRI log file <Dir>/<ns>_<pod>_<uid>/<container>/<restartCount>.log
// and status running. A container that ran before is restarted, as Restart would after its
// termination, and only if the restart policy allows it (the apiserver refuses the status
// otherwise).
func (k *Kubelet) StartContainer(ctx context.Context, namespace, pod, container string) error {
	return k.mutate(ctx, namespace, pod, func(ps *podState) error {
		return k.startContainer(ps, container)
	}, nil)
}

// StartContainers starts several containers of a pod, each as StartContainer would, with
// one status write for all of them: a pod whose containers start together, and a quarter
// of the API calls when a test brings up thousands of pods with four containers each. When
// one cannot start, the ones before it have started, and no status is written; the next
// verb writes it.
func (k *Kubelet) StartContainers(ctx context.Context, namespace, pod string, containers ...string) error {
	return k.mutate(ctx, namespace, pod, func(ps *podState) error {
		for _, c := range containers {
			if err := k.startContainer(ps, c); err != nil {
				return err
			}
		}
		return nil
	}, nil)
}

// startContainer is the change of StartContainer. Called with k.mu held.
func (k *Kubelet) startContainer(ps *podState, container string) error {
	c, err := ps.container(container)
	if err != nil {
		return err
	}
	if cur := c.current(); cur != nil {
		if cur.running {
			return fmt.Errorf("container %q of pod %s/%s is already running", container, ps.ns, ps.name)
		}
		if err := canRestart(ps.pod, c, cur.exitCode); err != nil {
			return err
		}
	}
	if ps.terminal || ps.pod.DeletionTimestamp != nil {
		return fmt.Errorf("pod %s/%s is terminating: no container starts", ps.ns, ps.name)
	}
	return k.startInstance(ps, c)
}

// Terminate stops the running instance of a container with an exit code and reason (""
// means "Completed" for 0 and "Error" otherwise; "OOMKilled" and others are kept). Its log
// file stays; follow streams end once they have read it to the end. The pod becomes
// Succeeded or Failed when all its regular containers have terminated and the restart
// policy does not restart them.
func (k *Kubelet) Terminate(ctx context.Context, namespace, pod, container string, exitCode int32, reason string) error {
	return k.mutate(ctx, namespace, pod, func(ps *podState) error {
		c, err := ps.container(container)
		if err != nil {
			return err
		}
		cur := c.current()
		if cur == nil || !cur.running {
			return fmt.Errorf("container %q of pod %s/%s is not running", container, namespace, pod)
		}
		k.stopInstance(cur, exitCode, reason)
		return nil
	}, nil)
}

// Restart terminates the running instance of a container (if it runs) with exitCode and
// reason and starts a new one: new container ID, restartCount+1, lastState.terminated
// naming the old instance, whose file previous=true keeps serving.
func (k *Kubelet) Restart(ctx context.Context, namespace, pod, container string, exitCode int32, reason string) error {
	return k.RestartN(ctx, namespace, pod, container, 1, exitCode, reason)
}

// RestartN restarts a container n times in a row with a single status write at the end, so
// watchers see restartCount jump by n. The instances in between start and exit at once with
// exitCode and reason; as on a real kubelet, only the last terminated instance is reachable
// with previous=true.
func (k *Kubelet) RestartN(ctx context.Context, namespace, pod, container string, n int, exitCode int32, reason string) error {
	if n < 1 {
		return fmt.Errorf("restart count %d: must be at least 1", n)
	}
	return k.mutate(ctx, namespace, pod, func(ps *podState) error {
		c, err := ps.container(container)
		if err != nil {
			return err
		}
		cur := c.current()
		if cur == nil {
			return fmt.Errorf("container %q of pod %s/%s never started: nothing to restart", container, namespace, pod)
		}
		code := exitCode
		if !cur.running {
			code = cur.exitCode
		}
		if err := canRestart(ps.pod, c, code); err != nil {
			return err
		}
		if cur.running {
			k.stopInstance(cur, exitCode, reason)
		}
		for i := 1; i < n; i++ {
			if err := k.startInstance(ps, c); err != nil {
				return err
			}
			k.stopInstance(c.current(), exitCode, reason)
		}
		return k.startInstance(ps, c)
	}, nil)
}

// SetPhase forces the pod's phase; later verbs keep it until SetPhase(..., "") returns the
// pod to the phase derived from its containers.
func (k *Kubelet) SetPhase(ctx context.Context, namespace, pod string, phase v1.PodPhase) error {
	return k.mutate(ctx, namespace, pod, func(ps *podState) error {
		ps.phase = phase
		return nil
	}, nil)
}

// UpdatePodStatus writes the pod status computed from the containers after edit changed it.
// Logs are served from the edited status, as the kubelet serves them from what it reported.
// Fields the fake kubelet manages (phase, conditions it owns, container statuses, host IPs)
// are recomputed by the next verb; others (podIP, message, ...) stay as edited.
func (k *Kubelet) UpdatePodStatus(ctx context.Context, namespace, pod string, edit func(*v1.PodStatus)) error {
	return k.mutate(ctx, namespace, pod, func(*podState) error { return nil }, edit)
}

// mutate runs one verb: it refreshes the pod from the API, applies change to the runtime
// state and writes the resulting status. When the write fails the runtime state keeps the
// change, as a kubelet's does: its status writes are retried by the next verb.
func (k *Kubelet) mutate(ctx context.Context, namespace, name string, change func(*podState) error, edit func(*v1.PodStatus)) error {
	k.opMu.Lock()
	defer k.opMu.Unlock()
	ps, err := k.ensurePod(ctx, namespace, name)
	if err != nil {
		return err
	}
	k.mu.Lock()
	err = change(ps)
	k.mu.Unlock()
	if err != nil {
		return err
	}
	return k.writeStatus(ctx, ps, edit)
}

// ensurePod reads a pod from the API and returns its state, creating it for a new UID.
func (k *Kubelet) ensurePod(ctx context.Context, namespace, name string) (*podState, error) {
	pod, err := k.client.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("getting pod %s/%s: %w", namespace, name, err)
	}
	if pod.Spec.NodeName != k.cfg.NodeName {
		return nil, fmt.Errorf("pod %s/%s is bound to node %q, not to %q: set spec.nodeName", namespace, name, pod.Spec.NodeName, k.cfg.NodeName)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	ps := k.state[pod.UID]
	if ps == nil {
		ps = &podState{
			ns: namespace, name: name, uid: pod.UID,
			dir:        filepath.Join(k.cfg.Dir, fmt.Sprintf("%s_%s_%s", namespace, name, pod.UID)),
			containers: map[string]*containerState{},
		}
		k.state[pod.UID] = ps
		k.byName[namespace+"/"+name] = pod.UID
	}
	if ps.deleted {
		return nil, fmt.Errorf("pod %s/%s (uid %s) was deleted", namespace, name, pod.UID)
	}
	ps.pod = pod
	return ps, nil
}

// container returns the state of a container named in the pod spec.
func (ps *podState) container(name string) (*containerState, error) {
	if c, ok := ps.containers[name]; ok {
		return c, nil
	}
	image, kind, ok := containerSpec(ps.pod, name)
	if !ok {
		return nil, fmt.Errorf("container %q not found in pod %s/%s", name, ps.ns, ps.name)
	}
	c := &containerState{name: name, kind: kind, image: image}
	ps.containers[name] = c
	return c, nil
}

// containerSpec finds a container by name in the three container lists of a pod spec.
func containerSpec(pod *v1.Pod, name string) (image string, kind containerKind, ok bool) {
	for _, c := range pod.Spec.Containers {
		if c.Name == name {
			return c.Image, regularContainer, true
		}
	}
	for _, c := range pod.Spec.InitContainers {
		if c.Name == name {
			return c.Image, initContainer, true
		}
	}
	for _, c := range pod.Spec.EphemeralContainers {
		if c.Name == name {
			return c.Image, ephemeralContainer, true
		}
	}
	return "", 0, false
}

// canRestart mirrors the apiserver's check that a terminated container may only become
// running again when its restart policy restarts it, so that verbs fail with a clear error
// instead of a Forbidden status update.
func canRestart(pod *v1.Pod, c *containerState, exitCode int32) error {
	policy := pod.Spec.RestartPolicy
	switch c.kind {
	case ephemeralContainer:
		return fmt.Errorf("ephemeral container %q of pod %s/%s cannot restart", c.name, pod.Namespace, pod.Name)
	case initContainer:
		for _, s := range pod.Spec.InitContainers {
			if s.Name == c.name && s.RestartPolicy != nil && *s.RestartPolicy == v1.ContainerRestartPolicyAlways {
				return nil // a sidecar always restarts
			}
		}
	case regularContainer:
		for _, s := range pod.Spec.Containers {
			if s.Name == c.name && s.RestartPolicy != nil {
				policy = v1.RestartPolicy(*s.RestartPolicy)
			}
		}
	}
	switch {
	case policy == v1.RestartPolicyNever:
		return fmt.Errorf("container %q of pod %s/%s has restart policy Never: it cannot restart", c.name, pod.Namespace, pod.Name)
	case policy == v1.RestartPolicyOnFailure && exitCode == 0:
		return fmt.Errorf("container %q of pod %s/%s has restart policy OnFailure and exited 0: it cannot restart", c.name, pod.Namespace, pod.Name)
	}
	return nil
}

// startInstance creates and starts a new instance of c. Called with k.mu held.
func (k *Kubelet) startInstance(ps *podState, c *containerState) error {
	var raw [32]byte
	_, _ = rand.Read(raw[:]) // never fails (crypto/rand.Read panics instead)
	rc := int32(len(c.instances))
	in := &instance{
		id:           hex.EncodeToString(raw[:]),
		restartCount: rc,
		path:         filepath.Join(ps.dir, c.name, strconv.Itoa(int(rc))+".log"),
		running:      true,
		startedAt:    time.Now(),
	}
	if err := os.MkdirAll(filepath.Dir(in.path), 0o755); err != nil {
		return fmt.Errorf("creating log directory of container %q: %w", c.name, err)
	}
	f, err := os.OpenFile(in.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("creating log file of container %q: %w", c.name, err)
	}
	in.f = f
	c.instances = append(c.instances, in)
	k.syncRuntime(ps, c, in)
	return nil
}

// stopInstance marks in as exited, in the runtime too, so that follow streams end once they
// have read its file to the end. Called with k.mu held.
func (k *Kubelet) stopInstance(in *instance, exitCode int32, reason string) {
	if reason == "" {
		reason = "Completed"
		if exitCode != 0 {
			reason = "Error"
		}
	}
	in.running = false
	in.exitCode = exitCode
	in.reason = reason
	in.finishedAt = time.Now()
	in.closeFile()
	k.setRuntimeState(in)
}

// syncRuntime registers an instance with the fake runtime, which ReadLogs and the log
// handler ask for its state and log path.
func (k *Kubelet) syncRuntime(ps *podState, c *containerState, in *instance) {
	k.runtime.Lock()
	defer k.runtime.Unlock()
	k.runtime.Containers[in.id] = &critest.FakeContainer{
		ContainerStatus: runtimeapi.ContainerStatus{
			Id:        in.id,
			Metadata:  &runtimeapi.ContainerMetadata{Name: c.name, Attempt: uint32(in.restartCount)},
			State:     runtimeapi.ContainerState_CONTAINER_RUNNING,
			CreatedAt: in.startedAt.UnixNano(),
			StartedAt: in.startedAt.UnixNano(),
			Image:     &runtimeapi.ImageSpec{Image: c.image},
			ImageRef:  imageID(c.image),
			LogPath:   in.path,
		},
		SandboxID: string(ps.uid),
	}
	// The fake records every call; nothing reads the record, so keep it from growing.
	k.runtime.Called = nil
}

// setRuntimeState copies an instance's running state to the fake runtime.
func (k *Kubelet) setRuntimeState(in *instance) {
	k.runtime.Lock()
	defer k.runtime.Unlock()
	c, ok := k.runtime.Containers[in.id]
	if !ok {
		return
	}
	if in.running {
		c.State = runtimeapi.ContainerState_CONTAINER_RUNNING
		return
	}
	c.State = runtimeapi.ContainerState_CONTAINER_EXITED
	c.FinishedAt = in.finishedAt.UnixNano()
	c.ExitCode = in.exitCode
	c.Reason = in.reason
	k.runtime.Called = nil
}

// writeStatus computes the pod status from the runtime state on top of the status in the
// API (which keeps what the fake kubelet does not manage, such as qosClass), applies edit,
// caches it for the log handler and writes it with UpdateStatus, retrying on conflicts.
func (k *Kubelet) writeStatus(ctx context.Context, ps *podState, edit func(*v1.PodStatus)) error {
	pods := k.client.CoreV1().Pods(ps.ns)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		pod, err := pods.Get(ctx, ps.name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if pod.UID != ps.uid {
			return fmt.Errorf("pod was replaced by uid %s", pod.UID)
		}
		k.mu.Lock()
		ps.pod = pod
		st := k.buildStatus(ps, &pod.Status, time.Now())
		k.mu.Unlock()
		if edit != nil {
			edit(&st)
		}
		k.mu.Lock()
		ps.status = st.DeepCopy()
		k.mu.Unlock()
		pod.Status = st
		_, err = pods.UpdateStatus(ctx, pod, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("updating status of pod %s/%s: %w", ps.ns, ps.name, err)
	}
	return nil
}

// lookup returns the state of the newest pod with that name. Called with k.mu held.
func (k *Kubelet) lookup(namespace, name string) (*podState, error) {
	uid, ok := k.byName[namespace+"/"+name]
	if !ok {
		return nil, fmt.Errorf("pod %s/%s: no container of it was ever started", namespace, name)
	}
	return k.state[uid], nil
}

// lookupContainer returns a container's state by names. Called with k.mu held.
func (k *Kubelet) lookupContainer(namespace, pod, container string) (*podState, *containerState, error) {
	ps, err := k.lookup(namespace, pod)
	if err != nil {
		return nil, nil, err
	}
	c, ok := ps.containers[container]
	if !ok || c.current() == nil {
		return nil, nil, fmt.Errorf("container %q of pod %s/%s never started", container, namespace, pod)
	}
	return ps, c, nil
}
