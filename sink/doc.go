// Package sink writes container log lines to rotated files under one output directory,
// one file per container, and persists with each file the cursor the collector resumes from.
//
// Layout: <Dir>/<namespace>/<pod>/<container>.log is the current file, rotated backups are
// <container>-<UTC time>.log (or .log.gz when compressed) beside it, and
// .<container>.cursor records how far the current file is covered by the cursor
// (see Cursor), in two checksummed copies of which a save overwrites the older in place
// (see cursorfile.go). Each copy is JSON: the Cursor's fields, and where the data it
// covers ends (offset, inode, and tailLen/tailCRC, a CRC of its last bytes by which
// recovery recognises that data in a restored or copied directory: see identity.go).
// A lock file, <Dir>/.kubelogd.lock, keeps a second kubelogd out. Files removed
// outside kubelogd while it runs are created again (see outside.go).
// The names, the line layout of each Format and the atomic replacement of small files
// are defined in internal/layout, which kubelogd tail reads the files with.
//
// A File is owned by one goroutine (the collector's stream for that container); the
// Manager that opens Files is safe for concurrent use. Manager.Run is the sink's one
// background goroutine: it closes the descriptors of idle Files, and sweeps the
// directory for the total size and age limits, for deleted pods, and for the retention
// of containers that have no open File.
package sink
