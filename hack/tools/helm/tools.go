//go:build tools

// Package tools records the Helm binary this module builds: helm, which the chart tests
// (test/e2e/chart_test.go) use to lint charts/kubelogd and render it for the API server.
package tools

import (
	_ "helm.sh/helm/v4/cmd/helm"
)
