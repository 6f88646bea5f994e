// Package cluster runs a real control plane on loopback — etcd and kube-apiserver from
// ./bin, with RBAC on and a throwaway CA — plus a fake kubelet that the apiserver proxies
// pods/log to, for the tests and for make demo.
//
// Child processes run in their own process group with a parent-death signal, and a janitor
// process removes the temporary directory if the test binary dies without cleaning up, so a
// killed or timed-out test leaves nothing behind.
package cluster
