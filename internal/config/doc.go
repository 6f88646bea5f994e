// Package config reads kubelogd's configuration file — YAML whose keys are the daemon's
// flag names — onto a flag set, and watches it for changes (fsnotify on its directory,
// and SIGHUP) so that the daemon can apply them while it runs.
package config
