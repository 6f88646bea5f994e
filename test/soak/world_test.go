package soak

// The world a schedule runs in: the control plane, the fake kubelet, an HTTP fault proxy
// between kubelogd and the API server, kubelogd itself (started and stopped by steps), and
// one writer per container that logs in the background. Each container carries what the
// model needs beyond what the fake kubelet records: where the kubelet's log was rotated,
// whether kubelogd could lose lines there, and which restarts left an instance unread.

import (
	"context"
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"

	"github.com/kubelogd/kubelogd/internal/testing/cluster"
	"github.com/kubelogd/kubelogd/internal/testing/fakekubelet"
	"github.com/kubelogd/kubelogd/internal/testing/faultproxy"
	"github.com/kubelogd/kubelogd/internal/testing/oracle"
	"github.com/kubelogd/kubelogd/sink"
)

// kubelogdArgs are the flags of kubelogd run number run (0, 1, …): small output files so
// that kubelogd rotates and compresses its own files (and the rotation failpoints are
// reachable), every backup kept so the files hold every line, and a short stall timeout.
// The runs take turns with a follow budget of soakBudget streams on the soak's one node
// (below its container count, so that containers move between stream and poll under every
// fault), no budget (every container followed), and a budget of soakBudgetLow (most
// containers polled: the poll path meets every fault); the first run has soakBudget.
// KUBELOGD_SOAK_BUDGET=N gives every run a budget of N (0: none).
func kubelogdArgs(run int) []string {
	args := []string{"--flush-interval", "200ms", "--stall-timeout", stallTime.String(),
		"--max-size-mb", "1", "--max-backups", "0", "--compress"}
	budget := strconv.Itoa([]int{soakBudget, 0, soakBudgetLow}[run%3])
	if n := os.Getenv("KUBELOGD_SOAK_BUDGET"); n != "" {
		budget = n
	}
	return append(args, "--max-streams-per-node", budget, "--max-streams", "0")
}

// soakBudget is the follow budget of every third kubelogd run: two thirds of the
// containers that run at once (24 and the jobs'). soakBudgetLow, that of another third,
// polls most of them: with it, seeds 257859014 and 999076264 found what the poll path
// lacked (a8f901f, c59df78).
const (
	soakBudget    = 16
	soakBudgetLow = 4
)

type world struct {
	t          *testing.T
	sc         schedule
	c          *cluster.Cluster
	k          *fakekubelet.Kubelet
	px         *faultproxy.HTTPProxy
	kubeconfig string
	vol        *volume
	dir        string // kubelogd's output directory, on vol
	copies     int    // copy-output steps run, to name the next copy
	d          *daemon
	runs       []*daemon // every kubelogd run, for its log
	started    time.Time // when the last kubelogd run started
	pods       []*podModel
	conts      []*contModel
	// violations are failures found while the schedule runs (a SIGTERM that did not end
	// kubelogd cleanly, a step the world refused); reported with the final check.
	violations  []string
	stopWriters chan struct{}
	writers     sync.WaitGroup
}

// podModel is one pod name; a recreation adds a UID.
type podModel struct {
	ns, name   string
	containers []string
	job        bool
	uids       []types.UID
}

// contModel is one container name of a pod name, across its pod's UIDs.
type contModel struct {
	pod  *podModel
	name string
	spec writerSpec
	// mu is held by the writer while it appends, and by steps whose lines or whose
	// rotation must not interleave with the writer's.
	mu     sync.Mutex
	next   int           // number of the next line
	offset time.Duration // added to the writer's timestamps (pending kind clock-back)
	rng    *rand.Rand    // the writer's skew and stream choices
	// rotations and multi, by pod UID and restartCount; removed likewise.
	rotations map[instKey][]rotation
	multi     map[instKey]bool
	// previousSince is when the instance before the running one became the previous one
	// (the restart that started the running one).
	previousSince time.Time
	removed       map[instKey][]int
	// A removal of the pod's directory is unnoticed until kubelogd stops after it (the
	// next cursor save notices it; see judge): if kubelogd was killed and the cursor is
	// gone, the removal was silent, and the next run starts afresh (fresh) at a position
	// recorded in silent, like removed.
	// killedUnnoticed: so since the last kill; fresh: and no cursor saved since.
	unnoticed, killedUnnoticed, fresh, freshRemoval bool
	silent                                          map[instKey][]int
	preRemoval                                      *sink.Cursor // the cursor a removal took, if any
	// openAtRemoval: the running kubelogd held the container's file open when its pod's
	// directory was removed, so it must notice the removal (see kubelogdHolds).
	openAtRemoval bool
	steps         []int // the steps that targeted it
}

type instKey struct {
	uid types.UID
	rc  int32
}

type rotation struct {
	at    int // lines of the instance before the rotation
	lossy bool
}

func (c *contModel) String() string { return c.pod.ns + "/" + c.pod.name + "/" + c.name }

// newWorld starts everything but kubelogd and the writers.
func newWorld(t *testing.T, sc schedule) *world {
	cl, k := cluster.New(t)
	vol := newVolume(t)
	w := &world{t: t, sc: sc, c: cl, k: k, vol: vol, dir: filepath.Join(vol.root, "out"), stopWriters: make(chan struct{})}
	if !vol.tmpfs {
		t.Logf("soak seed %d: disk-full steps are skipped: %s", sc.Seed, vol.why)
	}
	w.startProxy()
	for i := range soakPods {
		p := &podModel{ns: podNS(i), name: podName(i), containers: soakContainers}
		w.pods = append(w.pods, p)
		for j, name := range soakContainers {
			w.conts = append(w.conts, newCont(p, name, sc.Writers[i*len(soakContainers)+j], sc.Seed, len(w.conts)))
		}
		if err := w.createPod(p, corev1.RestartPolicyAlways); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

func newCont(p *podModel, name string, spec writerSpec, seed uint64, i int) *contModel {
	return &contModel{pod: p, name: name, spec: spec, rng: rand.New(rand.NewPCG(seed, uint64(i))),
		rotations: map[instKey][]rotation{}, multi: map[instKey]bool{}, removed: map[instKey][]int{}, silent: map[instKey][]int{}}
}

// startProxy puts the HTTP fault proxy in front of the API server for kubelogd: it
// terminates TLS with a certificate of the cluster CA and forwards with the admin
// credentials, so that watches and log requests can be failed, cut, ended and held.
func (w *world) startProxy() {
	certPEM, keyPEM, err := w.c.KubeletServingCert()
	if err != nil {
		w.t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		w.t.Fatal(err)
	}
	tr, err := rest.TransportFor(w.c.Config)
	if err != nil {
		w.t.Fatal(err)
	}
	target, err := url.Parse(w.c.Host)
	if err != nil {
		w.t.Fatal(err)
	}
	w.px, err = faultproxy.NewHTTP(faultproxy.HTTPConfig{Target: target, Transport: tr, Cert: pair})
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() { _ = w.px.Close() })
	cfg := rest.CopyConfig(w.c.Config)
	cfg.Host = w.px.URL()
	w.kubeconfig = filepath.Join(w.t.TempDir(), "proxy.kubeconfig")
	if err := cluster.WriteKubeconfig(cfg, w.kubeconfig); err != nil {
		w.t.Fatal(err)
	}
}

// createPod creates a pod bound to the fake kubelet and starts its containers.
func (w *world) createPod(p *podModel, policy corev1.RestartPolicy) error {
	ctx := context.Background()
	if err := w.c.EnsureNamespace(ctx, p.ns); err != nil {
		return err
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: p.ns, Name: p.name, Labels: map[string]string{"soak": "yes"}},
		Spec:       corev1.PodSpec{NodeName: w.k.NodeName(), RestartPolicy: policy},
	}
	for _, c := range p.containers {
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: c, Image: "busybox"})
	}
	created, err := w.c.Client.CoreV1().Pods(p.ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("creating pod %s/%s: %w", p.ns, p.name, err)
	}
	p.uids = append(p.uids, created.UID)
	for _, c := range p.containers {
		if err := w.k.StartContainer(ctx, p.ns, p.name, c); err != nil {
			return fmt.Errorf("starting %s/%s/%s: %w", p.ns, p.name, c, err)
		}
	}
	return nil
}

// startWriters starts one background writer per pod container.
func (w *world) startWriters() {
	for _, c := range w.conts {
		if c.pod.job {
			continue
		}
		w.writers.Add(1)
		go func() {
			defer w.writers.Done()
			w.write(c)
		}()
	}
}

// write appends a batch of lines every period until the writers stop. A batch that
// cannot be appended (no instance runs: the pod is being recreated) is tried again with
// the same texts, so the line numbers have no holes.
func (w *world) write(c *contModel) {
	tick := time.NewTicker(c.spec.Period)
	defer tick.Stop()
	pad := strings.Repeat("x", c.spec.Pad)
	for {
		select {
		case <-w.stopWriters:
			return
		case <-tick.C:
		}
		c.mu.Lock()
		lines := make([]fakekubelet.Line, c.spec.Batch)
		now := time.Now().UTC().Add(c.offset)
		for i := range lines {
			lines[i] = fakekubelet.Line{Text: fmt.Sprintf("%s %d %s", c, c.next+i, pad), Time: now}
			if c.spec.Skew > 0 {
				lines[i].Time = now.Add(time.Duration(c.rng.Int64N(int64(2*c.spec.Skew))) - c.spec.Skew)
			}
			if c.rng.IntN(100) < c.spec.Stderr {
				lines[i].Stream = "stderr"
			}
		}
		if w.k.Append(c.pod.ns, c.pod.name, c.name, lines...) == nil {
			c.next += len(lines)
		}
		c.mu.Unlock()
	}
}

// appendLocked appends n numbered lines now; c.mu is held.
func (w *world) appendLocked(c *contModel, n int, tag string) error {
	lines := make([]fakekubelet.Line, n)
	for i := range lines {
		lines[i] = fakekubelet.Line{Text: fmt.Sprintf("%s %d %s", c, c.next+i, tag), Time: time.Now().UTC().Add(c.offset)}
	}
	if err := w.k.Append(c.pod.ns, c.pod.name, c.name, lines...); err != nil {
		return err
	}
	c.next += n
	return nil
}

// startKubelogd starts a kubelogd run with extra environment (failpoints).
func (w *world) startKubelogd(environ ...string) {
	d, err := startDaemon(environ, w.kubeconfig, w.dir, kubelogdArgs(len(w.runs))...)
	if err != nil {
		w.t.Fatal(err)
	}
	w.d = d
	w.runs = append(w.runs, d)
	w.started = time.Now()
	for _, c := range w.conts {
		if c.killedUnnoticed {
			c.killedUnnoticed = false
			w.markSilent(c, c.freshRemoval)
		}
	}
}

// afterStop judges, once a kubelogd run has ended, what the next run will know of each
// container: one without a cursor file now starts afresh, as on first sight, and lines
// gone from the kubelet by then (instances before the previous one, rotated files) are
// lost with no marker (see judge, silentPos). That is so for a removal kubelogd had not
// noticed when it was killed, and for a container it never saved a cursor of (a run
// stopped right after its start: seed 15879737, soak-0/p-00/aux, "no restart marker for
// restartCount 1 at the start", after restart-n while kubelogd was down). A SIGTERM
// after a removal is no such case: the last cursor save at Close must notice it and
// leave a cursor that reports it (see judge).
func (w *world) afterStop(killed bool) {
	w.noteBareCursors()
	for _, c := range w.conts {
		removal := c.unnoticed
		c.unnoticed = false
		if removal && !killed && c.openAtRemoval {
			continue
		}
		cur, err := sink.ReadCursorFile(w.cursorPath(c))
		switch {
		case err != nil && (removal || !c.pod.job):
			c.killedUnnoticed, c.fresh, c.freshRemoval = true, true, removal
		case err == nil && removal && (!c.openAtRemoval || c.preRemoval == nil || cur.ContainerID != c.preRemoval.ContainerID || cur.Lines < c.preRemoval.Lines):
			// The run had not opened the container's files when they were removed (seed
			// 458295471, step 106, 0.4 s after a run started; seed 76022315, step 969,
			// 0.2 s after, then SIGTERM), or had closed them: it started afresh, knowing
			// nothing to mark.
			c.killedUnnoticed, c.fresh, c.freshRemoval = true, true, true
		}
	}
}

// noteBareCursors logs the containers whose newest saved cursor covers bytes but has no
// content identity (tailLen): this kubelogd records one for every cursor that covers
// bytes, and in a copied directory a cursor without one makes the next run keep the whole
// file with a file_unverified marker and write its lines again. (A cursor covering no
// bytes, offset 0, saved right after kubelogd rotated its file, has none and needs none;
// it was taken for an earlier kubelogd's cursor in a copy: seed 458295471, the fast
// writer's duplicates, and seed 14 once, sixteen containers.)
func (w *world) noteBareCursors() {
	for _, c := range w.conts {
		raw, err := os.ReadFile(w.cursorPath(c))
		if err != nil {
			continue
		}
		var newest string
		var seq uint64
		for _, slot := range strings.Split(strings.ReplaceAll(string(raw), "\x00", ""), "kubelogd cursor ") {
			var n, q uint64
			if _, err := fmt.Sscanf(slot, "%d seq %x", &n, &q); err != nil || q < seq {
				continue
			}
			if i := strings.Index(slot, "{"); i >= 0 {
				newest, seq = strings.TrimSpace(slot[i:]), q
			}
		}
		if newest != "" && !strings.Contains(newest, `"tailLen"`) && !strings.Contains(newest, `"offset":0,`) {
			w.t.Logf("run %d left %s a cursor without content identity: %s", len(w.runs)-1, c, newest)
		}
	}
}

// markSilent records where a container's fresh start begins. On first sight kubelogd
// reads the previous instance (previous=true) and the current one, each from the start
// of the kubelet's current file: what is older is lost silently (and what the kubelet
// rotated away at an instance's start: see judge). After a silent removal the mark is the
// current instance's line count now (rotate moves it while fresh): the lines kubelogd
// wrote of the previous instance and of the current one went with the removed files,
// and which of them it reads again depends on rotations before the removal.
func (w *world) markSilent(c *contModel, removal bool) {
	ins := w.k.Instances(c.pod.ns, c.pod.name, c.name)
	if len(ins) == 0 {
		return
	}
	uid := c.pod.uids[len(c.pod.uids)-1]
	cur := ins[len(ins)-1]
	switch {
	case removal:
		key := instKey{uid, cur.RestartCount}
		c.silent[key] = append(c.silent[key], len(cur.Lines))
	case len(ins) >= 2:
		key := instKey{uid, ins[len(ins)-2].RestartCount}
		c.silent[key] = append(c.silent[key], 0)
		c.fresh = false
	default:
		key := instKey{uid, cur.RestartCount}
		c.silent[key] = append(c.silent[key], 0)
		c.fresh = false
	}
}

func (w *world) cursorPath(c *contModel) string {
	return filepath.Join(w.dir, c.pod.ns, c.pod.name, "."+c.name+".cursor")
}

// kubelogdHolds tells whether the running kubelogd has path open: a removal of a file it
// holds is noticed at its next cursor save, or at Close. It reads /proc; where that
// cannot be read it answers true, which asks for the removal marker.
func (w *world) kubelogdHolds(path string) bool {
	if !w.kubelogdUp() {
		return false
	}
	fds := fmt.Sprintf("/proc/%d/fd", w.d.Cmd.Process.Pid)
	ents, err := os.ReadDir(fds)
	if err != nil {
		return true
	}
	for _, e := range ents {
		if target, err := os.Readlink(filepath.Join(fds, e.Name())); err == nil && target == path {
			return true
		}
	}
	return false
}

// kubelogdUp tells whether a kubelogd run is alive.
func (w *world) kubelogdUp() bool { return w.d != nil && !w.d.Exited() }

// stopKubelogd ends the current run: SIGTERM (a clean exit is required) or SIGKILL.
func (w *world) stopKubelogd(graceful bool) {
	if w.d == nil {
		return
	}
	killed := !graceful || w.d.Exited()
	if w.d.Exited() {
		w.violations = append(w.violations, fmt.Sprintf("kubelogd (pid %d) had exited by itself: %v\n%s",
			w.d.Cmd.Process.Pid, w.d.Cmd.ProcessState, lastLines(w.d.Output(), 20)))
	} else if graceful {
		if err := w.term(w.d); err != nil {
			w.violations = append(w.violations, err.Error())
		}
	} else {
		w.d.Kill()
	}
	w.d = nil
	w.afterStop(killed)
}

// term sends SIGTERM and waits 30 s for a clean exit. A kubelogd still running then gets
// SIGQUIT first, so that its log ends with every goroutine's stack: what it waits for.
func (w *world) term(d *daemon) error {
	if !d.Term(30 * time.Second) {
		_ = d.Cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-d.Done():
		case <-time.After(5 * time.Second):
			d.Kill()
		}
		return fmt.Errorf("kubelogd (pid %d) did not exit within 30s of SIGTERM; its goroutines at SIGQUIT:\n%s",
			d.Cmd.Process.Pid, goroutinesOf(d.Output()))
	}
	if ws, ok := d.Cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGTERM {
		// SIGTERM came before kubelogd's main installed its handler (seed 458295471: a run
		// with no output at all, "exited with -1"): the Go runtime and the package
		// initialisers of client-go and the API types run first (slowly, with -race), and
		// until signal.Notify the signal's default action ends the process. Nothing was
		// opened or collected yet, so nothing is lost; no program can catch a signal before
		// its main runs.
		return nil
	}
	if code := d.Cmd.ProcessState.ExitCode(); code != 0 {
		return fmt.Errorf("kubelogd (pid %d) exited with %d after SIGTERM:\n%s", d.Cmd.Process.Pid, code, lastLines(d.Output(), 20))
	}
	return nil
}

// goroutinesOf returns the goroutine dump at the end of a Go program's output, without
// the runtime's own goroutines and the idle ones of net/http and client-go.
func goroutinesOf(out string) string {
	i := strings.Index(out, "SIGQUIT: quit")
	if i < 0 {
		return lastLines(out, 40)
	}
	var keep []string
	for _, g := range strings.Split(out[i:], "\n\n") {
		if strings.Contains(g, "github.com/kubelogd/kubelogd/") {
			keep = append(keep, g)
		}
	}
	return strings.Join(keep, "\n\n")
}

// collectedAll tells whether kubelogd saved a cursor covering every line the current
// instance of a container emitted: a rotation of the kubelet's log then loses nothing,
// even if kubelogd is killed right after (it cuts off what its cursor does not cover).
func (w *world) collectedAll(c *contModel) bool {
	ins := w.k.Instances(c.pod.ns, c.pod.name, c.name)
	if len(ins) == 0 {
		return true
	}
	cur := ins[len(ins)-1]
	cursor, err := sink.ReadCursorFile(filepath.Join(w.dir, c.pod.ns, c.pod.name, "."+c.name+".cursor"))
	if err != nil {
		return false
	}
	return cursor.ContainerID == cur.ContainerID && cursor.Lines >= int64(len(cur.Lines))
}

// rotate rotates the kubelet's log of a container (c.mu held) and records where.
func (w *world) rotate(c *contModel, lossy bool) error {
	ins := w.k.Instances(c.pod.ns, c.pod.name, c.name)
	if len(ins) == 0 {
		return fmt.Errorf("%s never started", c)
	}
	cur := ins[len(ins)-1]
	if _, err := w.k.RotateLog(c.pod.ns, c.pod.name, c.name); err != nil {
		return err
	}
	key := instKey{c.pod.uids[len(c.pod.uids)-1], cur.RestartCount}
	c.rotations[key] = append(c.rotations[key], rotation{at: len(cur.Lines), lossy: lossy})
	if c.fresh {
		// A fresh start (after a silent removal) that has not saved a cursor yet reads the
		// kubelet's current file from its start, and knows nothing of what was before it:
		// the lines rotated away now are lost silently too.
		if _, err := os.Stat(w.cursorPath(c)); err == nil {
			c.fresh = false
		} else {
			c.silent[key] = append(c.silent[key], len(cur.Lines))
		}
	}
	return nil
}

// currentKey is the instance of a container running now (c.mu held).
func (w *world) currentKey(c *contModel) instKey {
	ins := w.k.Instances(c.pod.ns, c.pod.name, c.name)
	key := instKey{uid: c.pod.uids[len(c.pod.uids)-1]}
	if len(ins) > 0 {
		key.rc = ins[len(ins)-1].RestartCount
	}
	return key
}

// segments builds a container's model from what the fake kubelet recorded.
func (w *world) segments(c *contModel) []*segment {
	var out []*segment
	for _, uid := range c.pod.uids {
		for _, in := range w.k.InstancesByUID(uid, c.name) {
			key := instKey{uid, in.RestartCount}
			texts := make([]string, len(in.Lines))
			for i, l := range in.Lines {
				texts[i] = l.Text
			}
			cuts := cutKinds(c.rotations[key], c.removed[key], c.silent[key])
			points := make([]int, len(cuts))
			for i, ct := range cuts {
				points[i] = ct.at
			}
			for i, p := range splitAt(texts, points) {
				s := &segment{uid: uid, rc: in.RestartCount, exitCode: in.ExitCode, reason: in.Reason, lines: p}
				if i < len(cuts) {
					s.rotated, s.lossy, s.removed, s.silent = cuts[i].rotated, cuts[i].lossy, cuts[i].removed, cuts[i].silent
				}
				out = append(out, s)
			}
			out[len(out)-1].multi = c.multi[key]
		}
	}
	return out
}

type cut struct {
	at                              int
	rotated, lossy, removed, silent bool
}

// cutKinds orders the rotations and removals of an instance as splitAt orders them.
func cutKinds(rots []rotation, removed, silent []int) []cut {
	var out []cut
	for _, at := range silent {
		out = append(out, cut{at: at, silent: true})
	}
	for _, r := range rots {
		out = append(out, cut{at: r.at, rotated: true, lossy: r.lossy})
	}
	for _, at := range removed {
		out = append(out, cut{at: at, removed: true})
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j].at < out[j-1].at; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// judgeAll judges every container's file.
func (w *world) judgeAll() map[*contModel]verdict {
	out := map[*contModel]verdict{}
	for _, c := range w.conts {
		path := filepath.Join(w.dir, c.pod.ns, c.pod.name, c.name+".log")
		got, err := oracle.ReadSections(path, "timestamped")
		if err != nil {
			out[c] = verdict{problems: []string{err.Error()}}
			continue
		}
		out[c] = judge(w.segments(c), got)
	}
	return out
}

// logLinesOf returns kubelogd's log lines (every run) about a container.
func (w *world) logLinesOf(c *contModel, n int) string {
	var keep []string
	for i, d := range w.runs {
		for _, l := range strings.Split(d.Output(), "\n") {
			if strings.Contains(l, "pod="+c.pod.name) && strings.Contains(l, "namespace="+c.pod.ns) &&
				(strings.Contains(l, "container="+c.name) || !strings.Contains(l, "container=")) {
				keep = append(keep, fmt.Sprintf("[run %d] %s", i, l))
			}
		}
	}
	return lastLines(strings.Join(keep, "\n"), n)
}

// keepFiles copies kubelogd's output, the kubelet's files and every run's log to
// KUBELOGD_E2E_LOGDIR, if set, for a failed run.
func (w *world) keepFiles() {
	logDir := os.Getenv("KUBELOGD_E2E_LOGDIR")
	if logDir == "" {
		return
	}
	base := filepath.Join(logDir, fmt.Sprintf("soak-%d", w.sc.Seed))
	_ = os.MkdirAll(base, 0o755)
	for i, d := range w.runs {
		_ = os.WriteFile(filepath.Join(base, fmt.Sprintf("kubelogd.%02d.log", i)), []byte(d.Output()), 0o644)
	}
	var b strings.Builder
	for _, r := range w.k.Requests("", "", "") {
		fmt.Fprintf(&b, "%s %s/%s/%s status=%d %s\n", r.Time.Format("15:04:05.000"), r.Namespace, r.Pod, r.Container, r.Status, r.Query.Encode())
	}
	_ = os.WriteFile(filepath.Join(base, "requests.log"), []byte(b.String()), 0o644)
	_ = os.CopyFS(filepath.Join(base, "files"), os.DirFS(w.dir))
	_ = os.CopyFS(filepath.Join(base, "kubelet"), os.DirFS(w.k.Dir()))
	w.t.Logf("kept kubelogd's logs and both sides' files in %s", base)
}
