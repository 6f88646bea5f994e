//go:build tools

// Package lint pins the linter make lint runs (staticcheck), in a module of its own so
// that its dependencies stay out of kubelogd's go.mod.
package lint

import _ "honnef.co/go/tools/cmd/staticcheck"
