package fakekubelet

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestServeOptions(t *testing.T) {
	e := newEnv(t)
	e.running(t, "ns", "p", "c")
	base := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	lines := []Line{
		{Time: base.Add(120 * time.Millisecond), Text: "one"},
		{Time: base.Add(120 * time.Millisecond), Text: "one again"}, // same timestamp
		{Time: base.Add(time.Second + 5*time.Millisecond), Stream: "stderr", Text: "two"},
		{Time: base.Add(time.Second + 3*time.Millisecond), Text: "three"}, // earlier than the line before
		{Time: base.Add(2 * time.Second), Text: "four"},
	}
	if err := e.k.Append("ns", "p", "c", lines...); err != nil {
		t.Fatal(err)
	}
	// Lines stamped now, for sinceSeconds.
	if err := e.k.Append("ns", "p", "c", Line{Text: "recent"}); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(e.k.Instances("ns", "p", "c")[0].LogPath)
	if err != nil {
		t.Fatal(err)
	}
	if want := "2026-03-04T05:06:07.12Z stdout F one\n"; !strings.HasPrefix(string(raw), want) {
		t.Fatalf("CRI file starts %q, want %q", raw, want)
	}

	tests := []struct {
		name  string
		query url.Values
		want  string
	}{
		{name: "all", want: "one\none again\ntwo\nthree\nfour\nrecent\n"},
		{name: "timestamps with 9-digit fraction", query: url.Values{"timestamps": {"true"}, "tailLines": {"3"}, "limitBytes": {"73"}},
			want: "2026-03-04T05:06:08.003000000Z three\n2026-03-04T05:06:09.000000000Z four\n"},
		{name: "sinceTime whole second drops earlier lines in file order",
			query: url.Values{"sinceTime": {base.Add(time.Second).Format(time.RFC3339)}},
			want:  "two\nthree\nfour\nrecent\n"},
		{name: "sinceSeconds", query: url.Values{"sinceSeconds": {"60"}}, want: "recent\n"},
		{name: "tailLines", query: url.Values{"tailLines": {"2"}}, want: "four\nrecent\n"},
		{name: "tailLines zero", query: url.Values{"tailLines": {"0"}}, want: ""},
		{name: "legacy tail all", query: url.Values{"tail": {"all"}}, want: "one\none again\ntwo\nthree\nfour\nrecent\n"},
		{name: "limitBytes cuts mid-line", query: url.Values{"limitBytes": {"6"}}, want: "one\non"},
		{name: "limitBytes counts the timestamp", query: url.Values{"limitBytes": {"35"}, "timestamps": {"true"}},
			want: "2026-03-04T05:06:07.120000000Z one\n"},
		{name: "stream All accepted", query: url.Values{"stream": {"All"}, "tailLines": {"1"}}, want: "recent\n"},
		{name: "unknown parameters ignored", query: url.Values{"insecureSkipTLSVerifyBackend": {"true"}, "whatever": {"1"}, "tailLines": {"1"}}, want: "recent\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := e.get(t, "ns", "p", "c", tt.query.Encode())
			if code != http.StatusOK || body != tt.want {
				t.Errorf("got %d %q, want 200 %q", code, body, tt.want)
			}
		})
	}
	reqs := e.k.Requests("ns", "p", "c")
	if len(reqs) != len(tests) {
		t.Fatalf("%d requests recorded, want %d", len(reqs), len(tests))
	}
	if got := reqs[2].Options.SinceTime; got == nil || !got.Time.Equal(base.Add(time.Second)) || reqs[2].Query.Get("sinceTime") == "" {
		t.Errorf("recorded request: %+v", reqs[2])
	}
}

func TestServePartialLines(t *testing.T) {
	e := newEnv(t)
	e.running(t, "ns", "p", "c")
	ts := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)
	long := strings.Repeat("abcdefghij", 5) // 50 bytes in parts of 16: P P P F
	if err := e.k.AppendPartial("ns", "p", "c", Line{Time: ts, Text: long}, 16); err != nil {
		t.Fatal(err)
	}
	e.appendText(t, "ns", "p", "c", "short")
	raw, _ := os.ReadFile(e.k.Instances("ns", "p", "c")[0].LogPath)
	if got := strings.Count(string(raw), " P "); got != 3 {
		t.Fatalf("%d P records in %q, want 3", got, raw)
	}
	tests := []struct {
		name  string
		query string
		want  string
	}{
		{name: "joined", want: long + "\nshort\n"},
		{name: "one timestamp for the joined line", query: "timestamps=true&limitBytes=100",
			want: "2026-01-02T03:04:05.000006000Z " + long + "\n"},
		{name: "tailLines counts records, not lines", query: "tailLines=2", want: long[48:] + "\nshort\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := e.get(t, "ns", "p", "c", tt.query)
			if !strings.HasPrefix(body, tt.want) || code != http.StatusOK {
				t.Errorf("got %d %q, want 200 %q", code, body, tt.want)
			}
		})
	}
	wantLines(t, e.k.Emitted("ns", "p", "c"), long, "short")
}

func TestServeErrors(t *testing.T) {
	e := newEnv(t)
	e.running(t, "ns", "p", "c")
	pod := e.podSpec("ns", "two", "a", "b")
	e.create(t, pod)
	if err := e.k.StartContainer(t.Context(), "ns", "two", "a"); err != nil {
		t.Fatal(err)
	}
	// A pod bound to the node that no verb touched: served from the watch's copy.
	e.create(t, e.podSpec("ns", "untouched", "c"))
	untouched := e.getPod(t, "ns", "untouched")
	untouched.Status.ContainerStatuses = []v1.ContainerStatus{{Name: "c", State: v1.ContainerState{Waiting: &v1.ContainerStateWaiting{Reason: "ContainerCreating"}}}}
	if _, err := e.client.CoreV1().Pods("ns").UpdateStatus(t.Context(), untouched, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	other := e.podSpec("ns", "elsewhere", "c")
	other.Spec.NodeName = "other-node"
	e.create(t, other)
	eventually(t, "the watch to see the pods", func() bool {
		e.k.mu.Lock()
		defer e.k.mu.Unlock()
		_, _, found := e.k.podForLogs("ns", "untouched")
		return found && len(e.k.pods.GetStore().List()) >= 4
	})

	tests := []struct {
		name, pod, container, query string
		code                        int
		body                        string
	}{
		{name: "unknown pod", pod: "nope", container: "c", code: 404, body: `pod "nope" does not exist`},
		{name: "pod on another node", pod: "elsewhere", container: "c", code: 404, body: `pod "elsewhere" does not exist`},
		{name: "unknown container", pod: "p", container: "x", code: 404, body: `container "x" not found in pod "p"`},
		{name: "waiting container", pod: "two", container: "b", code: 400, body: `container "b" in pod "two" is waiting to start: ContainerCreating`},
		{name: "untouched pod", pod: "untouched", container: "c", code: 400, body: `container "c" in pod "untouched" is waiting to start: ContainerCreating`},
		{name: "previous never terminated", pod: "p", container: "c", query: "previous=true", code: 400, body: `previous terminated container "c" in pod "p" not found`},
		{name: "undecodable", pod: "p", container: "c", query: "follow=maybe", code: 400, body: `{"message": "Unable to decode query."}`},
		{name: "since twice", pod: "p", container: "c", query: "sinceSeconds=5&sinceTime=2026-01-01T00:00:00Z", code: 422, body: `{"message": "Invalid request."}`},
		{name: "negative tail", pod: "p", container: "c", query: "tailLines=-1", code: 422, body: `{"message": "Invalid request."}`},
		{name: "split streams off", pod: "p", container: "c", query: "stream=Stdout", code: 400,
			body: `unable to return the given log stream: "Stdout". Please enable PodLogsQuerySplitStreams feature gate in kubelet`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := e.get(t, "ns", tt.pod, tt.container, tt.query)
			if code != tt.code || body != tt.body {
				t.Errorf("got %d %q, want %d %q", code, body, tt.code, tt.body)
			}
		})
	}
}

func TestServePrevious(t *testing.T) {
	e := newEnv(t)
	e.running(t, "ns", "p", "c")
	e.appendText(t, "ns", "p", "c", "first run")
	if err := e.k.Restart(t.Context(), "ns", "p", "c", 1, ""); err != nil {
		t.Fatal(err)
	}
	e.appendText(t, "ns", "p", "c", "second run")
	tests := []struct {
		name  string
		query string
		want  string
	}{
		{name: "current", want: "second run\n"},
		{name: "previous", query: "previous=true", want: "first run\n"},
		{name: "previous follow ends at the end of the file", query: "previous=true&follow=true", want: "first run\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if code, body := e.get(t, "ns", "p", "c", tt.query); code != 200 || body != tt.want {
				t.Errorf("got %d %q, want 200 %q", code, body, tt.want)
			}
		})
	}

	// After two quick restarts only the last terminated instance (empty here) is reachable.
	if err := e.k.RestartN(t.Context(), "ns", "p", "c", 2, 1, ""); err != nil {
		t.Fatal(err)
	}
	if code, body := e.get(t, "ns", "p", "c", "previous=true"); code != 200 || body != "" {
		t.Errorf("previous after two restarts: %d %q", code, body)
	}
	if !strings.Contains(e.k.Requests("ns", "p", "c")[1].Query.Encode(), "previous=true") {
		t.Error("request log lacks previous=true")
	}

	// A terminated container serves its last instance without previous.
	e.appendText(t, "ns", "p", "c", "fourth run")
	if err := e.k.Terminate(t.Context(), "ns", "p", "c", 0, ""); err != nil {
		t.Fatal(err)
	}
	if code, body := e.get(t, "ns", "p", "c", "follow=true"); code != 200 || body != "fourth run\n" {
		t.Errorf("terminated container: %d %q", code, body)
	}
	if err := e.k.Append("ns", "p", "c", Line{Text: "late"}); err == nil {
		t.Error("appended to a terminated container")
	}
}

func TestFollow(t *testing.T) {
	e := newEnv(t)
	e.running(t, "ns", "p", "c")
	e.appendText(t, "ns", "p", "c", "before")
	f := e.follow(t, "ns", "p", "c", "timestamps=true")
	got := f.lines(t, 1)
	if !strings.HasSuffix(got[0], "Z before") || len(got[0]) != len("2006-01-02T15:04:05.000000000Z before") {
		t.Errorf("first line %q", got[0])
	}
	for i := range 3 {
		e.appendText(t, "ns", "p", "c", fmt.Sprintf("live %d", i))
		if l := f.lines(t, 1)[0]; !strings.HasSuffix(l, fmt.Sprintf(" live %d", i)) {
			t.Errorf("live line %d: %q", i, l)
		}
	}
	// The stream ends, cleanly, once the container exited and its file was read.
	e.appendText(t, "ns", "p", "c", "last words")
	if err := e.k.Terminate(t.Context(), "ns", "p", "c", 0, ""); err != nil {
		t.Fatal(err)
	}
	rest, err := f.rest()
	if err != nil || !strings.HasSuffix(rest, " last words\n") {
		t.Errorf("end of stream: %q, %v", rest, err)
	}
}

func TestFollowThroughRotation(t *testing.T) {
	e := newEnv(t)
	e.running(t, "ns", "p", "c")
	e.appendText(t, "ns", "p", "c", "a", "b")
	f := e.follow(t, "ns", "p", "c", "")
	wantLines(t, f.lines(t, 2), "a", "b")
	// Until ReadLogs watches the directory, it would miss the rotation (see WaitForFollowers).
	if err := e.k.WaitForFollowers(t.Context(), "ns", "p", "c", 1); err != nil {
		t.Fatal(err)
	}
	rotated, err := e.k.RotateLog("ns", "p", "c")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(rotated, e.k.Instances("ns", "p", "c")[0].LogPath+".") {
		t.Errorf("rotated file %s", rotated)
	}
	e.appendText(t, "ns", "p", "c", "c", "d")
	wantLines(t, f.lines(t, 2), "c", "d")

	// A rotation in quick succession, with lines only in the rotated file.
	e.appendText(t, "ns", "p", "c", "e")
	wantLines(t, f.lines(t, 1), "e")
	if _, err := e.k.RotateLog("ns", "p", "c"); err != nil {
		t.Fatal(err)
	}
	e.appendText(t, "ns", "p", "c", "f")
	wantLines(t, f.lines(t, 1), "f")

	// Without follow only the current file is read.
	if code, body := e.get(t, "ns", "p", "c", ""); code != 200 || body != "f\n" {
		t.Errorf("after rotation: %d %q", code, body)
	}
	wantLines(t, e.k.Emitted("ns", "p", "c"), "a", "b", "c", "d", "e", "f")
}

func TestTornLastLine(t *testing.T) {
	e := newEnv(t)
	e.running(t, "ns", "p", "c")
	e.appendText(t, "ns", "p", "c", "whole")
	if err := e.k.AppendRaw("ns", "p", "c", []byte("2026-01-02T03:04:05Z stdout F tor")); err != nil {
		t.Fatal(err)
	}
	// Without follow the kubelet serves the incomplete line as it is.
	if code, body := e.get(t, "ns", "p", "c", ""); code != 200 || body != "whole\ntor" {
		t.Errorf("got %d %q", code, body)
	}
	// A follower waits for the line to complete.
	f := e.follow(t, "ns", "p", "c", "")
	wantLines(t, f.lines(t, 1), "whole")
	if err := e.k.AppendRaw("ns", "p", "c", []byte("n\n")); err != nil {
		t.Fatal(err)
	}
	wantLines(t, f.lines(t, 1), "torn")
	wantLines(t, e.k.Emitted("ns", "p", "c"), "whole")
}

// TestFollowStreams: FollowStreams counts the follow streams open now and MaxFollowStreams
// the most at once; reads without follow count in neither.
func TestFollowStreams(t *testing.T) {
	e := newEnv(t)
	e.running(t, "ns", "p", "a", "b")
	e.appendText(t, "ns", "p", "a", "x")
	if code, _ := e.get(t, "ns", "p", "a", ""); code != http.StatusOK {
		t.Fatalf("read without follow: status %d", code)
	}
	if n := e.k.FollowStreams(); n != 0 {
		t.Errorf("FollowStreams = %d after a read without follow, want 0", n)
	}
	fa := e.follow(t, "ns", "p", "a", "")
	e.follow(t, "ns", "p", "b", "")
	wantLines(t, fa.lines(t, 1), "x")
	eventually(t, "two follow streams", func() bool { return e.k.FollowStreams() == 2 })
	fa.close()
	eventually(t, "one follow stream", func() bool { return e.k.FollowStreams() == 1 })
	if n := e.k.MaxFollowStreams(); n != 2 {
		t.Errorf("MaxFollowStreams = %d, want 2", n)
	}
}
