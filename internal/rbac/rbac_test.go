package rbac

import (
	"context"
	"errors"
	"strings"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

const sa = "system:serviceaccount:kubelogd:kubelogd"

// grants answers SelfSubjectAccessReviews from a set of "verb resource namespace" keys
// ("*" as namespace: any namespace, including all namespaces).
func grants(t *testing.T, allowed ...string) (*fake.Clientset, *[]string) {
	t.Helper()
	c := fake.NewClientset()
	var asked []string
	c.PrependReactor("create", "selfsubjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		r := a.(k8stesting.CreateAction).GetObject().(*authorizationv1.SelfSubjectAccessReview)
		ra := r.Spec.ResourceAttributes
		res := ra.Resource
		if ra.Group != "" {
			res += "." + ra.Group
		}
		if ra.Subresource != "" {
			res += "/" + ra.Subresource
		}
		key := ra.Verb + " " + res + " "
		asked = append(asked, key+ra.Namespace)
		out := r.DeepCopy()
		for _, g := range allowed {
			if g == key+ra.Namespace || g == key+"*" {
				out.Status.Allowed = true
			}
		}
		return true, out, nil
	})
	return c, &asked
}

var allFour = []string{"get pods *", "list pods *", "watch pods *", "get pods/log *"}

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name       string
		allowed    []string
		namespaces []string
		identity   string
		want       []string // lines of the error; nil: no error
	}{
		{name: "cluster-wide, everything granted", allowed: allFour},
		{name: "namespaced, everything granted", allowed: allFour, namespaces: []string{"a", "b"}},
		{
			name:     "cluster-wide, pods/log missing",
			allowed:  []string{"get pods *", "list pods *", "watch pods *"},
			identity: sa,
			want:     []string{"cannot get pods/log in all namespaces as system:serviceaccount:kubelogd:kubelogd — see deploy/cluster/clusterrole.yaml"},
		},
		{
			name:     "cluster-wide, nothing granted: every permission, in order",
			identity: sa,
			want: []string{
				"cannot get pods in all namespaces as " + sa + " — see deploy/cluster/clusterrole.yaml",
				"cannot list pods in all namespaces as " + sa + " — see deploy/cluster/clusterrole.yaml",
				"cannot watch pods in all namespaces as " + sa + " — see deploy/cluster/clusterrole.yaml",
				"cannot get pods/log in all namespaces as " + sa + " — see deploy/cluster/clusterrole.yaml",
			},
		},
		{
			name:       "granted in one namespace only",
			allowed:    []string{"get pods a", "list pods a", "watch pods a", "get pods/log a", "watch pods c"},
			namespaces: []string{"a", "b", "c"},
			identity:   sa,
			want: []string{
				"cannot get pods in namespaces b, c as " + sa + " — see deploy/namespaced/role.yaml",
				"cannot list pods in namespaces b, c as " + sa + " — see deploy/namespaced/role.yaml",
				"cannot watch pods in namespace b as " + sa + " — see deploy/namespaced/role.yaml",
				"cannot get pods/log in namespaces b, c as " + sa + " — see deploy/namespaced/role.yaml",
			},
		},
		{
			name:    "unknown identity",
			allowed: []string{"get pods *", "list pods *", "get pods/log *"},
			want:    []string{"cannot watch pods in all namespaces as the configured identity — see deploy/cluster/clusterrole.yaml"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, asked := grants(t, tc.allowed...)
			err := Check(t.Context(), c.AuthorizationV1(), tc.namespaces, tc.identity)
			scopes := max(len(tc.namespaces), 1)
			if len(*asked) != 4*scopes {
				t.Errorf("%d reviews, want %d (4 permissions × %d scopes): %q", len(*asked), 4*scopes, scopes, *asked)
			}
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Check = %v, want nil", err)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Check = %v (%T), want *Error", err, err)
			}
			if got := strings.Split(err.Error(), "\n"); strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Fatalf("error lines:\n%s\nwant:\n%s", err, strings.Join(tc.want, "\n"))
			}
		})
	}
}

// TestCheckReason: an authorizer's explanation, such as RBAC's evaluation error for a
// binding to a role that does not exist, is part of the line.
func TestCheckReason(t *testing.T) {
	c := fake.NewClientset()
	c.PrependReactor("create", "selfsubjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		r := a.(k8stesting.CreateAction).GetObject().(*authorizationv1.SelfSubjectAccessReview).DeepCopy()
		r.Status.Allowed = r.Spec.ResourceAttributes.Subresource != "log"
		if !r.Status.Allowed {
			r.Status.EvaluationError = `clusterrole.rbac.authorization.k8s.io "kubelogd" not found`
		}
		return true, r, nil
	})
	err := Check(t.Context(), c.AuthorizationV1(), nil, sa)
	want := `cannot get pods/log in all namespaces as ` + sa + ` (clusterrole.rbac.authorization.k8s.io "kubelogd" not found) — see deploy/cluster/clusterrole.yaml`
	if err == nil || err.Error() != want {
		t.Fatalf("Check = %v, want %s", err, want)
	}
}

// TestCheckAPIError: a review that fails is an error that is not an *Error, naming what
// was being checked and wrapping the cause.
func TestCheckAPIError(t *testing.T) {
	c := fake.NewClientset()
	cause := apierrors.NewServiceUnavailable("etcd is down")
	c.PrependReactor("create", "selfsubjectaccessreviews", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, cause
	})
	err := Check(t.Context(), c.AuthorizationV1(), []string{"a"}, sa)
	var e *Error
	if err == nil || errors.As(err, &e) || !apierrors.IsServiceUnavailable(err) {
		t.Fatalf("Check = %v, want a wrapped ServiceUnavailable that is not *Error", err)
	}
	if !strings.Contains(err.Error(), "SelfSubjectAccessReview") || !strings.Contains(err.Error(), "namespace a") {
		t.Errorf("error %q does not say what was being checked", err)
	}
}

func TestCheckCancelled(t *testing.T) {
	c, _ := grants(t, allFour...)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	ns := make([]string, 20)
	for i := range ns {
		ns[i] = "ns"
	}
	if err := Check(ctx, c.AuthorizationV1(), ns, sa); !errors.Is(err, context.Canceled) {
		t.Fatalf("Check on a cancelled context = %v, want context.Canceled", err)
	}
}

func TestIdentity(t *testing.T) {
	c := fake.NewClientset()
	c.PrependReactor("create", "selfsubjectreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		r := a.(k8stesting.CreateAction).GetObject().(*authenticationv1.SelfSubjectReview).DeepCopy()
		r.Status.UserInfo.Username = sa
		return true, r, nil
	})
	got, err := Identity(t.Context(), c.AuthenticationV1())
	if err != nil || got != sa {
		t.Fatalf("Identity = %q, %v; want %q", got, err, sa)
	}

	failing := fake.NewClientset()
	failing.PrependReactor("create", "selfsubjectreviews", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewNotFound(schema.GroupResource{Group: "authentication.k8s.io", Resource: "selfsubjectreviews"}, "")
	})
	if _, err := Identity(t.Context(), failing.AuthenticationV1()); !apierrors.IsNotFound(err) {
		t.Fatalf("Identity on a server without SelfSubjectReview = %v, want the NotFound", err)
	}
}

// TestCheckSelf: the identity found by a SelfSubjectReview names the user in the error;
// without one the check still runs.
func TestCheckSelf(t *testing.T) {
	c, _ := grants(t, "get pods *", "list pods *", "watch pods *")
	c.PrependReactor("create", "selfsubjectreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		r := a.(k8stesting.CreateAction).GetObject().(*authenticationv1.SelfSubjectReview).DeepCopy()
		r.Status.UserInfo.Username = sa
		return true, r, nil
	})
	err := CheckSelf(t.Context(), c, nil)
	if err == nil || !strings.Contains(err.Error(), "cannot get pods/log in all namespaces as "+sa) {
		t.Fatalf("CheckSelf = %v", err)
	}
}

// Each lease verb missing is named, with the Role to apply; the pod permissions are not
// asked again.
func TestCheckLeases(t *testing.T) {
	all := []string{"get", "list", "watch", "create", "update", "delete"}
	for _, missing := range all {
		var allowed []string
		for _, v := range all {
			if v != missing {
				allowed = append(allowed, v+" leases.coordination.k8s.io kubelogd")
			}
		}
		c, asked := grants(t, allowed...)
		err := CheckLeases(t.Context(), c, "kubelogd")
		want := "cannot " + missing + " leases.coordination.k8s.io in namespace kubelogd"
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "deploy/ha/role.yaml") {
			t.Errorf("without %s: %v, want an error with %q and deploy/ha/role.yaml", missing, err, want)
		}
		if len(*asked) != len(all) {
			t.Errorf("asked %q, want the %d lease verbs", *asked, len(all))
		}
	}
	c, _ := grants(t)
	if err := CheckLeases(t.Context(), c, "kubelogd"); err == nil || strings.Count(err.Error(), "\n") != len(all)-1 {
		t.Errorf("with no grant: %v, want one line per verb", err)
	}
}
