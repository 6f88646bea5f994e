//go:build unix

package plugin

import (
	"os"
	"syscall"
)

// resizeSignals announce a change of the terminal's size.
var resizeSignals = []os.Signal{syscall.SIGWINCH}
