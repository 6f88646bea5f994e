//go:build tools

// Package tools records the Prometheus binary this module builds: promtool, which the
// monitoring tests use to check and unit-test the alerting rules and to parse the
// dashboard's PromQL.
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/promtool"
)
