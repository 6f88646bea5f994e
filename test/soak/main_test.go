// Package soak is kubelogd's seeded, randomized, model-based soak (issue 14, "The method"):
// one seed drives a schedule that composes faults over more than twenty containers on the
// test control plane (a real kube-apiserver and etcd, the fake kubelet rendering logs with
// cri-client's ReadLogs) while the containers log, and at the end a model of what the
// schedule did judges every container's file: every line once and in order, except where
// the schedule made lines unavailable, where exactly one marker with the right reason
// must stand.
//
// `go test ./test/soak` runs one fixed and one random seed for 90 s each; SOAK_SEED and
// SOAK_DURATION choose one seed and its length (`make soak SEED=... DURATION=30m`).
// KUBELOGD_E2E_LOGDIR keeps kubelogd's whole output and both sides' files of a failed run.
package soak

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kubelogd/kubelogd/internal/testing/kubelogdproc"
)

// kubelogdBin is the binary under test, built once by TestMain with the race detector.
var kubelogdBin string

func TestMain(m *testing.M) {
	os.Exit(func() int {
		// The build has -tags failpoint: the soak's failpoint steps arm internal/failpoint,
		// which the release build leaves out.
		bin, cleanup, err := kubelogdproc.Build("kubelogd-soak-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer cleanup()
		kubelogdBin = bin
		return m.Run()
	}())
}

// daemon is one run of the kubelogd process. The soak starts many over a schedule; each
// keeps its whole output, so that a failure can show what kubelogd said about a container.
type daemon = kubelogdproc.Proc

// startDaemon runs kubelogd with the environment additions (failpoints) and arguments.
// The process dies with the test binary (Pdeathsig), so a killed test leaves none behind.
func startDaemon(environ []string, kubeconfig, dir string, args ...string) (*daemon, error) {
	d, _, err := kubelogdproc.StartDaemon(kubelogdBin, kubelogdproc.Options{
		Kubeconfig: kubeconfig,
		OutputDir:  dir,
		Env:        environ,
		Args:       args,
	})
	return d, err
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	all := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(all) > n {
		all = all[len(all)-n:]
	}
	return strings.Join(all, "\n")
}

// eventually polls cond every interval until it holds or timeout passes, and returns the
// last detail cond gave when it did not hold.
func eventually(timeout, interval time.Duration, cond func() (bool, string)) (ok bool, detail string) {
	deadline := time.Now().Add(timeout)
	for {
		if ok, detail = cond(); ok {
			return true, ""
		}
		if time.Now().After(deadline) {
			return false, detail
		}
		time.Sleep(interval)
	}
}
