package rbac_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/kubelogd/kubelogd/internal/rbac"
	"github.com/kubelogd/kubelogd/internal/testing/cluster"
)

// TestAgainstAPIServer runs the check with token-only ServiceAccount clients against a
// real kube-apiserver with RBAC, bound to the rules of deploy/ as they are shipped.
func TestAgainstAPIServer(t *testing.T) {
	c, _ := cluster.New(t)
	ctx := t.Context()
	admin := c.Client
	for _, ns := range []string{"kubelogd", "team-a", "team-b"} {
		if err := c.EnsureNamespace(ctx, ns); err != nil {
			t.Fatal(err)
		}
	}
	var cr rbacv1.ClusterRole
	decodeFile(t, "../../deploy/cluster/clusterrole.yaml", &cr)
	var role rbacv1.Role
	decodeFile(t, "../../deploy/namespaced/role.yaml", &role)
	role.Namespace = "team-a"
	must(t, create(ctx, admin.RbacV1().ClusterRoles().Create, &cr))
	must(t, create(ctx, admin.RbacV1().Roles("team-a").Create, &role))
	sa := func(ns, name string) rbacv1.Subject {
		must(t, c.EnsureServiceAccount(ctx, ns, name))
		return rbacv1.Subject{Kind: "ServiceAccount", Namespace: ns, Name: name}
	}
	must(t, create(ctx, admin.RbacV1().ClusterRoleBindings().Create, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "kubelogd"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: cr.Name},
		Subjects:   []rbacv1.Subject{sa("kubelogd", "kubelogd")},
	}))
	must(t, create(ctx, admin.RbacV1().RoleBindings("team-a").Create, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "kubelogd"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: role.Name},
		Subjects:   []rbacv1.Subject{sa("team-a", "kubelogd")},
	}))
	// A binding to a ClusterRole that does not exist (a typo in a hand-written binding).
	must(t, create(ctx, admin.RbacV1().ClusterRoleBindings().Create, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "dangling"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "kubelogd-typo"},
		Subjects:   []rbacv1.Subject{sa("kubelogd", "dangling")},
	}))
	sa("kubelogd", "unbound")

	client := func(ns, name string) kubernetes.Interface {
		cfg, err := c.ServiceAccountConfig(ctx, ns, name)
		if err != nil {
			t.Fatal(err)
		}
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return cs
	}
	lines := func(who, scope, hint string) string {
		var out []string
		for _, p := range rbac.Required() {
			out = append(out, "cannot "+p.String()+" in "+scope+" as "+who+" — see "+hint)
		}
		return strings.Join(out, "\n")
	}
	const (
		clusterWide = "system:serviceaccount:kubelogd:kubelogd"
		team        = "system:serviceaccount:team-a:kubelogd"
		unbound     = "system:serviceaccount:kubelogd:unbound"
	)
	for _, tc := range []struct {
		name       string
		client     kubernetes.Interface
		who        string
		namespaces []string
		want       string // the whole message; "" for no error
	}{
		{"ClusterRole, all namespaces", client("kubelogd", "kubelogd"), clusterWide, nil, ""},
		{"ClusterRole, some namespaces", client("kubelogd", "kubelogd"), clusterWide, []string{"team-a", "team-b", "kube-system"}, ""},
		{"Role, its namespace", client("team-a", "kubelogd"), team, []string{"team-a"}, ""},
		{"Role, another namespace too", client("team-a", "kubelogd"), team, []string{"team-a", "team-b"},
			lines(team, "namespace team-b", "deploy/namespaced/role.yaml")},
		{"Role, all namespaces", client("team-a", "kubelogd"), team, nil,
			lines(team, "all namespaces", "deploy/cluster/clusterrole.yaml")},
		{"no binding", client("kubelogd", "unbound"), unbound, nil,
			lines(unbound, "all namespaces", "deploy/cluster/clusterrole.yaml")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			who, err := rbac.Identity(ctx, tc.client.AuthenticationV1())
			if err != nil || who != tc.who {
				t.Fatalf("Identity = %q, %v; want %q", who, err, tc.who)
			}
			err = rbac.CheckSelf(ctx, tc.client, tc.namespaces)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("CheckSelf = %v, want nil", err)
				}
				return
			}
			var e *rbac.Error
			if !errors.As(err, &e) || err.Error() != tc.want {
				t.Fatalf("CheckSelf = %v\nwant:\n%s", err, tc.want)
			}
		})
	}

	// RBAC's evaluation error names the missing ClusterRole.
	err := rbac.CheckSelf(ctx, client("kubelogd", "dangling"), nil)
	if err == nil || !strings.Contains(err.Error(), `cannot get pods/log in all namespaces as system:serviceaccount:kubelogd:dangling (`) ||
		!strings.Contains(err.Error(), `"kubelogd-typo" not found`) {
		t.Fatalf("CheckSelf with a dangling binding = %v, want the missing ClusterRole named", err)
	}
	t.Logf("dangling binding:\n%v", err)
}

func decodeFile(t *testing.T, path string, into runtime.Object) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := scheme.Codecs.UniversalDeserializer().Decode(data, nil, into); err != nil {
		t.Fatalf("decoding %s: %v", path, err)
	}
}

func create[T any](ctx context.Context, f func(context.Context, T, metav1.CreateOptions) (T, error), obj T) error {
	_, err := f(ctx, obj, metav1.CreateOptions{})
	return err
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
