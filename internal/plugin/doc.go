// Package plugin is `kubectl kubelogd`: it finds a running kubelogd pod and runs
// `kubelogd tail` in it through the API server's pods/exec, streaming the output back, so
// that anyone allowed to exec into kubelogd's pods reads the collected logs without access
// to the volume.
package plugin
