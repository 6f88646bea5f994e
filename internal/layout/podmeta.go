package layout

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// MetaFileName is the name of the pod metadata file in a pod's directory:
// <root>/<namespace>/<pod>/.pod.json. Like the cursor files it starts with a dot, so
// nothing that lists log files mistakes it for one.
const MetaFileName = ".pod.json"

// MetaTmpPrefix starts the names of the temporary files of WriteMeta, which a crash may
// leave: ".pod.json.tmp-<random>".
const MetaTmpPrefix = MetaFileName + TmpInfix

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

// MetaPath returns where the metadata of pod in namespace lives under the output
// directory root.
func MetaPath(root, namespace, pod string) string {
	return filepath.Join(PodDir(root, namespace, pod), MetaFileName)
}

// WriteMeta saves m as <root>/<m.Namespace>/<m.Pod>/.pod.json, where root is the output
// directory (the daemon's --output-dir), creating the pod's directory (DirMode) if
// needed. The file (FileMode) is replaced atomically (WriteFileAtomic), so a reader — or
// a crashed process — sees the old or the new metadata, never a mix. The names are
// validated as the API server does (namespace: DNS label; pod: DNS subdomain), so m can
// never write outside root.
//
// The file is not synced: it is metadata, not logs, and the daemon writes it again when
// it finds it unreadable; a sync per pod only slowed down every new pod. After a power
// loss a file not yet on disk may be empty or missing; tail then warns about it and,
// with --selector, cannot select the pod until the daemon has rewritten it.
//
// A crash between the temporary file's creation and the rename leaves the temporary
// file (MetaTmpPrefix); readers ignore it like every dot file, and the daemon's sweep
// removes it (sink.Manager.Run).
func WriteMeta(root string, m PodMeta) error {
	for _, c := range []struct {
		what, name string
		subdomain  bool
	}{
		{"namespace", m.Namespace, false},
		{"pod", m.Pod, true},
	} {
		if err := ValidName(c.name, c.subdomain); err != nil {
			return fmt.Errorf("refusing to save pod metadata: invalid %s name %q: %w", c.what, c.name, err)
		}
	}
	data, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encoding metadata of pod %s/%s: %w", m.Namespace, m.Pod, err)
	}
	data = append(data, '\n')
	return WriteFileAtomic(MetaPath(root, m.Namespace, m.Pod), data, WriteOptions{MakeDir: true})
}

// ReadMeta loads the metadata of pod in namespace from the output directory root. A
// missing file is reported with an error satisfying errors.Is(err, fs.ErrNotExist).
func ReadMeta(root, namespace, pod string) (PodMeta, error) {
	return ReadMetaFile(MetaPath(root, namespace, pod))
}

// ReadMetaFile loads the pod metadata file at path; see ReadMeta.
func ReadMetaFile(path string) (PodMeta, error) {
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
