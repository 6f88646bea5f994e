package layout

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
)

// File and directory modes. The umask is not trusted with them: every file and directory
// kubelogd creates is chmod-ed explicitly.
const (
	DirMode  = 0o750
	FileMode = 0o640
)

// Parts of the names of the files in a pod's directory.
const (
	// LogExt ends every log file's name, current or backup.
	LogExt = ".log"
	// GzExt is added to a backup's name when it is compressed.
	GzExt = ".gz"
	// CursorSuffix ends a cursor file's name, ".<container>.cursor".
	CursorSuffix = ".cursor"
	// TmpInfix joins a final name and a random suffix in the name of a temporary file,
	// "<final name>.tmp-<random>"; temporary files also start with a dot.
	TmpInfix = ".tmp-"
	// LockFileName is the lock file at the root of the output directory.
	LockFileName = ".kubelogd.lock"
	// ShardsFileName records, at the root of an output directory shared by replicas, how
	// many shards they divide the pods into.
	ShardsFileName = ".kubelogd-shards"
)

// BackupTimeLayout is lumberjack's layout of the rotation time (UTC, milliseconds) in
// backup names.
const BackupTimeLayout = "2006-01-02T15-04-05.000"

// PodDir returns <root>/<namespace>/<pod>, the directory of a pod's files.
func PodDir(root, namespace, pod string) string {
	return filepath.Join(root, namespace, pod)
}

// LogFileName returns "<container>.log", the name of a container's current file.
func LogFileName(container string) string { return container + LogExt }

// CursorFileName returns ".<container>.cursor", the name of a container's cursor file.
func CursorFileName(container string) string { return "." + container + CursorSuffix }

// BackupName returns "<container>-<time>.log", the name lumberjack gives the backup of
// a container's file rotated at t; compressed, it gets GzExt besides.
func BackupName(container string, t time.Time) string {
	return container + "-" + t.UTC().Format(BackupTimeLayout) + LogExt
}

// LogName is what the name of a log file in a pod's directory says.
type LogName struct {
	// Container is the container the file belongs to.
	Container string
	// Rotated is when a backup was rotated (UTC, millisecond precision); zero for the
	// current file.
	Rotated time.Time
	// Gz is set for a compressed backup.
	Gz bool
}

// Current reports whether the name is a container's current file, <container>.log.
func (n LogName) Current() bool { return n.Rotated.IsZero() }

// ParseLogName recognises the names of log files: "<container>.log",
// "<container>-<time>.log" and "<container>-<time>.log.gz". Anything else is not a log
// (ok false), in particular every name that starts with a dot. Container names are DNS
// labels (lowercase letters, digits, '-'), so the 'T' and '.' of a backup's time can
// never be part of one, and the time must parse exactly: the split is unambiguous even
// between containers "a" and "a-b". The container name is not validated (see ValidName).
func ParseLogName(name string) (n LogName, ok bool) {
	if name == "" || name[0] == '.' {
		return n, false
	}
	rest := name
	if r, found := strings.CutSuffix(rest, GzExt); found {
		rest, n.Gz = r, true
	}
	rest, found := strings.CutSuffix(rest, LogExt)
	if !found || rest == "" {
		return LogName{}, false
	}
	const stamp = len(BackupTimeLayout)
	if len(rest) > stamp+1 && rest[len(rest)-stamp-1] == '-' {
		if t, err := time.Parse(BackupTimeLayout, rest[len(rest)-stamp:]); err == nil {
			n.Container, n.Rotated = rest[:len(rest)-stamp-1], t
			return n, true
		}
	}
	if n.Gz {
		return LogName{}, false // "<container>.log.gz" is nothing kubelogd writes
	}
	n.Container = rest
	return n, true
}

// ValidName reports why name is not a DNS-1123 label (or, with subdomain, a DNS-1123
// subdomain) or is unsafe as a path component. The API server admits only DNS labels for
// namespaces and containers and DNS subdomains for pods; anything else in a name kubelogd
// is asked to write under (a "/", "..", a NUL) is a bug or an attack, and is refused
// rather than cleaned, so that two names never map to one file and no name escapes the
// output directory.
func ValidName(name string, subdomain bool) error {
	switch {
	case name == "":
		return errors.New("empty")
	case name == "." || name == "..":
		return errors.New("a dot name")
	case strings.ContainsAny(name, "/\\\x00"):
		return errors.New("contains a path separator or NUL")
	}
	var msgs []string
	if subdomain {
		msgs = validation.IsDNS1123Subdomain(name)
	} else {
		msgs = validation.IsDNS1123Label(name)
	}
	if len(msgs) > 0 {
		return errors.New(strings.Join(msgs, "; "))
	}
	return nil
}

// MkdirAll creates dir and its missing parents with DirMode, chmod-ing each directory it
// creates because the umask may have narrowed or (if 0) not narrowed the mode. Existing
// directories keep their mode: an administrator may have chosen it.
//
// It tries Mkdir first: a new pod's directory, in a namespace directory that exists,
// then costs one Mkdir and its Chmod, with no lookups before.
func MkdirAll(dir string) error {
	_, err := MkdirAllCreated(dir)
	return err
}

// MkdirAllCreated is MkdirAll, and reports whether it created dir itself: if so, dir was
// empty when this call created it, whoever else creates files there meanwhile.
func MkdirAllCreated(dir string) (created bool, err error) {
	err = os.Mkdir(dir, DirMode)
	if errors.Is(err, fs.ErrNotExist) {
		if parent := filepath.Dir(dir); parent != dir {
			if err := MkdirAll(parent); err != nil {
				return false, err
			}
		}
		err = os.Mkdir(dir, DirMode)
	}
	switch {
	case err == nil:
		return true, os.Chmod(dir, DirMode)
	case errors.Is(err, fs.ErrExist):
		// There already, or created concurrently (another Open, the pod metadata writer).
		st, err := os.Stat(dir)
		if err != nil {
			return false, err
		}
		if !st.IsDir() {
			return false, fmt.Errorf("%s exists and is not a directory", dir)
		}
		return false, nil
	}
	return false, err
}
