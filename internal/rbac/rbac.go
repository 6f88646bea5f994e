package rbac

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	authenticationv1client "k8s.io/client-go/kubernetes/typed/authentication/v1"
	authorizationv1client "k8s.io/client-go/kubernetes/typed/authorization/v1"
)

// Permission is one verb on one resource (of the core API group when Group is empty).
type Permission struct {
	Verb        string
	Group       string
	Resource    string
	Subresource string
}

// String is the permission as kubectl auth can-i spells it: "get pods/log", "create
// leases.coordination.k8s.io".
func (p Permission) String() string {
	r := p.Resource
	if p.Group != "" {
		r += "." + p.Group
	}
	if p.Subresource != "" {
		r += "/" + p.Subresource
	}
	return p.Verb + " " + r
}

// Required returns the permissions kubelogd needs in every namespace it collects: the
// rules of deploy/cluster/clusterrole.yaml and deploy/namespaced/role.yaml, no more.
func Required() []Permission {
	return []Permission{
		{Verb: "get", Resource: "pods"},
		{Verb: "list", Resource: "pods"},
		{Verb: "watch", Resource: "pods"},
		{Verb: "get", Resource: "pods", Subresource: "log"},
	}
}

// leaseGroup is the API group of Leases.
const leaseGroup = "coordination.k8s.io"

// LeasePermissions returns the permissions replicas sharing the pods through shard
// Leases need in their own namespace: the rules of deploy/ha/role.yaml, no more.
func LeasePermissions() []Permission {
	var out []Permission
	for _, v := range []string{"get", "list", "watch", "create", "update", "delete"} {
		out = append(out, Permission{Verb: v, Group: leaseGroup, Resource: "leases"})
	}
	return out
}

// Missing is a permission the identity lacks in one scope.
type Missing struct {
	Permission
	// Namespace is the scope; empty means all namespaces (cluster-wide).
	Namespace string
	// Reason is the authorizer's explanation or evaluation error, if it gave one.
	Reason string
}

// Error lists every missing permission. Its message has one line per permission, e.g.
//
//	cannot get pods/log in all namespaces as system:serviceaccount:kubelogd:kubelogd — see deploy/cluster/clusterrole.yaml
type Error struct {
	// Identity is the user the API server authenticated, or empty if unknown.
	Identity string
	Missing  []Missing
}

func (e *Error) Error() string {
	who := e.Identity
	if who == "" {
		who = "the configured identity"
	}
	// One line per permission, so a permission missing in 30 namespaces is one line.
	type line struct {
		perm    Permission
		scopes  []string
		reasons []string
	}
	var lines []*line
	for _, m := range e.Missing {
		i := slices.IndexFunc(lines, func(l *line) bool { return l.perm == m.Permission })
		if i < 0 {
			i = len(lines)
			lines = append(lines, &line{perm: m.Permission})
		}
		l := lines[i]
		l.scopes = append(l.scopes, m.Namespace)
		if m.Reason != "" && !slices.Contains(l.reasons, m.Reason) {
			l.reasons = append(l.reasons, m.Reason)
		}
	}
	out := make([]string, len(lines))
	for i, l := range lines {
		scope, hint := "all namespaces", "deploy/cluster/clusterrole.yaml"
		if !(len(l.scopes) == 1 && l.scopes[0] == "") {
			scope, hint = "namespace "+strings.Join(l.scopes, ", "), "deploy/namespaced/role.yaml"
			if len(l.scopes) > 1 {
				scope = "namespaces " + strings.Join(l.scopes, ", ")
			}
		}
		if l.perm.Group == leaseGroup {
			hint = "deploy/ha/role.yaml"
		}
		reason := ""
		if len(l.reasons) > 0 {
			reason = " (" + strings.Join(l.reasons, "; ") + ")"
		}
		out[i] = fmt.Sprintf("cannot %s in %s as %s%s — see %s", l.perm, scope, who, reason, hint)
	}
	return strings.Join(out, "\n")
}

// concurrency bounds the access reviews in flight: a few namespaces are checked at once,
// a few hundred do not open a few hundred requests.
const concurrency = 8

// Check asks the API server, with one SelfSubjectAccessReview per permission and scope,
// whether the client's identity holds every Required permission in each namespace, or
// cluster-wide if namespaces is empty. identity names the user in messages (see Identity;
// empty if unknown). A missing permission returns an *Error listing all missing ones; a
// failed review returns another error.
func Check(ctx context.Context, client authorizationv1client.SelfSubjectAccessReviewsGetter, namespaces []string, identity string) error {
	scopes := namespaces
	if len(scopes) == 0 {
		scopes = []string{metav1.NamespaceAll}
	}
	return check(ctx, client, Required(), scopes, identity)
}

// CheckLeases is Check for the LeasePermissions in namespace.
func CheckLeases(ctx context.Context, client kubernetes.Interface, namespace string) error {
	who, _ := Identity(ctx, client.AuthenticationV1())
	return check(ctx, client.AuthorizationV1(), LeasePermissions(), []string{namespace}, who)
}

func check(ctx context.Context, client authorizationv1client.SelfSubjectAccessReviewsGetter, perms []Permission, scopes []string, identity string) error {
	type review struct {
		perm    Permission
		ns      string
		missing *Missing
		err     error
	}
	var reviews []*review
	for _, ns := range scopes {
		for _, p := range perms {
			reviews = append(reviews, &review{perm: p, ns: ns})
		}
	}
	sem := make(chan struct{}, concurrency)
	var wg sync.WaitGroup
	for _, r := range reviews {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				r.err = ctx.Err()
				return
			}
			defer func() { <-sem }()
			if r.err = ctx.Err(); r.err != nil {
				return
			}
			r.missing, r.err = review1(ctx, client, r.perm, r.ns)
		}()
	}
	wg.Wait()
	e := &Error{Identity: identity}
	var errs []error
	for _, r := range reviews {
		switch {
		case r.err != nil:
			errs = append(errs, r.err)
		case r.missing != nil:
			e.Missing = append(e.Missing, *r.missing)
		}
	}
	if len(errs) > 0 {
		// Only the first: the others are almost always the same unreachable server.
		return errs[0]
	}
	if len(e.Missing) > 0 {
		return e
	}
	return nil
}

func review1(ctx context.Context, client authorizationv1client.SelfSubjectAccessReviewsGetter, p Permission, ns string) (*Missing, error) {
	res, err := client.SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
		Spec: authorizationv1.SelfSubjectAccessReviewSpec{
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: ns, Verb: p.Verb, Group: p.Group, Resource: p.Resource, Subresource: p.Subresource,
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		scope := "all namespaces"
		if ns != "" {
			scope = "namespace " + ns
		}
		return nil, fmt.Errorf("checking whether kubelogd may %s in %s (SelfSubjectAccessReview): %w", p, scope, err)
	}
	if res.Status.Allowed {
		return nil, nil
	}
	reason := res.Status.Reason
	if ev := res.Status.EvaluationError; ev != "" {
		// E.g. a binding to a role that does not exist: worth showing.
		if reason != "" {
			reason += "; "
		}
		reason += ev
	}
	return &Missing{Permission: p, Namespace: ns, Reason: reason}, nil
}

// Identity returns the user name the API server authenticates the client as (e.g.
// system:serviceaccount:kubelogd:kubelogd), with a SelfSubjectReview.
func Identity(ctx context.Context, client authenticationv1client.SelfSubjectReviewsGetter) (string, error) {
	res, err := client.SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("asking the API server who kubelogd is (SelfSubjectReview): %w", err)
	}
	if res.Status.UserInfo.Username == "" {
		return "", errors.New("asking the API server who kubelogd is (SelfSubjectReview): empty user name")
	}
	return res.Status.UserInfo.Username, nil
}

// CheckSelf finds the client's identity and runs Check. An identity it cannot find only
// makes messages less specific; it is not an error in itself.
func CheckSelf(ctx context.Context, client kubernetes.Interface, namespaces []string) error {
	who, _ := Identity(ctx, client.AuthenticationV1())
	return Check(ctx, client.AuthorizationV1(), namespaces, who)
}
