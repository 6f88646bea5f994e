package sink

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubelogd/kubelogd/internal/layout"
)

// Format selects how records are laid out in the files; the formats are defined in
// internal/layout, which the reader (kubelogd tail) shares.
type Format = layout.Format

// The formats a Manager writes.
const (
	// FormatTimestamped writes "<kubelet timestamp> <line>" per line, the layout of
	// kubectl logs --timestamps. It is the default.
	FormatTimestamped = layout.FormatTimestamped
	// FormatRaw writes the line alone, as the application printed it.
	FormatRaw = layout.FormatRaw
	// FormatJSON writes one JSON object per line with the time, the container's
	// coordinates and the line (or its base64 when it is not valid UTF-8).
	FormatJSON = layout.FormatJSON
)

// ParseFormat turns a format name ("timestamped", "raw" or "json") into a Format.
func ParseFormat(s string) (Format, error) { return layout.ParseFormat(s) }

// Defaults applied by NewManager to zero Config fields.
const (
	// DefaultMaxSizeMB is the default Config.MaxSizeMB.
	DefaultMaxSizeMB = 100
	// DefaultFlushInterval is the default Config.FlushInterval.
	DefaultFlushInterval = time.Second
	// DefaultMaxLineBytes is the default Config.MaxLineBytes, lowered if it does not fit.
	DefaultMaxLineBytes = 1 << 20
	// DefaultCursorInterval is the default Config.CursorInterval.
	DefaultCursorInterval = 5 * time.Second
	// DefaultSyncInterval is the default Config.SyncInterval.
	DefaultSyncInterval = 10 * time.Second
	// DefaultIdleClose is the default Config.IdleClose.
	DefaultIdleClose = 5 * time.Minute
	// DefaultSweepInterval is the default Config.SweepInterval.
	DefaultSweepInterval = time.Minute
	// DefaultRetainDeleted is the default Config.RetainDeleted.
	DefaultRetainDeleted = 7 * 24 * time.Hour
)

// megabyte is lumberjack's unit for MaxSize.
const megabyte = 1 << 20

// Size bounds used to prove that one part of a line always fits in a file.
const (
	// maxRawTimeLen bounds Record.RawTime; a longer one is ignored and Time is formatted
	// instead, so that a broken timestamp cannot make a record overflow a file.
	maxRawTimeLen = layout.MaxTimeLen
	// textOverhead bounds what the text formats add to a part: the time, a space, the
	// marker and continuation prefixes and the newline.
	textOverhead = maxRawTimeLen + 1 + len(markerPrefix) + len(contPrefix) + 1
	// jsonFixedOverhead bounds the keys, punctuation, part number, the escaped time and the
	// validated names (label 63 + subdomain 253 + label 63); the node is added separately.
	jsonFixedOverhead = 256 + layout.JSONEscapeFactor*maxRawTimeLen + 63 + 253 + 63
	// podInfoReserve bounds the encoded node and labels of the json format (less for tiny
	// files: an eighth of the rotation size); labels that do not fit are left out
	// (File.SetPod), so a line never outgrows the bound.
	podInfoReserve = 16 << 10
)

// Config configures a Manager. The zero value of each field but Dir selects its default.
type Config struct {
	// Dir is the output root; it is created (0750) if missing.
	Dir string
	// Format is the layout of the files.
	Format Format
	// MaxSizeMB is the size in MiB a current file reaches at most before it is rotated.
	MaxSizeMB int
	// MaxBackups is how many rotated files are kept per container; 0 keeps all.
	MaxBackups int
	// MaxAgeDays removes rotated files older than this many days (by rotation time);
	// 0 keeps them forever.
	MaxAgeDays int
	// Compress gzips rotated files.
	Compress bool
	// FlushInterval bounds how long a written record may sit in a File's buffer; see
	// File.FlushDue.
	FlushInterval time.Duration
	// MaxLineBytes is the longest line written as one record; longer lines are split into
	// parts of at most this many bytes. It must leave room for the format's overhead
	// within MaxSizeMB; when left zero it is lowered to fit.
	MaxLineBytes int
	// CursorInterval is how often at most a File persists its cursor while writing. The
	// cursor is also persisted on Close and before every rotation.
	CursorInterval time.Duration
	// SyncInterval is how often at most a File fsyncs its data and then its cursor. Without
	// a sync, data survives a crash of the process but not a power loss.
	SyncInterval time.Duration
	// Node is the node name the json format writes for files whose pod's node was not
	// given with File.SetPod.
	Node string
	// JSONLabels adds the pod's labels (File.SetPod) to every line of the json format.
	JSONLabels bool

	// IdleClose is how long a File may go without writing to its file before Manager.Run
	// closes the file descriptor; the next write reopens it. A quiet container then holds
	// no descriptor, however long its stream stays open.
	IdleClose time.Duration
	// MaxOpenFiles bounds the log files held open at once. When the open ones near it,
	// Manager.Run closes the least recently written ones before IdleClose (their next
	// write reopens them), so that a process with more active containers than
	// descriptors goes on collecting rather than failing every open with EMFILE. 0 means
	// three quarters of the process's descriptor limit (RLIMIT_NOFILE, which the Go
	// runtime raises to its hard limit at start), leaving the rest for connections and
	// short-lived opens; negative, no bound.
	MaxOpenFiles int
	// SweepInterval is how often Manager.Run measures the output directory and enforces
	// MaxTotalSizeMB, MaxTotalAgeDays and RetainDeleted, and the per-container retention
	// (MaxBackups, MaxAgeDays, Compress) of containers that have no open File.
	SweepInterval time.Duration
	// MaxTotalSizeMB bounds the bytes under Dir, in MiB; 0 means no bound. When the sweep
	// finds more, it deletes rotated files, the oldest of all containers first, until the
	// total fits. Current files are never deleted for the budget, so the bound is soft
	// while only current files are left.
	MaxTotalSizeMB int
	// MaxTotalAgeDays makes the sweep delete rotated files of every container, open or
	// not, whose rotation time is older than this many days; 0 keeps them. Unlike
	// MaxAgeDays it does not wait for the container's next rotation.
	MaxTotalAgeDays int
	// RetainDeleted is how long the files of a deleted pod are kept: a pod directory none
	// of whose containers has an open File, and whose newest file was last modified
	// longer ago than this, is removed with everything in it.
	RetainDeleted time.Duration
	// Shards, when above 0, shares Dir among kubelogd replicas that divide the pods into
	// that many shards (each held through a Lease): no replica takes the directory lock,
	// and the shard count is recorded in Dir, so that a replica started with another
	// count, or without shards, refuses the directory. 0 is one kubelogd with the lock.
	Shards int
	// Owns tells whether this kubelogd holds the pod's shard now; the sweep, retention
	// and MaxTotalSizeMB act only on such pods' directories. nil owns every pod.
	Owns func(namespace, pod string) bool
	// Share is the part of MaxTotalSizeMB this kubelogd enforces over the directories
	// it owns (its shards out of all); nil is all of it.
	Share func() float64
	// Fence tells whether this kubelogd holds the pod's shard now, and in which epoch
	// (see fence.go); nil fences nothing.
	Fence func(namespace, pod string) (epoch int64, ok bool)

	// Registerer receives the sink's metrics; nil registers none.
	Registerer prometheus.Registerer

	// Logger receives warnings, e.g. about retention; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	// maxSizeBytes, when set by a test, replaces MaxSizeMB as the rotation size so tests
	// need not write megabytes. It must not exceed MaxSizeMB MiB, lumberjack's own limit.
	maxSizeBytes int64
	// maxTotalBytes, when set by a test, replaces MaxTotalSizeMB.
	maxTotalBytes int64
}

// settings is a Config with defaults applied and derived limits computed.
type settings struct {
	Config
	maxBytes   int64 // rotation size in bytes
	bufLimit   int   // a File flushes before appending to a buffer this full
	totalBytes int64 // MaxTotalSizeMB in bytes; 0 for no bound
	podReserve int   // bytes the json format keeps for the node and labels (see podInfoReserve)
}

// bufferLimit is how much a File buffers before it writes without waiting for Flush.
const bufferLimit = 256 << 10

// complete validates cfg and fills in defaults.
func (cfg Config) complete() (settings, error) {
	if cfg.Dir == "" {
		return settings{}, errors.New("no output directory configured: set Config.Dir")
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return settings{}, fmt.Errorf("resolving output directory %s: %w", cfg.Dir, err)
	}
	cfg.Dir = dir
	switch cfg.Format {
	case FormatTimestamped, FormatRaw, FormatJSON:
	default:
		return settings{}, fmt.Errorf("unknown log format %v: use timestamped, raw or json", cfg.Format)
	}
	for _, v := range []struct {
		name string
		val  int64
	}{
		{"max size", int64(cfg.MaxSizeMB)},
		{"max backups", int64(cfg.MaxBackups)},
		{"max age", int64(cfg.MaxAgeDays)},
		{"max line bytes", int64(cfg.MaxLineBytes)},
		{"flush interval", int64(cfg.FlushInterval)},
		{"cursor interval", int64(cfg.CursorInterval)},
		{"sync interval", int64(cfg.SyncInterval)},
		{"idle close", int64(cfg.IdleClose)},
		{"sweep interval", int64(cfg.SweepInterval)},
		{"max total size", int64(cfg.MaxTotalSizeMB)},
		{"max total age", int64(cfg.MaxTotalAgeDays)},
		{"retain deleted", int64(cfg.RetainDeleted)},
	} {
		if v.val < 0 {
			return settings{}, fmt.Errorf("%s must not be negative, got %d", v.name, v.val)
		}
	}
	if cfg.MaxSizeMB == 0 {
		cfg.MaxSizeMB = DefaultMaxSizeMB
	}
	if cfg.FlushInterval == 0 {
		cfg.FlushInterval = DefaultFlushInterval
	}
	if cfg.CursorInterval == 0 {
		cfg.CursorInterval = DefaultCursorInterval
	}
	if cfg.SyncInterval == 0 {
		cfg.SyncInterval = DefaultSyncInterval
	}
	if cfg.IdleClose == 0 {
		cfg.IdleClose = DefaultIdleClose
	}
	if cfg.SweepInterval == 0 {
		cfg.SweepInterval = DefaultSweepInterval
	}
	if cfg.MaxOpenFiles == 0 {
		cfg.MaxOpenFiles = defaultMaxOpenFiles()
	}
	if cfg.RetainDeleted == 0 {
		cfg.RetainDeleted = DefaultRetainDeleted
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := settings{Config: cfg, maxBytes: int64(cfg.MaxSizeMB) * megabyte, bufLimit: bufferLimit}
	if cfg.maxSizeBytes > 0 {
		if cfg.maxSizeBytes > s.maxBytes {
			return settings{}, fmt.Errorf("test max size %d exceeds %d MiB", cfg.maxSizeBytes, cfg.MaxSizeMB)
		}
		s.maxBytes = cfg.maxSizeBytes
	}
	s.totalBytes = int64(cfg.MaxTotalSizeMB) * megabyte
	if cfg.maxTotalBytes > 0 {
		s.totalBytes = cfg.maxTotalBytes
	}

	// A part of a line plus the format's overhead must stay below the rotation size:
	// lumberjack rejects a write larger than MaxSize, and a record must never be split
	// across two files.
	s.podReserve = int(min(podInfoReserve, s.maxBytes/8))
	factor, fixed := s.partBound()
	largest := (s.maxBytes - 1 - fixed) / factor
	if largest < 1 {
		return settings{}, fmt.Errorf("max size of %d bytes leaves no room for a line in the %v format: raise max size", s.maxBytes, cfg.Format)
	}
	switch {
	case cfg.MaxLineBytes == 0:
		s.MaxLineBytes = int(min(DefaultMaxLineBytes, largest))
	case int64(cfg.MaxLineBytes) > largest:
		return settings{}, fmt.Errorf("max line bytes %d is too large for files of %d bytes in the %v format (at most %d fit): lower max line bytes or raise max size",
			cfg.MaxLineBytes, s.maxBytes, cfg.Format, largest)
	}
	s.bufLimit = int(min(int64(s.bufLimit), s.maxBytes/2))
	return s, nil
}

// partBound returns factor and fixed such that one part of n line bytes encodes to at
// most factor*n+fixed bytes.
func (s *settings) partBound() (factor, fixed int64) {
	if s.Format == FormatJSON {
		return layout.JSONEscapeFactor, int64(jsonFixedOverhead + s.podReserve)
	}
	return 1, int64(textOverhead)
}
