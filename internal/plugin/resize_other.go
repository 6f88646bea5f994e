//go:build !unix

package plugin

import "os"

// resizeSignals is empty where no signal announces a resize: the size is sent once.
var resizeSignals []os.Signal
