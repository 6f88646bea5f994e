//lint:file-ignore SA1019 the test server speaks HTTP/2 through x/net/http2, as the transport under test does (see transport.go).

package daemon

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"k8s.io/client-go/rest"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// h2Server is an HTTPS server speaking HTTP/2 that allows maxStreams concurrent streams
// per connection, counts the connections accepted, and holds each request open until
// release is closed, as a followed log is.
type h2Server struct {
	*httptest.Server
	conns   atomic.Int64
	entered chan http.Header
	release chan struct{}
}

func newH2Server(t *testing.T, maxStreams uint32) *h2Server {
	s := &h2Server{entered: make(chan http.Header, 1000), release: make(chan struct{})}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.entered <- r.Header.Clone()
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		select {
		case <-s.release:
		case <-r.Context().Done():
		}
	}))
	if err := http2.ConfigureServer(s.Config, &http2.Server{MaxConcurrentStreams: maxStreams}); err != nil {
		t.Fatal(err)
	}
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	s.TLS = s.Config.TLSConfig
	s.StartTLS()
	t.Cleanup(func() {
		select {
		case <-s.release:
		default:
			close(s.release)
		}
		s.Close()
	})
	return s
}

// restConfig trusts the server's certificate through a CA file, as in-cluster
// configuration does.
func (s *h2Server) restConfig(t *testing.T) *rest.Config {
	ca := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return &rest.Config{Host: s.URL, TLSClientConfig: rest.TLSClientConfig{CAFile: ca}, BearerToken: "secret-token", UserAgent: "kubelogd"}
}

// openStreams starts n requests at once through rc's transport and waits until the
// server holds all of them; it returns the headers the server saw.
func (s *h2Server) openStreams(t *testing.T, rc *rest.Config, n int) []http.Header {
	t.Helper()
	client, err := rest.HTTPClientFor(rc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	t.Cleanup(cancel) // cleanups run last first: the streams end, then are waited for
	start := make(chan struct{})
	for range n {
		wg.Go(func() {
			<-start
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/api/v1/namespaces/ns/pods/p/log?follow=true", nil)
			resp, err := client.Do(req)
			if err != nil {
				if ctx.Err() == nil {
					t.Error(err)
				}
				return
			}
			defer resp.Body.Close()
			_, _ = resp.Body.Read(make([]byte, 1))
		})
	}
	close(start)
	var seen []http.Header
	timeout := time.After(30 * time.Second)
	for len(seen) < n {
		select {
		case h := <-s.entered:
			seen = append(seen, h)
		case <-timeout:
			t.Fatalf("the server holds %d of %d streams after 30 s", len(seen), n)
		}
	}
	return seen
}

// TestHTTP2TransportDialsOneAtATime: streams opened at once, more than one connection
// can carry, share as few connections as the server's stream limit allows, where
// client-go's transport dials once per waiting request. Client-go's wrappers still add
// the credentials and user agent.
func TestHTTP2TransportDialsOneAtATime(t *testing.T) {
	// The API server allows 1,000 streams per connection (kube-apiserver's default);
	// x/net assumes 100 until the server's settings arrive, so a server allowing fewer
	// makes requests wait for retries, which is not what this test is about.
	const streams, perConn = 300, 100

	ours := newH2Server(t, perConn)
	rc, why, err := withHTTP2Transport(ours.restConfig(t))
	if err != nil || why != "" {
		t.Fatalf("withHTTP2Transport = %q, %v; want kubelogd's transport", why, err)
	}
	for _, h := range ours.openStreams(t, rc, streams) {
		if got := h.Get("Authorization"); got != "Bearer secret-token" {
			t.Fatalf("Authorization %q reached the server, want the config's bearer token", got)
		}
		if got := h.Get("User-Agent"); got != "kubelogd" {
			t.Fatalf("User-Agent %q reached the server, want kubelogd", got)
		}
	}
	const most = streams/perConn + 2 // one per perConn streams, and a dial that lost a race or two
	if n := ours.conns.Load(); n > most {
		t.Errorf("%d streams opened at once took %d connections; want at most %d (%d streams each)", streams, n, most, perConn)
	} else {
		t.Logf("kubelogd's transport: %d streams opened at once took %d connections", streams, n)
	}

	// For comparison only (how many it dials depends on timing): client-go's own.
	theirs := newH2Server(t, perConn)
	theirs.openStreams(t, theirs.restConfig(t), streams)
	t.Logf("client-go's transport: %d streams opened at once took %d connections", streams, theirs.conns.Load())
}

// TestHTTP2TransportKeepsClientGos: where kubelogd's transport could not do what
// client-go's does, the configuration is left as it is, and the reason is given; where
// it is taken, client-go's HTTP/2 settings go with it.
func TestHTTP2TransportKeepsClientGos(t *testing.T) {
	base := func() *rest.Config { return &rest.Config{Host: "https://api.example:6443", BearerToken: "t"} }
	cases := map[string]struct {
		mutate func(*rest.Config)
		env    map[string]string
		why    string
	}{
		"plain HTTP": {mutate: func(rc *rest.Config) { rc.Host = "http://127.0.0.1:8080" }, why: "HTTPS"},
		"proxy": {mutate: func(rc *rest.Config) {
			rc.Proxy = func(*http.Request) (*url.URL, error) { return url.Parse("http://proxy:3128") }
		}, why: "proxy"},
		"environment proxy": {env: map[string]string{"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": ""}, why: "proxy"},
		"DISABLE_HTTP2":     {env: map[string]string{"DISABLE_HTTP2": "1"}, why: "DISABLE_HTTP2"},
		"HTTP/1.1 only":     {mutate: func(rc *rest.Config) { rc.NextProtos = []string{"http/1.1"} }, why: "HTTP/2"},
		"exec plugin": {mutate: func(rc *rest.Config) {
			rc.ExecProvider = &clientcmdapi.ExecConfig{Command: "get-token"}
		}, why: "credential plugin"},
		"custom":         {mutate: func(rc *rest.Config) { rc.Transport = http.DefaultTransport }, why: "transport"},
		"wrap transport": {mutate: func(rc *rest.Config) { rc.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { return rt } }, why: "transport"},
		"cert files": {mutate: func(rc *rest.Config) {
			rc.CertFile, rc.KeyFile = "/etc/kubelogd/tls.crt", "/etc/kubelogd/tls.key"
		}, why: "files"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			rc := base()
			if tc.mutate != nil {
				tc.mutate(rc)
			}
			got, why, err := withHTTP2Transport(rc)
			if err != nil || got != rc || !strings.Contains(why, tc.why) {
				t.Errorf("withHTTP2Transport = (changed %v, why %q, %v); want the config unchanged, why naming %q", got != rc, why, err, tc.why)
			}
		})
	}
	t.Run("https", func(t *testing.T) {
		t.Setenv("HTTP2_PING_TIMEOUT_SECONDS", "7")
		rc := base()
		rc.DisableCompression = true
		got, why, err := withHTTP2Transport(rc)
		if err != nil || why != "" || got.BearerToken != "t" {
			t.Fatalf("withHTTP2Transport = (why %q, %v); want kubelogd's transport and the token kept", why, err)
		}
		if rc.Transport != nil {
			t.Error("the caller's config was changed")
		}
		tr, ok := got.Transport.(*http2.Transport)
		if !ok {
			t.Fatalf("transport %T, want *http2.Transport", got.Transport)
		}
		if tr.ReadIdleTimeout != 30*time.Second || tr.PingTimeout != 7*time.Second || !tr.DisableCompression {
			t.Errorf("health check %v/%v, compression disabled %v; want 30s (client-go's default), 7s (from the environment), true",
				tr.ReadIdleTimeout, tr.PingTimeout, tr.DisableCompression)
		}
	})
}

// TestHTTP2TransportNeedsH2: a server that does not agree to HTTP/2 (a proxy speaking
// only HTTP/1.1) fails requests with an error that says so and what to do.
func TestHTTP2TransportNeedsH2(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	rc, why, err := withHTTP2Transport(&rest.Config{Host: srv.URL, TLSClientConfig: rest.TLSClientConfig{CAData: ca}})
	if err != nil || why != "" {
		t.Fatalf("withHTTP2Transport = %q, %v", why, err)
	}
	client, err := rest.HTTPClientFor(rc)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Get(srv.URL + "/version")
	if err == nil {
		resp.Body.Close()
		t.Fatal("a request to an HTTP/1.1-only server succeeded")
	}
	if !strings.Contains(err.Error(), "did not agree to HTTP/2") || !strings.Contains(err.Error(), "DISABLE_HTTP2") {
		t.Errorf("error %q does not say the server refused HTTP/2 and what to do", err)
	}
}

// TestCAFileReloaded: the CA file is read again once caReloadInterval has passed; a
// file that became unreadable or empty keeps the last good bundle.
func TestCAFileReloaded(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	path := filepath.Join(t.TempDir(), "ca.crt")
	old := x509.NewCertPool()
	c := &caFile{path: path, pool: old, loaded: time.Now()}

	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	if c.get() != old {
		t.Fatal("the CA file was read again before caReloadInterval passed")
	}
	c.loaded = time.Now().Add(-caReloadInterval)
	rotated := c.get()
	if rotated == old {
		t.Fatal("the CA file was not read again after caReloadInterval")
	}
	if _, err := srv.Certificate().Verify(x509.VerifyOptions{Roots: rotated}); err != nil {
		t.Fatalf("the reloaded bundle does not hold the new CA: %v", err)
	}

	for name, content := range map[string][]byte{"empty": nil, "garbage": []byte("not a certificate")} {
		if err := os.WriteFile(path, content, 0o600); err != nil {
			t.Fatal(err)
		}
		c.loaded = time.Now().Add(-caReloadInterval)
		if c.get() != rotated {
			t.Errorf("a CA file %s replaced the last good bundle", name)
		}
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	c.loaded = time.Now().Add(-caReloadInterval)
	if c.get() != rotated {
		t.Error("a missing CA file replaced the last good bundle")
	}
}
