package fakekubelet

import (
	"fmt"
	"strings"
	"time"
)

// Script shapes the next follow stream opened for a container, so that a test can put a
// delay, a pause or a cut at an exact point of a replay instead of racing it with a sleep.
// Points are counted in lines the stream has sent (writes that end with a newline; the
// parts of a split line count as one).
type Script struct {
	// Delay holds back the stream's first byte (its 200 and headers are sent): a kubelet
	// that is slow to find sinceTime in a large file, or busy.
	Delay time.Duration
	// PauseAfter and Pause hold the stream for Pause once it has sent PauseAfter lines.
	PauseAfter int
	Pause      time.Duration
	// CutAfter, when positive, cuts the stream when it is about to send line CutAfter+1:
	// cleanly (the client sees the body end at a line boundary) or, with MidLine, after
	// half of that line.
	CutAfter int
	MidLine  bool
	// CutAfterBytes, when positive, cuts the stream once it has sent that many bytes of its
	// body, wherever that is: inside a line, or inside one part of a split line.
	CutAfterBytes int
	// WithoutFollow applies the script to the next read without follow (a previous
	// instance, a finished one, a poll) instead of the next follow stream. A cut of such a
	// body ends it cleanly, as the API server ends its response when the kubelet's breaks.
	WithoutFollow bool
}

// scripted is a Script waiting for its stream.
type scripted struct {
	target
	Script
}

// ScriptNext applies sc to the next follow stream opened for the selected containers, or
// with sc.WithoutFollow to the next read without follow; calls queue up, one script per
// stream in the order given. ResetFaults drops scripts not yet taken.
func (k *Kubelet) ScriptNext(namespace, pod, container string, sc Script) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.faults.scripts = append(k.faults.scripts, &scripted{target{namespace, pod, container}, sc})
}

// PendingScripts is the number of scripts for the selected containers not yet taken by a
// stream (names as in ScriptNext; an empty name matches any).
func (k *Kubelet) PendingScripts(namespace, pod, container string) int {
	t := target{namespace, pod, container}
	k.mu.Lock()
	defer k.mu.Unlock()
	n := 0
	for _, s := range k.faults.scripts {
		if t.matches(s.ns, s.pod, s.container) {
			n++
		}
	}
	return n
}

// takeScript removes and returns the first script that applies to a new stream. Called
// with Kubelet.mu held.
func (f *faults) takeScript(ns, pod, container string, follow bool) *Script {
	for i, s := range f.scripts {
		if s.matches(ns, pod, container) && s.WithoutFollow != follow {
			f.scripts = append(f.scripts[:i], f.scripts[i+1:]...)
			return &s.Script
		}
	}
	return nil
}

// scriptState is a stream's progress through its script; only the stream's writer (the
// handler goroutine) touches it.
type scriptState struct {
	Script
	started bool
	lines   int
	sent    int // bytes of the body sent
	paused  bool
}

// bytesLeft is how many bytes of p the script lets the stream send before it cuts it.
func (s *stream) bytesLeft(p []byte) int {
	if sc := s.script; sc != nil && sc.CutAfterBytes > 0 {
		return max(0, min(len(p), sc.CutAfterBytes-sc.sent))
	}
	return len(p)
}

// scriptBefore is called before each non-empty write; it waits as the script says and reports
// whether the write is to be cut, and where.
func (s *stream) scriptBefore() (cut, mid bool, err error) {
	sc := s.script
	if sc == nil {
		return false, false, nil
	}
	if !sc.started {
		sc.started = true
		if err := s.wait(sc.Delay); err != nil {
			return false, false, err
		}
	}
	if sc.Pause > 0 && !sc.paused && sc.lines >= sc.PauseAfter {
		sc.paused = true
		if err := s.wait(sc.Pause); err != nil {
			return false, false, err
		}
	}
	if sc.CutAfter > 0 && sc.lines >= sc.CutAfter {
		return true, sc.MidLine, nil
	}
	return false, false, nil
}

// scriptAfter counts a write that was sent.
func (s *stream) scriptAfter(p []byte) {
	if s.script == nil {
		return
	}
	s.script.sent += len(p)
	if len(p) > 0 && p[len(p)-1] == '\n' {
		s.script.lines++
	}
}

// wait sleeps for d or until the stream ends.
func (s *stream) wait(d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-s.ctx.Done():
		return fmt.Errorf("stream ended while scripted to wait: %w", s.ctx.Err())
	}
}

// AppendParts writes one application line as a runtime that split it writes it: one CRI
// record per part, each with its own timestamp (containerd splits at 16 KiB, CRI-O on any
// split read, and the parts of a long line can straddle seconds), all tagged P but the
// last, F. The line is recorded as emitted with the first part's time and the parts'
// texts joined; the kubelet prefixes only its first part with a timestamp.
func (k *Kubelet) AppendParts(namespace, pod, container string, parts ...Line) error {
	if len(parts) == 0 {
		return fmt.Errorf("AppendParts: no parts")
	}
	var b strings.Builder
	var text strings.Builder
	for i := range parts {
		p := &parts[i]
		if err := normalize(p); err != nil {
			return err
		}
		if p.Stream != parts[0].Stream {
			return fmt.Errorf("part %d on %s, the first on %s: the parts of a line share a stream", i, p.Stream, parts[0].Stream)
		}
		tag := "P"
		if i == len(parts)-1 {
			tag = "F"
		}
		writeRecord(&b, p, tag, p.Text)
		text.WriteString(p.Text)
	}
	line := Line{Time: parts[0].Time, Stream: parts[0].Stream, Text: text.String()}
	return k.write(namespace, pod, container, []byte(b.String()), []Line{line})
}

// InotifyError is the text a kubelet writes into a follow stream when it cannot create the
// fsnotify watcher that following needs: its node is out of inotify instances
// (fs.inotify.max_user_instances, often 128 per user, one per follow stream).
const InotifyError = "failed to create fsnotify watcher: too many open files"

// ExhaustInotify makes the node run out of inotify instances (on) or recover (off). While
// out, every follow request is answered as the kubelet's ReadLogs then answers it: the
// lines that exist, then InotifyError written into the body, without newline, and the end
// of the stream. Follow streams open at the moment are not affected (their watchers exist);
// reads without follow work as usual.
func (k *Kubelet) ExhaustInotify(on bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.faults.inotifyExhausted = on
}
