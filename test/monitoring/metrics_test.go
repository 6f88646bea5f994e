package monitoring

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// goldenTypes reads the types of kubelogd's metrics from the e2e golden list, which the
// e2e tests compare with a real /metrics and the README documents.
func goldenTypes(t *testing.T) map[string]string {
	t.Helper()
	types := map[string]string{}
	for _, line := range strings.Split(string(readFile(t, "test/e2e/testdata/metrics.golden")), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 {
			types[f[0]] = f[1]
		}
	}
	if len(types) == 0 {
		t.Fatal("test/e2e/testdata/metrics.golden lists no metric")
	}
	return types
}

// standardTypes are the metrics the rules and the dashboard may select besides
// kubelogd's own: the scrape's up, the Go and process collectors on kubelogd's registry
// (README, "Metrics and health"), and the kubelet's volume statistics.
var standardTypes = map[string]string{
	"up":                                   "gauge",
	"process_start_time_seconds":           "gauge",
	"process_cpu_seconds_total":            "counter",
	"process_resident_memory_bytes":        "gauge",
	"process_open_fds":                     "gauge",
	"go_goroutines":                        "gauge",
	"go_memstats_heap_inuse_bytes":         "gauge",
	"kubelet_volume_stats_available_bytes": "gauge",
	"kubelet_volume_stats_capacity_bytes":  "gauge",
}

// seriesType is the type of the series name selects: counter, gauge, or histogram for a
// histogram's _bucket, _sum and _count. ok is false if no known metric has that series.
func seriesType(golden map[string]string, name string) (typ string, ok bool) {
	if typ, ok := golden[name]; ok && typ != "histogram" {
		return typ, true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, found := strings.CutSuffix(name, suffix); found && golden[base] == "histogram" {
			return "histogram", true
		}
	}
	typ, ok = standardTypes[name]
	return typ, ok
}

// labelValuesDoc is how kubelogd's sources introduce the values of a label: a const
// block whose comment says "...; the values of kubelogd_gaps_total's reason label."
var labelValuesDoc = regexp.MustCompile(`the values of (kubelogd_\w+?)'s? (\w+) label`)

// labelValues reads the known values of labels from kubelogd's sources:
// metric → label → values.
func labelValues(t *testing.T) map[string]map[string]map[string]bool {
	t.Helper()
	root := repoRoot(t)
	known := map[string]map[string]map[string]bool{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", "bin", "hack", "test", "testdata", "demo-logs":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ParseComments)
		if err != nil {
			return err
		}
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST || gd.Doc == nil {
				continue
			}
			m := labelValuesDoc.FindStringSubmatch(strings.Join(strings.Fields(gd.Doc.Text()), " "))
			if m == nil {
				continue
			}
			if known[m[1]] == nil {
				known[m[1]] = map[string]map[string]bool{}
			}
			if known[m[1]][m[2]] == nil {
				known[m[1]][m[2]] = map[string]bool{}
			}
			for _, spec := range gd.Specs {
				for _, v := range spec.(*ast.ValueSpec).Values {
					if lit, ok := v.(*ast.BasicLit); ok && lit.Kind == token.STRING {
						s, _ := strconv.Unquote(lit.Value)
						known[m[1]][m[2]][s] = true
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The label values the rules select; if their comments change, this test must follow.
	for _, ml := range [][2]string{
		{"kubelogd_reconnects_total", "reason"}, {"kubelogd_gaps_total", "reason"},
		{"kubelogd_targets", "state"}, {"kubelogd_write_errors_total", "reason"},
		{"kubelogd_backups_deleted_total", "reason"},
	} {
		if len(known[ml[0]][ml[1]]) == 0 {
			t.Errorf("found no values of %s's %s label in kubelogd's sources", ml[0], ml[1])
		}
	}
	return known
}

// expression is a PromQL expression of the rules or the dashboard, and where it is.
type expression struct {
	where, expr string
	dashboard   bool
}

func ruleExpressions(t *testing.T) []expression {
	var exprs []expression
	for _, r := range loadRules(t) {
		exprs = append(exprs, expression{where: "rules.yaml " + r.Alert + r.Record, expr: r.Expr})
	}
	return exprs
}

// TestSelectedMetrics: every metric an alert or a dashboard panel selects is exported by
// kubelogd (the e2e golden list) or standard; counters are only read through rate,
// irate or increase and gauges never; label values are ones kubelogd sets; and every
// selector of kubelogd's series names job="kubelogd" (and on the dashboard its
// installation's namespace), so that nothing else's series are mixed in.
func TestSelectedMetrics(t *testing.T) {
	golden := goldenTypes(t)
	known := labelValues(t)
	exprs := append(ruleExpressions(t), dashboardExpressions(t)...)
	selected := map[string]bool{}
	for _, e := range exprs {
		sels, err := selectors(e.expr)
		if err != nil {
			t.Errorf("%s: %v", e.where, err)
			continue
		}
		if len(sels) == 0 {
			t.Errorf("%s selects no series: %s", e.where, e.expr)
		}
		for _, s := range sels {
			if s.metric == "" {
				t.Errorf("%s: a selector without a metric name: %s", e.where, e.expr)
				continue
			}
			selected[s.metric] = true
			typ, ok := seriesType(golden, s.metric)
			if !ok {
				t.Errorf("%s selects %s, which kubelogd does not export (test/e2e/testdata/metrics.golden) and is not a standard metric", e.where, s.metric)
				continue
			}
			switch rated := s.fn == "rate" || s.fn == "irate" || s.fn == "increase"; {
			case typ == "gauge" && rated:
				t.Errorf("%s: %s(%s): %s is a gauge", e.where, s.fn, s.metric, s.metric)
			case typ != "gauge" && !rated:
				t.Errorf("%s: %s is a %s, read without rate or increase", e.where, s.metric, typ)
			}
			checkLabelValues(t, e.where, s, known)
			if !strings.HasPrefix(s.metric, "kubelet_") {
				if v, _ := s.value("job"); v != "kubelogd" {
					t.Errorf("%s: %s without job=\"kubelogd\"", e.where, s.metric)
				}
			}
			if v, _ := s.value("namespace"); e.dashboard && v != "$namespace" {
				t.Errorf("%s: %s without namespace=\"$namespace\"", e.where, s.metric)
			}
		}
	}
	// The metrics the alerts and the dashboard exist for: dropping the last rule or panel
	// that reads one must be a decision, made here too.
	for _, m := range []string{"up", "kubelogd_informer_synced", "kubelogd_oldest_waiting_target_age_seconds",
		"kubelogd_gaps_total", "kubelogd_reconnects_total", "kubelogd_kube_api_requests_total",
		"kubelogd_lag_seconds_bucket", "kubelogd_write_errors_total", "kubelogd_output_bytes",
		"kubelogd_output_budget_bytes", "kubelogd_backups_deleted_total"} {
		if !selected[m] {
			t.Errorf("neither the rules nor the dashboard select %s", m)
		}
	}
}

// checkLabelValues reports matchers on labels with known values that name another value.
func checkLabelValues(t *testing.T, where string, s selector, known map[string]map[string]map[string]bool) {
	t.Helper()
	name := strings.TrimSuffix(s.metric, "_bucket")
	for _, m := range s.matchers {
		values := known[name][m.label]
		if values == nil {
			continue
		}
		vs := []string{m.value}
		if m.op == "=~" || m.op == "!~" {
			if !regexp.MustCompile(`^[a-z_]+(\|[a-z_]+)*$`).MatchString(m.value) {
				t.Errorf("%s: %s{%s%s%q}: only alternatives of plain values can be checked", where, s.metric, m.label, m.op, m.value)
				continue
			}
			vs = strings.Split(m.value, "|")
		}
		for _, v := range vs {
			if !values[v] {
				t.Errorf("%s: %s{%s%s%q}: kubelogd never sets %s=%q", where, s.metric, m.label, m.op, m.value, m.label, v)
			}
		}
	}
}
