package sink

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// plant creates a file of size bytes (whole lines) at path, modified at mt.
func plant(t *testing.T, path string, size int, mt time.Time) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), dirMode); err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("p"), size)
	if size > 0 {
		data[size-1] = '\n'
	}
	if err := os.WriteFile(path, data, fileMode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, mt, mt); err != nil {
		t.Fatal(err)
	}
}

// backupName is the name lumberjack gives a backup of container rotated at t.
func backupName(container string, t time.Time, gz bool) string {
	name := container + "-" + t.UTC().Format(backupTimeLayout) + logExt
	if gz {
		name += gzExt
	}
	return name
}

// tree lists the regular files under dir, relative to it, sorted.
func tree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			rel, _ := filepath.Rel(dir, path)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

func deletedCount(m *Manager, reason string) float64 {
	return testutil.ToFloat64(m.met.deleted.WithLabelValues(reason))
}

func TestSweepTotals(t *testing.T) {
	clock := newFakeClock()
	now := clock.Now()
	ago := func(h int) time.Time { return now.Add(-time.Duration(h) * time.Hour) }
	// Three containers, one of them open, with interleaved backup times.
	appDir, webDir, dbDir := "ns1/pod-a", "ns1/pod-b", "ns2/pod-c"
	planted := map[string]time.Time{
		appDir + "/" + backupName("app", ago(5), false): ago(5),
		appDir + "/" + backupName("app", ago(3), true):  ago(3),
		webDir + "/" + backupName("web", ago(4), false): ago(4),
		webDir + "/" + backupName("web", ago(1), false): ago(1),
		dbDir + "/" + backupName("db", ago(60), false):  ago(60), // of the open container
		dbDir + "/" + backupName("db", ago(2), false):   ago(2),
	}
	currents := []string{appDir + "/app.log", webDir + "/web.log", dbDir + "/db.log"}
	for _, tc := range []struct {
		name        string
		budgetSlack int64 // budget = measured total - budgetSlack; 0: no budget
		budgetOne   bool  // budget of one byte
		totalAge    int   // MaxTotalAgeDays
		gone        []string
		wantBudget  float64
		wantAge     float64
	}{
		{
			name:        "budget deletes the oldest backups of all containers first",
			budgetSlack: 250, // three 100-byte backups must go
			gone:        []string{dbDir + "/" + backupName("db", ago(60), false), appDir + "/" + backupName("app", ago(5), false), webDir + "/" + backupName("web", ago(4), false)},
			wantBudget:  3,
		},
		{
			name:       "budget never deletes current files, cursors or the open file",
			budgetOne:  true,
			gone:       slices.Collect(maps.Keys(planted)),
			wantBudget: 6,
		},
		{
			name:     "total age applies to open and closed containers",
			totalAge: 2,
			gone:     []string{dbDir + "/" + backupName("db", ago(60), false)},
			wantAge:  1,
		},
		{
			name: "within limits nothing is deleted",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for p, mt := range planted {
				plant(t, filepath.Join(dir, p), 100, mt)
			}
			for _, p := range currents[:2] {
				plant(t, filepath.Join(dir, p), 50, now)
			}
			m := newTestManager(t, Config{Dir: dir, Format: FormatRaw, Now: clock.Now, MaxTotalAgeDays: tc.totalAge})
			m.started = now
			db := mustOpen(t, m, Key{Namespace: "ns2", Pod: "pod-c", Container: "db"})
			defer db.Close()
			if err := db.Write(Record{Line: []byte("db line")}); err != nil {
				t.Fatal(err)
			}
			if err := db.Flush(); err != nil {
				t.Fatal(err)
			}
			before := tree(t, dir)
			if tc.budgetSlack > 0 || tc.budgetOne {
				m.sweep(t.Context()) // measure
				total := int64(testutil.ToFloat64(m.met.outputBytes))
				if sum := dirBytes(t, dir); total != sum {
					t.Fatalf("kubelogd_output_bytes = %d, files hold %d", total, sum)
				}
				m.cfg.totalBytes = max(1, total-tc.budgetSlack)
				if tc.budgetOne {
					m.cfg.totalBytes = 1
				}
			}
			m.sweep(t.Context())

			want := slices.DeleteFunc(slices.Clone(before), func(p string) bool { return slices.Contains(tc.gone, p) })
			if got := tree(t, dir); !slices.Equal(got, want) {
				t.Errorf("after the sweep:\n got %q\nwant %q", got, want)
			}
			if got := deletedCount(m, reasonBudget); got != tc.wantBudget {
				t.Errorf("deleted for the budget: %v, want %v", got, tc.wantBudget)
			}
			if got := deletedCount(m, reasonAge); got != tc.wantAge {
				t.Errorf("deleted for age: %v, want %v", got, tc.wantAge)
			}
			if got, want := int64(testutil.ToFloat64(m.met.outputBytes)), dirBytes(t, dir); got != want {
				t.Errorf("kubelogd_output_bytes = %d, files hold %d", got, want)
			}
			// The open File writes on as if nothing happened.
			if err := db.Write(Record{Line: []byte("db line 2")}); err != nil {
				t.Fatal(err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			if got := string(readContent(t, db.Path())); got != "db line\ndb line 2\n" {
				t.Errorf("open file holds %q", got)
			}
		})
	}
}

func dirBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var total int64
	for _, p := range tree(t, dir) {
		st, err := os.Stat(filepath.Join(dir, p))
		if err != nil {
			t.Fatal(err)
		}
		total += st.Size()
	}
	return total
}

func TestRetainDeleted(t *testing.T) {
	clock := newFakeClock()
	now := clock.Now()
	old := now.Add(-8 * 24 * time.Hour)
	dir := t.TempDir()
	podFiles := func(c string, stamp time.Time) []string {
		return []string{c + ".log", backupName(c, stamp.Add(-time.Hour), true), "." + c + cursorSuffix}
	}
	// gone/pod-x: deleted a week ago, with others' metadata and a leftover temp file.
	for _, name := range append(podFiles("app", old), ".pod.json", ".app.cursor.tmp-123") {
		plant(t, filepath.Join(dir, "gone", "pod-x", name), 40, old)
	}
	// keep/recent: last written a day ago.
	for _, name := range podFiles("app", now) {
		plant(t, filepath.Join(dir, "keep", "recent", name), 40, now.Add(-24*time.Hour))
	}
	// keep/quiet: as old as gone/pod-x, but one of its two containers is open.
	for _, name := range append(podFiles("app", old), podFiles("sidecar", old)...) {
		plant(t, filepath.Join(dir, "keep", "quiet", name), 40, old)
	}
	// keep/pod-y: old, beside kubelogd's own files; the namespace directory stays.
	for _, name := range podFiles("app", old) {
		plant(t, filepath.Join(dir, "keep", "pod-y", name), 40, old)
	}
	m := newTestManager(t, Config{Dir: dir, Now: clock.Now})
	f := mustOpen(t, m, Key{Namespace: "keep", Pod: "quiet", Container: "app"})
	defer f.Close()
	for _, name := range tree(t, filepath.Join(dir, "keep", "quiet")) { // Open saved a cursor
		_ = os.Chtimes(filepath.Join(dir, "keep", "quiet", name), old, old)
	}
	before := tree(t, dir)

	m.started = now.Add(-startupGrace + time.Second)
	m.sweep(t.Context())
	// Within the grace only the temporary file a crash left is removed, as Open would.
	before = slices.DeleteFunc(before, func(p string) bool { return strings.Contains(p, tmpInfix) })
	if got := tree(t, dir); !slices.Equal(got, before) {
		t.Fatalf("files removed within the grace after start:\n got %q\nwant %q", got, before)
	}

	m.started = now.Add(-startupGrace)
	m.sweep(t.Context())
	want := slices.DeleteFunc(slices.Clone(before), func(p string) bool {
		return strings.HasPrefix(p, "gone/") || strings.HasPrefix(p, "keep/pod-y/")
	})
	if got := tree(t, dir); !slices.Equal(got, want) {
		t.Errorf("after the sweep:\n got %q\nwant %q", got, want)
	}
	for _, d := range []string{"gone", "keep/pod-y"} {
		if _, err := os.Stat(filepath.Join(dir, d)); !os.IsNotExist(err) {
			t.Errorf("directory %s not removed: %v", d, err)
		}
	}
	if got := deletedCount(m, reasonRetainDeleted); got != 4 {
		t.Errorf("kubelogd_backups_deleted_total{reason=retain_deleted} = %v, want 4 (2 log files in each of 2 pods)", got)
	}
	// A container of a removed pod starts afresh.
	g := mustOpen(t, m, Key{Namespace: "gone", Pod: "pod-x", Container: "app"})
	if g.Recovered().HadCursor {
		t.Error("a cursor of the removed pod survived")
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestRetentionOfClosedContainers(t *testing.T) {
	clock := newFakeClock()
	now := clock.Now()
	ago := func(h int) time.Time { return now.Add(-time.Duration(h) * time.Hour) }
	dir := t.TempDir()
	podDir := filepath.Join(dir, "ns", "pod")
	for _, h := range []int{1, 2, 3, 4, 30} {
		plant(t, filepath.Join(podDir, backupName("a", ago(h), false)), 100, ago(h))
	}
	for _, h := range []int{1, 30} {
		plant(t, filepath.Join(podDir, backupName("b", ago(h), false)), 100, ago(h))
	}
	// A compression of a's that a crash interrupted.
	plant(t, filepath.Join(podDir, "."+backupName("a", ago(1), true)+tmpInfix+"77"), 10, ago(1))
	m := newTestManager(t, Config{Dir: dir, Now: clock.Now, MaxBackups: 2, MaxAgeDays: 1, Compress: true})
	m.started = now
	open := mustOpen(t, m, Key{Namespace: "ns", Pod: "pod", Container: "c"})
	defer open.Close()
	for _, h := range []int{1, 2, 3, 4, 30} { // planted after Open, so that only the sweep could touch them
		plant(t, filepath.Join(podDir, backupName("c", ago(h), false)), 100, ago(h))
	}

	m.sweep(t.Context())
	compressed := []string{backupName("a", ago(1), true), backupName("a", ago(2), true), backupName("b", ago(1), true)}
	want := slices.Clone(compressed) // and no .c.cursor: c has written nothing yet
	for _, h := range []int{1, 2, 3, 4, 30} {
		want = append(want, backupName("c", ago(h), false))
	}
	want = append(want, "c.log")
	sort.Strings(want)
	if got := tree(t, podDir); !slices.Equal(got, want) {
		t.Errorf("after the sweep:\n got %q\nwant %q", got, want)
	}
	if got := deletedCount(m, reasonCount); got != 3 {
		t.Errorf("deleted for count: %v, want 3", got)
	}
	if got := deletedCount(m, reasonAge); got != 1 {
		t.Errorf("deleted for age: %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.met.compressions); got != 3 {
		t.Errorf("compressions: %v, want 3", got)
	}
	for _, name := range compressed {
		if got := string(readContent(t, filepath.Join(podDir, name))); len(got) != 100 {
			t.Errorf("%s decompresses to %d bytes, want 100", name, len(got))
		}
	}
}

// TestOpenWaitsForSweep checks that Open does not enter a directory the sweep is
// working in, which is what makes "not open" stable while the sweep changes files.
func TestOpenWaitsForSweep(t *testing.T) {
	dir := t.TempDir()
	m := newTestManager(t, Config{Dir: dir})
	p, err := pathsFor(m.cfg.Dir, testKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, reserved := range []string{p.dir, filepath.Dir(p.dir)} {
		m.reserve(reserved)
		opened := make(chan *File, 1)
		go func() {
			f, err := m.Open(testKey)
			if err != nil {
				t.Error(err)
			}
			opened <- f
		}()
		select {
		case <-opened:
			t.Fatalf("Open went ahead while the sweep held %s", reserved)
		case <-time.After(50 * time.Millisecond):
		}
		if busy := m.reserve(reserved); busy != 0 {
			t.Errorf("a waiting Open counts as busy: %d", busy)
		}
		m.unreserve()
		f := <-opened
		if m.reserve(reserved) != 1 {
			t.Errorf("open container not counted in %s", reserved)
		}
		m.unreserve()
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRunStress runs the real Run with a tight budget and constant idle closes while
// owners write, rotate and close; each container must keep a suffix of its lines (whole
// oldest backups deleted, nothing torn or doubled), and -race checks the rest.
func TestRunStress(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for seconds")
	}
	dir := t.TempDir()
	m := newTestManager(t, Config{
		Dir: dir, Format: FormatRaw, Compress: true, maxSizeBytes: 2000,
		IdleClose: time.Millisecond, SweepInterval: 2 * time.Millisecond, maxTotalBytes: 40000,
	})
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := m.Run(ctx); err != nil {
			t.Error(err)
		}
	})
	const owners, rounds, lines = 6, 4, 300
	sent := make([]map[Key][]string, owners)
	errs := make(chan error, owners)
	for g := range owners {
		sent[g] = make(map[Key][]string)
		go func() {
			errs <- func() error {
				for r := range rounds {
					key := Key{Namespace: fmt.Sprintf("ns-%d", g%2), Pod: fmt.Sprintf("pod-%d", g), Container: fmt.Sprintf("c-%d", r%2)}
					f, err := m.Open(key)
					if err != nil {
						return err
					}
					for i := range lines {
						line := fmt.Sprintf("%s %d %d %s", key, r, i, strings.Repeat("s", i%80))
						if err := f.Write(Record{Line: []byte(line)}); err != nil {
							return err
						}
						sent[g][key] = append(sent[g][key], line)
						if i%5 == 0 {
							if err := f.Flush(); err != nil {
								return err
							}
						}
						if i%50 == 0 {
							time.Sleep(2 * time.Millisecond) // let the file go idle
						}
					}
					if err := f.Close(); err != nil {
						return err
					}
				}
				return nil
			}()
		}()
	}
	for range owners {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	wg.Wait()
	if testutil.ToFloat64(m.met.idleCloses) == 0 || deletedCount(m, reasonBudget) == 0 {
		t.Fatalf("idle closes %v, budget deletions %v: the test exercises too little",
			testutil.ToFloat64(m.met.idleCloses), deletedCount(m, reasonBudget))
	}
	for g := range owners {
		for key, want := range sent[g] {
			got := allLines(t, dir, key)
			if len(got) == 0 || !slices.Equal(got, want[len(want)-len(got):]) {
				t.Errorf("%s holds %d lines that are not the last %d of the %d written", key, len(got), len(got), len(want))
			}
		}
	}
	t.Logf("idle closes %v, budget deletions %v, compressions %v, output %v bytes",
		testutil.ToFloat64(m.met.idleCloses), deletedCount(m, reasonBudget), testutil.ToFloat64(m.met.compressions), testutil.ToFloat64(m.met.outputBytes))
}

// TestSweepRemovesStaleMetaTemps checks that the temporary files of .pod.json a crash
// left are removed once they are staleTmpAge old, in pod directories with and without
// open containers, and that the metadata itself and a save in progress are left alone.
func TestSweepRemovesStaleMetaTemps(t *testing.T) {
	clock := newFakeClock()
	now := clock.Now()
	dir := t.TempDir()
	for _, pod := range []string{"open", "closed"} {
		podDir := filepath.Join(dir, "ns", pod)
		plant(t, filepath.Join(podDir, "app.log"), 40, now)
		plant(t, filepath.Join(podDir, ".pod.json"), 40, now.Add(-time.Hour))
		plant(t, filepath.Join(podDir, ".pod.json.tmp-123"), 20, now.Add(-time.Hour)) // a crash's
		plant(t, filepath.Join(podDir, ".pod.json.tmp-456"), 20, now)                 // being saved
	}
	m := newTestManager(t, Config{Dir: dir, Now: clock.Now})
	m.started = now
	f := mustOpen(t, m, Key{Namespace: "ns", Pod: "open", Container: "app"})
	defer f.Close()

	m.sweep(t.Context())
	for _, pod := range []string{"open", "closed"} {
		podDir := filepath.Join(dir, "ns", pod)
		got := tree(t, podDir)
		want := []string{".pod.json", ".pod.json.tmp-456", "app.log"}
		if pod == "open" {
			want = append([]string{".app.cursor"}, want...) // Open's, for the data found without one
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s after the sweep:\n got %q\nwant %q", pod, got, want)
		}
	}
	clock.Advance(staleTmpAge)
	m.sweep(t.Context())
	for _, pod := range []string{"open", "closed"} {
		if got := tree(t, filepath.Join(dir, "ns", pod)); slices.Contains(got, ".pod.json.tmp-456") {
			t.Errorf("%s: temporary file %s old not removed: %q", pod, staleTmpAge, got)
		}
	}
}
