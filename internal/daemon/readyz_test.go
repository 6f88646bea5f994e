package daemon

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubelogd/kubelogd/informer"
)

func TestReadyz(t *testing.T) {
	dir := t.TempDir()
	ro := filepath.Join(t.TempDir(), "ro")
	if err := os.Mkdir(ro, 0o500); err != nil {
		t.Fatal(err)
	}
	type tc struct {
		name      string
		synced    bool
		forbidden string
		dir       string
		code      int
		body      string
	}
	tests := []tc{
		{"before sync", false, "", dir, 503, "not ready: pod informers not synced yet: waiting 3m0s for the first list of pods"},
		{"synced", true, "", dir, 200, "ok"},
		{"log stream forbidden", true, `pods "p" is forbidden`, dir, 503, "permission denied reading logs"},
		{"unwritable output dir", true, "", filepath.Join(dir, "missing"), 503, "not writable"},
	}
	if os.Geteuid() != 0 { // root writes anywhere
		tests = append(tests, tc{"read-only output dir", true, "", ro, 503, "not writable"})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			syncErr := func() error {
				if tt.synced {
					return nil
				}
				return fmt.Errorf("%w: waiting 3m0s for the first list of pods in all namespaces", informer.ErrNotSynced)
			}
			h := readyHandler(syncErr, func() string { return tt.forbidden }, tt.dir)
			rec := httptest.NewRecorder()
			h(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
			if rec.Code != tt.code || !strings.Contains(rec.Body.String(), tt.body) {
				t.Fatalf("readyz = %d %q, want %d containing %q", rec.Code, rec.Body.String(), tt.code, tt.body)
			}
		})
	}
}
