package main

import (
	"fmt"
	"io"
)

// runTail runs `kubelogd tail`: it reads the collected files and needs no cluster access.
func runTail(args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "kubelogd tail: not implemented yet")
	return 2
}
