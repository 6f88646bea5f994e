package sink

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Key names the container a File belongs to.
type Key struct {
	Namespace, Pod, Container string
}

// String returns "namespace/pod/container".
func (k Key) String() string {
	return k.Namespace + "/" + k.Pod + "/" + k.Container
}

// File and directory modes. The umask is not trusted with them: every file and directory
// kubelogd creates is chmod-ed explicitly.
const (
	dirMode  = 0o750
	fileMode = 0o640
)

// Names of the files beside a container's log.
const (
	logExt        = ".log"
	gzExt         = ".gz"
	cursorSuffix  = ".cursor"
	tmpInfix      = ".tmp-" // temporary files are "<final name>.tmp-<random>"
	lockFileName  = ".kubelogd.lock"
	probeFilePatt = ".kubelogd-probe-*"
	// podMetaTmpPrefix starts the temporary files of a pod's metadata, .pod.json, which
	// the daemon writes beside the containers' files (internal/tail.WriteMeta). The sink
	// does not write them, but its sweep removes those a crash left (removeStaleTemps).
	podMetaTmpPrefix = ".pod.json" + tmpInfix
)

// staleTmpAge is how old a temporary file of another writer than the sink (.pod.json's)
// must be for the sweep to take it for a crash's leftover: it lives for microseconds
// while it is being written. Removing one still in use would only fail that save.
const staleTmpAge = 10 * time.Second

// paths are the locations of one container's files.
type paths struct {
	dir     string // <Dir>/<ns>/<pod>
	current string // <dir>/<container>.log
	cursor  string // <dir>/.<container>.cursor
	name    string // container name, the prefix of every backup
}

// pathsFor validates key's names and derives its file locations under root.
//
// The names come from the API server, which only admits DNS labels for namespaces and
// containers and DNS subdomains for pods; anything else here (a "/", "..", a NUL) is a
// bug or an attack, and is refused rather than cleaned, so that two keys never map to one file.
func pathsFor(root string, key Key) (paths, error) {
	for _, c := range []struct {
		what, name string
		subdomain  bool
	}{
		{"namespace", key.Namespace, false},
		{"pod", key.Pod, true},
		{"container", key.Container, false},
	} {
		if err := validName(c.name, c.subdomain); err != nil {
			return paths{}, fmt.Errorf("refusing to write logs of %s: invalid %s name %q: %s", key, c.what, c.name, err)
		}
	}
	dir := filepath.Join(root, key.Namespace, key.Pod)
	p := paths{
		dir:     dir,
		current: filepath.Join(dir, key.Container+logExt),
		cursor:  filepath.Join(dir, "."+key.Container+cursorSuffix),
		name:    key.Container,
	}
	// Belt and braces: validation already rules out separators and dot names, but the
	// result must provably stay below root whatever validName lets through.
	rel, err := filepath.Rel(root, p.current)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) || filepath.IsAbs(rel) {
		return paths{}, fmt.Errorf("refusing to write logs of %s: path %s escapes the output directory %s", key, p.current, root)
	}
	return p, nil
}

// validName reports why name is not a DNS-1123 label (or subdomain) or is unsafe as a
// path component.
func validName(name string, subdomain bool) error {
	switch {
	case name == "":
		return fmt.Errorf("empty")
	case name == "." || name == "..":
		return fmt.Errorf("a dot name")
	case strings.ContainsAny(name, "/\\\x00"):
		return fmt.Errorf("contains a path separator or NUL")
	}
	var msgs []string
	if subdomain {
		msgs = validation.IsDNS1123Subdomain(name)
	} else {
		msgs = validation.IsDNS1123Label(name)
	}
	if len(msgs) > 0 {
		return fmt.Errorf("%s", strings.Join(msgs, "; "))
	}
	return nil
}
