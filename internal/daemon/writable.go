package daemon

import (
	"fmt"
	"os"
)

// checkWritable proves that dir accepts a new file.
func checkWritable(dir string) error {
	f, err := os.CreateTemp(dir, ".kubelogd-probe-*")
	if err != nil {
		return fmt.Errorf("output directory %s is not writable: %w", dir, err)
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}
