// Package tail reads what kubelogd collected — current files and rotated, possibly
// gzipped backups — and prints the lines of the selected containers merged in timestamp
// order, optionally following the tree like tail -F; it needs no cluster access, so it
// works for pods that are long gone.
//
// The pieces, in the order a line meets them: scan.go finds the containers and their
// files, select.go decides which ones to read, line.go splits a file line into
// timestamp and message, match.go applies --grep and --grep-v, read.go, stream.go and
// last.go turn each container's files into batches of lines (forwards in a goroutine per
// container, or backwards for --tail), merge.go orders the batches of all containers by
// time, print.go lays lines out, follow.go keeps reading after the history is printed,
// and run.go and cli.go wire it all to the command line. What the files are called and
// how their lines and the pod metadata (for --selector) are laid out is defined once,
// for the daemon and for tail, in internal/layout.
package tail
