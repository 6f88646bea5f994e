//go:build tools

// Package tools pins stern, the peer make bench runs beside kubelogd, in a module of its
// own so that its dependencies stay out of kubelogd's go.mod. v1.34.0 is the first release
// with --qps (and --burst): without it stern's client-go limits of QPS 5 and burst 10 would
// make its coverage of thousands of pods a measure of its rate limiter.
package tools

import _ "github.com/stern/stern"
