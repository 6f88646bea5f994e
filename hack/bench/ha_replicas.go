package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// The ha scenario's rig: the replicas, their Leases as the bench sees them, and what the
// takeover reads back from their files.
// replicaSet is the kubelogd replicas writing one directory, by replica id.
type replicaSet struct {
	cfg             *config
	kubeconfig, dir string
	client          kubernetes.Interface
	flags           func(id string) []string // the flags of replica id beyond the defaults
	next            int                      // the number in the next replica's id
	live            map[string]*kubelogdProc
	order           []string  // live ids, oldest first
	firstStart      time.Time // the first replica's exec
}

func newReplicaSet(cfg *config, e *env, dir string, flags func(id string) []string) *replicaSet {
	return &replicaSet{cfg: cfg, kubeconfig: e.c.Kubeconfig, dir: dir, client: e.c.Client, flags: flags,
		live: map[string]*kubelogdProc{}}
}

// shardFlags are the flags of a replica with --shards haShards and the default Lease
// durations, its Leases in haLeaseNS.
func shardFlags(id string) []string {
	return []string{"--shards", strconv.Itoa(haShards), "--lease-namespace", haLeaseNS, "--replica-id", id}
}

// start runs one more replica.
func (r *replicaSet) start() (*kubelogdProc, error) {
	id := fmt.Sprintf("r%d", r.next)
	r.next++
	d, err := startKubelogdWith(r.cfg, "ha-"+id, r.kubeconfig, r.dir, fmt.Sprintf("%s-%s.out", r.dir, id), r.flags(id)...)
	if err != nil {
		return nil, err
	}
	if r.firstStart.IsZero() {
		r.firstStart = d.Start
	}
	r.live[id] = d
	r.order = append(r.order, id)
	return d, nil
}

// kill SIGKILLs the oldest replica.
func (r *replicaSet) kill() {
	id := r.order[0]
	r.order = r.order[1:]
	d := r.live[id]
	delete(r.live, id)
	d.kill()
}

// alive returns the first error of a replica that exited.
func (r *replicaSet) alive() error {
	for id, d := range r.live {
		if err := d.alive(); err != nil {
			return fmt.Errorf("replica %s: %w", id, err)
		}
	}
	return nil
}

// stop ends every live replica with SIGTERM, at once.
func (r *replicaSet) stop() {
	var wg sync.WaitGroup
	for _, d := range r.live {
		wg.Go(func() { d.stop() })
	}
	wg.Wait()
	r.live, r.order = map[string]*kubelogdProc{}, nil
}

// holders lists the shard Leases and returns the live holder of each shard, "" for one
// free, released or expired.
func (r *replicaSet) holders(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	list, err := r.client.CoordinationV1().Leases(haLeaseNS).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	out := make([]string, haShards)
	now := time.Now()
	for _, l := range list.Items {
		rest, ok := strings.CutPrefix(l.Name, "kubelogd-shard-")
		i, err := strconv.Atoi(rest)
		if !ok || err != nil || i < 0 || i >= haShards {
			continue
		}
		s := l.Spec
		if s.HolderIdentity == nil || s.RenewTime == nil || s.LeaseDurationSeconds == nil {
			continue
		}
		if now.Sub(s.RenewTime.Time) <= time.Duration(*s.LeaseDurationSeconds)*time.Second {
			out[i] = *s.HolderIdentity
		}
	}
	return out, nil
}

// waitEven polls the Leases until every shard is held and each live replica holds its
// fair share (haShards divides evenly among haReplicas), and returns when it saw that.
func (r *replicaSet) waitEven(ctx context.Context, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	want := haShards / len(r.live)
	var last string
	for {
		if err := r.alive(); err != nil {
			return time.Time{}, err
		}
		h, err := r.holders(ctx)
		if err == nil {
			got := map[string]int{}
			for _, id := range h {
				got[id]++
			}
			even := got[""] == 0
			for id := range r.live {
				even = even && got[id] == want
			}
			if even {
				return time.Now(), nil
			}
			last = fmt.Sprint(got)
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("shards not shared evenly among %d replicas after %s: held %s", len(r.live), timeout, last)
		}
		if err := sleepCtx(ctx, haLeasePoll); err != nil {
			return time.Time{}, err
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// freshTracker notes, per pod, when a line emitted after a mark was first readable in
// its file. It reads the "lat <unix nanoseconds> <pod> <n>" lines of the emit op.
type freshTracker struct {
	mu    sync.Mutex
	since int64                // the mark, Unix nanoseconds
	first map[string]time.Time // pod → first read of a line emitted after since
	seen  map[string]int       // pod → next line number expected, to spot duplicates
	dups  int
}

func newFreshTracker() *freshTracker {
	return &freshTracker{first: map[string]time.Time{}, seen: map[string]int{}}
}

func (f *freshTracker) onLine(path string, line []byte, at time.Time) {
	if len(line) <= tsLen+1 {
		return
	}
	fs := bytes.Fields(line[tsLen+1:])
	if len(fs) < 4 || string(fs[0]) != "lat" {
		return
	}
	emitted, err1 := strconv.ParseInt(string(fs[1]), 10, 64)
	seq, err2 := strconv.Atoi(string(fs[3]))
	if err1 != nil || err2 != nil {
		return
	}
	pod := filepath.Base(filepath.Dir(path))
	f.mu.Lock()
	defer f.mu.Unlock()
	if seq < f.seen[pod] {
		f.dups++
		return
	}
	f.seen[pod] = seq + 1
	if _, ok := f.first[pod]; !ok && emitted > f.since {
		f.first[pod] = at
	}
}

// sinceMark returns the time of the last mark.
func (f *freshTracker) sinceMark() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return time.Unix(0, f.since)
}

// mark forgets what was read and starts watching for lines emitted after t.
func (f *freshTracker) mark(t time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.since, f.first = t.UnixNano(), map[string]time.Time{}
}

// wait blocks until each of pods has a line emitted after the mark readable and returns
// when each was first read; alive is checked meanwhile.
func (f *freshTracker) wait(ctx context.Context, pods []string, alive func() error, timeout time.Duration) (map[string]time.Time, error) {
	deadline := time.Now().Add(timeout)
	for {
		f.mu.Lock()
		out, missing := map[string]time.Time{}, 0
		for _, p := range pods {
			if t, ok := f.first[p]; ok {
				out[p] = t
			} else {
				missing++
			}
		}
		f.mu.Unlock()
		if missing == 0 {
			return out, nil
		}
		if err := alive(); err != nil {
			return nil, err
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%d of %d containers without a new line readable after %s", missing, len(pods), timeout)
		}
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			return nil, err
		}
	}
}

func (f *freshTracker) duplicates() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.dups
}

// startTailer follows the files of dir with onLine until the returned stop is called.
func startTailer(ctx context.Context, dir string, onLine func(string, []byte, time.Time)) (stop func(), err error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	tl, err := newTailer(dir, container+".log", onLine)
	if err != nil {
		return nil, err
	}
	tctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { tl.run(tctx); close(done) }()
	return func() { cancel(); <-done }, nil
}

// haWorkDir is a directory of the work directory for a part of the scenario, removed by
// the returned function unless --keep.
func haWorkDir(cfg *config, name string) (string, func()) {
	dir := filepath.Join(cfg.workDir, name)
	if cfg.keep {
		return dir, func() {}
	}
	return dir, func() { _ = os.RemoveAll(dir) }
}

// settle waits until the live replicas hold the shards evenly and then until every
// container has a line emitted after that readable: the state each round starts from.
func (r *replicaSet) settle(ctx context.Context, fresh *freshTracker, all []string) error {
	even, err := r.waitEven(ctx, 2*time.Minute)
	if err != nil {
		return err
	}
	fresh.mark(even)
	_, err = fresh.wait(ctx, all, r.alive, time.Minute)
	return err
}
