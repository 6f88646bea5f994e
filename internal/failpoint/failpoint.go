// Package failpoint kills the process at named points of its code, so that tests can prove
// crash recovery at exactly the moments that matter rather than at random ones.
//
// A test starts kubelogd with
//
//	KUBELOGD_FAILPOINTS="cursor-before-rename=3,gzip-midway=1"
//	KUBELOGD_FAILPOINT_LOG=/tmp/x/failpoints.log
//
// and the process SIGKILLs itself on the 3rd time it reaches CursorBeforeRename (or the 1st
// time it reaches GzipMidway), after appending the name to the log file, so that the test can
// tell a crash at the failpoint from a crash elsewhere and a failpoint that was never reached.
//
// Without KUBELOGD_FAILPOINTS every call costs one atomic load; production builds carry the
// calls as they are.
package failpoint

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// The failpoints kubelogd defines. Each names a moment between two steps whose order crash
// recovery depends on.
const (
	// AfterDataBeforeCursor is reached after records were written to a container's file and
	// before the cursor that covers them is saved: on restart the file holds lines the
	// saved cursor does not count, which recovery must cut off and read again.
	AfterDataBeforeCursor = "after-data-before-cursor"
	// CursorBeforeRename is reached while a cursor file is created (a container's first
	// save, or a cursor that outgrew its slot), after its temporary file was written and
	// before it is renamed over the old cursor: the old cursor must stay valid and the
	// temporary file must be cleaned up.
	CursorBeforeRename = "cursor-before-rename"
	// CursorMidWrite is reached while a cursor is saved in place, with the first part of
	// the new copy written into its slot and the rest not: the torn copy must be refused
	// and the other slot's, the previous cursor, used.
	CursorMidWrite = "cursor-mid-write"
	// RotationAfterRename is reached during a rotation of a container's file, right after
	// the current file was renamed to its backup name, before anything else happens: the
	// cursor saved before the rotation names the backup's inode, and the new current file
	// is empty (lumberjack creates it in the same call as the rename) or, where the rename
	// is kubelogd's own, not there yet.
	RotationAfterRename = "rotation-after-rename"
	// GzipMidway is reached while a backup is compressed, with part of the .gz written: the
	// partial compressed file must never be taken for a complete one.
	GzipMidway = "gzip-midway"
	// MidLine is reached with part of a record written to a container's file and the rest
	// not: recovery must never leave the torn line in the file.
	MidLine = "mid-line"
)

// Names lists every failpoint kubelogd defines.
var Names = []string{AfterDataBeforeCursor, CursorBeforeRename, CursorMidWrite, RotationAfterRename, GzipMidway, MidLine}

// Environment variables read once at start.
const (
	// EnvFailpoints arms failpoints: comma-separated "name=N", kill on the Nth hit (N ≥ 1).
	EnvFailpoints = "KUBELOGD_FAILPOINTS"
	// EnvLog names a file the failpoint's name is appended to (one line) right before the
	// process kills itself.
	EnvLog = "KUBELOGD_FAILPOINT_LOG"
)

// set is the armed configuration; nil when EnvFailpoints is unset, which is what keeps
// Hit to one atomic load.
type set struct {
	// at is the hit that kills, per name; hits counts hits so far. Both maps are filled
	// before the set is published and never change afterwards.
	at   map[string]int64
	hits map[string]*atomic.Int64
	log  string
}

var armed atomic.Pointer[set]

func init() {
	spec := os.Getenv(EnvFailpoints)
	if spec == "" {
		return
	}
	s, err := parse(spec, os.Getenv(EnvLog))
	if err != nil {
		// A mistyped failpoint in a test must not pass as "never hit".
		fmt.Fprintf(os.Stderr, "kubelogd: invalid %s: %v\n", EnvFailpoints, err)
		os.Exit(2)
	}
	armed.Store(s)
}

// parse reads "name=N[,name2=M]". Unknown names are refused: a failpoint that no code can
// reach would make a test wait for nothing.
func parse(spec, log string) (*set, error) {
	s := &set{at: map[string]int64{}, hits: map[string]*atomic.Int64{}, log: log}
	for _, item := range strings.Split(spec, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, count, ok := strings.Cut(item, "=")
		if !ok {
			return nil, fmt.Errorf("%q: want name=N", item)
		}
		known := false
		for _, n := range Names {
			known = known || n == name
		}
		if !known {
			return nil, fmt.Errorf("%q: unknown failpoint (known: %s)", name, strings.Join(Names, ", "))
		}
		n, err := strconv.ParseInt(count, 10, 64)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q: N must be a positive integer", item)
		}
		s.at[name] = n
		s.hits[name] = new(atomic.Int64)
	}
	return s, nil
}

// Hit kills the process if this is the hit of name that EnvFailpoints arms. Unarmed, it is
// one atomic load, inlined at the call site.
func Hit(name string) {
	if armed.Load() != nil {
		hit(name)
	}
}

//go:noinline
func hit(name string) {
	if Reached(name) {
		Kill(name)
	}
}

// Reached counts a hit of name and reports whether it is the armed one, without killing:
// for code that must first set up the state the failpoint is about (such as writing half a
// record) and then call Kill. Exactly one call per process run reports true for each armed
// name, even when several goroutines reach the point at once.
func Reached(name string) bool {
	s := armed.Load()
	if s == nil {
		return false
	}
	c, ok := s.hits[name]
	if !ok {
		return false
	}
	return c.Add(1) == s.at[name]
}

// Kill appends name to the EnvLog file and SIGKILLs the process. It does not return.
func Kill(name string) {
	if s := armed.Load(); s != nil && s.log != "" {
		if f, err := os.OpenFile(s.log, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644); err == nil {
			_, _ = f.WriteString(name + "\n")
			_ = f.Close()
		}
	}
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	for {
		// The signal is delivered asynchronously: never run on past the failpoint. (A
		// sleeping goroutine, unlike select{}, cannot trip the runtime's deadlock check.)
		time.Sleep(time.Hour)
	}
}
