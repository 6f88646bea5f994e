package e2e

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kubelogd/kubelogd/internal/failpoint"
	"github.com/kubelogd/kubelogd/internal/testing/fakekubelet"
	"github.com/kubelogd/kubelogd/internal/testing/oracle"
)

// load appends lines of about lineBytes bytes to every container, batch lines every
// interval, until stop is called.
func (e *env) load(refs []ref, every time.Duration, batch, lineBytes int) (stop func()) {
	var stops []func() int
	for _, r := range refs {
		pad := strings.Repeat("x", max(0, lineBytes-40))
		stops = append(stops, e.flow(r.ns, r.pod, r.container, every, batch, func(i int) fakekubelet.Line {
			return fakekubelet.Line{Text: fmt.Sprintf("%s/%s line %d %s", r.pod, r.container, i, pad)}
		}))
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			for _, s := range stops {
				s()
			}
		})
	}
}

// TestFaultCrashAtFailpoint (scenario 18): kubelogd is SIGKILLed at each moment crash
// recovery depends on, under load, and the failpoint log proves the kill happened there.
// A new kubelogd then completes every file: nothing lost, nothing twice, no torn line, no
// marker (a crash of kubelogd loses no line the kubelet still has).
//
// The failpoints are named in internal/failpoint and placed in sink/; a failpoint no code
// reaches fails its test with "failpoint ... never hit".
func TestFaultCrashAtFailpoint(t *testing.T) {
	t.Parallel()
	rotate := []string{"--max-size-mb", "1"}
	for _, tc := range []struct {
		name string
		hit  int
		args []string
	}{
		{name: failpoint.AfterDataBeforeCursor, hit: 5},
		// A cursor file is created once per container (two here), in place, then saved
		// in place.
		{name: failpoint.CursorCreate, hit: 2},
		{name: failpoint.CursorMidWrite, hit: 5},
		{name: failpoint.RotationAfterRename, hit: 1, args: rotate},
		{name: failpoint.GzipMidway, hit: 1, args: append(rotate, "--compress")},
		{name: failpoint.MidLine, hit: 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := parallelEnv(t)
			refs := e.runningPods("crash", 2, "app")
			dir := t.TempDir()
			fplog := filepath.Join(t.TempDir(), "failpoints.log")
			// Every backup is kept, so that the files hold every line to compare.
			args := append([]string{"--max-backups", "0"}, tc.args...)
			stop := e.load(refs, 20*time.Millisecond, 50, 200) // ~0.5 MB/s per container
			defer stop()
			d := startKubelogdEnv(t, []string{
				fmt.Sprintf("%s=%s=%d", failpoint.EnvFailpoints, tc.name, tc.hit),
				failpoint.EnvLog + "=" + fplog,
			}, e.c.Kubeconfig, dir, args...)
			e.keepOutput(d)
			select {
			case <-d.Done():
			case <-time.After(30 * time.Second):
				t.Fatalf("failpoint %s never hit: kubelogd still runs after 30s of load (nothing calls failpoint.Hit(%q) on this path)", tc.name, tc.name)
			}
			logged, _ := os.ReadFile(fplog)
			if strings.TrimSpace(string(logged)) != tc.name {
				t.Fatalf("kubelogd exited (%v) without reaching failpoint %s (failpoint log %q):\n%s", d.Cmd.ProcessState, tc.name, logged, tail(d.Output(), 30))
			}
			if ws, ok := d.Cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
				t.Fatalf("kubelogd ended with %v at failpoint %s, want SIGKILL", d.Cmd.ProcessState, tc.name)
			}
			d2 := e.kubelogd(dir, args...)
			d2.waitReady()
			time.Sleep(time.Second)
			stop()
			e.allExact(dir, refs, 120*time.Second)
			checkNoLeftovers(t, dir)
		})
	}
}

// checkNoLeftovers fails if a temporary file of a cursor save or a compression survived the
// recovery of a container's files.
func checkNoLeftovers(t *testing.T, dir string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, de os.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		name := de.Name()
		if name == ".kubelogd.lock" || name == ".pod.json" || strings.HasSuffix(name, ".cursor") {
			return nil
		}
		if strings.HasPrefix(name, ".") || strings.Contains(name, ".tmp") {
			t.Errorf("leftover temporary file %s", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestFaultRandomKills (scenario 18, second part): kubelogd is SIGKILLed 20 times at random
// moments while four containers log fast enough to rotate its 1 MB files, compressed; after
// the last restart every file is exact.
func TestFaultRandomKills(t *testing.T) {
	e := parallelEnv(t)
	refs := e.runningPods("kill", 4, "app")
	dir := t.TempDir()
	args := []string{"--max-size-mb", "1", "--compress", "--max-backups", "0"}
	stop := e.load(refs, 10*time.Millisecond, 10, 150) // ~150 kB/s per container
	defer stop()
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 18))
	var lived []time.Duration
	for range 20 {
		d := e.kubelogd(dir, args...)
		life := 200*time.Millisecond + time.Duration(rng.IntN(2500))*time.Millisecond
		time.Sleep(life)
		if d.Exited() {
			t.Fatalf("kubelogd exited by itself:\n%s", tail(d.Output(), 30))
		}
		d.Kill()
		lived = append(lived, life.Round(10*time.Millisecond))
	}
	t.Logf("killed after %v", lived)
	d := e.kubelogd(dir, args...)
	d.waitReady()
	time.Sleep(time.Second)
	stop()
	e.allExact(dir, refs, 180*time.Second)
	checkNoLeftovers(t, dir)
	backups := 0
	for _, r := range refs {
		b, err := oracle.Backups(logPath(dir, r.ns, r.pod, r.container))
		if err != nil {
			t.Fatal(err)
		}
		backups += len(b)
	}
	t.Logf("%d rotated files", backups)
}

// TestFaultSIGTERMDrainManyStreams (scenario 19): kubelogd follows 200 containers (fewer if
// the machine's inotify limit does not allow the fake kubelet that many) while they all
// log; on SIGTERM it exits 0 within 10 s, every file is an exact prefix of what its
// container emitted (no torn or doubled line), and the next kubelogd completes them all.
// Not parallel: it needs most of the machine's inotify instances.
func TestFaultSIGTERMDrainManyStreams(t *testing.T) {
	streams := 200
	if budget := followBudget(t) - 16; budget < streams {
		t.Logf("fs.inotify.max_user_instances leaves room for %d follow streams: %d streams instead of %d", budget, budget&^1, streams)
		streams = budget &^ 1
	}
	if streams < 20 {
		t.Skip("too few inotify instances left for the fake kubelet")
	}
	e := newEnv(t)
	refs := e.runningPods("drain", streams/2, "a", "b")
	stop := e.load(refs, 50*time.Millisecond, 1, 100)
	defer stop()
	dir := t.TempDir()
	d := e.kubelogd(dir)
	d.waitReady()
	eventually(t, 120*time.Second, "every stream writing", func() (bool, string) {
		empty := 0
		for _, r := range refs {
			if st, err := os.Stat(logPath(dir, r.ns, r.pod, r.container)); err != nil || st.Size() == 0 {
				empty++
			}
		}
		return empty == 0, fmt.Sprintf("%d of %d files still empty", empty, len(refs))
	})
	time.Sleep(time.Second)
	sent := time.Now()
	if err := d.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.Done():
	case <-time.After(10 * time.Second):
		t.Fatalf("kubelogd still running 10s after SIGTERM with %d streams", len(refs))
	}
	t.Logf("exited %s after SIGTERM with %d streams", time.Since(sent).Round(time.Millisecond), len(refs))
	if code := d.Cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
	for _, r := range refs {
		got, err := oracle.ReadSections(logPath(dir, r.ns, r.pod, r.container), "timestamped")
		if err != nil {
			t.Fatal(err)
		}
		emitted := e.k.Emitted(r.ns, r.pod, r.container)
		if len(got) != 1 || len(got[0].Lines) > len(emitted) {
			t.Errorf("%v: %d sections, %d lines for %d emitted", r, len(got), len(got[0].Lines), len(emitted))
			continue
		}
		if rep := oracle.Compare(emitted[:len(got[0].Lines)], got[0].Lines); !rep.OK() {
			t.Errorf("%v: not a prefix of what was emitted: %s", r, rep)
		}
	}
	d2 := e.kubelogd(dir)
	d2.waitReady()
	time.Sleep(time.Second)
	stop()
	e.allExact(dir, refs, 120*time.Second)
}
