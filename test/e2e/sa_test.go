package e2e

import (
	"context"
	"path/filepath"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubelogd/kubelogd/internal/testing/cluster"
)

const testRole = "kubelogd-e2e"

// serviceAccountKubeconfig creates ServiceAccount name in namespace "kubelogd-e2e", binds it
// to a ClusterRole with pods get/list/watch (and pods/log get if withLog), and writes a
// kubeconfig that holds only its token.
func (e *env) serviceAccountKubeconfig(t *testing.T, name string, withLog bool) string {
	t.Helper()
	ctx := context.Background()
	ns := "kubelogd-e2e"
	if err := e.c.EnsureNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	if err := e.c.EnsureServiceAccount(ctx, ns, name); err != nil {
		t.Fatal(err)
	}
	e.grantPodsLog(t, withLog)
	_, err := e.c.Client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: testRole + "-" + name},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: testRole},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: ns}},
	}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	cfg, err := e.c.ServiceAccountConfig(ctx, ns, name)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "sa.kubeconfig")
	if err := cluster.WriteKubeconfig(cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// grantPodsLog sets the test ClusterRole to pods get/list/watch, plus pods/log get if withLog.
func (e *env) grantPodsLog(t *testing.T, withLog bool) {
	t.Helper()
	ctx := context.Background()
	rules := []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}}}
	if withLog {
		rules = append(rules, rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods/log"}, Verbs: []string{"get"}})
	}
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: testRole}, Rules: rules}
	_, err := e.c.Client.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		_, err = e.c.Client.RbacV1().ClusterRoles().Update(ctx, role, metav1.UpdateOptions{})
	}
	if err != nil {
		t.Fatal(err)
	}
}
