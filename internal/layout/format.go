package layout

import "fmt"

// Format selects how records are laid out in a container's files (--format).
type Format int

const (
	// FormatTimestamped writes "<kubelet timestamp> <line>" per line, the layout of
	// kubectl logs --timestamps. It is the default.
	FormatTimestamped Format = iota
	// FormatRaw writes the line alone, as the application printed it: there is no time
	// to merge or filter by.
	FormatRaw
	// FormatJSON writes one JSON object per line with the time, the container's
	// coordinates and the line (or its base64 when it is not valid UTF-8, or the event of
	// a marker); see the Key constants.
	FormatJSON
	// FormatAuto is no layout of a file: it asks a reader to detect the format of each
	// file from its first line (kubelogd tail --format auto). Nothing writes it.
	FormatAuto
)

// String returns the name of f, as --format takes it.
func (f Format) String() string {
	switch f {
	case FormatTimestamped:
		return "timestamped"
	case FormatRaw:
		return "raw"
	case FormatJSON:
		return "json"
	case FormatAuto:
		return "auto"
	}
	return fmt.Sprintf("Format(%d)", int(f))
}

// ParseFormat turns the name of a format files are written in ("timestamped", "raw" or
// "json") into a Format. "auto" is a reader's choice, not a written format, and is left
// to the reader to accept.
func ParseFormat(s string) (Format, error) {
	switch s {
	case "timestamped":
		return FormatTimestamped, nil
	case "raw":
		return FormatRaw, nil
	case "json":
		return FormatJSON, nil
	}
	return 0, fmt.Errorf("unknown log format %q: use timestamped, raw or json", s)
}

// TimeLayout is the kubelet's timestamp layout (RFC 3339 with a fixed 9-digit fraction).
// The text formats write the kubelet's timestamp as received, which in practice has this
// layout in UTC; a record without one is written in it.
const TimeLayout = "2006-01-02T15:04:05.000000000Z07:00"

// MaxTimeLen bounds the timestamp of a written line: a longer one received from the
// kubelet is not written as it is but replaced by the time in TimeLayout, so a reader may
// take a longer token for no timestamp at all.
const MaxTimeLen = 64

// Prefixes the text formats put before a line's own bytes (after the timestamp). They
// are not escapes: an application line may itself start with these words. The json
// format says the same with keys instead (KeyEvent, KeyPart).
const (
	// MarkerPrefix starts a line kubelogd wrote itself (restart, gap, pod recreated).
	MarkerPrefix = "kubelogd: "
	// ContPrefix starts every part but the first of a line split at --max-line-bytes.
	ContPrefix = "kubelogd-continued: "
)

// Keys of the objects of the json format, in the order they are written. A line has
// exactly one of KeyLine, KeyLineB64 and KeyEvent.
const (
	KeyTime      = "time"      // the kubelet's timestamp, as in the text formats
	KeyNamespace = "namespace" // the container's coordinates
	KeyPod       = "pod"
	KeyContainer = "container"
	KeyNode      = "node"     // the node the pod ran on
	KeyLabels    = "labels"   // the pod's labels, an object (--json-labels)
	KeyLine      = "line"     // the line, when it is valid UTF-8
	KeyLineB64   = "line_b64" // the line in base64, when it is not
	KeyEvent     = "event"    // a marker's text, without MarkerPrefix
	KeyPart      = "part"     // the part number (2, 3, …) of a split line's later parts
)
