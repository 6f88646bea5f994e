package sink

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/kubelogd/kubelogd/internal/layout"
)

// Key names the container a File belongs to.
type Key struct {
	Namespace, Pod, Container string
}

// String returns "namespace/pod/container".
func (k Key) String() string {
	return k.Namespace + "/" + k.Pod + "/" + k.Container
}

// The names and modes of the files the sink writes, under the short names it uses; they
// are defined in internal/layout, which the reader (kubelogd tail) shares.
const (
	dirMode          = layout.DirMode
	fileMode         = layout.FileMode
	logExt           = layout.LogExt
	gzExt            = layout.GzExt
	cursorSuffix     = layout.CursorSuffix
	tmpInfix         = layout.TmpInfix
	lockFileName     = layout.LockFileName
	shardsFileName   = layout.ShardsFileName
	backupTimeLayout = layout.BackupTimeLayout
)

// probeFilePatt names the temporary file NewManager creates to prove the output
// directory writable.
const probeFilePatt = ".kubelogd-probe-*"

// staleTmpAge is how old a temporary file of another writer than the sink (those of
// .pod.json, layout.MetaTmpPrefix, which the daemon writes beside the containers' files)
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
		if err := layout.ValidName(c.name, c.subdomain); err != nil {
			return paths{}, fmt.Errorf("refusing to write logs of %s: invalid %s name %q: %s", key, c.what, c.name, err)
		}
	}
	dir := layout.PodDir(root, key.Namespace, key.Pod)
	p := paths{
		dir:     dir,
		current: filepath.Join(dir, layout.LogFileName(key.Container)),
		cursor:  filepath.Join(dir, layout.CursorFileName(key.Container)),
		name:    key.Container,
	}
	// Belt and braces: validation already rules out separators and dot names, but the
	// result must provably stay below root whatever layout.ValidName lets through.
	rel, err := filepath.Rel(root, p.current)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) || filepath.IsAbs(rel) {
		return paths{}, fmt.Errorf("refusing to write logs of %s: path %s escapes the output directory %s", key, p.current, root)
	}
	return p, nil
}
