package kubelogdproc

import (
	"os/exec"
	"strings"
	"testing"
	"time"
)

// The process side of the package, with sh standing in for kubelogd; Build is exercised
// by every suite's TestMain.

func TestOutputAndExit(t *testing.T) {
	p, err := Start(exec.Command("sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3"))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		p.Kill()
		t.Fatal("sh did not exit")
	}
	if !p.Exited() {
		t.Error("Exited is false after Done was closed")
	}
	if out := p.Output(); !strings.Contains(out, "to-stdout\n") || !strings.Contains(out, "to-stderr\n") {
		t.Errorf("output %q, want both streams", out)
	}
	if code := p.Cmd.ProcessState.ExitCode(); code != 3 {
		t.Errorf("exit code %d, want 3", code)
	}
	if p.Cmd.SysProcAttr == nil || p.Cmd.SysProcAttr.Pdeathsig == 0 {
		t.Error("no parent-death signal set")
	}
}

func TestTerm(t *testing.T) {
	tests := []struct {
		name   string
		script string
		exited bool
	}{
		{"exits on SIGTERM", "echo ready; exec sleep 60", true},
		// exec keeps the ignored disposition, so sleep itself ignores SIGTERM and Kill
		// reaches the process that holds the output pipe.
		{"ignores SIGTERM", "trap '' TERM; echo ready; exec sleep 60", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Start(exec.Command("sh", "-c", tt.script))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(p.Kill)
			// The script is past its trap once it said ready.
			for deadline := time.Now().Add(10 * time.Second); !strings.Contains(p.Output(), "ready"); time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("sh never said ready")
				}
			}
			grace := 10 * time.Second
			if !tt.exited {
				grace = 300 * time.Millisecond
			}
			if got := p.Term(grace); got != tt.exited {
				t.Fatalf("Term = %v, want %v", got, tt.exited)
			}
			if p.Exited() != tt.exited {
				t.Fatalf("Exited = %v after Term, want %v", p.Exited(), tt.exited)
			}
			p.Kill()
			if !p.Exited() {
				t.Fatal("still running after Kill")
			}
		})
	}
}

func TestFreePort(t *testing.T) {
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	if port <= 0 || port > 65535 {
		t.Fatalf("port %d", port)
	}
}
