//go:build !unix

package sink

// defaultMaxOpenFiles is no bound where the descriptor limit cannot be read.
func defaultMaxOpenFiles() int { return -1 }
