package daemon

import (
	"context"
	"crypto/tls"
	"net"
	"net/url"
	"strings"
	"time"

	"golang.org/x/net/http/httpproxy"
	"golang.org/x/net/http2"
	"k8s.io/client-go/rest"
)

// Client-go's HTTP/2 health check, as it sets it (k8s.io/apimachinery/pkg/util/net,
// configureHTTP2Transport): a connection silent for readIdleTimeout is pinged, and closed
// if the ping is not answered within pingTimeout.
const (
	readIdleTimeout = 30 * time.Second
	pingTimeout     = 15 * time.Second
	dialTimeout     = 30 * time.Second // dial and TLS handshake, as http.DefaultTransport allows
	dialKeepAlive   = 30 * time.Second
)

// withHTTP2Transport returns rc set to reach the API server over kubelogd's own HTTP/2
// transport, or rc unchanged (and false) where client-go's must be kept.
//
// Client-go's transport is net/http's with HTTP/2 configured onto it. When no HTTP/2
// connection can take another stream (there is none yet, or each carries the server's
// maximum of concurrent streams), every request waiting dials a TLS connection of its
// own, and all but one are closed once the first is up: at start-up with 1,000 pods to
// follow kubelogd made more than 400 TLS handshakes, and the API server as many, for
// about 20 connections kept. x/net/http2's transport with its own connection pool dials
// one connection at a time per server and lets the waiting requests share it.
//
// Client-go's is kept where kubelogd's could not do what it does: a proxy, a plain-HTTP
// server, or an exec credential plugin (which may supply client certificates through a
// callback on client-go's transport). Authentication headers, user agent and
// impersonation are client-go's either way: it wraps the transport given in rc.
func withHTTP2Transport(rc *rest.Config) (*rest.Config, bool, error) {
	u, err := url.Parse(rc.Host)
	if err != nil || !strings.EqualFold(u.Scheme, "https") || rc.Proxy != nil || rc.ExecProvider != nil ||
		rc.AuthProvider != nil || rc.Transport != nil || rc.WrapTransport != nil || proxied(u) {
		return rc, false, nil
	}
	tlsConfig, err := rest.TLSConfigFor(rc)
	if err != nil {
		return rc, false, err
	}
	if tlsConfig == nil {
		// No CA, certificate or insecure flag configured: the system's roots, as
		// client-go's transport uses then.
		tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	dial := rc.Dial
	if dial == nil {
		d := &net.Dialer{Timeout: dialTimeout, KeepAlive: dialKeepAlive}
		dial = d.DialContext
	}
	t := &http2.Transport{
		TLSClientConfig: tlsConfig,
		ReadIdleTimeout: readIdleTimeout,
		PingTimeout:     pingTimeout,
		DialTLSContext: func(ctx context.Context, network, addr string, cfg *tls.Config) (net.Conn, error) {
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
			return conn, nil
		},
	}
	out := rest.CopyConfig(rc)
	// TLS is the transport's now; client-go refuses a transport given with TLS options.
	out.TLSClientConfig = rest.TLSClientConfig{}
	out.Transport = t
	out.Dial = nil
	return out, true, nil
}

// proxied reports whether the environment (HTTPS_PROXY, NO_PROXY, ...) sends requests
// to u through a proxy, as client-go's transport would read it.
func proxied(u *url.URL) bool {
	p, err := httpproxy.FromEnvironment().ProxyFunc()(u)
	return err != nil || p != nil
}
