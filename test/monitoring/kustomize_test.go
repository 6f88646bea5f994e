package monitoring

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/yaml"
)

// object is the part of a Kubernetes object these tests look at.
type object struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string            `json:"name"`
		Namespace string            `json:"namespace"`
		Labels    map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec json.RawMessage   `json:"spec"`
	Data map[string]string `json:"data"`
}

// decodeObjects decodes a YAML stream of objects.
func decodeObjects(t *testing.T, data []byte) []object {
	t.Helper()
	var objs []object
	dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		var o object
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			return objs
		}
		if err != nil {
			t.Fatal(err)
		}
		if o.Kind != "" {
			objs = append(objs, o)
		}
	}
}

type serviceMonitorSpec struct {
	JobLabel string `json:"jobLabel"`
	Selector struct {
		MatchLabels map[string]string `json:"matchLabels"`
	} `json:"selector"`
	NamespaceSelector json.RawMessage `json:"namespaceSelector"`
	Endpoints         []struct {
		Port string `json:"port"`
		Path string `json:"path"`
	} `json:"endpoints"`
}

type serviceSpec struct {
	Ports []struct {
		Name string `json:"name"`
	} `json:"ports"`
}

// checkServiceMonitor checks that the ServiceMonitor sm scrapes exactly one Service of
// services, in its namespace, on a named port, and makes its job "kubelogd": the job the
// rules and the dashboard select.
func checkServiceMonitor(t *testing.T, sm object, services []object) {
	t.Helper()
	var spec serviceMonitorSpec
	if err := json.Unmarshal(sm.Spec, &spec); err != nil {
		t.Fatal(err)
	}
	if len(spec.NamespaceSelector) != 0 {
		t.Errorf("ServiceMonitor has a namespaceSelector; it must scrape its own namespace only")
	}
	if len(spec.Selector.MatchLabels) == 0 || len(spec.Endpoints) == 0 {
		t.Fatalf("ServiceMonitor selects %v, endpoints %v", spec.Selector.MatchLabels, spec.Endpoints)
	}
	var matched []object
outer:
	for _, s := range services {
		if s.Kind != "Service" || s.Metadata.Namespace != sm.Metadata.Namespace {
			continue
		}
		for k, v := range spec.Selector.MatchLabels {
			if s.Metadata.Labels[k] != v {
				continue outer
			}
		}
		matched = append(matched, s)
	}
	if len(matched) != 1 {
		t.Fatalf("ServiceMonitor in namespace %q selects %d Services (%v), want 1", sm.Metadata.Namespace, len(matched), spec.Selector.MatchLabels)
	}
	svc := matched[0]
	var ss serviceSpec
	if err := json.Unmarshal(svc.Spec, &ss); err != nil {
		t.Fatal(err)
	}
	for _, ep := range spec.Endpoints {
		found := false
		for _, p := range ss.Ports {
			found = found || p.Name == ep.Port
		}
		if !found {
			t.Errorf("ServiceMonitor scrapes port %q, which Service %s does not have", ep.Port, svc.Metadata.Name)
		}
		if ep.Path != "/metrics" {
			t.Errorf("ServiceMonitor scrapes path %q, want /metrics", ep.Path)
		}
	}
	if job := svc.Metadata.Labels[spec.JobLabel]; job != "kubelogd" {
		t.Errorf("ServiceMonitor's jobLabel %q gives job %q (Service %s), want kubelogd: the rules select job=\"kubelogd\"", spec.JobLabel, job, svc.Metadata.Name)
	}
}

// TestComponentFiles checks deploy/monitoring without kustomize: a Component whose
// resources are the ServiceMonitor and the PrometheusRule, a dashboard ConfigMap labelled
// for Grafana's sidecar, and a ServiceMonitor that matches deploy/base's Service.
func TestComponentFiles(t *testing.T) {
	var k struct {
		APIVersion         string   `json:"apiVersion"`
		Kind               string   `json:"kind"`
		Resources          []string `json:"resources"`
		ConfigMapGenerator []struct {
			Name    string   `json:"name"`
			Files   []string `json:"files"`
			Options struct {
				Labels                map[string]string `json:"labels"`
				DisableNameSuffixHash bool              `json:"disableNameSuffixHash"`
			} `json:"options"`
		} `json:"configMapGenerator"`
	}
	if err := yaml.UnmarshalStrict(readFile(t, "deploy/monitoring/kustomization.yaml"), &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1alpha1" || k.Kind != "Component" {
		t.Errorf("kustomization.yaml is a %s %s, want a kustomize.config.k8s.io/v1alpha1 Component", k.APIVersion, k.Kind)
	}
	kinds := map[string]object{}
	for _, r := range k.Resources {
		for _, o := range decodeObjects(t, readFile(t, filepath.Join("deploy/monitoring", r))) {
			if o.APIVersion != "monitoring.coreos.com/v1" {
				t.Errorf("%s: %s %s is not a monitoring.coreos.com/v1 object", r, o.Kind, o.APIVersion)
			}
			kinds[o.Kind] = o
		}
	}
	for _, kind := range []string{"ServiceMonitor", "PrometheusRule"} {
		if kinds[kind].Metadata.Name != "kubelogd" {
			t.Errorf("no %s kubelogd among the resources %v", kind, k.Resources)
		}
	}
	if len(k.ConfigMapGenerator) != 1 || len(k.ConfigMapGenerator[0].Files) != 1 ||
		!strings.HasSuffix(k.ConfigMapGenerator[0].Files[0], "=dashboard.json") ||
		k.ConfigMapGenerator[0].Options.Labels["grafana_dashboard"] != "1" || !k.ConfigMapGenerator[0].Options.DisableNameSuffixHash {
		t.Errorf("configMapGenerator %+v: want one ConfigMap from dashboard.json, labelled grafana_dashboard: \"1\", without a hash suffix", k.ConfigMapGenerator)
	}

	// Without kustomize, deploy/base's Service and the ServiceMonitor have no namespace:
	// put both in one.
	sm := kinds["ServiceMonitor"]
	sm.Metadata.Namespace = "kubelogd"
	var services []object
	for _, s := range decodeObjects(t, readFile(t, "deploy/base/service.yaml")) {
		s.Metadata.Namespace = "kubelogd"
		services = append(services, s)
	}
	checkServiceMonitor(t, sm, services)
}

// TestComponentRenders renders the component with each of kubelogd's installations
// (deploy/ and deploy/namespaced/), as a user's kustomization does, with bin/kubectl's
// kustomize: its objects land in kubelogd's namespace, the ServiceMonitor finds the
// rendered Service, the ConfigMap carries dashboard.json unchanged, and the
// PrometheusRule rules.yaml's groups.
func TestComponentRenders(t *testing.T) {
	kubectl := binary(t, "kubectl")
	if kubectl == "" {
		t.Skip("bin/kubectl missing (make kubectl): TestComponentFiles checked the files without rendering them")
	}
	root := repoRoot(t)
	for _, tc := range []struct{ install, namespace string }{
		{"deploy", "kubelogd"},
		{"deploy/namespaced", "my-team"},
	} {
		t.Run(tc.install, func(t *testing.T) {
			dir := t.TempDir()
			rel := func(p string) string {
				r, err := filepath.Rel(dir, filepath.Join(root, p))
				if err != nil {
					t.Fatal(err)
				}
				return filepath.ToSlash(r)
			}
			k := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n" +
				"namespace: " + tc.namespace + "\n" +
				"resources:\n  - " + rel(tc.install) + "\n" +
				"components:\n  - " + rel("deploy/monitoring") + "\n"
			if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(kubectl, "kustomize", dir)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("kubectl kustomize: %v\n%s\n%s", err, stderr.String(), k)
			}
			objs := decodeObjects(t, out)
			byKind := map[string]object{}
			for _, o := range objs {
				switch o.Kind {
				case "ServiceMonitor", "PrometheusRule", "ConfigMap":
					// The installation has a ConfigMap of its own (kubelogd-config):
					// ConfigMaps are told apart by name.
					key := o.Kind
					if o.Kind == "ConfigMap" {
						key += "/" + o.Metadata.Name
					}
					if _, dup := byKind[key]; dup {
						t.Errorf("two %s objects", key)
					}
					byKind[key] = o
					if o.Metadata.Namespace != tc.namespace {
						t.Errorf("%s %s in namespace %q, want %q", o.Kind, o.Metadata.Name, o.Metadata.Namespace, tc.namespace)
					}
				}
			}
			sm, ok := byKind["ServiceMonitor"]
			if !ok {
				t.Fatal("no ServiceMonitor rendered")
			}
			checkServiceMonitor(t, sm, objs)

			cm := byKind["ConfigMap/kubelogd-dashboard"]
			if cm.Metadata.Name != "kubelogd-dashboard" || cm.Metadata.Labels["grafana_dashboard"] != "1" {
				t.Errorf("dashboard ConfigMap %q with labels %v, want kubelogd-dashboard labelled grafana_dashboard: \"1\"", cm.Metadata.Name, cm.Metadata.Labels)
			}
			if cm.Data["kubelogd.json"] != string(readFile(t, "deploy/monitoring/dashboard.json")) {
				t.Error("the ConfigMap's kubelogd.json differs from dashboard.json")
			}

			pr, ok := byKind["PrometheusRule"]
			if !ok {
				t.Fatal("no PrometheusRule rendered")
			}
			if !sameGroups(t, pr.Spec, readFile(t, "deploy/monitoring/rules.yaml")) {
				t.Error("the rendered PrometheusRule's groups differ from rules.yaml")
			}
		})
	}
}
