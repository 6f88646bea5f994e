// Package layout is the one definition of kubelogd's on-disk format, shared by the writer
// (sink, and the daemon's pod metadata) and the reader (kubelogd tail): where the files
// of a container live and what they are called, lumberjack's names for rotated backups,
// the line layout of each --format, the pod metadata file, and how a small file is
// replaced atomically.
//
// The tree under the output directory:
//
//	<root>/.kubelogd.lock                             held while a kubelogd writes here
//	<root>/<namespace>/<pod>/<container>.log          current file
//	<root>/<namespace>/<pod>/<container>-<time>.log   rotated backup, <time> in UTC (BackupTimeLayout)
//	<root>/<namespace>/<pod>/<container>-<time>.log.gz   its compressed form
//	<root>/<namespace>/<pod>/.<container>.cursor      resume position (the sink's business)
//	<root>/<namespace>/<pod>/.pod.json                PodMeta
//
// Every name that starts with a dot (cursors, metadata, the lock, temporary files
// "<name>.tmp-<random>") is not a log, so a reader that lists log files skips them all.
//
// A change here changes the files kubelogd writes and reads: the writer and the reader
// must change together, and files written by an earlier version must still be read.
package layout
