package e2e

import (
	"context"
	"encoding/json"
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
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"

	"github.com/kubelogd/kubelogd/internal/rbac"
)

// chartExamples are the example values files under charts/kubelogd/ci/, one per mode.
var chartExamples = []string{"cluster-values.yaml", "namespaced-values.yaml", "ha-values.yaml", "monitoring-values.yaml"}

// TestChartLint: `helm lint --strict` passes on the chart with its defaults and with each
// example values file, and the examples are exactly the ones the other chart tests use.
func TestChartLint(t *testing.T) {
	t.Parallel() // helm and kubectl only: beside the tests that wait on an API server
	files, err := filepath.Glob(filepath.Join(repoRoot(t), chartDir, "ci", "*.yaml"))
	fatalIf(t, err)
	var names []string
	for _, f := range files {
		names = append(names, filepath.Base(f))
	}
	if want := slices.Sorted(slices.Values(chartExamples)); !slices.Equal(names, want) {
		t.Errorf("%s/ci holds %v, want %v", chartDir, names, want)
	}
	for _, values := range append([]string{""}, chartExamples...) {
		args := []string{"lint", "--strict", chartDir}
		if values != "" {
			args = append(args, "-f", filepath.Join(chartDir, "ci", values))
		}
		if out, stderr, err := runHelm(t, args...); err != nil {
			t.Errorf("helm %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr)
		}
	}
}

// TestChartMatchesKustomize renders the chart (release kubelogd) with each example values
// file and the kustomization it stands for, and finds the same objects: the same names
// and kinds, the same ClusterRole or Role rules and Lease Role, the same pod template
// (security contexts, ServiceAccount and token automount, args, env, probes and their
// ports, resources, volumes and mounts), replicas and strategy, the same volume access
// modes and size, Service ports, PodDisruptionBudget and Namespace labels.
func TestChartMatchesKustomize(t *testing.T) {
	t.Parallel() // helm and kubectl only: beside the tests that wait on an API server
	for _, tc := range []struct{ kustomization, values, ns string }{
		{"deploy", "cluster-values.yaml", "kubelogd"},
		{"deploy/namespaced", "namespaced-values.yaml", "my-team"},
		{"deploy/ha", "ha-values.yaml", "kubelogd"},
	} {
		t.Run(tc.values, func(t *testing.T) {
			k := renderKustomization(t, tc.kustomization)
			c := renderChart(t, "kubelogd", tc.ns, "-f", filepath.Join(chartDir, "ci", tc.values))
			if kk, ck := objectKeys(k), objectKeys(c); !slices.Equal(kk, ck) {
				t.Fatalf("objects differ:\n  %s: %v\n  chart:  %v", tc.kustomization, kk, ck)
			}
			for _, o := range k {
				kind, name := o.GetKind(), o.GetName()
				switch kind {
				case "ClusterRole":
					compareField(t, kind, "rules", findObject[rbacv1.ClusterRole](t, k, kind, name).Rules, findObject[rbacv1.ClusterRole](t, c, kind, name).Rules)
				case "Role":
					compareField(t, kind+" "+name, "rules", findObject[rbacv1.Role](t, k, kind, name).Rules, findObject[rbacv1.Role](t, c, kind, name).Rules)
				case "ClusterRoleBinding":
					kb, cb := findObject[rbacv1.ClusterRoleBinding](t, k, kind, name), findObject[rbacv1.ClusterRoleBinding](t, c, kind, name)
					compareField(t, kind, "roleRef and subjects", []any{kb.RoleRef, kb.Subjects}, []any{cb.RoleRef, cb.Subjects})
				case "RoleBinding":
					kb, cb := findObject[rbacv1.RoleBinding](t, k, kind, name), findObject[rbacv1.RoleBinding](t, c, kind, name)
					compareField(t, kind+" "+name, "roleRef and subjects", []any{kb.RoleRef, kb.Subjects}, []any{cb.RoleRef, cb.Subjects})
				case "PersistentVolumeClaim":
					compareField(t, kind, "spec", findObject[corev1.PersistentVolumeClaim](t, k, kind, name).Spec, findObject[corev1.PersistentVolumeClaim](t, c, kind, name).Spec)
				case "Service":
					compareField(t, kind, "ports", findObject[corev1.Service](t, k, kind, name).Spec.Ports, findObject[corev1.Service](t, c, kind, name).Spec.Ports)
				case "PodDisruptionBudget":
					compareField(t, kind, "maxUnavailable", findObject[policyv1.PodDisruptionBudget](t, k, kind, name).Spec.MaxUnavailable, findObject[policyv1.PodDisruptionBudget](t, c, kind, name).Spec.MaxUnavailable)
				case "Namespace":
					compareField(t, kind, "Pod Security label", o.GetLabels()["pod-security.kubernetes.io/enforce"], c[slices.IndexFunc(c, func(o *unstructured.Unstructured) bool { return o.GetKind() == "Namespace" })].GetLabels()["pod-security.kubernetes.io/enforce"])
				case "Deployment":
					compareDeployments(t, findObject[appsv1.Deployment](t, k, kind, name), findObject[appsv1.Deployment](t, c, kind, name))
				}
			}
		})
	}
}

// TestChartValuesSchema: a wrong value fails at `helm template` (as at `helm install`) with
// a message that names the value and what is wrong with it.
func TestChartValuesSchema(t *testing.T) {
	t.Parallel() // helm and kubectl only: beside the tests that wait on an API server
	for _, tc := range []struct {
		name, values string
		want         []string // in the error, in this order
	}{
		{"negative", `{"flags": {"maxStreamsPerNode": -1}}`, []string{"/flags/maxStreamsPerNode", "minimum", "-1"}},
		{"string for an int", `{"flags": {"maxSizeMb": "big"}}`, []string{"/flags/maxSizeMb", "got string, want integer"}},
		{"unknown top-level key", `{"replicas": 3}`, []string{"additional properties 'replicas' not allowed"}},
		{"misspelt flag", `{"flags": {"maxStreamPerNode": 10}}`, []string{"/flags", "additional properties 'maxStreamPerNode' not allowed"}},
		{"unknown mode", `{"mode": "global"}`, []string{"/mode", "cluster", "namespaced"}},
		{"negative duration", `{"flags": {"stallTimeout": "-5s"}}`, []string{"/flags/stallTimeout", "-5s", "does not match pattern"}},
		{"bad format", `{"flags": {"format": "xml"}}`, []string{"/flags/format", "timestamped"}},
		{"no metrics port", `{"flags": {"metricsAddr": ""}}`, []string{"/flags/metricsAddr"}},
		{"one replica in HA", `{"ha": {"enabled": true, "replicas": 0}}`, []string{"/ha/replicas", "minimum"}},
		{"namespace list as string", `{"flags": {"namespace": "shop"}}`, []string{"/flags/namespace", "got string, want array"}},
		{"namespaced with namespaces", `{"mode": "namespaced", "flags": {"namespace": ["shop"]}}`, []string{"flags.namespace cannot be set with mode: namespaced"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, stderr, err := runHelm(t, "template", "kubelogd", chartDir, "-f", chartValues(t, tc.values))
			if err == nil {
				t.Fatalf("values %s rendered:\n%s", tc.values, out)
			}
			rest := stderr
			for _, w := range tc.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("values %s: error %q, want %q in order", tc.values, stderr, tc.want)
				}
				rest = rest[i+len(w):]
			}
		})
	}
}

var helpFlag = regexp.MustCompile(`(?m)^\s+(?:-[a-z], )?--([a-z][a-z0-9-]*)`)

// TestChartFlags: every flag of `kubelogd --help` is reachable through the chart's values
// and no value names a flag kubelogd lacks. Set all at once, each becomes its argument
// (integers as integers, lists one argument per item, --output-dir and --metrics-addr
// moving the mount and the port), and kubelogd's own flag parser accepts the lot. With
// the defaults the args are deploy/'s and there is no --config.
func TestChartFlags(t *testing.T) {
	t.Parallel() // helm and kubectl only: beside the tests that wait on an API server
	help, err := exec.Command(kubelogdBin, "--help").Output()
	fatalIf(t, err)
	var flags []string
	for _, m := range helpFlag.FindAllStringSubmatch(string(help), -1) {
		flags = append(flags, m[1])
	}
	if len(flags) < 30 {
		t.Fatalf("found %d flags in kubelogd --help, want all of them:\n%s", len(flags), help)
	}

	var schema struct {
		Properties struct {
			Flags struct {
				Properties map[string]struct {
					Type string   `json:"type"`
					Enum []string `json:"enum"`
					Ref  string   `json:"$ref"`
				} `json:"properties"`
			} `json:"flags"`
		} `json:"properties"`
	}
	data, err := os.ReadFile(filepath.Join(repoRoot(t), chartDir, "values.schema.json"))
	fatalIf(t, err)
	fatalIf(t, json.Unmarshal(data, &schema))
	props := schema.Properties.Flags.Properties

	// Not daemon settings, or set elsewhere in the values (ha.shards).
	elsewhere := map[string]bool{"help": true, "version": true, "shards": true, "config": true} // config: .Values.config
	values := map[string]any{}
	want := map[string][]string{} // flag → the args it must render
	for _, f := range flags {
		if elsewhere[f] {
			continue
		}
		key := camelCase(f)
		p, ok := props[key]
		if !ok {
			t.Errorf("--%s has no value flags.%s in values.schema.json", f, key)
			continue
		}
		var v any
		var args []string
		switch {
		case f == "output-dir":
			v, args = "/data/logs", []string{"/data/logs"}
		case f == "metrics-addr":
			v, args = ":9090", []string{":9090"}
		case len(p.Enum) > 0:
			v, args = p.Enum[len(p.Enum)-1], []string{p.Enum[len(p.Enum)-1]}
		case p.Ref != "":
			v, args = "90s", []string{"90s"}
		case p.Type == "integer":
			v, args = 1000000, []string{"1000000"} // not 1e+06
		case p.Type == "number":
			v, args = 2.5, []string{"2.5"}
		case p.Type == "boolean":
			v, args = true, []string{"true"}
		case p.Type == "array":
			v, args = []string{"shop", "payments"}, []string{"shop", "payments"}
		case p.Type == "string":
			v, args = "x=y", []string{"x=y"}
		default:
			t.Fatalf("flags.%s: schema type %q not covered by this test", key, p.Type)
		}
		values[key] = v
		for _, a := range args {
			want[f] = append(want[f], "--"+f+"="+a)
		}
	}
	for key := range props {
		if !slices.Contains(flags, kebabCase(key)) {
			t.Errorf("values.schema.json has flags.%s, but kubelogd has no --%s", key, kebabCase(key))
		}
	}
	body, err := json.Marshal(map[string]any{"flags": values, "ha": map[string]any{"enabled": true, "shards": 7}})
	fatalIf(t, err)
	dep := findObject[appsv1.Deployment](t, renderChart(t, "kubelogd", "kubelogd", "-f", chartValues(t, string(body))), "Deployment", "kubelogd")
	c := dep.Spec.Template.Spec.Containers[0]
	want["shards"] = []string{"--shards=7"}
	for f, args := range want {
		for _, a := range args {
			if !slices.Contains(c.Args, a) {
				t.Errorf("--%s: args %q lack %q", f, c.Args, a)
			}
		}
	}
	if len(c.VolumeMounts) == 0 || c.VolumeMounts[0].Name != "logs" || c.VolumeMounts[0].MountPath != "/data/logs" {
		t.Errorf("volume mounts %v: want the volume at --output-dir /data/logs", c.VolumeMounts)
	}
	if len(c.Ports) != 1 || c.Ports[0].ContainerPort != 9090 {
		t.Errorf("ports %v: want the container port of --metrics-addr :9090", c.Ports)
	}
	// kubelogd's flag parser takes every argument; --help stops it before it connects.
	if out, err := exec.Command(kubelogdBin, append(slices.Clone(c.Args), "--help")...).CombinedOutput(); err != nil {
		t.Errorf("kubelogd %s --help: %v\n%s", strings.Join(c.Args, " "), err, tail(string(out), 5))
	}

	// The defaults: deploy/'s args, nothing else.
	dep = findObject[appsv1.Deployment](t, renderChart(t, "kubelogd", "kubelogd"), "Deployment", "kubelogd")
	base := findObject[appsv1.Deployment](t, renderKustomization(t, "deploy"), "Deployment", "kubelogd")
	compareField(t, "Deployment", "default args", base.Spec.Template.Spec.Containers[0].Args, dep.Spec.Template.Spec.Containers[0].Args)
}

// TestChartConfig: .Values.config becomes a ConfigMap holding config.yaml, mounted
// read-only at /etc/kubelogd/ and passed as --config; by default it holds what deploy/'s
// does, and with config: null there is no ConfigMap, no such volume and no --config.
func TestChartConfig(t *testing.T) {
	t.Parallel() // helm and kubectl only: beside the tests that wait on an API server
	// By default the chart ships deploy/'s config file: the same keys and values.
	deployCM := findObject[corev1.ConfigMap](t, renderKustomization(t, "deploy"), "ConfigMap", "kubelogd-config")
	chartCM := findObject[corev1.ConfigMap](t, renderChart(t, "kubelogd", "kubelogd"), "ConfigMap", "kubelogd-config")
	var fromDeploy, fromChart map[string]any
	fatalIf(t, utilyaml.Unmarshal([]byte(deployCM.Data["config.yaml"]), &fromDeploy))
	fatalIf(t, utilyaml.Unmarshal([]byte(chartCM.Data["config.yaml"]), &fromChart))
	if dj, cj := mustJSON(t, fromDeploy), mustJSON(t, fromChart); dj != cj {
		t.Errorf("the chart's default config.yaml holds %s, deploy/'s %s", cj, dj)
	}

	// config: null leaves the file out.
	for _, values := range []string{"", filepath.Join(chartDir, "ci", "ha-values.yaml")} {
		args := []string{"-f", chartValues(t, `{"config": null}`)}
		if values != "" {
			args = append(args, "-f", values)
		}
		objs := renderChart(t, "kubelogd", "kubelogd", args...)
		for _, o := range objs {
			if o.GetKind() == "ConfigMap" {
				t.Errorf("values %q: a ConfigMap %s with config: null", values, o.GetName())
			}
		}
		dep := findObject[appsv1.Deployment](t, objs, "Deployment", "kubelogd")
		for _, a := range dep.Spec.Template.Spec.Containers[0].Args {
			if strings.HasPrefix(a, "--config") {
				t.Errorf("values %q: %s with config: null", values, a)
			}
		}
		if n := len(dep.Spec.Template.Spec.Volumes); n != 1 {
			t.Errorf("values %q: %d volumes, want only the logs", values, n)
		}
	}

	config := map[string]any{"max-size-mb": 200, "namespace": []any{"shop", "payments"}, "format": "json"}
	body, err := json.Marshal(map[string]any{"config": config})
	fatalIf(t, err)
	objs := renderChart(t, "kubelogd", "kubelogd", "-f", chartValues(t, string(body)))
	cm := findObject[corev1.ConfigMap](t, objs, "ConfigMap", "kubelogd-config")
	var got map[string]any
	fatalIf(t, utilyaml.Unmarshal([]byte(cm.Data["config.yaml"]), &got))
	for k, v := range config { // merged into the defaults
		if gj, wj := mustJSON(t, got[k]), mustJSON(t, v); gj != wj {
			t.Errorf("config.yaml holds %s: %s, want %s from .Values.config", k, gj, wj)
		}
	}
	if got["max-backups"] == nil {
		t.Errorf("config.yaml %v: the defaults not kept beside .Values.config", got)
	}
	dep := findObject[appsv1.Deployment](t, objs, "Deployment", "kubelogd")
	spec := dep.Spec.Template.Spec
	c := spec.Containers[0]
	if !slices.Contains(c.Args, "--config=/etc/kubelogd/config.yaml") {
		t.Errorf("args %q lack --config=/etc/kubelogd/config.yaml", c.Args)
	}
	i := slices.IndexFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == "/etc/kubelogd" })
	if i < 0 || !c.VolumeMounts[i].ReadOnly {
		t.Fatalf("volume mounts %v: want one read-only at /etc/kubelogd", c.VolumeMounts)
	}
	j := slices.IndexFunc(spec.Volumes, func(v corev1.Volume) bool { return v.Name == c.VolumeMounts[i].Name })
	if j < 0 || spec.Volumes[j].ConfigMap == nil || spec.Volumes[j].ConfigMap.Name != cm.Name {
		t.Errorf("volume %s is not the ConfigMap %s: %v", c.VolumeMounts[i].Name, cm.Name, spec.Volumes)
	}
	// kubelogd reloads the file live: a changed config must not roll the pods.
	if len(dep.Spec.Template.Annotations) != 0 {
		t.Errorf("pod annotations %v: a changed config would roll the pods it reloads in", dep.Spec.Template.Annotations)
	}
}

// TestChartMonitoring: the chart's copies of deploy/monitoring's files are byte for byte
// the same (Helm cannot read files outside the chart), and with monitoring.enabled the
// ServiceMonitor and PrometheusRule carry their specs unchanged, in the release
// namespace, with monitoring.labels added; the dashboard ConfigMap holds dashboard.json
// unchanged, labelled for Grafana's sidecar; the ServiceMonitor selects the chart's
// metrics Service on its port. Without monitoring.enabled none is rendered.
func TestChartMonitoring(t *testing.T) {
	t.Parallel() // helm and kubectl only: beside the tests that wait on an API server
	root := repoRoot(t)
	for _, f := range []string{"servicemonitor.yaml", "prometheusrule.yaml", "dashboard.json"} {
		orig, err := os.ReadFile(filepath.Join(root, "deploy/monitoring", f))
		fatalIf(t, err)
		copied, err := os.ReadFile(filepath.Join(root, chartDir, "files/monitoring", f))
		fatalIf(t, err)
		if string(orig) != string(copied) {
			t.Errorf("%s/files/monitoring/%s differs from deploy/monitoring/%s: cp deploy/monitoring/%[2]s %[1]s/files/monitoring/", chartDir, f, f)
		}
	}

	objs := renderChart(t, "kubelogd", "kubelogd", "-f", filepath.Join(chartDir, "ci", "monitoring-values.yaml"))
	for _, f := range []string{"servicemonitor.yaml", "prometheusrule.yaml"} {
		data, err := os.ReadFile(filepath.Join(root, "deploy/monitoring", f))
		fatalIf(t, err)
		want := decodeManifests(t, f, data)[0]
		i := slices.IndexFunc(objs, func(o *unstructured.Unstructured) bool { return o.GetKind() == want.GetKind() })
		if i < 0 {
			t.Errorf("no %s rendered with monitoring.enabled", want.GetKind())
			continue
		}
		got := objs[i]
		compareField(t, want.GetKind(), "apiVersion", want.GetAPIVersion(), got.GetAPIVersion())
		compareField(t, want.GetKind(), "spec", want.Object["spec"], got.Object["spec"])
		if got.GetNamespace() != "kubelogd" || got.GetLabels()["release"] != "kube-prometheus-stack" || got.GetLabels()["app.kubernetes.io/name"] != "kubelogd" {
			t.Errorf("%s in namespace %q labelled %v: want the release namespace, monitoring.labels and app.kubernetes.io/name", got.GetKind(), got.GetNamespace(), got.GetLabels())
		}
	}
	sm := findObject[unstructured.Unstructured](t, objs, "ServiceMonitor", "kubelogd")
	svc := findObject[corev1.Service](t, objs, "Service", "kubelogd-metrics")
	sel, _, _ := unstructured.NestedStringMap(sm.Object, "spec", "selector", "matchLabels")
	jobLabel, _, _ := unstructured.NestedString(sm.Object, "spec", "jobLabel")
	for k, v := range sel {
		if svc.Labels[k] != v {
			t.Errorf("ServiceMonitor selects %v, the chart's Service has labels %v", sel, svc.Labels)
		}
	}
	if svc.Labels[jobLabel] != "kubelogd" || svc.Spec.Ports[0].Name != "metrics" {
		t.Errorf("Service labels %v, ports %v: want job kubelogd (jobLabel %s) and port metrics", svc.Labels, svc.Spec.Ports, jobLabel)
	}
	dashboard, err := os.ReadFile(filepath.Join(root, "deploy/monitoring/dashboard.json"))
	fatalIf(t, err)
	cm := findObject[corev1.ConfigMap](t, objs, "ConfigMap", "kubelogd-dashboard")
	if cm.Data["kubelogd.json"] != string(dashboard) || cm.Labels["grafana_dashboard"] != "1" {
		t.Errorf("dashboard ConfigMap labelled %v: want kubelogd.json equal to deploy/monitoring/dashboard.json and grafana_dashboard: \"1\"", cm.Labels)
	}

	for _, o := range renderChart(t, "kubelogd", "kubelogd") {
		if o.GetKind() == "ServiceMonitor" || o.GetKind() == "PrometheusRule" || o.GetName() == "kubelogd-dashboard" {
			t.Errorf("%s %s rendered without monitoring.enabled", o.GetKind(), o.GetName())
		}
	}
}

// TestChartInstall applies the chart's example installations to one real API server, each
// as its own release (server-side dry run, then for real, strict field validation, no
// warnings) and checks them as TestDeployBase, TestDeployNamespaced and TestDeployHA check
// deploy/: the hardened Deployment admitted under the restricted Pod Security level, the
// objects wired together, the ServiceAccount's grants exactly as kubelogd checks them at
// start; kubelogd run as the cluster-wide and the namespaced pods would run collects what
// it may see. The monitoring release goes in beside stand-ins for the Operator's CRDs.
func TestChartInstall(t *testing.T) {
	e := newEnv(t)
	t.Run("cluster", func(t *testing.T) { chartCluster(t, e) })
	t.Run("namespaced", func(t *testing.T) { chartNamespaced(t, e) })
	t.Run("ha", func(t *testing.T) { chartHA(t, e) })
	t.Run("monitoring", func(t *testing.T) { chartMonitoring(t, e) })
}

// chartCluster: ci/cluster-values.yaml, as `helm install kubelogd charts/kubelogd -n kubelogd`.
func chartCluster(t *testing.T, e *env) {
	ctx := context.Background()
	objs := renderChart(t, "kubelogd", "kubelogd", "-f", filepath.Join(chartDir, "ci", "cluster-values.yaml"))
	wantObjects(t, objs, "Namespace//kubelogd", "ServiceAccount/kubelogd/kubelogd", "ClusterRole//kubelogd",
		"ClusterRoleBinding//kubelogd", "PersistentVolumeClaim/kubelogd/kubelogd-logs",
		"Deployment/kubelogd/kubelogd", "Service/kubelogd/kubelogd-metrics", "ConfigMap/kubelogd/kubelogd-config")
	applyAll(t, e.c.Config, objs)

	dep := e.checkClusterInstall()

	refs := []ref{{"team-a", "web", "app"}, {"team-b", "api", "app"}}
	e.pod("team-a", "web", nil, "app")
	e.pod("team-b", "api", nil, "app")
	for _, r := range refs {
		e.start(r.ns, r.pod, r.container)
		e.emit(r.ns, r.pod, r.container, 10)
	}
	kc, saCfg := serviceAccountKubeconfig(t, e.c, "kubelogd", "kubelogd")
	saClient, err := kubernetes.NewForConfig(saCfg)
	fatalIf(t, err)
	fatalIf(t, rbac.CheckSelf(ctx, saClient, nil))

	r := runAsPod(t, dep, kc, findObject[corev1.ConfigMap](t, objs, "ConfigMap", "kubelogd-config"))
	c := dep.Spec.Template.Spec.Containers[0]
	r.waitProbe("liveness probe", c.LivenessProbe, 30*time.Second)
	r.waitProbe("readiness probe", c.ReadinessProbe, 60*time.Second)
	uid, _, fsGroup := securityIDs(t, dep.Spec.Template.Spec, c)
	if got := procStatus(t, r.Cmd.Process.Pid, "CapEff"); strings.Trim(got, "0") != "" {
		t.Errorf("kubelogd has effective capabilities %s, want none", got)
	}
	for _, ref := range refs {
		e.emit(ref.ns, ref.pod, ref.container, 10)
		e.waitCollected(r.Dir, ref.ns, ref.pod, ref.container)
	}
	checkOwners(t, r.Dir, uid, fsGroup)
	checkMemLimit(t, r)
	r.stop()
}

// chartNamespaced: ci/namespaced-values.yaml in my-team, a namespace that exists and
// enforces the restricted level, applied by an admin of that namespace alone.
func chartNamespaced(t *testing.T, e *env) {
	ctx := context.Background()
	const ns = "my-team"
	objs := renderChart(t, "kubelogd", ns, "-f", filepath.Join(chartDir, "ci", "namespaced-values.yaml"))
	wantObjects(t, objs, "ServiceAccount/"+ns+"/kubelogd", "Role/"+ns+"/kubelogd", "RoleBinding/"+ns+"/kubelogd",
		"PersistentVolumeClaim/"+ns+"/kubelogd-logs", "Deployment/"+ns+"/kubelogd", "Service/"+ns+"/kubelogd-metrics",
		"ConfigMap/"+ns+"/kubelogd-config")

	fatalIf(t, e.c.EnsureNamespace(ctx, ns))
	nsObj, err := e.c.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	fatalIf(t, err)
	if nsObj.Labels == nil {
		nsObj.Labels = map[string]string{}
	}
	// What README tells a namespace admin to do before installing.
	nsObj.Labels["pod-security.kubernetes.io/enforce"] = "restricted"
	_, err = e.c.Client.CoreV1().Namespaces().Update(ctx, nsObj, metav1.UpdateOptions{})
	fatalIf(t, err)
	applyAll(t, e.namespaceAdmin(ns), objs)

	dep, err := e.c.Client.AppsV1().Deployments(ns).Get(ctx, "kubelogd", metav1.GetOptions{})
	fatalIf(t, err)
	checkDeployment(t, dep)
	checkSingleWriter(t, dep)
	checkWiring(t, e.c.Client, dep, "kubelogd-metrics", corev1.ReadWriteOnce)
	checkPodSecurity(t, e.c.Config, dep)

	kc, saCfg := serviceAccountKubeconfig(t, e.c, ns, "kubelogd")
	saClient, err := kubernetes.NewForConfig(saCfg)
	fatalIf(t, err)
	fatalIf(t, rbac.CheckSelf(ctx, saClient, []string{ns}))
	if _, err := saClient.CoreV1().Pods("team-a").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("the namespaced ServiceAccount lists pods in team-a: %v, want Forbidden", err)
	}

	e.pod(ns, "batch", restrictedPod, "app") // the namespace enforces it
	e.start(ns, "batch", "app")
	e.emit(ns, "batch", "app", 10)
	r := runAsPod(t, dep, kc, findObject[corev1.ConfigMap](t, objs, "ConfigMap", "kubelogd-config"))
	if !slices.Contains(r.Cmd.Args, "--namespace="+ns) {
		t.Fatalf("kubelogd args %q: want --namespace=%s from the downward API", r.Cmd.Args, ns)
	}
	r.waitProbe("readiness probe", dep.Spec.Template.Spec.Containers[0].ReadinessProbe, 60*time.Second)
	e.emit(ns, "batch", "app", 10)
	e.waitCollected(r.Dir, ns, "batch", "app")
	r.stop()
	if levels := logLevels(t, r.Output()); levels["WARN"]+levels["ERROR"] > 0 {
		t.Errorf("kubelogd logged %d warnings and %d errors:\n%s", levels["WARN"], levels["ERROR"], r.Output())
	}
}

// chartHA: ci/ha-values.yaml as release kubelogd-ha in its own namespace (beside the
// cluster-wide release: the ClusterRole is named after the release).
func chartHA(t *testing.T, e *env) {
	ctx := context.Background()
	const ns, name = "kubelogd-ha", "kubelogd-ha"
	objs := renderChart(t, name, ns, "-f", filepath.Join(chartDir, "ci", "ha-values.yaml"))
	wantObjects(t, objs, "Namespace//"+ns, "ServiceAccount/"+ns+"/"+name, "ClusterRole//"+name,
		"ClusterRoleBinding//"+name, "PersistentVolumeClaim/"+ns+"/"+name+"-logs",
		"Deployment/"+ns+"/"+name, "Service/"+ns+"/"+name+"-metrics",
		"Role/"+ns+"/"+name+"-leases", "RoleBinding/"+ns+"/"+name+"-leases", "PodDisruptionBudget/"+ns+"/"+name,
		"ConfigMap/"+ns+"/"+name+"-config")
	applyAll(t, e.c.Config, objs)

	dep, err := e.c.Client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	fatalIf(t, err)
	checkDeployment(t, dep)
	checkWiring(t, e.c.Client, dep, name+"-metrics", corev1.ReadWriteMany)
	checkPodSecurity(t, e.c.Config, dep)
	ru := dep.Spec.Strategy.RollingUpdate
	if *dep.Spec.Replicas != 3 || dep.Spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType || ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.IntValue() != 0 {
		t.Errorf("replicas %d, strategy %+v: want 3, RollingUpdate with maxUnavailable 0", *dep.Spec.Replicas, dep.Spec.Strategy)
	}
	if !slices.Contains(dep.Spec.Template.Spec.Containers[0].Args, "--shards=12") {
		t.Errorf("args %v: want --shards=12", dep.Spec.Template.Spec.Containers[0].Args)
	}
	pdb, err := e.c.Client.PolicyV1().PodDisruptionBudgets(ns).Get(ctx, name, metav1.GetOptions{})
	fatalIf(t, err)
	if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 || !reflect.DeepEqual(pdb.Spec.Selector, dep.Spec.Selector) {
		t.Errorf("PodDisruptionBudget %+v: want maxUnavailable 1 over the Deployment's pods", pdb.Spec)
	}

	_, saCfg := serviceAccountKubeconfig(t, e.c, ns, name)
	sa, err := kubernetes.NewForConfig(saCfg)
	fatalIf(t, err)
	fatalIf(t, rbac.CheckSelf(ctx, sa, nil))
	fatalIf(t, rbac.CheckLeases(ctx, sa, ns))
	if err := rbac.CheckLeases(ctx, sa, "kubelogd"); err == nil {
		t.Error("the HA release's ServiceAccount may use Leases outside its namespace")
	}
}

// chartMonitoring: ci/monitoring-values.yaml as release kubelogd-mon, after stand-ins for
// the Prometheus Operator's CRDs; the ServiceMonitor and PrometheusRule are stored.
func chartMonitoring(t *testing.T, e *env) {
	ctx := context.Background()
	const ns, name = "kubelogd-mon", "kubelogd-mon"
	installMonitoringCRDs(t, e.c.Config)
	objs := renderChart(t, name, ns, "-f", filepath.Join(chartDir, "ci", "monitoring-values.yaml"))
	if got := objectKeys(objs); !slices.Contains(got, "ServiceMonitor/"+ns+"/"+name) || !slices.Contains(got, "PrometheusRule/"+ns+"/"+name) ||
		!slices.Contains(got, "ConfigMap/"+ns+"/"+name+"-dashboard") {
		t.Fatalf("objects %v: want the ServiceMonitor, the PrometheusRule and the dashboard", got)
	}
	applyAll(t, e.c.Config, objs)
	a := newApplier(t, e.c.Config)
	for _, resource := range []string{"servicemonitors", "prometheusrules"} {
		gvr := schema.GroupVersionResource{Group: "monitoring.coreos.com", Version: "v1", Resource: resource}
		got, err := a.dyn.Resource(gvr).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
		fatalIf(t, err)
		want := findObject[unstructured.Unstructured](t, objs, got.GetKind(), name)
		if !reflect.DeepEqual(got.Object["spec"], want.Object["spec"]) {
			t.Errorf("%s as stored differs from the chart's", got.GetKind())
		}
	}
	dep, err := e.c.Client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	fatalIf(t, err)
	checkDeployment(t, dep)
	checkWiring(t, e.c.Client, dep, name+"-metrics", corev1.ReadWriteOnce)
}
