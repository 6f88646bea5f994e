package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"

	"github.com/kubelogd/kubelogd/internal/rbac"
)

// TestClusterRoleEveryPermissionNeeded removes, one at a time, each verb of each rule of
// the shipped ClusterRole and shows that kubelogd, run as the Deployment's pod with the
// ServiceAccount's token, refuses to start with exit code 2 and a line naming the verb and
// resource, instead of silently collecting less (or hanging on an informer that never
// syncs). With everything granted, the same setup collects (TestDeployBase).
func TestClusterRoleEveryPermissionNeeded(t *testing.T) {
	e, objs, dep, kc, sa := permissionRig(t, "deploy")
	ctx := context.Background()
	const who = "system:serviceaccount:kubelogd:kubelogd"

	roles := e.c.Client.RbacV1().ClusterRoles()
	full, err := roles.Get(ctx, "kubelogd", metav1.GetOptions{})
	fatalIf(t, err)
	setRules := func(t *testing.T, rules []rbacv1.PolicyRule) {
		t.Helper()
		cr, err := roles.Get(ctx, "kubelogd", metav1.GetOptions{})
		fatalIf(t, err)
		cr.Rules = rules
		_, err = roles.Update(ctx, cr, metav1.UpdateOptions{})
		fatalIf(t, err)
	}
	cases := 0
	for ri, rule := range full.Rules {
		for vi, verb := range rule.Verbs {
			cases++
			t.Run(fmt.Sprintf("without %s %s", verb, strings.Join(rule.Resources, ",")), func(t *testing.T) {
				reduced := slices.Clone(full.Rules)
				reduced[ri].Verbs = slices.Delete(slices.Clone(rule.Verbs), vi, vi+1)
				if len(reduced[ri].Verbs) == 0 {
					reduced = slices.Delete(reduced, ri, ri+1)
				}
				setRules(t, reduced)
				defer func() {
					setRules(t, full.Rules)
					eventually(t, 10*time.Second, "ClusterRole restored", func() (bool, string) {
						err := rbac.CheckSelf(ctx, sa, nil)
						return err == nil, fmt.Sprint(err)
					})
				}()
				var want []string
				for _, res := range rule.Resources {
					want = append(want, fmt.Sprintf("cannot %s %s in all namespaces as %s — see deploy/cluster/clusterrole.yaml", verb, res, who))
				}
				// RBAC picks up the change through its informers: wait for it, and see
				// the check name exactly what was removed.
				eventually(t, 10*time.Second, "the check to see the removal", func() (bool, string) {
					err := rbac.CheckSelf(ctx, sa, nil)
					var re *rbac.Error
					return errors.As(err, &re) && err.Error() == strings.Join(want, "\n"), fmt.Sprint(err)
				})

				// kubelogd itself, as the pod.
				refusesToStart(t, dep, kc, findObject[corev1.ConfigMap](t, objs, "ConfigMap", "kubelogd-config"), want...)
			})
		}
	}
	if cases != 4 {
		t.Errorf("the ClusterRole has %d verbs, want 4 (pods get, list, watch; pods/log get)", cases)
	}
}

// TestServiceAccountRulesNothingExtra asks the API server, with a SelfSubjectRulesReview
// as kubelogd's ServiceAccount, what it may do in several namespaces, and compares with a
// fresh ServiceAccount in the same namespace that nothing binds: the difference is exactly
// the ClusterRole's rules (cluster-wide) or the Role's (namespaced overlay, its namespace
// only) — nothing else.
func TestServiceAccountRulesNothingExtra(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	base, overlay := renderKustomization(t, "deploy"), renderKustomization(t, "deploy/namespaced")
	team := overlay[0].GetNamespace()
	applyAll(t, e.c.Config, base)
	fatalIf(t, e.c.EnsureNamespace(ctx, team))
	applyAll(t, e.c.Config, overlay)
	for _, ns := range []string{"kubelogd", team} {
		fatalIf(t, e.c.EnsureServiceAccount(ctx, ns, "unbound"))
	}
	fatalIf(t, e.c.EnsureNamespace(ctx, "elsewhere"))
	cr := findObject[rbacv1.ClusterRole](t, base, "ClusterRole", "kubelogd")
	role := findObject[rbacv1.Role](t, overlay, "Role", "kubelogd")

	client := func(ns, name string) kubernetes.Interface {
		_, cfg := serviceAccountKubeconfig(t, e.c, ns, name)
		c, err := kubernetes.NewForConfig(cfg)
		fatalIf(t, err)
		return c
	}
	for _, tc := range []struct {
		sa        string // namespace/name; its baseline is namespace/unbound
		namespace string
		want      []rbacv1.PolicyRule
	}{
		{"kubelogd/kubelogd", "kubelogd", cr.Rules},
		{"kubelogd/kubelogd", team, cr.Rules},
		{"kubelogd/kubelogd", "elsewhere", cr.Rules},
		{team + "/kubelogd", team, role.Rules},
		{team + "/kubelogd", "kubelogd", nil},
		{team + "/kubelogd", "elsewhere", nil},
	} {
		t.Run(tc.sa+" in "+tc.namespace, func(t *testing.T) {
			saNS, saName, _ := strings.Cut(tc.sa, "/")
			got := rulesReview(t, client(saNS, saName), tc.namespace)
			baseline := rulesReview(t, client(saNS, "unbound"), tc.namespace)
			extra := got.resource.minus(baseline.resource)
			if want := expandRules(tc.want); !extra.equal(want) {
				t.Errorf("beyond the defaults: %v\nwant exactly: %v", extra.sorted(), want.sorted())
			}
			if missing := baseline.resource.minus(got.resource); len(missing) > 0 {
				t.Errorf("lacks defaults an unbound ServiceAccount has: %v", missing.sorted())
			}
			if !got.nonResource.equal(baseline.nonResource) {
				t.Errorf("non-resource rules %v, an unbound ServiceAccount's %v", got.nonResource.sorted(), baseline.nonResource.sorted())
			}
		})
	}
}

// ruleSet is a set of single permissions: "verb group/resource[/name]" or "verb url".
type ruleSet map[string]bool

func (s ruleSet) minus(o ruleSet) ruleSet {
	out := ruleSet{}
	for k := range s {
		if !o[k] {
			out[k] = true
		}
	}
	return out
}

func (s ruleSet) equal(o ruleSet) bool { return len(s.minus(o)) == 0 && len(o.minus(s)) == 0 }

func (s ruleSet) sorted() []string {
	out := make([]string, 0, len(s))
	for k := range s {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func expandRules(rules []rbacv1.PolicyRule) ruleSet {
	s := ruleSet{}
	for _, r := range rules {
		s.add(r.Verbs, r.APIGroups, r.Resources, r.ResourceNames)
	}
	return s
}

func (s ruleSet) add(verbs, groups, resources, names []string) {
	if len(names) == 0 {
		names = []string{""}
	}
	for _, v := range verbs {
		for _, g := range groups {
			for _, r := range resources {
				for _, n := range names {
					k := v + " " + g + "/" + r
					if n != "" {
						k += "/" + n
					}
					s[k] = true
				}
			}
		}
	}
}

// reviewRules is what a SelfSubjectRulesReview grants, expanded to single permissions.
type reviewRules struct{ resource, nonResource ruleSet }

// rulesReview asks what the client's identity may do in namespace ns.
func rulesReview(t *testing.T, client kubernetes.Interface, ns string) reviewRules {
	t.Helper()
	res, err := client.AuthorizationV1().SelfSubjectRulesReviews().Create(context.Background(),
		&authorizationv1.SelfSubjectRulesReview{Spec: authorizationv1.SelfSubjectRulesReviewSpec{Namespace: ns}}, metav1.CreateOptions{})
	fatalIf(t, err)
	if res.Status.Incomplete {
		t.Fatalf("rules review in %s incomplete: %s", ns, res.Status.EvaluationError)
	}
	out := reviewRules{resource: ruleSet{}, nonResource: ruleSet{}}
	for _, r := range res.Status.ResourceRules {
		out.resource.add(r.Verbs, r.APIGroups, r.Resources, r.ResourceNames)
	}
	for _, r := range res.Status.NonResourceRules {
		for _, v := range r.Verbs {
			for _, u := range r.NonResourceURLs {
				out.nonResource[v+" "+u] = true
			}
		}
	}
	return out
}

// refusesToStart runs kubelogd as dep's pod would run (see runAsPod) and checks that it
// exits 2 with each of want in its output, before collecting anything.
func refusesToStart(t *testing.T, dep *appsv1.Deployment, kubeconfig string, config *corev1.ConfigMap, want ...string) {
	t.Helper()
	r := runAsPod(t, dep, kubeconfig, config)
	code := r.waitExit(60 * time.Second)
	out := r.Output()
	for _, w := range want {
		if code != 2 || !strings.Contains(out, w) {
			t.Fatalf("kubelogd exited %d; want 2 and the line %q in its output:\n%s", code, w, tail(out, 30))
		}
	}
	entries, err := os.ReadDir(r.Dir)
	fatalIf(t, err)
	for _, en := range entries {
		if en.IsDir() {
			t.Errorf("kubelogd collected %s before refusing", en.Name())
		}
	}
}

// permissionRig applies kustomization to a fresh control plane with a pod that logs, and
// returns what the permission tests take away from: the objects, the Deployment, a
// kubeconfig and a client with nothing but its ServiceAccount's token.
func permissionRig(t *testing.T, kustomization string) (*env, []*unstructured.Unstructured, *appsv1.Deployment, string, kubernetes.Interface) {
	t.Helper()
	e := newEnv(t)
	objs := renderKustomization(t, kustomization)
	applyAll(t, e.c.Config, objs)
	dep, err := e.c.Client.AppsV1().Deployments("kubelogd").Get(context.Background(), "kubelogd", metav1.GetOptions{})
	fatalIf(t, err)
	e.pod("team-a", "web", nil, "app")
	e.start("team-a", "web", "app")
	e.emit("team-a", "web", "app", 10)
	kc, saCfg := serviceAccountKubeconfig(t, e.c, "kubelogd", "kubelogd")
	sa, err := kubernetes.NewForConfig(saCfg)
	fatalIf(t, err)
	return e, objs, dep, kc, sa
}
