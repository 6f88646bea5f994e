package shard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"go.uber.org/goleak"

	"github.com/kubelogd/kubelogd/internal/testing/cluster"
)

// The durations of the tests: short, so that expiries happen within a test, and in the
// order Config demands.
const (
	testLeaseDuration = 3 * time.Second
	testRenewDeadline = 2 * time.Second
	testRetryPeriod   = 500 * time.Millisecond
)

// shared is the one control plane of the package's tests, started by the first test that
// needs it: etcd and kube-apiserver take seconds to start, and each test works in a
// namespace of its own.
var shared struct {
	once sync.Once
	c    *cluster.Cluster
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.c != nil {
		shared.c.Stop()
	}
	if code == 0 {
		// Checked after the apiserver is gone, which ends the clients' connections.
		if err := goleak.Find(goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run.func1")); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// env is one test's namespace on the shared control plane, the replicas started in it
// and the registry their owners report to.
type env struct {
	t        *testing.T
	c        *cluster.Cluster
	ns       string
	shards   int
	reg      *registry
	replicas []*replica
}

func newEnv(t *testing.T, shards int) *env {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the control plane (skipped with -short)")
	}
	shared.once.Do(func() {
		var logger *slog.Logger
		if os.Getenv("KUBELOGD_TEST_VERBOSE") != "" {
			logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
		}
		shared.c, shared.err = cluster.Start(context.Background(), cluster.Options{Logger: logger})
	})
	if shared.err != nil {
		t.Fatalf("starting control plane: %v", shared.err)
	}
	ns := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if err := shared.c.EnsureNamespace(t.Context(), ns); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, c: shared.c, ns: ns, shards: shards, reg: newRegistry()}
	t.Cleanup(func() {
		for _, r := range e.replicas {
			r.stop()
		}
		for _, v := range e.reg.violations() {
			t.Error(v)
		}
	})
	return e
}

// replica is one Manager as a kubelogd process would run it: a clientset of its own
// whose API access the test can cut, and a fake Owner.
type replica struct {
	id     string
	m      *Manager
	owner  *fakeOwner
	cut    atomic.Bool // every request fails while set
	cancel context.CancelFunc
	crash  chan struct{}
	done   chan error
	once   sync.Once
}

// start starts a replica named id.
func (e *env) start(id string) *replica {
	e.t.Helper()
	r := &replica{id: id, owner: &fakeOwner{id: id, reg: e.reg}, crash: make(chan struct{}), done: make(chan error, 1)}
	cfg := rest.CopyConfig(e.c.Config)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return cuttable{rt, &r.cut} })
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	var logger *slog.Logger
	if os.Getenv("KUBELOGD_TEST_VERBOSE") != "" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, nil)).With("replica", id)
	}
	r.m, err = New(Config{
		Client: client, Namespace: e.ns, ReplicaID: id, Shards: e.shards,
		LeaseDuration: testLeaseDuration, RenewDeadline: testRenewDeadline, RetryPeriod: testRetryPeriod,
		Owner: r.owner, Logger: logger,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- r.m.run(ctx, r.crash) }()
	e.replicas = append(e.replicas, r)
	return r
}

// stop cancels the replica's context and waits for Run to return: a graceful shutdown.
func (r *replica) stop() {
	r.once.Do(func() {
		r.cancel()
		<-r.done
	})
}

// kill ends the replica as SIGKILL would: Run returns at once without giving anything up,
// and its writers die with it.
func (r *replica) kill() {
	r.once.Do(func() {
		close(r.crash)
		<-r.done
		r.owner.die()
		r.cancel()
	})
}

// cuttable fails every request while cut is set, as a partition from the apiserver would.
type cuttable struct {
	next http.RoundTripper
	cut  *atomic.Bool
}

func (c cuttable) RoundTrip(req *http.Request) (*http.Response, error) {
	if c.cut.Load() {
		return nil, errors.New("test: API access cut")
	}
	return c.next.RoundTrip(req)
}

// registry sees every Start and Stop of every replica's owner, as the shared output
// directory would: a shard started by two replicas at once, or an epoch that does not
// grow from one start of a shard to the next, is a violation.
type registry struct {
	mu        sync.Mutex
	writer    map[int]string // shard → the replica writing it now
	lastEpoch map[int]int64
	errs      []string
}

func newRegistry() *registry {
	return &registry{writer: map[int]string{}, lastEpoch: map[int]int64{}}
}

func (g *registry) start(id string, s int, epoch int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if w, ok := g.writer[s]; ok {
		g.errs = append(g.errs, fmt.Sprintf("%s started shard %d while %s was writing it", id, s, w))
	}
	if epoch <= g.lastEpoch[s] {
		g.errs = append(g.errs, fmt.Sprintf("%s started shard %d at epoch %d, not above the last one, %d", id, s, epoch, g.lastEpoch[s]))
	}
	g.writer[s], g.lastEpoch[s] = id, epoch
}

func (g *registry) stop(id string, s int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.writer[s] != id {
		g.errs = append(g.errs, fmt.Sprintf("%s stopped shard %d, which %q was writing", id, s, g.writer[s]))
		return
	}
	delete(g.writer, s)
}

func (g *registry) violation(format string, args ...any) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.errs = append(g.errs, fmt.Sprintf(format, args...))
}

func (g *registry) violations() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.errs)
}

// fakeOwner records its shards' Starts and Stops and reports them to the registry.
type fakeOwner struct {
	id  string
	reg *registry

	mu      sync.Mutex
	running map[int]int64 // shard → epoch, started and not stopped
	starts  int
	stops   int
	onStop  func(shard int) // runs inside Stop, before the shard counts as stopped
}

var _ Owner = (*fakeOwner)(nil)

func (o *fakeOwner) Start(s int, epoch int64) {
	o.reg.start(o.id, s, epoch)
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.running == nil {
		o.running = map[int]int64{}
	}
	if _, ok := o.running[s]; ok {
		o.reg.violation("%s: Start of shard %d, already started", o.id, s)
	}
	o.running[s] = epoch
	o.starts++
}

func (o *fakeOwner) Stop(s int) {
	o.mu.Lock()
	onStop := o.onStop
	o.mu.Unlock()
	if onStop != nil {
		onStop(s)
	}
	o.mu.Lock()
	if _, ok := o.running[s]; !ok {
		o.reg.violation("%s: Stop of shard %d, not started", o.id, s)
	}
	delete(o.running, s)
	o.stops++
	o.mu.Unlock()
	o.reg.stop(o.id, s)
}

// die forgets every shard without a Stop, as a killed process's writers end.
func (o *fakeOwner) die() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for s := range o.running {
		o.reg.stop(o.id, s)
	}
	o.running = nil
}

// counts returns how many Starts and Stops the owner saw and the shards it writes now.
func (o *fakeOwner) counts() (starts, stops int, running map[int]int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	running = map[int]int64{}
	for s, e := range o.running {
		running[s] = e
	}
	return o.starts, o.stops, running
}

// leases returns the namespace's shard Leases by shard.
func (e *env) leases() (map[int]*coordinationv1.Lease, error) {
	list, err := e.c.Client.CoordinationV1().Leases(e.ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	out := map[int]*coordinationv1.Lease{}
	for i := range list.Items {
		if s, ok := parseShard(list.Items[i].Name, e.shards); ok {
			out[s] = &list.Items[i]
		}
	}
	return out, nil
}

// eventually polls cond until it holds, and fails the test with cond's last word if it
// does not within d.
func eventually(t *testing.T, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s: %s", d, what, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitShares waits until the replicas in want (by id) hold exactly that many shards
// each, together all of them, with their owners writing exactly those shards and the
// Leases in the API naming them, live, at the epochs Holds reports.
func (e *env) waitShares(d time.Duration, want map[*replica]int) {
	e.t.Helper()
	eventually(e.t, d, "shards shared as wanted", func() (bool, string) {
		leases, err := e.leases()
		if err != nil {
			return false, err.Error()
		}
		total := 0
		for r, n := range want {
			held := r.m.Held()
			if len(held) != n {
				return false, fmt.Sprintf("%s holds %v, want %d shards", r.id, held, n)
			}
			_, _, running := r.owner.counts()
			for _, s := range held {
				epoch, _ := r.m.Holds(s)
				if running[s] != epoch {
					return false, fmt.Sprintf("%s holds shard %d at epoch %d, its owner writes it at %d", r.id, s, epoch, running[s])
				}
				l := leases[s]
				if l == nil || !e.liveFor(l, r.id, epoch) {
					return false, fmt.Sprintf("%s holds shard %d at epoch %d, its Lease says %s", r.id, s, epoch, describe(l))
				}
			}
			if len(running) != n {
				return false, fmt.Sprintf("%s's owner writes %v", r.id, running)
			}
			total += n
		}
		if total != e.shards {
			return false, fmt.Sprintf("%d shards held, want all %d", total, e.shards)
		}
		return true, ""
	})
}

// liveFor reports whether the Lease is id's at epoch and not expired.
func (e *env) liveFor(l *coordinationv1.Lease, id string, epoch int64) bool {
	return holder(l) == id && epochOf(l) == epoch && !free(l, time.Now())
}

func describe(l *coordinationv1.Lease) string {
	if l == nil {
		return "absent"
	}
	return fmt.Sprintf("holder %q epoch %d renewed %v", holder(l), epochOf(l), l.Spec.RenewTime)
}
