package e2e

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubelogd/kubelogd/internal/rbac"
)

// TestHALeaseEveryPermissionNeeded (issue #16) removes, one at a time, each verb of the
// shipped Lease Role of deploy/ha and shows that kubelogd, run as that Deployment's pod
// with the ServiceAccount's token, refuses to start with exit code 2 and a line naming
// the verb, the resource and the Role to fix, before it takes a shard or writes a file.
func TestHALeaseEveryPermissionNeeded(t *testing.T) {
	e, objs, dep, kc, sa := permissionRig(t, "deploy/ha")
	ctx := context.Background()

	roles := e.c.Client.RbacV1().Roles("kubelogd")
	full, err := roles.Get(ctx, "kubelogd-leases", metav1.GetOptions{})
	fatalIf(t, err)
	if len(full.Rules) != 1 {
		t.Fatalf("the Lease Role has %d rules, want 1", len(full.Rules))
	}
	setVerbs := func(t *testing.T, verbs []string) {
		t.Helper()
		r, err := roles.Get(ctx, "kubelogd-leases", metav1.GetOptions{})
		fatalIf(t, err)
		r.Rules = []rbacv1.PolicyRule{full.Rules[0]}
		r.Rules[0].Verbs = verbs
		_, err = roles.Update(ctx, r, metav1.UpdateOptions{})
		fatalIf(t, err)
	}
	verbs := full.Rules[0].Verbs
	for vi, verb := range verbs {
		t.Run("without "+verb, func(t *testing.T) {
			setVerbs(t, slices.Delete(slices.Clone(verbs), vi, vi+1))
			defer func() {
				setVerbs(t, verbs)
				eventually(t, 10*time.Second, "Role restored", func() (bool, string) {
					err := rbac.CheckLeases(ctx, sa, "kubelogd")
					return err == nil, fmt.Sprint(err)
				})
			}()
			// RBAC picks up the change through its informers: wait until the check
			// names exactly the removed verb, and take its line as the one kubelogd
			// must print.
			var want string
			eventually(t, 10*time.Second, "the check to see the removal", func() (bool, string) {
				err := rbac.CheckLeases(ctx, sa, "kubelogd")
				var re *rbac.Error
				if !errors.As(err, &re) || len(re.Missing) != 1 || re.Missing[0].Verb != verb {
					return false, fmt.Sprint(err)
				}
				want = err.Error()
				return true, ""
			})
			for _, w := range []string{"cannot " + verb + " leases", "in namespace kubelogd", "see deploy/ha/role.yaml"} {
				if !strings.Contains(want, w) {
					t.Fatalf("the check says %q, want it to contain %q", want, w)
				}
			}

			refusesToStart(t, dep, kc, findObject[corev1.ConfigMap](t, objs, "ConfigMap", "kubelogd-config"), want)
			leases, err := e.c.Client.CoordinationV1().Leases("kubelogd").List(ctx, metav1.ListOptions{})
			fatalIf(t, err)
			for _, l := range leases.Items {
				if strings.HasPrefix(l.Name, "kubelogd-shard-") && l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != "" {
					t.Errorf("Lease %s taken by %s although kubelogd refused to start", l.Name, *l.Spec.HolderIdentity)
				}
			}
		})
	}
	if len(verbs) != 6 {
		t.Errorf("the Lease Role has %d verbs, want 6 (get, list, watch, create, update, delete)", len(verbs))
	}
}
