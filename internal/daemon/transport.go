//lint:file-ignore SA1019 x/net/http2's Transport is deprecated for net/http's, which opens a TLS connection for each request that finds its connections full (hundreds for a mass reconnect); this one shares one connection at a time (README, "Running it against a cluster").

package daemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http/httpproxy"
	"golang.org/x/net/http2"
	"k8s.io/client-go/rest"
)

const (
	dialTimeout     = 30 * time.Second // dial and TLS handshake, as http.DefaultTransport allows
	dialKeepAlive   = 30 * time.Second
	idleConnTimeout = 90 * time.Second // client-go's (http.DefaultTransport's)
	// caReloadInterval is how often at most the CA file is read again, as client-go's
	// transport does with ClientsAllowCARotation (on by default): a cluster whose CA is
	// rotated is trusted on new connections without a restart.
	caReloadInterval = 5 * time.Minute
)

// withHTTP2Transport returns rc set to reach the API server over kubelogd's own HTTP/2
// transport, or rc unchanged where client-go's must be kept.
//
// Client-go's transport is net/http's with HTTP/2 configured onto it. When no HTTP/2
// connection can take another stream (there is none yet, or each carries the server's
// maximum of concurrent streams), every request waiting dials a TLS connection of its
// own, and all but one are closed once the first is up: at start-up with 1,000 pods to
// follow kubelogd made more than 400 TLS handshakes, and the API server as many, for
// about 20 connections kept. x/net/http2's transport with its own connection pool dials
// one connection at a time per server and lets the waiting requests share it.
//
// What client-go's transport does is kept: its HTTP/2 health check (and the variables
// that tune it), compression, idle connections closed after 90 s, the CA file read again
// every 5 minutes. Authentication headers (a token file is re-read), user agent and
// impersonation are client-go's either way: it wraps the transport given in rc.
// Client-go's own transport is used where kubelogd's could not do what it does: a proxy,
// a plain-HTTP server, DISABLE_HTTP2, a credential plugin (which may supply client
// certificates through a callback), client certificate files (client-go closes the
// connections made with a certificate when the files change) or a wrapped transport.
//
// why says, when rc is returned unchanged, what keeps client-go's transport.
func withHTTP2Transport(rc *rest.Config) (out *rest.Config, why string, err error) {
	if why := keepsClientGoTransport(rc); why != "" {
		return rc, why, nil
	}
	tlsConfig, err := rest.TLSConfigFor(rc)
	if err != nil {
		return rc, "", err
	}
	if tlsConfig == nil {
		// No CA, certificate or insecure flag configured: the system's roots, as
		// client-go's transport uses then.
		tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	// Offering HTTP/1.1 too, a server that speaks only that says so in the handshake,
	// and the dial below can say what is wrong, rather than a bare TLS alert.
	tlsConfig.NextProtos = []string{http2.NextProtoTLS, "http/1.1"}
	var roots *caFile
	if rc.CAFile != "" && len(rc.CAData) == 0 && !rc.Insecure {
		roots = &caFile{path: rc.CAFile, pool: tlsConfig.RootCAs, loaded: time.Now()}
	}
	dial := rc.Dial
	if dial == nil {
		d := &net.Dialer{Timeout: dialTimeout, KeepAlive: dialKeepAlive}
		dial = d.DialContext
	}
	t := &http2.Transport{
		TLSClientConfig:    tlsConfig,
		DisableCompression: rc.DisableCompression,
		IdleConnTimeout:    idleConnTimeout,
		// Client-go's HTTP/2 health check (k8s.io/apimachinery/pkg/util/net,
		// configureHTTP2Transport): a connection silent this long is pinged, and closed if
		// the ping is not answered in time.
		ReadIdleTimeout: envSeconds("HTTP2_READ_IDLE_TIMEOUT_SECONDS", 30),
		PingTimeout:     envSeconds("HTTP2_PING_TIMEOUT_SECONDS", 15),
		DialTLSContext: func(ctx context.Context, network, addr string, cfg *tls.Config) (net.Conn, error) {
			if roots != nil {
				cfg = cfg.Clone()
				cfg.RootCAs = roots.get()
			}
			// The bound covers dialling and the handshake only: once connected, the
			// connection outlives ctx (tls.Dialer's contract).
			ctx, cancel := context.WithTimeout(ctx, dialTimeout)
			defer cancel()
			raw, err := dial(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			conn := tls.Client(raw, cfg)
			if err := conn.HandshakeContext(ctx); err != nil {
				raw.Close()
				return nil, err
			}
			if p := conn.ConnectionState().NegotiatedProtocol; p != http2.NextProtoTLS {
				conn.Close()
				return nil, fmt.Errorf("the API server at %s did not agree to HTTP/2 (ALPN %q): a proxy in between that speaks only HTTP/1.1? Set DISABLE_HTTP2=1 to use HTTP/1.1", addr, p)
			}
			return conn, nil
		},
	}
	out = rest.CopyConfig(rc)
	// TLS is the transport's now; client-go refuses a transport given with TLS options.
	out.TLSClientConfig = rest.TLSClientConfig{}
	out.Transport = t
	out.Dial = nil
	return out, "", nil
}

// keepsClientGoTransport says what in rc or the environment kubelogd's transport could
// not honour, or "" if nothing.
func keepsClientGoTransport(rc *rest.Config) string {
	u, err := url.Parse(rc.Host)
	switch {
	case err != nil || !strings.EqualFold(u.Scheme, "https"):
		return "the API server is not reached over HTTPS"
	case rc.Proxy != nil || proxied(u):
		return "a proxy is configured"
	case os.Getenv("DISABLE_HTTP2") != "":
		return "DISABLE_HTTP2 is set"
	case len(rc.NextProtos) > 0 && !slices.Contains(rc.NextProtos, http2.NextProtoTLS):
		return "the TLS configuration does not offer HTTP/2"
	case rc.ExecProvider != nil || rc.AuthProvider != nil:
		return "a credential plugin is configured"
	case rc.Transport != nil || rc.WrapTransport != nil:
		return "a custom or wrapped transport is configured"
	case (rc.CertFile != "" && len(rc.CertData) == 0) || (rc.KeyFile != "" && len(rc.KeyData) == 0):
		return "the client certificate is read from files, which client-go watches"
	}
	return ""
}

// caFile is a CA bundle read from a file again at most every caReloadInterval. A file
// that cannot be read or holds no certificate leaves the last good pool in place.
type caFile struct {
	path string

	mu     sync.Mutex
	pool   *x509.CertPool
	loaded time.Time
}

func (c *caFile) get() *x509.CertPool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.loaded) < caReloadInterval {
		return c.pool
	}
	c.loaded = time.Now()
	if pem, err := os.ReadFile(c.path); err == nil {
		if pool := x509.NewCertPool(); pool.AppendCertsFromPEM(pem) {
			c.pool = pool
		}
	}
	return c.pool
}

// envSeconds reads a whole number of seconds from the environment variable name, as
// client-go does for its HTTP/2 health check; def where unset or malformed.
func envSeconds(name string, def int) time.Duration {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return time.Duration(n) * time.Second
	}
	return time.Duration(def) * time.Second
}

// proxied reports whether the environment (HTTPS_PROXY, NO_PROXY, ...) sends requests
// to u through a proxy, as client-go's transport would read it.
func proxied(u *url.URL) bool {
	p, err := httpproxy.FromEnvironment().ProxyFunc()(u)
	return err != nil || p != nil
}
