package faultproxy

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"k8s.io/client-go/util/cert"
)

// httpEnv is a streaming backend behind an HTTPProxy and a client that trusts the proxy.
type httpEnv struct {
	p      *HTTPProxy
	client *http.Client
}

func newHTTPEnv(t *testing.T) *httpEnv {
	t.Helper()
	backend := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("watch") != "true" {
			fmt.Fprintf(w, "%s %s", r.Method, r.URL.Path)
			return
		}
		// A watch: one event, then wait for the client to go away.
		fmt.Fprintln(w, `{"type":"ADDED"}`)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	t.Cleanup(backend.Close)
	target, _ := url.Parse(backend.URL)
	certPEM, keyPEM, err := cert.GenerateSelfSignedCertKey("127.0.0.1", []net.IP{net.ParseIP("127.0.0.1")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewHTTP(HTTPConfig{Target: target, Transport: backend.Client().Transport, Cert: pair})
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
	t.Cleanup(func() {
		_ = p.Close()
		tr.CloseIdleConnections()
	})
	return &httpEnv{p: p, client: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
}

func (e *httpEnv) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := e.client.Get(e.p.URL() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestHTTPProxiesAndFails(t *testing.T) {
	e := newHTTPEnv(t)
	if code, body := e.get(t, "/api/v1/pods"); code != 200 || body != "GET /api/v1/pods" {
		t.Fatalf("proxied: %d %q", code, body)
	}
	gone := `{"kind":"Status","code":410,"reason":"Expired"}`
	e.p.Fail(ResumingWatch, 1, http.StatusGone, gone)
	// A list is not a resuming watch: proxied.
	if code, _ := e.get(t, "/api/v1/pods?limit=500"); code != 200 {
		t.Fatalf("list: %d", code)
	}
	if code, body := e.get(t, "/api/v1/pods?watch=true&resourceVersion=42"); code != 410 || body != gone {
		t.Fatalf("resuming watch: %d %q, want the injected 410", code, body)
	}
	if got := e.p.Requests(ResumingWatch); len(got) != 1 || got[0].Injected != 410 {
		t.Fatalf("resuming watches seen: %+v", got)
	}
	if got := e.p.Requests(List); len(got) != 2 {
		t.Fatalf("lists seen: %d, want 2", len(got))
	}
	// Used up: the next one is proxied.
	resp, err := e.client.Get(e.p.URL() + "/api/v1/pods?watch=true&resourceVersion=43")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("second watch: %d", resp.StatusCode)
	}
}

func TestHTTPAbortCutsStreamingResponses(t *testing.T) {
	e := newHTTPEnv(t)
	resp, err := e.client.Get(e.p.URL() + "/api/v1/pods?watch=true&resourceVersion=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	if line, err := r.ReadString('\n'); err != nil || line != "{\"type\":\"ADDED\"}\n" {
		t.Fatalf("first event: %q, %v", line, err)
	}
	if n := e.p.InFlight(Watch); n != 1 {
		t.Fatalf("%d watches in flight, want 1", n)
	}
	if n := e.p.Abort(Watch); n != 1 {
		t.Fatalf("aborted %d, want 1", n)
	}
	if _, err := r.ReadString('\n'); err == nil || err == io.EOF {
		t.Fatalf("after Abort: %v, want an abrupt end (not a clean EOF)", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for e.p.InFlight(AnyRequest) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("an aborted request stays in flight")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestMatchers(t *testing.T) {
	tests := []struct {
		url                        string
		watch, resuming, list, log bool
	}{
		{url: "/api/v1/pods?limit=500&resourceVersion=0", list: true},
		{url: "/api/v1/namespaces/a/pods?watch=true&resourceVersion=7&allowWatchBookmarks=true", watch: true, resuming: true},
		{url: "/api/v1/pods?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan", watch: true, list: true},
		{url: "/api/v1/namespaces/a/pods/p/log?follow=true", log: true},
		{url: "/api/v1/namespaces/a/pods/p"},
	}
	for _, tt := range tests {
		u, _ := url.Parse(tt.url)
		r := &http.Request{Method: http.MethodGet, URL: u}
		if Watch(r) != tt.watch || ResumingWatch(r) != tt.resuming || List(r) != tt.list || PodLog(r) != tt.log {
			t.Errorf("%s: watch %v resuming %v list %v log %v; want %v %v %v %v", tt.url,
				Watch(r), ResumingWatch(r), List(r), PodLog(r), tt.watch, tt.resuming, tt.list, tt.log)
		}
	}
}

func TestHTTPEndFinishesStreamingResponsesCleanly(t *testing.T) {
	e := newHTTPEnv(t)
	resp, err := e.client.Get(e.p.URL() + "/api/v1/pods?watch=true&resourceVersion=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	if _, err := r.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	if n := e.p.End(Watch); n != 1 {
		t.Fatalf("ended %d, want 1", n)
	}
	if rest, err := io.ReadAll(r); err != nil || len(rest) != 0 {
		t.Fatalf("after End: %q, %v; want a clean end", rest, err)
	}
	if n := e.p.InFlight(AnyRequest); n != 0 {
		t.Fatalf("%d requests still in flight", n)
	}
}

func TestHTTPHoldDelaysResponsesUntilRelease(t *testing.T) {
	e := newHTTPEnv(t)
	e.p.Hold(Watch)
	type result struct {
		line string
		err  error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := e.client.Get(e.p.URL() + "/api/v1/pods?watch=true&resourceVersion=1")
		if err != nil {
			got <- result{err: err}
			return
		}
		defer resp.Body.Close()
		line, err := bufio.NewReader(resp.Body).ReadString('\n')
		got <- result{line, err}
	}()
	// Other requests are not held.
	if code, _ := e.get(t, "/api/v1/pods"); code != 200 {
		t.Fatalf("list while watches are held: %d", code)
	}
	select {
	case r := <-got:
		t.Fatalf("a held watch answered: %+v", r)
	case <-time.After(300 * time.Millisecond):
	}
	e.p.Release()
	select {
	case r := <-got:
		if r.err != nil || r.line != "{\"type\":\"ADDED\"}\n" {
			t.Fatalf("after Release: %+v", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the watch did not resume after Release")
	}
	e.p.Abort(Watch)
	for _, r := range e.p.Requests(AnyRequest) {
		if r.Status != 200 {
			t.Errorf("%s: status %d, want 200", r.URL, r.Status)
		}
	}
}
