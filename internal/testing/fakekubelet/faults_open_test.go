package fakekubelet

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestStallOpenStallsOnlyOpenStreams: the stream open at StallOpen sends nothing more, while
// a new request gets every line at once; ResumeOpen lets the old stream go on.
func TestStallOpenStallsOnlyOpenStreams(t *testing.T) {
	e := newEnv(t)
	e.running(t, "ns", "p", "c", "other")
	e.appendText(t, "ns", "p", "c", "a")
	e.appendText(t, "ns", "p", "other", "x")
	f := e.follow(t, "ns", "p", "c", "")
	g := e.follow(t, "ns", "p", "other", "")
	wantLines(t, f.lines(t, 1), "a")
	wantLines(t, g.lines(t, 1), "x")

	if n := e.k.StallOpen("ns", "p", "c"); n != 1 {
		t.Fatalf("stalled %d streams, want 1", n)
	}
	e.appendText(t, "ns", "p", "c", "b")
	got := make(chan string, 1)
	go func() {
		l, _ := f.r.ReadString('\n')
		got <- l
	}()
	select {
	case l := <-got:
		t.Fatalf("a stalled stream sent %q", l)
	case <-time.After(quiet):
	}
	// New requests, follow or not, are served.
	if code, body := e.get(t, "ns", "p", "c", ""); code != 200 || body != "a\nb\n" {
		t.Fatalf("new request during StallOpen: %d %q", code, body)
	}
	h := e.follow(t, "ns", "p", "c", "")
	wantLines(t, h.lines(t, 2), "a", "b")
	// Other containers' streams go on.
	e.appendText(t, "ns", "p", "other", "y")
	wantLines(t, g.lines(t, 1), "y")

	if n := e.k.ResumeOpen("ns", "p", "c"); n != 1 {
		t.Fatalf("resumed %d streams, want 1 (the stream opened after StallOpen was never stalled)", n)
	}
	select {
	case l := <-got:
		if l != "b\n" {
			t.Errorf("after ResumeOpen: %q", l)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stream did not resume")
	}
}

// TestForgetPrevious: previous=true answers as if there were no previous instance while the
// API still names it; the current instance is served as before.
func TestForgetPrevious(t *testing.T) {
	e := newEnv(t)
	e.running(t, "ns", "p", "c")
	e.appendText(t, "ns", "p", "c", "old")
	if err := e.k.Restart(t.Context(), "ns", "p", "c", 1, ""); err != nil {
		t.Fatal(err)
	}
	e.appendText(t, "ns", "p", "c", "new")
	if code, body := e.get(t, "ns", "p", "c", "previous=true"); code != 200 || body != "old\n" {
		t.Fatalf("before ForgetPrevious: %d %q", code, body)
	}
	e.k.ForgetPrevious("ns", "p", "c")
	code, body := e.get(t, "ns", "p", "c", "previous=true")
	if want := `previous terminated container "c" in pod "p" not found`; code != 400 || !strings.Contains(body, want) {
		t.Fatalf("previous after ForgetPrevious: %d %q, want 400 %q", code, body, want)
	}
	if pod := e.getPod(t, "ns", "p"); pod.Status.ContainerStatuses[0].LastTerminationState.Terminated == nil {
		t.Fatal("the API lost the last state too")
	}
	if code, body := e.get(t, "ns", "p", "c", ""); code != 200 || body != "new\n" {
		t.Fatalf("current instance: %d %q", code, body)
	}
	e.k.ResetFaults()
	if code, body := e.get(t, "ns", "p", "c", "previous=true"); code != 200 || body != "old\n" {
		t.Fatalf("after ResetFaults: %d %q", code, body)
	}
}

// TestEndedStreamsNotCounted: a stream EndFollow ended no longer counts as open or as a
// follower, even before its handler has returned, so that a test waiting for a follower
// after EndFollow waits for the client's next stream.
func TestEndedStreamsNotCounted(t *testing.T) {
	e := newEnv(t)
	e.running(t, "ns", "p", "c")
	e.appendText(t, "ns", "p", "c", "a")
	f := e.follow(t, "ns", "p", "c", "")
	wantLines(t, f.lines(t, 1), "a")
	ctx := t.Context()
	if err := e.k.WaitForFollowers(ctx, "ns", "p", "c", 1); err != nil {
		t.Fatal(err)
	}
	// Hold the stream's handler in a stalled write, so that it cannot return.
	e.k.StallOpen("ns", "p", "c")
	e.appendText(t, "ns", "p", "c", "b")
	if n := e.k.EndFollow("ns", "p", "c"); n != 1 {
		t.Fatalf("EndFollow ended %d streams, want 1", n)
	}
	if n := e.k.OpenStreams("ns", "p", "c"); n != 0 {
		t.Errorf("OpenStreams = %d after EndFollow, want 0", n)
	}
	short, cancel := context.WithTimeout(ctx, quiet)
	defer cancel()
	if err := e.k.WaitForFollowers(short, "ns", "p", "c", 1); err == nil {
		t.Error("WaitForFollowers counted a stream EndFollow ended")
	}
}
