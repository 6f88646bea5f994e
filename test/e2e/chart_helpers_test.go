package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
)

// chartDir is the chart under test, relative to the repository root.
const chartDir = "charts/kubelogd"

// helmBin returns bin/helm, pinned in hack/tools/helm.
func helmBin(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("KUBELOGD_BIN_DIR")
	if dir == "" {
		dir = filepath.Join(repoRoot(t), "bin")
	}
	bin := filepath.Join(dir, "helm")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s missing: run `make testbin` (helm lints and renders %s)", bin, chartDir)
	}
	return bin
}

// runHelm runs bin/helm in the repository root and returns its stdout, stderr and error.
func runHelm(t *testing.T, args ...string) (stdout []byte, stderr string, err error) {
	t.Helper()
	cmd := exec.Command(helmBin(t), args...)
	cmd.Dir = repoRoot(t)
	// No user's Helm configuration, cache or plugins: the chart alone decides.
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"), "HELM_DATA_HOME="+filepath.Join(home, "data"))
	var errBuf bytes.Buffer
	cmd.Stderr = &errBuf
	out, err := cmd.Output()
	return out, errBuf.String(), err
}

// renderChart renders the chart as `helm install <release> charts/kubelogd -n <ns>` would
// install it (helm template, values checked against values.schema.json), with the extra
// arguments (-f ci/…, --set …), and returns its objects.
func renderChart(t *testing.T, release, ns string, args ...string) []*unstructured.Unstructured {
	t.Helper()
	out, stderr, err := runHelm(t, append([]string{"template", release, chartDir, "--namespace", ns}, args...)...)
	if err != nil {
		t.Fatalf("helm template %s %v: %v\n%s", release, args, err, stderr)
	}
	return decodeManifests(t, "helm template "+strings.Join(args, " "), out)
}

// chartValues writes values (JSON is YAML) to a file for helm's -f.
func chartValues(t *testing.T, values string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "values.yaml")
	fatalIf(t, os.WriteFile(path, []byte(values), 0o644))
	return path
}

// decodeManifests decodes a stream of YAML documents into objects, skipping empty ones.
func decodeManifests(t *testing.T, what string, data []byte) []*unstructured.Unstructured {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var objs []*unstructured.Unstructured
	for {
		var o unstructured.Unstructured
		if err := dec.Decode(&o.Object); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decoding %s: %v", what, err)
		}
		if len(o.Object) > 0 {
			objs = append(objs, &o)
		}
	}
	if len(objs) == 0 {
		t.Fatalf("%s renders no objects", what)
	}
	return objs
}

// objectKeys lists the objects as Kind/namespace/name, sorted.
func objectKeys(objs []*unstructured.Unstructured) []string {
	var keys []string
	for _, o := range objs {
		keys = append(keys, o.GetKind()+"/"+o.GetNamespace()+"/"+o.GetName())
	}
	slices.Sort(keys)
	return keys
}

// monitoringCRDs are stand-ins for the Prometheus Operator's ServiceMonitor and
// PrometheusRule CRDs, which this control plane does not have: the same group, version,
// names and scope, with an open schema. The API server then stores the chart's objects
// and checks their metadata; it does not check their spec as the Operator's CRDs would
// (the monitoring tests check that against deploy/monitoring).
const monitoringCRDs = `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: servicemonitors.monitoring.coreos.com}
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: {kind: ServiceMonitor, listKind: ServiceMonitorList, plural: servicemonitors, singular: servicemonitor}
  versions:
    - name: v1
      served: true
      storage: true
      schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: prometheusrules.monitoring.coreos.com}
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: {kind: PrometheusRule, listKind: PrometheusRuleList, plural: prometheusrules, singular: prometheusrule}
  versions:
    - name: v1
      served: true
      storage: true
      schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
`

// installMonitoringCRDs creates the stand-in CRDs and waits until the API server serves
// them (a CRD is served a moment after it is created).
func installMonitoringCRDs(t *testing.T, cfg *rest.Config) {
	t.Helper()
	applyAll(t, cfg, decodeManifests(t, "monitoring CRDs", []byte(monitoringCRDs)))
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	fatalIf(t, err)
	eventually(t, 30*time.Second, "monitoring.coreos.com/v1 served", func() (bool, string) {
		rl, err := dc.ServerResourcesForGroupVersion("monitoring.coreos.com/v1")
		if err != nil {
			return false, err.Error()
		}
		var names []string
		for _, r := range rl.APIResources {
			names = append(names, r.Name)
		}
		return slices.Contains(names, "servicemonitors") && slices.Contains(names, "prometheusrules"), strings.Join(names, ",")
	})
}

// compareDeployments compares the chart's Deployment with the kustomization's: the whole
// pod spec, replicas and strategy. The chart's selectors add app.kubernetes.io/instance
// (two releases in one namespace must not select each other's pods); each must still
// select its own pod template.
func compareDeployments(t *testing.T, k, c *appsv1.Deployment) {
	t.Helper()
	for _, d := range []*appsv1.Deployment{k, c} {
		for key, v := range d.Spec.Selector.MatchLabels {
			if d.Spec.Template.Labels[key] != v {
				t.Errorf("Deployment selector %v does not select its pod template %v", d.Spec.Selector.MatchLabels, d.Spec.Template.Labels)
			}
		}
		for i := range d.Spec.Template.Spec.TopologySpreadConstraints {
			tsc := &d.Spec.Template.Spec.TopologySpreadConstraints[i]
			if tsc.LabelSelector == nil || !reflect.DeepEqual(tsc.LabelSelector.MatchLabels, d.Spec.Selector.MatchLabels) {
				t.Errorf("topology spread selector %v, want the Deployment's selector %v", tsc.LabelSelector, d.Spec.Selector.MatchLabels)
			}
			tsc.LabelSelector = nil
		}
	}
	compareField(t, "Deployment", "replicas", k.Spec.Replicas, c.Spec.Replicas)
	compareField(t, "Deployment", "strategy", k.Spec.Strategy, c.Spec.Strategy)
	ks, cs := k.Spec.Template.Spec, c.Spec.Template.Spec
	// Field by field for a readable failure, then the whole spec for anything missed.
	compareField(t, "Deployment", "pod securityContext", ks.SecurityContext, cs.SecurityContext)
	compareField(t, "Deployment", "serviceAccountName", ks.ServiceAccountName, cs.ServiceAccountName)
	compareField(t, "Deployment", "automountServiceAccountToken", ks.AutomountServiceAccountToken, cs.AutomountServiceAccountToken)
	compareField(t, "Deployment", "volumes", ks.Volumes, cs.Volumes)
	if len(ks.Containers) == 1 && len(cs.Containers) == 1 {
		kc, cc := ks.Containers[0], cs.Containers[0]
		compareField(t, "Deployment", "container securityContext", kc.SecurityContext, cc.SecurityContext)
		compareField(t, "Deployment", "args", kc.Args, cc.Args)
		compareField(t, "Deployment", "env", kc.Env, cc.Env)
		compareField(t, "Deployment", "ports", kc.Ports, cc.Ports)
		compareField(t, "Deployment", "liveness probe", kc.LivenessProbe, cc.LivenessProbe)
		compareField(t, "Deployment", "readiness probe", kc.ReadinessProbe, cc.ReadinessProbe)
		compareField(t, "Deployment", "resources", kc.Resources, cc.Resources)
		compareField(t, "Deployment", "volume mounts", kc.VolumeMounts, cc.VolumeMounts)
	}
	compareField(t, "Deployment", "pod spec", ks, cs)
}

// compareField reports where the chart's value differs from the kustomization's.
func compareField(t *testing.T, object, field string, kustomize, chart any) {
	t.Helper()
	if !reflect.DeepEqual(kustomize, chart) {
		kj, _ := json.Marshal(kustomize)
		cj, _ := json.Marshal(chart)
		t.Errorf("%s %s differ:\n  kustomize: %s\n  chart:     %s", object, field, kj, cj)
	}
}

// camelCase is the values key of a flag: max-size-mb → maxSizeMb.
func camelCase(flag string) string {
	parts := strings.Split(flag, "-")
	for i := 1; i < len(parts); i++ {
		parts[i] = strings.ToUpper(parts[i][:1]) + parts[i][1:]
	}
	return strings.Join(parts, "")
}

// kebabCase is the flag of a values key: maxSizeMb → max-size-mb.
func kebabCase(key string) string {
	return strings.ToLower(regexp.MustCompile(`([A-Z])`).ReplaceAllString(key, "-$1"))
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	fatalIf(t, err)
	return string(b)
}
