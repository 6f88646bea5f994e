//go:build !failpoint

package failpoint

// Enabled reports whether this build carries the failpoints (the failpoint build tag).
const Enabled = false

// Hit does nothing: the release binary has no failpoints.
func Hit(string) {}

// Reached is always false: the release binary has no failpoints, so the code a failpoint
// guards (such as writing half a record) is dead and compiled out.
func Reached(string) bool { return false }

// Kill does nothing; callers reach it only after Reached reported true, which it never
// does in this build.
func Kill(string) {}
