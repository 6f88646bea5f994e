package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// tailer reads the lines kubelogd writes to <root>/<namespace>/<pod>/<name> the moment
// they become readable: inotify (through fsnotify) says which file changed, and the tailer
// reads what was appended. A line counts as readable when the tailer has read it, so the
// figures include a few microseconds of the tailer's own reaction time. Rotation is
// followed: the renamed file is drained, the new one read from its start.
type tailer struct {
	root   string
	name   string // the file followed in every pod directory, e.g. "c.log"
	onLine func(path string, line []byte, at time.Time)

	w     *fsnotify.Watcher
	dirs  map[string]bool
	files map[string]*tailed
	buf   []byte
	// Overflows counts inotify queue overflows, after each of which the tree is rescanned.
	Overflows int
}

type tailed struct {
	f    *os.File
	part []byte // an incomplete last line, completed by the next read
}

// newTailer watches root, which must exist. onLine gets each complete line without its
// newline, on the tailer's goroutine; the slice is only valid during the call.
func newTailer(root, name string, onLine func(path string, line []byte, at time.Time)) (*tailer, error) {
	// A big buffer keeps fsnotify's reader from blocking on us during bursts of events.
	w, err := fsnotify.NewBufferedWatcher(1 << 16)
	if err != nil {
		return nil, err
	}
	t := &tailer{root: filepath.Clean(root), name: name, onLine: onLine, w: w,
		dirs: map[string]bool{}, files: map[string]*tailed{}, buf: make([]byte, 256<<10)}
	if err := t.scan(t.root, 0); err != nil {
		_ = w.Close()
		return nil, err
	}
	return t, nil
}

// run handles events until ctx ends, then closes everything.
func (t *tailer) run(ctx context.Context) {
	defer t.close()
	// A safety net: read every file now and then in case an event was missed.
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-t.w.Events:
			if !ok {
				return
			}
			t.event(ev)
		case err, ok := <-t.w.Errors:
			if !ok {
				return
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				t.Overflows++
				_ = t.scan(t.root, 0)
			}
		case <-tick.C:
			for path := range t.files {
				t.read(path)
			}
		}
	}
}

func (t *tailer) close() {
	_ = t.w.Close()
	for _, f := range t.files {
		_ = f.f.Close()
	}
}

// depth is 1 for a namespace directory, 2 for a pod directory, 3 for a file in it.
func (t *tailer) depth(path string) int {
	rel, err := filepath.Rel(t.root, path)
	if err != nil || rel == "." || strings.HasPrefix(rel, "..") {
		return 0
	}
	return strings.Count(rel, string(filepath.Separator)) + 1
}

func (t *tailer) event(ev fsnotify.Event) {
	d := t.depth(ev.Name)
	switch {
	case d == 3 && filepath.Base(ev.Name) == t.name:
		if ev.Has(fsnotify.Rename) || ev.Has(fsnotify.Remove) {
			// Rotated: what is left in the renamed file is read through the open
			// descriptor, then the new file (its Create comes next) from its start.
			t.read(ev.Name)
			if f := t.files[ev.Name]; f != nil {
				_ = f.f.Close()
				delete(t.files, ev.Name)
			}
			return
		}
		t.read(ev.Name)
	case (d == 1 || d == 2) && ev.Has(fsnotify.Create):
		_ = t.scan(ev.Name, d)
	}
}

// scan watches dir (at depth d) and what is below it down to the followed files. Files
// and directories created before the watch was in place are found by the listing after it.
func (t *tailer) scan(dir string, d int) error {
	if !t.dirs[dir] {
		if err := t.w.Add(dir); err != nil {
			return err
		}
		t.dirs[dir] = true
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		switch {
		case d < 2 && e.IsDir():
			_ = t.scan(p, d+1)
		case d == 2 && e.Name() == t.name:
			t.read(p)
		}
	}
	return nil
}

// read reads what was appended to path since the last read and hands over its lines.
func (t *tailer) read(path string) {
	tf := t.files[path]
	if tf == nil {
		f, err := os.Open(path)
		if err != nil {
			return
		}
		tf = &tailed{f: f}
		t.files[path] = tf
	}
	for {
		n, err := tf.f.Read(t.buf)
		if n > 0 {
			at := time.Now()
			data := t.buf[:n]
			if len(tf.part) > 0 {
				data = append(tf.part, data...)
			}
			for {
				i := bytes.IndexByte(data, '\n')
				if i < 0 {
					break
				}
				t.onLine(path, data[:i], at)
				data = data[i+1:]
			}
			tf.part = append(tf.part[:0], data...)
		}
		if err == io.EOF || n == 0 || err != nil {
			return
		}
	}
}
