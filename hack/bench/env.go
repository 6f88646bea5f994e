package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubelogd/kubelogd/internal/testing/cluster"
)

// env is one control plane with several fake kubelets, each in a kubelet host process
// (see host.go). Pods are spread over the kubelets because each fake kubelet serializes
// its status writes.
type env struct {
	c     *cluster.Cluster
	hosts []*hostProc
}

// container is the only container of every bench pod.
const container = "c"

// startEnv starts a control plane and nodes kubelet hosts; self is the bench binary.
func startEnv(ctx context.Context, self string, nodes int, logger *slog.Logger) (*env, error) {
	c, err := cluster.Start(ctx, cluster.Options{Logger: logger})
	if err != nil {
		return nil, err
	}
	e := &env{c: c}
	for i := range nodes {
		certPEM, keyPEM, err := c.KubeletServingCert()
		if err == nil {
			node := fmt.Sprintf("bench-node-%d", i)
			var h *hostProc
			h, err = startHost(ctx, self, c.Kubeconfig, node, filepath.Join(c.Dir, node), certPEM, keyPEM)
			if err == nil {
				e.hosts = append(e.hosts, h)
			}
		}
		if err != nil {
			e.stop()
			return nil, err
		}
	}
	return e, nil
}

func (e *env) stop() {
	var wg sync.WaitGroup
	for _, h := range e.hosts {
		wg.Go(h.stop)
	}
	wg.Wait()
	e.c.Stop()
}

// podSpec is a one-container pod bound to node.
func podSpec(ns, name, node string, restart corev1.RestartPolicy) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.PodSpec{
			NodeName:      node,
			RestartPolicy: restart,
			Containers:    []corev1.Container{{Name: container, Image: "busybox"}},
		},
	}
}

func podName(i int) string { return fmt.Sprintf("p-%05d", i) }

// each runs req on every host, with Pods split among them (pod i on host i mod hosts),
// and returns the answers in host order.
func (e *env) each(ctx context.Context, req hostReq, pods []int) ([]hostResp, [][]int, error) {
	split := make([][]int, len(e.hosts))
	for _, i := range pods {
		split[i%len(e.hosts)] = append(split[i%len(e.hosts)], i)
	}
	resps := make([]hostResp, len(e.hosts))
	errs := make([]error, len(e.hosts))
	var wg sync.WaitGroup
	for h := range e.hosts {
		wg.Go(func() {
			r := req
			r.Pods = split[h]
			resps[h], errs[h] = e.hosts[h].call(ctx, r)
		})
	}
	wg.Wait()
	return resps, split, errors.Join(errs...)
}

// createRunning creates pods p-<from>… p-<to-1> in ns, each with its container running
// and lines lines of size bytes in its CRI file, and returns when each pod was ready.
func (e *env) createRunning(ctx context.Context, ns string, from, to, lines, size int) (map[int]time.Time, error) {
	if err := e.c.EnsureNamespace(ctx, ns); err != nil {
		return nil, err
	}
	var pods []int
	for i := from; i < to; i++ {
		pods = append(pods, i)
	}
	resps, split, err := e.each(ctx, hostReq{Op: "create", NS: ns, Lines: lines, Size: size, Workers: 3}, pods)
	if err != nil {
		return nil, err
	}
	ready := map[int]time.Time{}
	for h, r := range resps {
		for j, t := range r.Ready {
			ready[split[h][j]] = time.Unix(0, t)
		}
	}
	return ready, nil
}

// waitFollowers waits until the kubelets serve, for each entry of pods, one follow
// stream of that pod of ns that watches its file (list a pod twice for two streams).
func (e *env) waitFollowers(ctx context.Context, ns string, pods []int) error {
	per := make([]int, len(e.hosts))
	for _, i := range pods {
		per[i%len(e.hosts)]++
	}
	errs := make([]error, len(e.hosts))
	var wg sync.WaitGroup
	for h := range e.hosts {
		wg.Go(func() { _, errs[h] = e.hosts[h].call(ctx, hostReq{Op: "followers", NS: ns, N: per[h]}) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// waitClosed waits until no kubelet serves a log stream of ns any more.
func (e *env) waitClosed(ctx context.Context, ns string) error {
	errs := make([]error, len(e.hosts))
	var wg sync.WaitGroup
	for h := range e.hosts {
		wg.Go(func() { _, errs[h] = e.hosts[h].call(ctx, hostReq{Op: "closed", NS: ns}) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// sysctl is a /proc/sys setting raised for the run and restored afterwards.
type sysctl struct {
	path     string
	old, set int
}

// raiseSysctl sets a /proc/sys integer to at least want. restore puts the old value back
// unless someone else changed it meanwhile.
func raiseSysctl(name string, want int) (*sysctl, error) {
	path := "/proc/sys/" + strings.ReplaceAll(name, ".", "/")
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	old, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s := &sysctl{path: path, old: old, set: old}
	if old >= want {
		return s, nil
	}
	if err := os.WriteFile(path, []byte(strconv.Itoa(want)), 0o644); err != nil {
		return nil, fmt.Errorf("raising %s from %d to %d (needs root): %w", name, old, want, err)
	}
	s.set = want
	return s, nil
}

func (s *sysctl) restore() error {
	if s == nil || s.set == s.old {
		return nil
	}
	data, err := os.ReadFile(s.path)
	if err != nil {
		return err
	}
	if cur, _ := strconv.Atoi(strings.TrimSpace(string(data))); cur != s.set {
		return nil // changed by someone else since: theirs now
	}
	return os.WriteFile(s.path, []byte(strconv.Itoa(s.old)), 0o644)
}
