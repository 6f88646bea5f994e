// Package failpoint kills the process at named points of its code, so that tests can prove
// crash recovery at exactly the moments that matter rather than at random ones.
//
// The failpoints exist only in a binary built with the failpoint build tag, as the tests
// build kubelogd:
//
//	go build -tags failpoint ./cmd/kubelogd
//
// A test starts that binary with
//
//	KUBELOGD_FAILPOINTS="cursor-create=3,gzip-midway=1"
//	KUBELOGD_FAILPOINT_LOG=/tmp/x/failpoints.log
//
// and the process SIGKILLs itself on the 3rd time it reaches CursorCreate (or the 1st
// time it reaches GzipMidway), after appending the name to the log file, so that the test can
// tell a crash at the failpoint from a crash elsewhere and a failpoint that was never reached.
// Armed or not, each call costs one atomic load in that build.
//
// The release binary (no tag) gets stubs instead: Hit and Kill do nothing and Reached is
// false, all three inline to nothing at the call sites, KUBELOGD_FAILPOINTS is never read
// and no failpoint name is left in the binary (TestReleaseDeps and TestReleaseBinary
// check). Only the names and the environment variables below are in both builds, for the
// tests that arm them.
package failpoint

// The failpoints kubelogd defines. Each names a moment between two steps whose order crash
// recovery depends on.
const (
	// AfterDataBeforeCursor is reached after records were written to a container's file and
	// before the cursor that covers them is saved: on restart the file holds lines the
	// saved cursor does not count, which recovery must cut off and read again.
	AfterDataBeforeCursor = "after-data-before-cursor"
	// CursorCreate is reached while a cursor file is created. A container's first save
	// creates it in place: the failpoint is right after the creation, with the file there
	// and empty, which a load must take for no cursor (the data file holds nothing that a
	// cursor saved since covers). A file that replaces a cursor (one that outgrew its slot,
	// one found torn or of the old layout) is written to a temporary file and renamed
	// over it: the failpoint is before the rename, and the old cursor must stay valid and
	// the temporary file be cleaned up.
	CursorCreate = "cursor-create"
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
var Names = []string{AfterDataBeforeCursor, CursorCreate, CursorMidWrite, RotationAfterRename, GzipMidway, MidLine}

// Environment variables read once at start, in the failpoint build only.
const (
	// EnvFailpoints arms failpoints: comma-separated "name=N", kill on the Nth hit (N ≥ 1).
	EnvFailpoints = "KUBELOGD_FAILPOINTS"
	// EnvLog names a file the failpoint's name is appended to (one line) right before the
	// process kills itself.
	EnvLog = "KUBELOGD_FAILPOINT_LOG"
)
