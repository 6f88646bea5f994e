//go:build failpoint

package failpoint

// This file is the failpoint implementation, compiled only with the failpoint build tag
// (the tests' kubelogd binary, make test); failpoint_off.go has the release build's stubs.

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// Enabled reports whether this build carries the failpoints (the failpoint build tag).
const Enabled = true

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
