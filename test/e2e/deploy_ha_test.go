package e2e

import (
	"context"
	"reflect"
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubelogd/kubelogd/internal/rbac"
)

// TestDeployHA applies deploy/ha/ (issue #16) to a real API server: the same hardened
// Deployment and the same four cluster-wide grants as deploy/, three replicas with
// --shards on a ReadWriteMany volume, rolled one at a time and spread over nodes, a
// PodDisruptionBudget, and a Role that grants the Leases in kubelogd's namespace only.
// As the ServiceAccount, kubelogd's start-up checks pass (pods cluster-wide, Leases in
// its namespace), and the Leases of any other namespace are refused.
func TestDeployHA(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	objs := renderKustomization(t, "deploy/ha")
	wantObjects(t, objs, "Namespace//kubelogd", "ServiceAccount/kubelogd/kubelogd", "ClusterRole//kubelogd",
		"ClusterRoleBinding//kubelogd", "ConfigMap/kubelogd/kubelogd-config", "PersistentVolumeClaim/kubelogd/kubelogd-logs",
		"Deployment/kubelogd/kubelogd", "Service/kubelogd/kubelogd-metrics",
		"Role/kubelogd/kubelogd-leases", "RoleBinding/kubelogd/kubelogd-leases", "PodDisruptionBudget/kubelogd/kubelogd")
	base := renderKustomization(t, "deploy")
	if a, b := findObject[rbacv1.ClusterRole](t, objs, "ClusterRole", "kubelogd"), findObject[rbacv1.ClusterRole](t, base, "ClusterRole", "kubelogd"); !reflect.DeepEqual(a.Rules, b.Rules) {
		t.Errorf("deploy/ha's ClusterRole rules %v differ from deploy/'s %v", a.Rules, b.Rules)
	}
	applyAll(t, e.c.Config, objs)

	dep, err := e.c.Client.AppsV1().Deployments("kubelogd").Get(ctx, "kubelogd", metav1.GetOptions{})
	fatalIf(t, err)
	checkDeployment(t, dep)
	checkWiring(t, e.c.Client, dep, "kubelogd-metrics", corev1.ReadWriteMany)
	ru := dep.Spec.Strategy.RollingUpdate
	if *dep.Spec.Replicas != 3 || dep.Spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType || ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.IntValue() != 0 {
		t.Errorf("replicas %d, strategy %+v: want 3, RollingUpdate with maxUnavailable 0", *dep.Spec.Replicas, dep.Spec.Strategy)
	}
	spec := dep.Spec.Template.Spec
	if len(spec.TopologySpreadConstraints) != 1 || spec.TopologySpreadConstraints[0].TopologyKey != "kubernetes.io/hostname" {
		t.Errorf("topologySpreadConstraints %v: want one over kubernetes.io/hostname", spec.TopologySpreadConstraints)
	}
	c := spec.Containers[0]
	if !slices.Contains(c.Args, "--shards=12") {
		t.Errorf("args %v: want --shards=12", c.Args)
	}
	for _, env := range []struct{ name, field string }{{"POD_NAME", "metadata.name"}, {"POD_NAMESPACE", "metadata.namespace"}} {
		i := slices.IndexFunc(c.Env, func(v corev1.EnvVar) bool { return v.Name == env.name })
		if i < 0 || c.Env[i].ValueFrom == nil || c.Env[i].ValueFrom.FieldRef == nil || c.Env[i].ValueFrom.FieldRef.FieldPath != env.field {
			t.Errorf("env %v: want %s from %s", c.Env, env.name, env.field)
		}
	}
	pdb, err := e.c.Client.PolicyV1().PodDisruptionBudgets("kubelogd").Get(ctx, "kubelogd", metav1.GetOptions{})
	fatalIf(t, err)
	if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 || !reflect.DeepEqual(pdb.Spec.Selector, dep.Spec.Selector) {
		t.Errorf("PodDisruptionBudget %+v: want maxUnavailable 1 over the Deployment's pods", pdb.Spec)
	}

	_, saCfg := serviceAccountKubeconfig(t, e.c, "kubelogd", "kubelogd")
	sa, err := kubernetes.NewForConfig(saCfg)
	fatalIf(t, err)
	fatalIf(t, rbac.CheckSelf(ctx, sa, nil))
	fatalIf(t, rbac.CheckLeases(ctx, sa, "kubelogd"))
	fatalIf(t, e.c.EnsureNamespace(ctx, "elsewhere"))
	if err := rbac.CheckLeases(ctx, sa, "elsewhere"); err == nil {
		t.Error("kubelogd's ServiceAccount may use Leases outside its namespace")
	}
}
