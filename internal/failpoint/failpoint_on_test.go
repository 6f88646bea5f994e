//go:build failpoint

package failpoint

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// TestMain runs the child half of TestKillsOnNthHit when the parent re-executes the test
// binary with failpointChild set: the child's init has read the armed failpoints.
func TestMain(m *testing.M) {
	if n := os.Getenv("failpointChild"); n != "" {
		hits, _ := strconv.Atoi(n)
		for i := 1; i <= hits; i++ {
			os.Stdout.WriteString("before hit " + strconv.Itoa(i) + "\n")
			Hit(MidLine)
			Hit(GzipMidway) // not armed: never kills
		}
		os.Stdout.WriteString("survived\n")
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestKillsOnNthHit(t *testing.T) {
	tests := []struct {
		name     string
		spec     string
		wantKill bool
		wantOut  string
	}{
		{name: "third hit", spec: MidLine + "=3", wantKill: true, wantOut: "before hit 1\nbefore hit 2\nbefore hit 3\n"},
		{name: "fewer hits than armed", spec: MidLine + "=9", wantOut: "before hit 1\nbefore hit 2\nbefore hit 3\nbefore hit 4\nbefore hit 5\nsurvived\n"},
		{name: "other name armed", spec: CursorCreate + "=1", wantOut: "before hit 1\nbefore hit 2\nbefore hit 3\nbefore hit 4\nbefore hit 5\nsurvived\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logPath := filepath.Join(t.TempDir(), "failpoints.log")
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), "failpointChild=5", EnvFailpoints+"="+tt.spec, EnvLog+"="+logPath)
			out, err := cmd.Output()
			if string(out) != tt.wantOut {
				t.Errorf("child printed %q, want %q", out, tt.wantOut)
			}
			logged, _ := os.ReadFile(logPath)
			if !tt.wantKill {
				if err != nil || len(logged) > 0 {
					t.Errorf("child: err %v, log %q; want a normal exit and no log", err, logged)
				}
				return
			}
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Errorf("child ended with %v, want SIGKILL", err)
			}
			if string(logged) != MidLine+"\n" {
				t.Errorf("failpoint log %q, want %q", logged, MidLine+"\n")
			}
		})
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		spec    string
		want    map[string]int64
		wantErr string
	}{
		{spec: "mid-line=2, gzip-midway=1", want: map[string]int64{MidLine: 2, GzipMidway: 1}},
		{spec: "mid-line", wantErr: "want name=N"},
		{spec: "mid-line=0", wantErr: "positive"},
		{spec: "midline=1", wantErr: "unknown failpoint"},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			s, err := parse(tt.spec, "")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parse: %v, want error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(s.at) != len(tt.want) {
				t.Fatalf("armed %v, want %v", s.at, tt.want)
			}
			for k, v := range tt.want {
				if s.at[k] != v {
					t.Errorf("%s armed at %d, want %d", k, s.at[k], v)
				}
			}
		})
	}
}

// TestReachedOnceUnderConcurrency: of many goroutines hitting one failpoint, exactly one
// is told it reached the armed hit.
func TestReachedOnceUnderConcurrency(t *testing.T) {
	s, err := parse(AfterDataBeforeCursor+"=50", "")
	if err != nil {
		t.Fatal(err)
	}
	armed.Store(s)
	t.Cleanup(func() { armed.Store(nil) })
	var wg sync.WaitGroup
	var mu sync.Mutex
	reached := 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				if Reached(AfterDataBeforeCursor) {
					mu.Lock()
					reached++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if reached != 1 {
		t.Fatalf("Reached reported true %d times, want 1", reached)
	}
	if Reached(MidLine) {
		t.Fatal("an unarmed failpoint was reached")
	}
}

func BenchmarkHitUnarmed(b *testing.B) {
	for b.Loop() {
		Hit(AfterDataBeforeCursor)
	}
}
