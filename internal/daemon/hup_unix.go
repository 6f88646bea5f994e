//go:build unix

package daemon

import (
	"os"
	"os/signal"
	"syscall"
)

// notifyHUP delivers SIGHUP, which reloads the configuration file, as Fluent Bit does.
func notifyHUP() (<-chan os.Signal, func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	return ch, func() { signal.Stop(ch) }
}
