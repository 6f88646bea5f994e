package faultproxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Match selects requests.
type Match func(*http.Request) bool

// AnyRequest matches every request.
func AnyRequest(*http.Request) bool { return true }

// Watch matches Kubernetes watch requests (?watch=true), including the initial-events
// watches a reflector may list with.
func Watch(r *http.Request) bool {
	w := r.URL.Query().Get("watch")
	return w == "true" || w == "1"
}

// ResumingWatch matches watches that continue from a resourceVersion (a reflector's watch
// after its list), not those that list through initial events.
func ResumingWatch(r *http.Request) bool {
	q := r.URL.Query()
	return Watch(r) && q.Get("resourceVersion") != "" && q.Get("resourceVersion") != "0" && q.Get("sendInitialEvents") != "true"
}

// List matches what a reflector lists with: a GET of a collection that is not a plain watch
// (a list, or a watch that sends initial events). It recognizes collections by their path
// ending in a resource name without a subresource or object name, which is enough for
// /api/v1/pods and /api/v1/namespaces/<ns>/pods.
func List(r *http.Request) bool {
	if r.Method != http.MethodGet {
		return false
	}
	q := r.URL.Query()
	if Watch(r) && q.Get("sendInitialEvents") != "true" {
		return false
	}
	return isCollection(r.URL.Path)
}

func isCollection(path string) bool {
	// /api/v1/<resource> or /api/v1/namespaces/<ns>/<resource>
	parts := splitPath(path)
	switch {
	case len(parts) == 3 && parts[0] == "api":
		return true
	case len(parts) == 5 && parts[0] == "api" && parts[2] == "namespaces":
		return true
	}
	return false
}

// splitPath returns the non-empty segments of a URL path.
func splitPath(path string) []string {
	return strings.FieldsFunc(path, func(r rune) bool { return r == '/' })
}

// PodLog matches pods/log requests.
func PodLog(r *http.Request) bool {
	parts := splitPath(r.URL.Path)
	return len(parts) == 7 && parts[4] == "pods" && parts[6] == "log"
}

// HTTPConfig configures an HTTPProxy.
type HTTPConfig struct {
	// Target is the server's base URL, e.g. https://127.0.0.1:6443.
	Target *url.URL
	// Transport reaches the target with the proxy's own credentials; clients of the proxy
	// are not authenticated, so a test must only hand its address to trusted clients.
	Transport http.RoundTripper
	// Cert is the proxy's serving certificate, valid for 127.0.0.1 and trusted by the
	// clients (for a test cluster: issued by its CA).
	Cert tls.Certificate
}

// HTTPProxy is a TLS-terminating reverse proxy on 127.0.0.1 that streams responses as they
// come (watches and log follows included) and injects faults into chosen requests. It is
// safe for concurrent use.
type HTTPProxy struct {
	srv *http.Server
	ln  net.Listener
	url string

	mu       sync.Mutex
	failures []*httpFailure
	inflight map[*inflight]struct{}
	seen     []*Request
	holds    []Match
	// changed is closed and replaced whenever holds change, to wake held writers.
	changed chan struct{}
}

// Request is a request the proxy received, with how it was answered.
type Request struct {
	Method string
	URL    *url.URL
	// Time is when the request arrived.
	Time time.Time
	// Injected is the status code of an injected failure, 0 if the request was proxied.
	Injected int
	// Status is the status code answered, injected or the target's; 0 until the
	// response headers are written.
	Status int
}

type httpFailure struct {
	match     Match
	remaining int // < 0: until removed
	code      int
	body      string
}

type inflight struct {
	r       *http.Request
	cancel  context.CancelFunc
	aborted bool // set under HTTPProxy.mu by Abort
	ended   bool // set under HTTPProxy.mu by End
}

// NewHTTP starts an HTTPProxy on a free port of 127.0.0.1.
func NewHTTP(cfg HTTPConfig) (*HTTPProxy, error) {
	if cfg.Target == nil || cfg.Transport == nil || len(cfg.Cert.Certificate) == 0 {
		return nil, errors.New("faultproxy: HTTPConfig needs Target, Transport and Cert")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listening on 127.0.0.1: %w", err)
	}
	p := &HTTPProxy{ln: ln, url: "https://" + ln.Addr().String(), inflight: map[*inflight]struct{}{}, changed: make(chan struct{})}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(cfg.Target)
			r.Out.Host = cfg.Target.Host
		},
		Transport:     cfg.Transport,
		FlushInterval: -1, // stream watches and log follows byte by byte
		ErrorLog:      log.New(discard{}, "", 0),
	}
	p.srv = &http.Server{
		Handler:   p.handler(rp),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cfg.Cert}, MinVersion: tls.VersionTLS12},
		ErrorLog:  log.New(discard{}, "", 0),
	}
	go func() { _ = p.srv.ServeTLS(ln, "", "") }() // ServeTLS also serves HTTP/2
	return p, nil
}

type discard struct{}

func (discard) Write(b []byte) (int, error) { return len(b), nil }

// URL is the proxy's base URL, "https://127.0.0.1:<port>".
func (p *HTTPProxy) URL() string { return p.url }

func (p *HTTPProxy) handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		f := p.takeFailure(r)
		rec := &Request{Method: r.Method, URL: r.URL, Time: time.Now()}
		if f != nil {
			rec.Injected = f.code
		}
		p.seen = append(p.seen, rec)
		p.mu.Unlock()
		w = &heldWriter{ResponseWriter: w, p: p, r: r, rec: rec}
		if f != nil {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(f.code)
			_, _ = w.Write([]byte(f.body))
			return
		}
		p.mu.Lock()
		ctx, cancel := context.WithCancel(r.Context())
		in := &inflight{r: r, cancel: cancel}
		p.inflight[in] = struct{}{}
		p.mu.Unlock()
		defer func() {
			cancel()
			p.mu.Lock()
			delete(p.inflight, in)
			aborted, ended := in.aborted, in.ended
			p.mu.Unlock()
			// A request cut by Abort or End fails its body copy, and ReverseProxy panics
			// with ErrAbortHandler to abort the response. End wants a clean end instead;
			// Abort wants the abrupt end whatever way the copy ended.
			if v := recover(); v != nil && (v != http.ErrAbortHandler || !ended) {
				panic(v)
			}
			if aborted {
				// net/http recovers this: the client sees a reset stream or a closed
				// connection, never a clean end of the body.
				panic(http.ErrAbortHandler)
			}
		}()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// takeFailure returns the failure for r, consuming one of its uses. Called with mu held.
func (p *HTTPProxy) takeFailure(r *http.Request) *httpFailure {
	for i, f := range p.failures {
		if !f.match(r) {
			continue
		}
		if f.remaining > 0 {
			f.remaining--
			if f.remaining == 0 {
				p.failures = append(p.failures[:i], p.failures[i+1:]...)
			}
		}
		return f
	}
	return nil
}

// Fail answers the next n requests that match with code and body (a JSON body, such as a
// Kubernetes Status) instead of proxying them; n < 0 fails them until ClearFailures.
func (p *HTTPProxy) Fail(match Match, n, code int, body string) {
	if n == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failures = append(p.failures, &httpFailure{match: match, remaining: n, code: code, body: body})
}

// ClearFailures removes every pending failure.
func (p *HTTPProxy) ClearFailures() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failures = nil
}

// Abort cuts the matching requests in flight: their responses end abruptly (an HTTP/2
// stream reset, or a closed HTTP/1.1 connection). It returns how many were cut.
func (p *HTTPProxy) Abort(match Match) int {
	return p.stop(match, func(in *inflight) { in.aborted = true })
}

// End ends the matching requests in flight cleanly: their response bodies end as if the
// server had finished them (as the apiserver ends a watch at its timeout). It returns how
// many were ended.
func (p *HTTPProxy) End(match Match) int {
	return p.stop(match, func(in *inflight) { in.ended = true })
}

func (p *HTTPProxy) stop(match Match, mark func(*inflight)) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for in := range p.inflight {
		if match(in.r) {
			mark(in)
			in.cancel()
			n++
		}
	}
	return n
}

// InFlight counts the matching requests being proxied now.
func (p *HTTPProxy) InFlight(match Match) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for in := range p.inflight {
		if match(in.r) {
			n++
		}
	}
	return n
}

// Requests returns the requests received that match, oldest first.
func (p *HTTPProxy) Requests(match Match) []Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []Request
	for _, r := range p.seen {
		if match(&http.Request{Method: r.Method, URL: r.URL}) {
			out = append(out, *r)
		}
	}
	return out
}

// Close stops the proxy and cuts every request in flight.
func (p *HTTPProxy) Close() error {
	p.Abort(AnyRequest)
	return p.srv.Close()
}
