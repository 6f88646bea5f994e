//go:build unix

package sink

import "syscall"

// defaultMaxOpenFiles is three quarters of the process's descriptor limit, or no bound
// (-1) when it has none or cannot be read.
func defaultMaxOpenFiles() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur > 1<<30 {
		return -1
	}
	return max(int(lim.Cur)/4*3, 16)
}
