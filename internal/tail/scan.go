package tail

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/kubelogd/kubelogd/internal/layout"
)

// logFile is one file of a container's log.
type logFile struct {
	path string
	// gz is set for a compressed backup.
	gz bool
	// current is set for <container>.log, the file the daemon writes; it comes last.
	current bool
	// end is when the file stopped growing: the rotation time of a backup, from its name,
	// or zero for the current file (still growing; see fileEnd).
	end time.Time
	// alt is the other form of a backup present in both forms: the daemon compresses into
	// a temporary file, renames it to .gz when complete and only then removes the .log.
	// The .log is read; alt is the fallback if it vanished in between.
	alt string
}

// container is one container's log: its files in order, oldest backup first, current
// file last (when present).
type container struct {
	Namespace, Pod, Name string
	files                []logFile
	// meta is the pod's metadata, nil if the pod has none (or it is unreadable).
	meta *layout.PodMeta
}

// key returns "namespace/pod/container", the prefix printed before each line.
func (c *container) key() string { return c.Namespace + "/" + c.Pod + "/" + c.Name }

// parseLogName recognises the log file names of a pod directory
// (layout.ParseLogName) and returns the container they belong to. Everything starting
// with a dot (cursors, metadata, temporary files) is not a log.
func parseLogName(name string) (cont string, f logFile, ok bool) {
	n, ok := layout.ParseLogName(name)
	if !ok {
		return "", f, false
	}
	f.gz, f.current, f.end = n.Gz, n.Current(), n.Rotated
	return n.Container, f, true
}

// scanPodDir lists the containers of one pod directory whose names keep matches,
// each with its files in reading order.
func scanPodDir(dir, ns, pod string, keep func(string) bool) ([]*container, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	byName := map[string]*container{}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		name, f, ok := parseLogName(e.Name())
		if !ok || !keep(name) {
			continue
		}
		c := byName[name]
		if c == nil {
			c = &container{Namespace: ns, Pod: pod, Name: name}
			byName[name] = c
		}
		f.path = filepath.Join(dir, e.Name())
		c.files = append(c.files, f)
	}
	out := make([]*container, 0, len(byName))
	for _, c := range byName {
		c.files = orderFiles(c.files)
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// orderFiles sorts backups by rotation time with the current file last, and folds a
// backup present both plain and compressed into one entry.
func orderFiles(files []logFile) []logFile {
	sort.Slice(files, func(i, j int) bool {
		a, b := files[i], files[j]
		if a.current != b.current {
			return b.current
		}
		if !a.end.Equal(b.end) {
			return a.end.Before(b.end)
		}
		return !a.gz && b.gz
	})
	out := files[:0]
	for _, f := range files {
		if n := len(out); n > 0 && !f.current && !out[n-1].current && f.end.Equal(out[n-1].end) {
			out[n-1].alt = f.path // the .gz twin of the .log before it
			continue
		}
		out = append(out, f)
	}
	return out
}

// scanTree finds the selected containers under root, sorted by namespace, pod and
// container name.
func scanTree(root string, sel *selector) ([]*container, error) {
	nsEntries, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("reading output directory %s: %w", root, err)
	}
	var out []*container
	for _, nse := range nsEntries {
		ns := nse.Name()
		if !nse.IsDir() || ns[0] == '.' || !sel.namespace(ns) {
			continue
		}
		podEntries, err := os.ReadDir(filepath.Join(root, ns))
		if err != nil {
			sel.warn("cannot list namespace directory", "dir", filepath.Join(root, ns), "err", err)
			continue
		}
		for _, pe := range podEntries {
			pod := pe.Name()
			if !pe.IsDir() || pod[0] == '.' || !sel.podName(pod) {
				continue
			}
			dir := layout.PodDir(root, ns, pod)
			meta, ok := sel.podMeta(dir)
			if !ok {
				continue
			}
			conts, err := scanPodDir(dir, ns, pod, sel.container)
			if err != nil {
				sel.warn("cannot list pod directory", "dir", dir, "err", err)
				continue
			}
			for _, c := range conts {
				c.meta = meta
			}
			out = append(out, conts...)
		}
	}
	// ReadDir sorts by name already; the explicit order is the merge's tie-break.
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		if a.Pod != b.Pod {
			return a.Pod < b.Pod
		}
		return a.Name < b.Name
	})
	return out, nil
}
