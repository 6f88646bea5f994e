package soak

// What each kind of step does to the world. Steps run one at a time, in schedule order;
// the containers keep logging meanwhile. A step that needs its own lines in a container,
// or a rotation at a known line, holds the container's writer.

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubelogd/kubelogd/internal/failpoint"
	"github.com/kubelogd/kubelogd/internal/testing/fakekubelet"
	"github.com/kubelogd/kubelogd/internal/testing/faultproxy"
	"github.com/kubelogd/kubelogd/sink"
)

const fsnotifyError = "failed to create fsnotify watcher: too many open files"

// status is a Kubernetes Status body, as the API server answers errors.
func status(code int, reason, message string) string {
	return fmt.Sprintf(`{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":%q,"reason":%q,"code":%d}`, message, reason, code)
}

// do runs step i; what it observed that the schedule could not know is returned as a note
// for the step's log line.
func (w *world) do(i int, s step) (note string, err error) {
	spec := kinds[s.Kind]
	switch spec.scope {
	case scopeContainer:
		c := w.conts[s.Target]
		c.steps = append(c.steps, i)
		return w.doContainer(c, s)
	case scopePod:
		p := w.pods[s.Target]
		for _, c := range w.conts[s.Target*len(soakContainers) : (s.Target+1)*len(soakContainers)] {
			c.steps = append(c.steps, i)
		}
		return w.doPod(p, s)
	}
	return w.doGlobal(i, s)
}

func (w *world) doContainer(c *contModel, s step) (string, error) {
	k, ns, pod, name := w.k, c.pod.ns, c.pod.name, c.name
	switch s.Kind {
	case kCut, kCutMid:
		return fmt.Sprintf("%d streams", k.CutStreams(ns, pod, name, s.Kind == kCutMid)), nil
	case kScriptCut:
		// The next follow stream, and the next read without follow (a poll, a previous or
		// finished instance: the API server ends such a body cleanly when the kubelet's
		// breaks), are cut at the same line.
		k.ScriptNext(ns, pod, name, fakekubelet.Script{CutAfter: s.N, MidLine: s.Flag})
		k.ScriptNext(ns, pod, name, fakekubelet.Script{CutAfter: s.N, MidLine: s.Flag, WithoutFollow: true})
		k.CutStreams(ns, pod, name, false)
	case kScriptPause:
		k.ScriptNext(ns, pod, name, fakekubelet.Script{PauseAfter: s.N, Pause: s.D})
		k.CutStreams(ns, pod, name, false)
	case kScriptDelay:
		k.ScriptNext(ns, pod, name, fakekubelet.Script{Delay: s.D})
		k.CutStreams(ns, pod, name, false)
	case kStallOpen:
		return fmt.Sprintf("%d streams", k.StallOpen(ns, pod, name)), nil
	case kStallBegin:
		k.Stall(ns, pod, name, true)
	case kStallEnd:
		k.Stall(ns, pod, name, false)
	case kFail404:
		k.FailNext(ns, pod, name, s.N, http.StatusNotFound, fmt.Sprintf("pod %q does not exist", pod))
		k.CutStreams(ns, pod, name, false)
	case kFailHTTP:
		k.FailNext(ns, pod, name, s.N, s.Code, http.StatusText(s.Code))
		k.CutStreams(ns, pod, name, false)
	case kBodyError:
		return fmt.Sprintf("%d streams", k.InjectBodyError(ns, pod, name, fsnotifyError)), nil
	case kEndFollow:
		return fmt.Sprintf("%d streams", k.EndFollow(ns, pod, name)), nil
	case kRotate:
		c.mu.Lock()
		defer c.mu.Unlock()
		// Up to 5 s for kubelogd to save every line: then the rotation loses nothing.
		wait := 5 * time.Second
		if !w.kubelogdUp() {
			wait = 0
		}
		written, _ := eventually(wait, 100*time.Millisecond, func() (bool, string) { return w.collectedAll(c), "" })
		if err := w.rotate(c, !written); err != nil {
			return "", err
		}
		if !written {
			return "kubelogd behind: lines may be lost", nil
		}
		return "kubelogd had every line", nil
	case kRotateBehind:
		c.mu.Lock()
		defer c.mu.Unlock()
		held := k.StallOpen(ns, pod, name)
		for r := range s.N {
			if err := w.appendLocked(c, 3+r, "before rotation"); err != nil {
				return "", err
			}
			if err := w.rotate(c, true); err != nil {
				return "", err
			}
		}
		return fmt.Sprintf("%d streams held", held), w.appendLocked(c, 2, "after rotation")
	case kRestart:
		c.mu.Lock()
		defer c.mu.Unlock()
		reason := ""
		if s.Code == 137 {
			reason = "OOMKilled"
		}
		// The previous instance is served no more after this restart. It was readable
		// with previous=true since the last restart, but only to a kubelogd that ran all
		// that while: one down, or started meanwhile, may find it gone (seed 573519605:
		// killed at a failpoint, started again between two restarts 400 ms apart).
		if prev := w.currentKey(c); prev.rc > 0 && (w.d == nil || w.started.After(c.previousSince)) {
			prev.rc--
			c.multi[prev] = true
		}
		c.previousSince = time.Now()
		return "", k.Restart(context.Background(), ns, pod, name, int32(s.Code), reason)
	case kRestartEmpty:
		c.mu.Lock()
		defer c.mu.Unlock()
		c.multi[w.currentKey(c)] = true
		c.previousSince = time.Now()
		if err := k.Restart(context.Background(), ns, pod, name, 1, ""); err != nil {
			return "", err
		}
		return "", k.Restart(context.Background(), ns, pod, name, 2, "")
	case kRestartN:
		c.mu.Lock()
		defer c.mu.Unlock()
		c.multi[w.currentKey(c)] = true
		c.previousSince = time.Now()
		return "", k.RestartN(context.Background(), ns, pod, name, s.N, 1, "")
	case kPartial:
		return "", w.partial(c, s)
	case kBurst:
		return w.burst(c, s)
	case kClockBack:
		// Lines stamped D ahead for a second, then the clock steps back.
		c.mu.Lock()
		c.offset = s.D
		c.mu.Unlock()
		time.Sleep(time.Second)
		c.mu.Lock()
		c.offset = 0
		c.mu.Unlock()
	case kInotify:
		// The node runs out of inotify instances for D: every new follow stream ends with
		// the kubelet's fsnotify error after the lines that exist. This container's stream
		// is cut so that it asks again; the others meet it at their next reconnect.
		k.ExhaustInotify(true)
		n := k.CutStreams(ns, pod, name, false)
		time.Sleep(s.D)
		k.ExhaustInotify(false)
		return fmt.Sprintf("%d streams cut while out of inotify instances", n), nil
	default:
		return "", fmt.Errorf("no container step %q", s.Kind)
	}
	return "", nil
}

// partial appends one line in N CRI partial records, each stamped when "read": the first
// up to a second and a half before the last, so that the parts straddle whole seconds.
func (w *world) partial(c *contModel, s step) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now().UTC().Add(c.offset)
	stream := "stdout"
	if s.Flag {
		stream = "stderr"
	}
	parts := make([]fakekubelet.Line, s.N)
	for i := range parts {
		parts[i] = fakekubelet.Line{
			Time:   now.Add(-time.Duration(s.N-1-i) * 500 * time.Millisecond),
			Stream: stream,
			Text:   fmt.Sprintf("%s %d partial %d/%d;", c, c.next, i+1, s.N),
		}
	}
	if err := w.k.AppendParts(c.pod.ns, c.pod.name, c.name, parts...); err != nil {
		return err
	}
	c.next++
	return nil
}

// burst appends N lines stamped within a few milliseconds, every tenth with the same
// timestamp and two in three with one identical text, and (Flag) cuts the stream halfway.
func (w *world) burst(c *contModel, s step) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ts := time.Now().UTC().Add(c.offset)
	lines := make([]fakekubelet.Line, s.N)
	for i := range lines {
		text := fmt.Sprintf("%s %d burst", c, c.next+i)
		if i%3 != 0 {
			text = "repeated identical line"
		}
		lines[i] = fakekubelet.Line{Time: ts.Add(time.Duration(i) * 10 * time.Microsecond), Text: text}
		if i%10 == 0 {
			lines[i].Time = ts
		}
	}
	half := len(lines) / 2
	if err := w.k.Append(c.pod.ns, c.pod.name, c.name, lines[:half]...); err != nil {
		return "", err
	}
	c.next += half
	n := 0
	if s.Flag {
		time.Sleep(20 * time.Millisecond)
		n = w.k.CutStreams(c.pod.ns, c.pod.name, c.name, false)
	}
	if err := w.k.Append(c.pod.ns, c.pod.name, c.name, lines[half:]...); err != nil {
		return "", err
	}
	c.next += len(lines) - half
	return fmt.Sprintf("%d streams cut", n), nil
}

func (w *world) doPod(p *podModel, s step) (string, error) {
	switch s.Kind {
	case kKubeletDown:
		w.k.FailFor(p.ns, p.name, "", s.D, http.StatusNotFound, fmt.Sprintf("pod %q does not exist", p.name))
		return fmt.Sprintf("%d streams", w.k.CutStreams(p.ns, p.name, "", false)), nil
	case kRecreate:
		return w.recreate(p)
	case kRemoveDir:
		conts := w.podConts(p)
		for _, c := range conts {
			c.mu.Lock()
			defer c.mu.Unlock()
			key := w.currentKey(c)
			ins := w.k.Instances(p.ns, p.name, c.name)
			c.removed[key] = append(c.removed[key], len(ins[len(ins)-1].Lines))
			c.unnoticed = true
			c.openAtRemoval = w.kubelogdHolds(filepath.Join(w.dir, p.ns, p.name, c.name+".log"))
			c.preRemoval = nil
			if cur, err := sink.ReadCursorFile(w.cursorPath(c)); err == nil {
				c.preRemoval = &cur
			}
		}
		return "", os.RemoveAll(filepath.Join(w.dir, p.ns, p.name))
	}
	return "", fmt.Errorf("no pod step %q", s.Kind)
}

func (w *world) podConts(p *podModel) []*contModel {
	var out []*contModel
	for _, c := range w.conts {
		if c.pod == p {
			out = append(out, c)
		}
	}
	return out
}

// recreate deletes a pod (the fake kubelet stops its containers and completes the
// deletion) and creates it again with the same name, holding its writers meanwhile.
func (w *world) recreate(p *podModel) (string, error) {
	for _, c := range w.podConts(p) {
		c.mu.Lock()
		defer c.mu.Unlock()
	}
	ctx := context.Background()
	pods := w.c.Client.CoreV1().Pods(p.ns)
	if err := pods.Delete(ctx, p.name, metav1.DeleteOptions{}); err != nil {
		return "", err
	}
	// The fake kubelet completes the deletion once it has stopped the containers; on 2
	// loaded cores (a 30-minute soak beside other jobs) that took over 30 s once, and a
	// step that gives up leaves the model and the cluster apart.
	const within = 2 * time.Minute
	gone, detail := eventually(within, 50*time.Millisecond, func() (bool, string) {
		_, err := pods.Get(ctx, p.name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
	if !gone {
		return "", fmt.Errorf("pod %s/%s not gone %s after its deletion: %s", p.ns, p.name, within, detail)
	}
	if err := w.createPod(p, corev1.RestartPolicyAlways); err != nil {
		return "", err
	}
	return fmt.Sprintf("UID %s → %s", p.uids[len(p.uids)-2], p.uids[len(p.uids)-1]), nil
}

func (w *world) doGlobal(i int, s step) (string, error) {
	switch s.Kind {
	case kJob:
		return w.job(i, s)
	case kKill:
		time.Sleep(s.D)
		w.stopKubelogd(false)
		if !s.Flag {
			w.startKubelogd()
		}
	case kTerm:
		w.stopKubelogd(true)
		if !s.Flag {
			w.startKubelogd()
		}
	case kStart:
		w.startKubelogd()
	case kFailpoint:
		return w.failpoint(s)
	case kAPIRestart:
		w.c.StopAPIServer()
		time.Sleep(s.D)
		return "", w.c.StartAPIServer(context.Background())
	case kWatch410:
		w.px.Fail(faultproxy.ResumingWatch, 1, http.StatusGone, status(410, "Expired", "too old resource version"))
		return fmt.Sprintf("%d watches ended", w.px.End(faultproxy.Watch)), nil
	case kBlindBegin:
		// The watch ends, its resumption gets 410 Gone and every list 503: kubelogd's
		// informer learns nothing until the end of the window.
		w.px.Fail(faultproxy.ResumingWatch, -1, http.StatusGone, status(410, "Expired", "too old resource version"))
		w.px.Fail(faultproxy.List, -1, http.StatusServiceUnavailable, status(503, "ServiceUnavailable", "the server is currently unable to handle the request"))
		return fmt.Sprintf("%d watches ended", w.px.End(faultproxy.Watch)), nil
	case kBlindEnd:
		w.px.ClearFailures()
	case kHoldBegin:
		w.px.Hold(faultproxy.Watch)
	case kHoldEnd:
		w.px.Release()
	case kAPILogFail:
		w.px.Fail(faultproxy.PodLog, s.N, s.Code, status(s.Code, "InternalError", http.StatusText(s.Code)))
	case kAPILogAbort:
		return fmt.Sprintf("%d log requests cut", w.px.Abort(faultproxy.PodLog)), nil
	case kCopyOutput:
		// Between two runs the output directory moves to a copy (new inodes).
		w.stopKubelogd(true)
		// The earlier directory is removed, for the volume's sake: nothing reads it again.
		w.copies++
		dst := filepath.Join(w.vol.root, fmt.Sprintf("out-%d", w.copies))
		if out, err := exec.Command("cp", "-a", w.dir, dst).CombinedOutput(); err != nil {
			return "", fmt.Errorf("copying the output directory: %v: %s", err, out)
		}
		if err := os.RemoveAll(w.dir); err != nil {
			return "", err
		}
		w.dir = dst
		w.startKubelogd()
	case kDiskFull:
		return w.diskFull(s)
	default:
		return "", fmt.Errorf("no global step %q", s.Kind)
	}
	return "", nil
}

// job creates a Job-like pod that logs and succeeds at once.
func (w *world) job(i int, s step) (string, error) {
	p := &podModel{ns: jobNS, name: fmt.Sprintf("job-%d", s.N), containers: []string{"main"}, job: true}
	c := newCont(p, "main", writerSpec{}, w.sc.Seed, 1000+s.N)
	c.steps = append(c.steps, i)
	w.pods = append(w.pods, p)
	w.conts = append(w.conts, c)
	if err := w.createPod(p, corev1.RestartPolicyNever); err != nil {
		return "", err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := w.appendLocked(c, 10+s.N*7, "job"); err != nil {
		return "", err
	}
	return "", w.k.Terminate(context.Background(), p.ns, p.name, "main", 0, "")
}

// failpoint restarts kubelogd with a failpoint armed and waits (10 s at most) until it
// kills itself there; one that is not reached in time is killed. Then it starts again.
func (w *world) failpoint(s step) (string, error) {
	w.stopKubelogd(false)
	fplog := filepath.Join(w.t.TempDir(), "failpoints.log")
	w.startKubelogd(fmt.Sprintf("%s=%s=%d", failpoint.EnvFailpoints, s.Name, s.N), failpoint.EnvLog+"="+fplog)
	d := w.d
	select {
	case <-d.Done():
		w.d = nil // it killed itself, as armed
		w.afterStop(true)
	case <-time.After(10 * time.Second):
		w.stopKubelogd(false)
	}
	w.startKubelogd()
	logged, _ := os.ReadFile(fplog)
	if strings.TrimSpace(string(logged)) == s.Name {
		return "killed at the failpoint", nil
	}
	return "failpoint not reached in 10s: killed", nil
}

// diskFull fills kubelogd's volume for s.D (see volume.fill).
func (w *world) diskFull(s step) (string, error) {
	if !w.vol.tmpfs {
		return "skipped: the output directory is not on a tmpfs of its own (" + w.vol.why + ")", nil
	}
	return w.vol.fill(w.dir, s.D)
}
