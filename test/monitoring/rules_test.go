package monitoring

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/yaml"
)

// ruleFile is a Prometheus rule file (rules.yaml), and spec of a PrometheusRule.
type ruleFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []rule `json:"rules"`
	} `json:"groups"`
}

type rule struct {
	Alert       string            `json:"alert"`
	Record      string            `json:"record"`
	Expr        string            `json:"expr"`
	For         string            `json:"for"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

func loadRules(t *testing.T) []rule {
	t.Helper()
	var f ruleFile
	if err := yaml.UnmarshalStrict(readFile(t, "deploy/monitoring/rules.yaml"), &f); err != nil {
		t.Fatalf("rules.yaml: %v", err)
	}
	var rules []rule
	for _, g := range f.Groups {
		rules = append(rules, g.Rules...)
	}
	if len(rules) == 0 {
		t.Fatal("rules.yaml has no rules")
	}
	return rules
}

// TestRulesCheck: promtool accepts rules.yaml (PromQL, templates, durations) with every
// lint enabled and fatal.
func TestRulesCheck(t *testing.T) {
	out, err := promtool(t, monitoringDir(t), "check", "rules", "--lint=all", "--lint-fatal", "rules.yaml")
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
}

// TestRulesUnitTests runs the unit tests in rules_test.yaml: each alert fires on its
// series, with its labels and rendered annotations, and stays silent otherwise.
func TestRulesUnitTests(t *testing.T) {
	out, err := promtool(t, monitoringDir(t), "test", "rules", "rules_test.yaml")
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
}

// TestEveryAlertTested: rules_test.yaml has, for every alert, a case where it fires and
// one where it is silent, and no case for an alert that does not exist.
func TestEveryAlertTested(t *testing.T) {
	var tests struct {
		Tests []struct {
			Name          string `json:"name"`
			AlertRuleTest []struct {
				Alertname string `json:"alertname"`
				ExpAlerts []any  `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	if err := yaml.Unmarshal(readFile(t, "deploy/monitoring/rules_test.yaml"), &tests); err != nil {
		t.Fatalf("rules_test.yaml: %v", err)
	}
	fires, silent := map[string]bool{}, map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				silent[a.Alertname] = true
			}
		}
	}
	alerts := map[string]bool{}
	for _, r := range loadRules(t) {
		if r.Alert == "" {
			continue
		}
		alerts[r.Alert] = true
		if !fires[r.Alert] {
			t.Errorf("%s: no case in rules_test.yaml where it fires", r.Alert)
		}
		if !silent[r.Alert] {
			t.Errorf("%s: no case in rules_test.yaml where it stays silent", r.Alert)
		}
	}
	for name := range fires {
		if !alerts[name] {
			t.Errorf("rules_test.yaml tests %s, which rules.yaml does not define", name)
		}
	}
	for name := range silent {
		if !alerts[name] {
			t.Errorf("rules_test.yaml tests %s, which rules.yaml does not define", name)
		}
	}
}

// TestAlertsActionable: every alert has a severity an alert router can page on, a
// summary, and a description that says what to run.
func TestAlertsActionable(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range loadRules(t) {
		if r.Alert == "" {
			continue
		}
		if seen[r.Alert] {
			t.Errorf("alert %s defined twice", r.Alert)
		}
		seen[r.Alert] = true
		if s := r.Labels["severity"]; s != "critical" && s != "warning" {
			t.Errorf("%s: severity %q, want critical or warning", r.Alert, s)
		}
		if r.Annotations["summary"] == "" {
			t.Errorf("%s: no summary", r.Alert)
		}
		if d := r.Annotations["description"]; !strings.Contains(d, "`kubectl ") {
			t.Errorf("%s: the description names no kubectl command to check: %q", r.Alert, d)
		}
		if !strings.HasPrefix(r.Alert, "Kubelogd") {
			t.Errorf("%s: alert names start with Kubelogd", r.Alert)
		}
	}
}

// prometheusRuleHeader precedes rules.yaml's groups in prometheusrule.yaml.
const prometheusRuleHeader = `# Generated from rules.yaml by ` + "`go test ./test/monitoring -update`" + `: edit rules.yaml,
# then regenerate. The same alerts as a PrometheusRule for the Prometheus Operator; a
# Prometheus loads it if its ruleSelector and ruleNamespaceSelector select it.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: kubelogd
  labels:
    app.kubernetes.io/name: kubelogd
spec:
`

// prometheusRule returns prometheusrule.yaml for rules.yaml: the header, then rules.yaml
// from its groups key on, indented under spec. The text is copied, so the comments that
// explain the rules stay with them.
func prometheusRule(rules []byte) ([]byte, error) {
	i := bytes.Index(rules, []byte("\ngroups:"))
	if i < 0 {
		return nil, errMissingGroups
	}
	var b bytes.Buffer
	b.WriteString(prometheusRuleHeader)
	for _, line := range strings.SplitAfter(string(rules[i+1:]), "\n") {
		if strings.TrimSpace(line) != "" {
			b.WriteString("  ")
		}
		b.WriteString(line)
	}
	return b.Bytes(), nil
}

var errMissingGroups = errors.New("rules.yaml has no top-level groups key")

// TestPrometheusRuleGenerated: prometheusrule.yaml is generated from rules.yaml (with
// -update, it is rewritten), and its spec holds exactly rules.yaml's groups.
func TestPrometheusRuleGenerated(t *testing.T) {
	rules := readFile(t, "deploy/monitoring/rules.yaml")
	want, err := prometheusRule(rules)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(monitoringDir(t), "prometheusrule.yaml")
	if *update {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (generate it: go test ./test/monitoring -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("deploy/monitoring/prometheusrule.yaml is not generated from the current rules.yaml: run go test ./test/monitoring -update")
	}

	var pr struct {
		APIVersion string          `json:"apiVersion"`
		Kind       string          `json:"kind"`
		Spec       json.RawMessage `json:"spec"`
	}
	if err := yaml.Unmarshal(got, &pr); err != nil {
		t.Fatalf("prometheusrule.yaml: %v", err)
	}
	if pr.APIVersion != "monitoring.coreos.com/v1" || pr.Kind != "PrometheusRule" {
		t.Errorf("prometheusrule.yaml is a %s %s", pr.APIVersion, pr.Kind)
	}
	if !sameGroups(t, pr.Spec, rules) {
		t.Error("prometheusrule.yaml's spec differs from rules.yaml")
	}
}

// sameGroups reports whether spec (JSON) and the rule file (YAML) hold the same groups.
func sameGroups(t *testing.T, spec json.RawMessage, ruleFileYAML []byte) bool {
	t.Helper()
	var a, b any
	if err := json.Unmarshal(spec, &a); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(ruleFileYAML, &b); err != nil {
		t.Fatal(err)
	}
	return reflect.DeepEqual(a, b)
}
