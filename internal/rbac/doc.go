// Package rbac checks at start that kubelogd's identity holds every permission it needs,
// so that a missing one is one clear error naming verb, resource, scope and identity,
// instead of an informer that never syncs or logs that are silently not collected.
package rbac
