package soak

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/kubelogd/kubelogd/internal/testing/oracle"
)

// TestScheduleReplayable: a seed and a duration decide the whole schedule, and pending
// kinds are never drawn.
func TestScheduleReplayable(t *testing.T) {
	for _, seed := range []uint64{1, fixedSeeds[0], fixedSeeds[1], 987654321} {
		a, b := generate(seed, 10*time.Minute), generate(seed, 10*time.Minute)
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("seed %d: two schedules differ", seed)
		}
		up := true
		for i, s := range a.Steps {
			if _, pending := soakPending[s.Kind]; pending {
				t.Errorf("seed %d step %d: pending kind %s drawn", seed, i, s.Kind)
			}
			switch s.Kind {
			case kKill, kTerm:
				if !up {
					t.Errorf("seed %d step %d: %s while kubelogd is down", seed, i, s)
				}
				up = !s.Flag
			case kStart:
				if up {
					t.Errorf("seed %d step %d: %s while kubelogd runs", seed, i, s)
				}
				up = true
			}
		}
		if !up {
			t.Errorf("seed %d: kubelogd left down at the end of the schedule", seed)
		}
	}
	if reflect.DeepEqual(generate(1, time.Minute).Steps, generate(2, time.Minute).Steps) {
		t.Error("seeds 1 and 2 give the same schedule")
	}
}

// TestJudge: the model accepts what kubelogd may write and names what it must not.
func TestJudge(t *testing.T) {
	seg := func(uid string, rc int32, lines ...string) *segment {
		return &segment{uid: typesUID(uid), rc: rc, exitCode: 1, lines: lines}
	}
	rotated := func(s *segment, lossy bool) *segment { s.rotated, s.lossy = true, lossy; return s }
	multi := func(s *segment) *segment { s.multi = true; return s }
	removed := func(s *segment) *segment { s.removed = true; return s }
	silent := func(s *segment) *segment { s.silent = true; return s }
	code := func(s *segment, c int32) *segment { s.exitCode = c; return s }
	sec := func(marker string, lines ...string) oracle.Section {
		if marker != "" {
			marker = oracle.MarkerPrefix + marker
		}
		return oracle.Section{Marker: marker, Lines: lines}
	}
	const restart1 = "container restarted (restartCount 1): previous instance exited with code 1 (Error)"
	const removedMarker = "gap: the directory x was removed outside kubelogd; lines written to the earlier file before this marker are not in this one"
	const rot = "gap: the replayed log does not contain the last line written (its log was probably rotated); lines logged after x and before y may be missing"
	for _, tc := range []struct {
		name string
		segs []*segment
		got  []oracle.Section
		want string // "" or a part of the first problem
	}{
		{"exact", []*segment{seg("u", 0, "a", "b")}, []oracle.Section{sec("", "a", "b")}, ""},
		{"lost", []*segment{seg("u", 0, "a", "b", "c")}, []oracle.Section{sec("", "a", "c")}, "1 lines missing"},
		{"duplicated", []*segment{seg("u", 0, "a", "b")}, []oracle.Section{sec("", "a", "b", "b")}, "duplicated"},
		{"restart", []*segment{seg("u", 0, "a"), seg("u", 1, "b")}, []oracle.Section{sec("", "a"), sec(restart1, "b")}, ""},
		{"restart marker missing", []*segment{seg("u", 0, "a"), seg("u", 1, "b")}, []oracle.Section{sec("", "a", "b")}, "no restart marker"},
		{"restart marker twice", []*segment{seg("u", 0, "a"), seg("u", 1, "b")}, []oracle.Section{sec("", "a"), sec(restart1), sec(restart1, "b")}, "twice"},
		{"wrong exit code", []*segment{seg("u", 0, "a"), seg("u", 1, "b")},
			[]oracle.Section{sec("", "a"), sec("container restarted (restartCount 1): previous instance exited with code 2", "b")}, "exited with code 1"},
		{"rotated, lossy", []*segment{rotated(seg("u", 0, "a", "b"), true), seg("u", 0, "c")}, []oracle.Section{sec("", "a"), sec(rot, "c")}, ""},
		{"rotated, nothing lost", []*segment{rotated(seg("u", 0, "a", "b"), false), seg("u", 0, "c")}, []oracle.Section{sec("", "a", "b"), sec(rot, "c")}, ""},
		{"rotated where kubelogd had every line", []*segment{rotated(seg("u", 0, "a", "b"), false), seg("u", 0, "c")}, []oracle.Section{sec("", "a"), sec(rot, "c")}, "missing"},
		{"rotated marker without rotation", []*segment{seg("u", 0, "a", "b", "c")}, []oracle.Section{sec("", "a"), sec(rot, "c")}, "rotated nothing"},
		{"lost after a rotation without marker", []*segment{rotated(seg("u", 0, "a", "b"), true), seg("u", 0, "c")}, []oracle.Section{sec("", "a", "c")}, "missing"},
		{"jump absorbed", []*segment{multi(seg("u", 0, "a")), seg("u", 1), seg("u", 2, "c")},
			[]oracle.Section{sec("", "a"), sec("container restarted (restartCount 2): previous instance exited with code 1"),
				sec("gap: 1 container instance(s) between restartCount 0 and 2 exited before their logs could be read", "c")}, ""},
		{"previous gone", []*segment{multi(seg("u", 0, "a", "b")), seg("u", 1), seg("u", 2, "c")},
			[]oracle.Section{sec("", "a"), sec("gap: the rest of the log of instance abc (restartCount 0) is no longer available"),
				sec("container restarted (restartCount 2): previous instance exited with code 1"),
				sec("gap: 1 container instance(s) between restartCount 0 and 2 exited before their logs could be read", "c")}, ""},
		{"previous gone after a single restart", []*segment{seg("u", 0, "a", "b"), seg("u", 1, "c")},
			[]oracle.Section{sec("", "a"), sec("gap: the rest of the log of instance abc (restartCount 0) is no longer available"), sec(restart1, "c")}, "still served"},
		{"recreated", []*segment{seg("u", 0, "a", "b"), seg("v", 0, "c")},
			[]oracle.Section{sec("", "a"), sec("gap: pod UID u was deleted before its log was read to the end"), sec("pod n/p recreated with UID v (previous UID u)", "c")}, ""},
		// seed 76022315, soak-0/p-09/app: the old pod deleted, the new one's first instance
		// gone behind two quick restarts before kubelogd read it.
		{"recreated, then previous gone", []*segment{seg("u", 0, "a", "b"), multi(seg("v", 0, "c")), seg("v", 1), seg("v", 2, "d")},
			[]oracle.Section{sec("", "a"), sec("gap: pod UID u was deleted before its log was read to the end"), sec("pod n/p recreated with UID v (previous UID u)"),
				sec("gap: the rest of the log of instance abc (restartCount 0) is no longer available"),
				sec("container restarted (restartCount 2): previous instance exited with code 1"),
				sec("gap: 1 container instance(s) between restartCount 0 and 2 exited before their logs could be read", "d")}, ""},
		// seed 76022315 (replay), soak-0/p-09/app: the new pod restarted twice before
		// kubelogd first saw it; the kubelet serves instances 1 and 2 only.
		{"recreated after restarts", []*segment{seg("u", 0, "a", "b"), multi(seg("v", 0, "c")), seg("v", 1), seg("v", 2, "d")},
			[]oracle.Section{sec("", "a"), sec("gap: pod UID u was deleted before its log was read to the end"), sec("pod n/p recreated with UID v (previous UID u)"),
				sec("gap: 1 container instance(s) before restartCount 1 exited before their logs could be read"),
				sec("container restarted (restartCount 2): previous instance exited with code 1", "d")}, ""},
		{"recreated after restarts, unsaid", []*segment{seg("u", 0, "a", "b"), multi(seg("v", 0, "c")), seg("v", 1), seg("v", 2, "d")},
			[]oracle.Section{sec("", "a"), sec("gap: pod UID u was deleted before its log was read to the end"), sec("pod n/p recreated with UID v (previous UID u)"),
				sec("container restarted (restartCount 2): previous instance exited with code 1", "d")}, "no restart marker for restartCount 1"},
		// seed 391711025, soak-0/p-00/app: two restarts before kubelogd's first list; its
		// new file starts with the instances it could never read.
		{"first sight after restarts", []*segment{multi(seg("u", 0, "a", "b")), seg("u", 1), seg("u", 2, "c")},
			[]oracle.Section{sec("gap: 1 container instance(s) before restartCount 1 exited before their logs could be read"),
				sec("container restarted (restartCount 2): previous instance exited with code 1", "c")}, ""},
		{"first sight after restarts, unsaid", []*segment{multi(seg("u", 0, "a", "b")), seg("u", 1), seg("u", 2, "c")},
			[]oracle.Section{sec("container restarted (restartCount 2): previous instance exited with code 1", "c")}, "no restart marker for restartCount 1"},
		// seed 641127418, soak-0/p-00/app: recreated twice, restarted, the directory
		// removed unnoticed: the new file's first sight names the last pod's instances.
		{"first sight after recreates and restarts", []*segment{seg("u", 0, "a"), seg("v", 0, "b"), seg("w", 0, "c"), seg("w", 1), silent(seg("w", 2)), seg("w", 3, "d")},
			[]oracle.Section{sec("gap: 2 container instance(s) before restartCount 2 exited before their logs could be read"),
				sec("container restarted (restartCount 3): previous instance exited with code 1", "d")}, ""},
		{"instances lost, not at the start", []*segment{seg("u", 0, "a"), multi(seg("u", 1, "b")), seg("u", 2), seg("u", 3, "c")},
			[]oracle.Section{sec("", "a"), sec("gap: 2 container instance(s) before restartCount 2 exited before their logs could be read"),
				sec("container restarted (restartCount 3): previous instance exited with code 1", "c")}, "does not match"},
		{"recreate marker missing", []*segment{seg("u", 0, "a"), seg("v", 0, "c")}, []oracle.Section{sec("", "a", "c")}, "no recreate marker"},
		{"not yet collected", []*segment{seg("u", 0, "a", "b")}, []oracle.Section{sec("", "a")}, "missing"},
		// A removed pod directory takes the lines and markers before it, and the lines
		// written to the removed file before kubelogd noticed.
		{"removed", []*segment{seg("u", 0, "a"), removed(seg("u", 1, "b", "c")), seg("u", 1, "d", "e")},
			[]oracle.Section{sec(removedMarker, "e")}, ""},
		{"removed, lost without its marker", []*segment{removed(seg("u", 0, "a", "b")), seg("u", 0, "c")},
			[]oracle.Section{sec("", "c")}, "missing"},
		{"removal marker, nothing removed", []*segment{seg("u", 0, "a", "b")}, []oracle.Section{sec("", "a"), sec(removedMarker, "b")}, "no file was removed"},
		{"removal marker after a line kept", []*segment{removed(seg("u", 0, "a", "b")), seg("u", 0, "c")},
			[]oracle.Section{sec("", "a", "b"), sec(removedMarker, "c")}, "no file was removed"},
		{"removed, wrong marker still wrong", []*segment{seg("u", 0, "a"), removed(seg("u", 1, "b")), seg("u", 1, "c")},
			[]oracle.Section{sec(removedMarker), sec(restart1), sec("", "c")}, ""},
		// The restart marker names no UID: after a removal it may be either pod's.
		{"removed, restart marker of the second pod", []*segment{seg("u", 0, "a"), seg("u", 1, "b"), removed(code(seg("v", 0, "c"), 2)), seg("v", 1, "d")},
			[]oracle.Section{sec(removedMarker), sec("container restarted (restartCount 1): previous instance exited with code 2", "d")}, ""},
		{"removed, restart marker of neither pod", []*segment{seg("u", 0, "a"), seg("u", 1, "b"), removed(code(seg("v", 0, "c"), 2)), seg("v", 1, "d")},
			[]oracle.Section{sec(removedMarker), sec("container restarted (restartCount 1): previous instance exited with code 3", "d")}, "exited with code"},
		// Rotated away before kubelogd wrote a line of the instance: nothing can tell.
		{"rotated at an instance's start", []*segment{seg("u", 0, "a"), rotated(seg("u", 1, "b", "c"), true), seg("u", 1, "d")},
			[]oracle.Section{sec("", "a"), sec(restart1, "d")}, ""},
		{"rotated after a line of the instance", []*segment{seg("u", 0, "a"), rotated(seg("u", 1, "b", "c"), true), seg("u", 1, "d")},
			[]oracle.Section{sec("", "a"), sec(restart1, "b", "d")}, "missing"},
		// Killed before it noticed: a fresh start, silently.
		{"silent", []*segment{seg("u", 0, "a"), removed(seg("u", 1, "b")), silent(seg("u", 1, "c")), seg("u", 1, "d")},
			[]oracle.Section{sec("", "d")}, ""},
		{"silent, lost after", []*segment{removed(seg("u", 0, "a")), silent(seg("u", 0, "b")), seg("u", 0, "c", "d")},
			[]oracle.Section{sec("", "d")}, "missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := judge(tc.segs, tc.got)
			switch {
			case tc.want == "" && !v.ok():
				t.Errorf("problems %q, want none\n%s", v.problems, v)
			case tc.want != "" && (v.ok() || !strings.Contains(v.problems[0], tc.want)):
				t.Errorf("problems %q, want one containing %q", v.problems, tc.want)
			}
		})
	}
}

func typesUID(s string) types.UID { return types.UID(s) }
