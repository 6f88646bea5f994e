// Package informer discovers the containers whose logs kubelogd collects: it watches pods
// with client-go shared informers and hands each change, reduced to the containers that
// matter, to a Handler.
package informer
