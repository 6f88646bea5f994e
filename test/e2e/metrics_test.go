package e2e

import (
	"bytes"
	"context"
	goflag "flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

var update = goflag.Bool("update", false, "rewrite golden files")

// scrape fetches and parses kubelogd's /metrics.
func (d *daemon) scrape() (map[string]*dto.MetricFamily, []byte) {
	d.t.Helper()
	resp, err := http.Get(d.Metrics + "/metrics")
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		d.t.Fatal(err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		d.t.Fatalf("parsing /metrics: %v", err)
	}
	return mfs, body
}

// value sums a family's samples whose labels include match.
func value(mfs map[string]*dto.MetricFamily, name string, match map[string]string) float64 {
	mf := mfs[name]
	if mf == nil {
		return -1
	}
	var sum float64
outer:
	for _, m := range mf.Metric {
		for k, v := range match {
			found := false
			for _, l := range m.Label {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue outer
			}
		}
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	return sum
}

// TestMetrics: the counters match what happened, every metric passes the Prometheus lint,
// and the kubelogd_* families are exactly the golden list, which the README documents.
func TestMetrics(t *testing.T) {
	e := newEnv(t)
	e.pod("m1", "a", nil, "app")
	e.pod("m2", "b", nil, "app")
	e.start("m1", "a", "app")
	e.start("m2", "b", "app")
	e.emit("m1", "a", "app", 30)
	e.emit("m2", "b", "app", 12)
	dir := t.TempDir()
	d := startKubelogd(t, e.c.Kubeconfig, dir)
	d.waitReady()
	e.waitCollected(dir, "m1", "a", "app")
	e.waitCollected(dir, "m2", "b", "app")

	mfs, body := d.scrape()
	if got := value(mfs, "kubelogd_lines_written_total", map[string]string{"namespace": "m1"}); got != 30 {
		t.Errorf("lines written in m1 = %v, want 30", got)
	}
	if got := value(mfs, "kubelogd_lines_written_total", nil); got != 42 {
		t.Errorf("lines written = %v, want 42", got)
	}
	if got := value(mfs, "kubelogd_streams_active", nil); got != 2 {
		t.Errorf("streams active = %v, want 2", got)
	}
	if got := value(mfs, "kubelogd_informer_synced", nil); got != 1 {
		t.Errorf("informer synced = %v, want 1", got)
	}
	if got := value(mfs, "kubelogd_kube_api_requests_total", map[string]string{"code": "200", "method": "GET"}); got < 3 {
		t.Errorf("client-go request metrics: %v GET 200, want >= 3", got)
	}
	before := value(mfs, "kubelogd_reconnects_total", map[string]string{"reason": "eof_while_running"})

	// A cut stream: exactly one reconnect, reason eof_while_running (the proxy turns the
	// cut into a clean EOF).
	if n := e.k.CutStreams("m1", "a", "app", false); n != 1 {
		t.Fatalf("cut %d streams, want 1", n)
	}
	e.emit("m1", "a", "app", 5)
	e.waitCollected(dir, "m1", "a", "app")
	mfs, _ = d.scrape()
	if got := value(mfs, "kubelogd_reconnects_total", map[string]string{"reason": "eof_while_running"}); got != before+1 {
		t.Errorf("reconnects{eof_while_running} = %v, want %v", got, before+1)
	}
	if got := value(mfs, "kubelogd_lines_written_total", nil); got != 47 {
		t.Errorf("lines written after the cut = %v, want 47 (nothing written twice)", got)
	}
	if got := value(mfs, "kubelogd_duplicate_lines_skipped_total", nil); got < 1 {
		t.Errorf("duplicate lines skipped = %v, want >= 1 (the resume replays the last line)", got)
	}

	problems, err := promlint.New(bytes.NewReader(body)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	checkGolden(t, mfs)
}

// checkGolden compares the kubelogd_* families (name, type, help) with
// testdata/metrics.golden and checks the README lists each one.
func checkGolden(t *testing.T, mfs map[string]*dto.MetricFamily) {
	var lines []string
	for name, mf := range mfs {
		if strings.HasPrefix(name, "kubelogd_") {
			lines = append(lines, fmt.Sprintf("%s %s %s", name, strings.ToLower(mf.GetType().String()), mf.GetHelp()))
		}
	}
	sort.Strings(lines)
	got := strings.Join(lines, "\n") + "\n"
	golden := filepath.Join("testdata", "metrics.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./test/e2e -run TestMetrics -update)", err)
	}
	if got != string(want) {
		t.Errorf("metrics differ from %s (run with -update if intended):\ngot:\n%s\nwant:\n%s", golden, got, want)
	}
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	exposed := map[string]bool{}
	for _, l := range lines {
		name, _, _ := strings.Cut(l, " ")
		exposed[name] = true
		if !bytes.Contains(readme, []byte("`"+name+"`")) {
			t.Errorf("README.md does not document %s", name)
		}
	}
	// And the README's metrics table lists nothing that is not exposed.
	for _, row := range strings.Split(string(readme), "\n") {
		if rest, ok := strings.CutPrefix(row, "| `kubelogd_"); ok {
			name, _, _ := strings.Cut(rest, "`")
			if !exposed["kubelogd_"+name] {
				t.Errorf("README.md documents kubelogd_%s, which is not exposed", name)
			}
		}
	}
}

// TestForbiddenCounted: pods/log permission revoked while running — the affected stream
// fails with 403, which is counted under reason forbidden and retried.
func TestForbiddenCounted(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	kc := e.serviceAccountKubeconfig(t, "kubelogd-test", true)
	e.pod("f", "p", nil, "app")
	e.start("f", "p", "app")
	e.emit("f", "p", "app", 5)
	dir := t.TempDir()
	d := startKubelogd(t, kc, dir)
	d.waitReady()
	e.waitCollected(dir, "f", "p", "app")
	e.grantPodsLog(t, false) // revoke pods/log
	e.k.CutStreams("f", "p", "app", false)
	eventually(t, 60*time.Second, "forbidden reconnect counted", func() (bool, string) {
		mfs, _ := d.scrape()
		v := value(mfs, "kubelogd_reconnects_total", map[string]string{"reason": "forbidden"})
		return v >= 1, fmt.Sprint(v)
	})
	e.grantPodsLog(t, true)
	e.emit("f", "p", "app", 5)
	e.waitCollected(dir, "f", "p", "app")
	_ = ctx
}
