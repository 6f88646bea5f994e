package faultproxy

import (
	"net/http"
)

// Hold delays the responses of the matching requests, new ones and those in flight: what
// the target sends waits in the proxy until Release, and then flows on in order. Held
// watches deliver their events late, as from an apiserver whose watch lags, while other
// requests (log streams) go on.
func (p *HTTPProxy) Hold(match Match) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.holds = append(p.holds, match)
	p.notify()
}

// Release ends every Hold.
func (p *HTTPProxy) Release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.holds = nil
	p.notify()
}

// notify wakes the held writers. Called with mu held.
func (p *HTTPProxy) notify() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// held tells whether r's response is held now, and returns the channel that is closed
// when that may change.
func (p *HTTPProxy) held(r *http.Request) (bool, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range p.holds {
		if m(r) {
			return true, p.changed
		}
	}
	return false, p.changed
}

// heldWriter is the ResponseWriter the proxy answers through: it records the status and
// waits while the request is held.
type heldWriter struct {
	http.ResponseWriter
	p   *HTTPProxy
	r   *http.Request
	rec *Request
}

// wait blocks while the request is held, or until its client goes away.
func (w *heldWriter) wait() {
	for {
		held, changed := w.p.held(w.r)
		if !held {
			return
		}
		select {
		case <-changed:
		case <-w.r.Context().Done():
			return
		}
	}
}

func (w *heldWriter) WriteHeader(code int) {
	w.wait()
	w.p.mu.Lock()
	if w.rec.Status == 0 {
		w.rec.Status = code
	}
	w.p.mu.Unlock()
	w.ResponseWriter.WriteHeader(code)
}

func (w *heldWriter) Write(b []byte) (int, error) {
	w.wait()
	w.p.mu.Lock()
	if w.rec.Status == 0 {
		w.rec.Status = http.StatusOK
	}
	w.p.mu.Unlock()
	return w.ResponseWriter.Write(b)
}

// Flush passes a flush on once the request is no longer held; ReverseProxy flushes after
// every write of a streamed response.
func (w *heldWriter) Flush() {
	w.wait()
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the server's writer.
func (w *heldWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
