package tail

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/kubelogd/kubelogd/sink"
)

// MetaFileName is the name of the pod metadata file in a pod's directory:
// <output-dir>/<namespace>/<pod>/.pod.json. Like the cursor files it starts with a dot,
// so nothing that lists log files mistakes it for one.
const MetaFileName = ".pod.json"

// PodMeta is what the daemon records about a pod beside its logs, so that `kubelogd tail`
// can select pods by label and show where they ran long after the pod is gone. It is
// stored as one JSON object:
//
//	{"uid":"0b4a…","namespace":"shop","pod":"web-0","labels":{"app":"web"},
//	 "ownerKind":"StatefulSet","ownerName":"web","node":"node-1",
//	 "firstSeen":"2026-11-27T03:04:05Z","lastSeen":"2026-11-27T04:00:00Z"}
//
// A pod recreated under the same name (a StatefulSet) shares the directory and the log
// files; the file then describes the latest incarnation (its UID, labels and node), and
// FirstSeen stays the first time the name was seen. Readers ignore unknown fields, so
// fields can be added without breaking older tails.
type PodMeta struct {
	// UID is the pod's metadata.uid.
	UID string `json:"uid"`
	// Namespace and Pod are the pod's namespace and name; they match the directory.
	Namespace string `json:"namespace"`
	Pod       string `json:"pod"`
	// Labels are the pod's labels, which --selector matches.
	Labels map[string]string `json:"labels,omitempty"`
	// OwnerKind and OwnerName name the controller owner reference, if any
	// (e.g. "ReplicaSet", "web-7d9f8").
	OwnerKind string `json:"ownerKind,omitempty"`
	OwnerName string `json:"ownerName,omitempty"`
	// Node is the node the pod was bound to.
	Node string `json:"node,omitempty"`
	// FirstSeen is when the daemon first saw a pod of this name. LastSeen is when it
	// last wrote the file: when it first saw this incarnation, when labels, owner or
	// node changed, and when it saw the pod deleted.
	FirstSeen time.Time `json:"firstSeen"`
	LastSeen  time.Time `json:"lastSeen"`
}

// Mode of the file WriteMeta creates, the same as the daemon's log files (its directories
// are created by sink.MkdirAll).
const metaFileMode = 0o640

// MetaPath returns where the metadata of pod in namespace lives under the output
// directory dir.
func MetaPath(dir, namespace, pod string) string {
	return filepath.Join(dir, namespace, pod, MetaFileName)
}

// WriteMeta saves m as <dir>/<m.Namespace>/<m.Pod>/.pod.json, where dir is the output
// directory (the daemon's --output-dir), creating the pod's directory (0750) if needed.
// The file (0640) is written to a temporary file in the same directory and renamed over
// the old one, so a reader — or a crashed process — sees the old or the new metadata,
// never a mix. The names are validated as the API server does (namespace: DNS label;
// pod: DNS subdomain), so m can never write outside dir.
//
// The file is not synced: it is metadata, not logs, and the daemon writes it again when
// it finds it unreadable; a sync per pod only slowed down every new pod. After a power
// loss a file not yet on disk may be empty or missing; tail then warns about it and,
// with --selector, cannot select the pod until the daemon has rewritten it.
//
// A crash between the temporary file's creation and the rename leaves the temporary
// file, ".pod.json.tmp-<random>"; readers ignore it like every dot file, and the
// daemon's sweep removes it (sink.Manager.Run).
func WriteMeta(dir string, m PodMeta) (err error) {
	if err := validMetaNames(m.Namespace, m.Pod); err != nil {
		return err
	}
	data, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encoding metadata of pod %s/%s: %w", m.Namespace, m.Pod, err)
	}
	data = append(data, '\n')
	podDir := filepath.Join(dir, m.Namespace, m.Pod)
	path := filepath.Join(podDir, MetaFileName)
	// The temporary name starts with ".pod.json.tmp-", the daemon's convention for
	// temporary files, and like every dot file it is ignored by readers. The pod's
	// directory usually exists (the daemon's log files are in it): it is created only
	// when the temporary file cannot be.
	tmp, err := os.CreateTemp(podDir, MetaFileName+".tmp-*")
	if isNotExist(err) {
		if err := sink.MkdirAll(podDir); err != nil {
			return fmt.Errorf("saving metadata of pod %s/%s: %w", m.Namespace, m.Pod, err)
		}
		tmp, err = os.CreateTemp(podDir, MetaFileName+".tmp-*")
	}
	if err != nil {
		return fmt.Errorf("saving %s: %w; check free space and permissions in %s", path, err, podDir)
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	// Explicit, whatever the umask: CreateTemp makes 0600.
	if err := tmp.Chmod(metaFileMode); err != nil {
		return fmt.Errorf("saving %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("saving %s: %w; check free space in %s", path, err, podDir)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("saving %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("saving %s: %w", path, err)
	}
	return nil
}

// ReadMeta loads the metadata of pod in namespace from the output directory dir. A
// missing file is reported with an error satisfying errors.Is(err, fs.ErrNotExist).
func ReadMeta(dir, namespace, pod string) (PodMeta, error) {
	return readMetaFile(MetaPath(dir, namespace, pod))
}

func readMetaFile(path string) (PodMeta, error) {
	var m PodMeta
	data, err := os.ReadFile(path)
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return m, fmt.Errorf("reading pod metadata %s: %w", path, err)
	}
	return m, nil
}

// validMetaNames refuses names the API server would not admit, and with them anything
// that could escape the output directory ("..", "/", NUL).
func validMetaNames(namespace, pod string) error {
	for _, c := range []struct {
		what, name string
		msgs       []string
	}{
		{"namespace", namespace, validation.IsDNS1123Label(namespace)},
		{"pod", pod, validation.IsDNS1123Subdomain(pod)},
	} {
		if c.name == "" {
			return fmt.Errorf("refusing to save pod metadata: empty %s name", c.what)
		}
		if len(c.msgs) > 0 || strings.ContainsAny(c.name, `/\`) || c.name == "." || c.name == ".." {
			return fmt.Errorf("refusing to save pod metadata: invalid %s name %q: %s", c.what, c.name, strings.Join(c.msgs, "; "))
		}
	}
	return nil
}

// isNotExist reports a missing file or directory.
func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
