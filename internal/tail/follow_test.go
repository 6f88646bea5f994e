package tail

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/kubelogd/kubelogd/internal/layout"
)

// follow starts Run with Follow set and returns its output and a function that stops
// it (as Ctrl-C does) and returns Run's error. The test fails if Run does not stop.
func follow(t *testing.T, cfg Config, out interface {
	Write([]byte) (int, error)
}) (stop func() error) {
	t.Helper()
	cfg.Follow = true
	if cfg.PollInterval == 0 {
		// Events usually come first; polling makes the tests pass where inotify is
		// exhausted too (TestFollowByEvents covers events alone).
		cfg.PollInterval = 100 * time.Millisecond
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, out) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("follow did not stop after cancel")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// rotate does what lumberjack does: rename the current file to a backup name and
// create a new, empty current file.
func rotate(t *testing.T, dir, container string, at time.Time) {
	t.Helper()
	cur := filepath.Join(dir, container+".log")
	mustf(t, os.Rename(cur, filepath.Join(dir, backupName(container, at))), "rename")
	f, err := os.OpenFile(cur, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
	mustf(t, err, "create")
	f.Close()
}

func TestFollowRotation(t *testing.T) {
	tests := []struct {
		name string
		// between runs after the history is printed; it writes the lines numbered from
		// 3 on, rotating as it goes.
		between func(t *testing.T, dir string, out *syncBuffer)
		want    int // lines numbered 1..want expected, each once and in order
	}{
		{"append", func(t *testing.T, dir string, out *syncBuffer) {
			appendFile(t, filepath.Join(dir, "app.log"), tl(3, "line 3")+"\n")
			waitFor(t, out, "line 3")
			appendFile(t, filepath.Join(dir, "app.log"), tl(4, "line 4")+"\n")
		}, 4},
		{"rotation", func(t *testing.T, dir string, out *syncBuffer) {
			cur := filepath.Join(dir, "app.log")
			// Written right before the rename: must not be lost.
			appendFile(t, cur, tl(3, "line 3")+"\n")
			rotate(t, dir, "app", at(10))
			appendFile(t, cur, tl(4, "line 4")+"\n")
			waitFor(t, out, "line 4")
			appendFile(t, cur, tl(5, "line 5")+"\n")
		}, 5},
		{"rotation then compression", func(t *testing.T, dir string, out *syncBuffer) {
			cur := filepath.Join(dir, "app.log")
			appendFile(t, cur, tl(3, "line 3")+"\n")
			rotate(t, dir, "app", at(10))
			// The daemon gzips the backup and removes it: the follower reads the file it
			// has open.
			b := filepath.Join(dir, backupName("app", at(10)))
			data, err := os.ReadFile(b)
			mustf(t, err, "read backup")
			writeFile(t, dir, backupName("app", at(10))+".gz", string(data))
			mustf(t, os.Remove(b), "remove backup")
			appendFile(t, cur, tl(4, "line 4")+"\n")
		}, 4},
		{"partial line completed later", func(t *testing.T, dir string, out *syncBuffer) {
			cur := filepath.Join(dir, "app.log")
			appendFile(t, cur, tl(3, "line"))
			time.Sleep(50 * time.Millisecond)
			appendFile(t, cur, " 3\n")
			waitFor(t, out, "line 3")
			appendFile(t, cur, tl(4, "line 4")+"\n")
		}, 4},
		{"truncated by crash recovery", func(t *testing.T, dir string, out *syncBuffer) {
			cur := filepath.Join(dir, "app.log")
			appendFile(t, cur, tl(3, "line 3")+"\n")
			waitFor(t, out, "line 3")
			st, err := os.Stat(cur)
			mustf(t, err, "stat")
			mustf(t, os.Truncate(cur, st.Size()-int64(len(tl(3, "line 3"))+1)), "truncate")
			// The daemon writes again only after a restart. Were the new line written
			// before the follower saw the file shrink, it could not tell (nor can
			// tail -F): a rewrite of the same length looks like no change. Events are
			// handled in order, so once a file created after the truncation is
			// printed, the truncation has been seen.
			writeLines(t, dir, "probe.log", tl(3, "probe"))
			waitFor(t, out, "probe")
			appendFile(t, cur, tl(4, "line 4")+"\n")
		}, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			dir := filepath.Join(root, "ns", "p")
			writeLines(t, root, "ns/p/app.log", tl(1, "line 1"), tl(2, "line 2"))
			out := &syncBuffer{}
			stop := follow(t, Config{Dir: root, Tail: TailAll}, out)
			waitFor(t, out, "line 2")
			tt.between(t, dir, out)
			last := fmt.Sprintf("line %d", tt.want)
			waitFor(t, out, last)
			mustf(t, stop(), "stop")
			var want []string
			for i := 1; i <= tt.want; i++ {
				want = append(want, fmt.Sprintf("ns/p/app line %d", i))
			}
			got := strings.ReplaceAll(out.String(), "ns/p/probe probe\n", "")
			if got != lines(want...) {
				t.Errorf("got:\n%s\nwant:\n%s", got, lines(want...))
			}
		})
	}
}

// gate is an output that can be held: a follower writing to it blocks, so that a test
// can change the files while the follower cannot look.
type gate struct {
	syncBuffer
	hold    sync.Mutex
	entered chan struct{}
}

func (g *gate) Write(p []byte) (int, error) {
	select {
	case g.entered <- struct{}{}:
	default:
	}
	g.hold.Lock()
	defer g.hold.Unlock()
	return g.syncBuffer.Write(p)
}

// TestFollowTwoRotations rotates twice while the follower is blocked: the file that was
// current in between is read from its backup.
func TestFollowTwoRotations(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "ns", "p")
	cur := writeLines(t, root, "ns/p/app.log", tl(1, "line 1"))
	out := &gate{entered: make(chan struct{}, 1)}
	stop := follow(t, Config{Dir: root, Tail: TailAll}, out)
	waitFor(t, &out.syncBuffer, "line 1")
	<-out.entered // drop the signal of the history's write

	out.hold.Lock()
	appendFile(t, cur, tl(2, "line 2")+"\n")
	<-out.entered // the follower is stuck printing line 2
	appendFile(t, cur, tl(3, "line 3")+"\n")
	rotate(t, dir, "app", at(10))
	appendFile(t, cur, tl(4, "line 4")+"\n")
	rotate(t, dir, "app", at(20))
	appendFile(t, cur, tl(5, "line 5")+"\n")
	out.hold.Unlock()

	waitFor(t, &out.syncBuffer, "line 5")
	mustf(t, stop(), "stop")
	want := lines("ns/p/app line 1", "ns/p/app line 2", "ns/p/app line 3", "ns/p/app line 4", "ns/p/app line 5")
	if got := out.String(); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestFollowNewPodsAndContainers(t *testing.T) {
	root := t.TempDir()
	writeLines(t, root, "ns/p/app.log", tl(1, "p app 1"))
	out := &syncBuffer{}
	stop := follow(t, Config{Dir: root, Tail: TailAll, Container: "app|side"}, out)
	waitFor(t, out, "p app 1")

	// A new pod, in a directory created after the start.
	writeLines(t, root, "ns/q/app.log", tl(2, "q app 1"), tl(3, "q app 2"))
	waitFor(t, out, "q app 2")
	// A new namespace, pod and container at once.
	writeLines(t, root, "other/r/side.log", tl(4, "r side 1"))
	waitFor(t, out, "r side 1")
	// A new container in a known pod; one that is not selected.
	writeLines(t, root, "ns/p/skipped.log", tl(5, "not selected"))
	writeLines(t, root, "ns/p/side.log", tl(6, "p side 1"))
	waitFor(t, out, "p side 1")
	// And the new files keep being followed.
	appendFile(t, filepath.Join(root, "ns/q/app.log"), tl(7, "q app 3")+"\n")
	waitFor(t, out, "q app 3")
	mustf(t, stop(), "stop")

	want := lines("ns/p/app p app 1", "ns/q/app q app 1", "ns/q/app q app 2", "other/r/side r side 1", "ns/p/side p side 1", "ns/q/app q app 3")
	if got := out.String(); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

// TestFollowSelectorMetaLater: the daemon may write a pod's logs before its metadata.
// A pod is selected by labels once its .pod.json appears, from its first line.
func TestFollowSelectorMetaLater(t *testing.T) {
	root := t.TempDir()
	writeMeta(t, root, "ns", "web-0", "n1", map[string]string{"app": "web"})
	writeLines(t, root, "ns/web-0/app.log", tl(1, "web-0 1"))
	out := &syncBuffer{}
	stop := follow(t, Config{Dir: root, Tail: TailAll, Selector: "app=web"}, out)
	waitFor(t, out, "web-0 1")

	writeLines(t, root, "ns/web-1/app.log", tl(2, "web-1 1"))
	writeLines(t, root, "ns/db-0/app.log", tl(3, "db-0 1"))
	time.Sleep(100 * time.Millisecond) // neither has metadata yet: nothing to print
	if strings.Contains(out.String(), "web-1") {
		t.Fatalf("pod without metadata printed:\n%s", out.String())
	}
	writeMeta(t, root, "ns", "db-0", "n1", map[string]string{"app": "db"})
	writeMeta(t, root, "ns", "web-1", "n2", map[string]string{"app": "web"})
	waitFor(t, out, "web-1 1")
	appendFile(t, filepath.Join(root, "ns/web-1/app.log"), tl(4, "web-1 2")+"\n")
	appendFile(t, filepath.Join(root, "ns/db-0/app.log"), tl(5, "db-0 2")+"\n")
	appendFile(t, filepath.Join(root, "ns/web-0/app.log"), tl(6, "web-0 2")+"\n")
	waitFor(t, out, "web-0 2")
	waitFor(t, out, "web-1 2")
	mustf(t, stop(), "stop")
	if got := out.String(); strings.Contains(got, "db-0") {
		t.Errorf("pod not matching the selector printed:\n%s", got)
	}
}

func TestFollowFilters(t *testing.T) {
	root := t.TempDir()
	cur := writeLines(t, root, "ns/p/app.log", tl(1, "old ERROR"), tl(2, "old ok"))
	out := &syncBuffer{}
	// --tail 0: only what is written from now on; --grep applies to it.
	ready := make(chan struct{})
	stop := follow(t, Config{Dir: root, Tail: 0, Grep: []string{"ERROR"}, Output: OutputRaw, Timestamps: true, following: func() { close(ready) }}, out)
	<-ready
	appendFile(t, cur, tl(3, "new ok")+"\n"+tl(4, "new ERROR")+"\n")
	waitFor(t, out, "new ERROR")
	mustf(t, stop(), "stop")
	if got, want := out.String(), tl(4, "new ERROR")+"\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestFollowEmptyTree: a tree with nothing selected yet is followed until a container
// appears, and the format of its file is detected once it has a line.
func TestFollowEmptyTree(t *testing.T) {
	root := t.TempDir()
	out := &syncBuffer{}
	stop := follow(t, Config{Dir: root, Tail: TailAll, PollInterval: 20 * time.Millisecond, Format: layout.FormatAuto}, out)
	writeLines(t, root, "ns/p/app.log", `{"time":"`+stamp(at(1))+`","line":"json 1"}`)
	waitFor(t, out, "ns/p/app json 1")
	mustf(t, stop(), "stop")
}

// TestFollowByEvents follows with polling out of the way (an hour apart): rotations,
// writes, new pods and metadata are all noticed through fsnotify.
func TestFollowByEvents(t *testing.T) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		t.Skipf("inotify unavailable here: %v", err)
	}
	w.Close()
	root := t.TempDir()
	dir := filepath.Join(root, "ns", "p")
	cur := writeLines(t, root, "ns/p/app.log", tl(1, "line 1"))
	out := &syncBuffer{}
	ready := make(chan struct{})
	stop := follow(t, Config{Dir: root, Tail: TailAll, Selector: "app", PollInterval: time.Hour, following: func() { close(ready) }}, out)
	<-ready
	if out.String() != "" {
		t.Fatalf("printed a pod without metadata: %q", out.String())
	}
	writeMeta(t, root, "ns", "p", "n1", map[string]string{"app": "x"})
	waitFor(t, out, "line 1")
	appendFile(t, cur, tl(2, "line 2")+"\n")
	waitFor(t, out, "line 2")
	appendFile(t, cur, tl(3, "line 3")+"\n")
	rotate(t, dir, "app", at(10))
	appendFile(t, cur, tl(4, "line 4")+"\n")
	waitFor(t, out, "line 4")
	writeMeta(t, root, "ns", "q", "n1", map[string]string{"app": "y"})
	writeLines(t, root, "ns/q/side.log", tl(5, "line 5"))
	waitFor(t, out, "line 5")
	mustf(t, stop(), "stop")
	want := lines("ns/p/app line 1", "ns/p/app line 2", "ns/p/app line 3", "ns/p/app line 4", "ns/q/side line 5")
	if got := out.String(); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

// TestFollowPolling: where inotify is unavailable, the follower polls, and still
// follows rotations and finds new pods.
func TestFollowPolling(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "ns", "p")
	cur := writeLines(t, root, "ns/p/app.log", tl(1, "line 1"))
	out := &syncBuffer{}
	var logs logBuffer
	stop := follow(t, Config{Dir: root, Tail: TailAll, PollInterval: 20 * time.Millisecond, noWatch: true,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))}, out)
	waitFor(t, out, "line 1")
	appendFile(t, cur, tl(2, "line 2")+"\n")
	rotate(t, dir, "app", at(10))
	appendFile(t, cur, tl(3, "line 3")+"\n")
	writeLines(t, root, "other/q/side.log", tl(4, "line 4"))
	waitFor(t, out, "line 4")
	mustf(t, stop(), "stop")
	want := lines("ns/p/app line 1", "ns/p/app line 2", "ns/p/app line 3", "other/q/side line 4")
	if got := out.String(); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	if !strings.Contains(logs.String(), "polling instead") {
		t.Errorf("no warning about polling: %q", logs.String())
	}
}
