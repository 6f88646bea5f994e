package fakekubelet

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"
)

// quiet is how long a test waits to be convinced that nothing arrives.
const quiet = 300 * time.Millisecond

func TestCutStreams(t *testing.T) {
	tests := []struct {
		name     string
		midLine  bool
		wantRest string
	}{
		{name: "between lines", wantRest: ""},
		{name: "mid-line", midLine: true, wantRest: "01234"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.running(t, "ns", "p", "c", "other")
			e.appendText(t, "ns", "p", "c", "a")
			e.appendText(t, "ns", "p", "other", "x")
			f := e.follow(t, "ns", "p", "c", "")
			g := e.follow(t, "ns", "p", "other", "")
			wantLines(t, f.lines(t, 1), "a")
			wantLines(t, g.lines(t, 1), "x")

			if n := e.k.CutStreams("ns", "p", "c", tt.midLine); n != 1 {
				t.Fatalf("cut %d streams, want 1", n)
			}
			e.appendText(t, "ns", "p", "c", "0123456789")
			rest, err := f.rest()
			if err == nil || rest != tt.wantRest {
				t.Errorf("after the cut got %q, %v; want %q and an abrupt end", rest, err, tt.wantRest)
			}
			// Streams of other containers go on.
			e.appendText(t, "ns", "p", "other", "y")
			wantLines(t, g.lines(t, 1), "y")
			// A new stream gets everything again.
			if code, body := e.get(t, "ns", "p", "c", ""); code != 200 || body != "a\n0123456789\n" {
				t.Errorf("after the cut: %d %q", code, body)
			}
		})
	}
}

func TestStallOpenStream(t *testing.T) {
	e := newEnv(t)
	e.running(t, "ns", "p", "c")
	e.appendText(t, "ns", "p", "c", "a")
	f := e.follow(t, "ns", "p", "c", "")
	wantLines(t, f.lines(t, 1), "a")

	e.k.Stall("ns", "p", "", true)
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
	e.k.Stall("ns", "p", "", false)
	select {
	case l := <-got:
		if l != "b\n" {
			t.Errorf("after the stall: %q", l)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stream did not resume")
	}
}

func TestStallNewStreamHoldsHeaders(t *testing.T) {
	e := newEnv(t)
	e.running(t, "ns", "p", "c")
	e.appendText(t, "ns", "p", "c", "a")
	e.k.Stall("", "", "", true)

	type result struct {
		code int
		body string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, e.url("ns", "p", "c", ""), nil)
		resp, err := e.http.Do(req)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		done <- result{code: resp.StatusCode, body: string(b), err: err}
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := e.k.WaitForStreams(ctx, "ns", "p", "c", 1); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		t.Fatalf("a stalled request was answered: %+v", r)
	case <-time.After(quiet):
	}
	e.k.ResetFaults()
	r := <-done
	if r.err != nil || r.code != 200 || r.body != "a\n" {
		t.Errorf("after the stall: %+v", r)
	}
}

func TestFailures(t *testing.T) {
	tests := []struct {
		name  string
		setup func(k *Kubelet)
		codes []int
		wait  time.Duration // before the last request
	}{
		{
			name:  "next two requests",
			setup: func(k *Kubelet) { k.FailNext("ns", "p", "c", 2, 404, `pod "p" does not exist`) },
			codes: []int{404, 404, 200},
		},
		{
			name:  "other containers unaffected",
			setup: func(k *Kubelet) { k.FailNext("ns", "p", "other", 5, 500, "boom") },
			codes: []int{200, 200},
		},
		{
			name:  "for a while",
			setup: func(k *Kubelet) { k.FailFor("", "", "", 200*time.Millisecond, 404, `pod "p" does not exist`) },
			codes: []int{404, 404, 200},
			wait:  300 * time.Millisecond,
		},
		{
			name: "reset",
			setup: func(k *Kubelet) {
				k.FailNext("ns", "p", "c", 5, 500, "boom")
				k.ResetFaults()
			},
			codes: []int{200},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.running(t, "ns", "p", "c")
			e.appendText(t, "ns", "p", "c", "a")
			tt.setup(e.k)
			for i, want := range tt.codes {
				if i == len(tt.codes)-1 {
					time.Sleep(tt.wait)
				}
				code, body := e.get(t, "ns", "p", "c", "")
				wantBody := "a\n"
				if want == 404 {
					wantBody = `pod "p" does not exist`
				}
				if code != want || body != wantBody {
					t.Errorf("request %d: %d %q, want %d %q", i, code, body, want, wantBody)
				}
			}
			var recorded []int
			for _, r := range e.k.Requests("ns", "p", "c") {
				recorded = append(recorded, r.Status)
			}
			if len(recorded) != len(tt.codes) {
				t.Errorf("recorded statuses %v, want %v", recorded, tt.codes)
			}
		})
	}
}

func TestInjectBodyError(t *testing.T) {
	e := newEnv(t)
	e.running(t, "ns", "p", "c")
	e.appendText(t, "ns", "p", "c", "a")
	f := e.follow(t, "ns", "p", "c", "timestamps=true")
	f.lines(t, 1)
	const msg = "failed to create fsnotify watcher: too many open files"
	if n := e.k.InjectBodyError("ns", "p", "c", msg); n != 1 {
		t.Fatalf("injected into %d streams", n)
	}
	rest, err := f.rest()
	if err != nil || rest != msg {
		t.Errorf("got %q, %v; want %q and a clean end", rest, err, msg)
	}
}

func TestEndFollow(t *testing.T) {
	e := newEnv(t)
	e.running(t, "ns", "p", "c", "d")
	e.appendText(t, "ns", "p", "c", "a")
	e.appendText(t, "ns", "p", "d", "b")
	f := e.follow(t, "ns", "p", "c", "")
	g := e.follow(t, "ns", "p", "d", "")
	wantLines(t, f.lines(t, 1), "a")
	wantLines(t, g.lines(t, 1), "b")
	if n := e.k.EndFollow("", "", ""); n != 2 {
		t.Fatalf("ended %d streams, want 2", n)
	}
	for _, s := range []*follower{f, g} {
		if rest, err := s.rest(); err != nil || rest != "" {
			t.Errorf("end of follow: %q, %v", rest, err)
		}
	}
	if st := e.getPod(t, "ns", "p").Status.ContainerStatuses[0].State; st.Running == nil {
		t.Errorf("container no longer running: %+v", st)
	}
	if n := e.k.OpenStreams("", "", ""); n != 0 {
		t.Errorf("%d streams still open", n)
	}
}

func TestCloseEndsStreams(t *testing.T) {
	e := newEnv(t)
	e.running(t, "ns", "p", "c", "d")
	e.appendText(t, "ns", "p", "c", "a")
	f := e.follow(t, "ns", "p", "c", "")
	wantLines(t, f.lines(t, 1), "a")
	e.k.Stall("ns", "p", "d", true)
	stalled := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, e.url("ns", "p", "d", "follow=true"), nil)
		resp, err := e.http.Do(req)
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		stalled <- err
	}()
	if err := e.k.WaitForStreams(t.Context(), "ns", "p", "d", 1); err != nil {
		t.Fatal(err)
	}
	if err := e.k.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.rest(); err == nil {
		// Either an abrupt or a clean end is fine; what matters is that it ended.
		t.Log("follow stream ended cleanly on Close")
	}
	select {
	case <-stalled:
	case <-time.After(10 * time.Second):
		t.Fatal("a stalled request outlived Close")
	}
	if _, err := e.http.Get(e.url("ns", "p", "c", "")); err == nil {
		t.Error("the server still answers after Close")
	}
}
