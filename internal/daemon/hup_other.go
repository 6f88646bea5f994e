//go:build !unix

package daemon

import "os"

// notifyHUP: there is no SIGHUP here; the file is still watched.
func notifyHUP() (<-chan os.Signal, func()) { return nil, func() {} }
