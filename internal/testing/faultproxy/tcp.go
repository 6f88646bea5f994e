package faultproxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// slowChunk is the most a Slow proxy forwards at a time, so that a delay per chunk slows
// a bulk transfer down rather than only its first bytes.
const slowChunk = 1024

// Proxy forwards TCP connections accepted on 127.0.0.1 to a target address. It is safe for
// concurrent use.
type Proxy struct {
	target string
	ln     net.Listener

	mu      sync.Mutex
	conns   map[*link]struct{}
	stalled bool
	refuse  bool
	delay   time.Duration
	// changed is closed and replaced whenever stalled changes, to wake held forwarders.
	changed  chan struct{}
	accepted int
	closed   bool

	wg sync.WaitGroup // the accept loop and every forwarder
}

// link is one proxied connection: the client's side and the target's.
type link struct {
	client net.Conn
	cut    chan struct{} // closed when the link is torn down

	mu     sync.Mutex
	server net.Conn // nil until dialed
	done   bool
}

// setServer attaches the dialed target connection; false if the link was cut meanwhile.
func (l *link) setServer(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done {
		return false
	}
	l.server = c
	return true
}

// close tears the link down, with a reset (abort) or a normal close.
func (l *link) close(abort bool) {
	l.mu.Lock()
	if l.done {
		l.mu.Unlock()
		return
	}
	l.done = true
	server := l.server
	l.mu.Unlock()
	close(l.cut)
	closeConn(l.client, abort)
	if server != nil {
		closeConn(server, abort)
	}
}

func closeConn(c net.Conn, abort bool) {
	if tc, ok := c.(*net.TCPConn); ok && abort {
		_ = tc.SetLinger(0) // RST instead of FIN: an abrupt failure, not a clean end
	}
	_ = c.Close()
}

// New starts a proxy on a free port of 127.0.0.1 forwarding to target ("host:port").
func New(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listening on 127.0.0.1: %w", err)
	}
	p := &Proxy{target: target, ln: ln, conns: map[*link]struct{}{}, changed: make(chan struct{})}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's address, "127.0.0.1:<port>".
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		p.mu.Lock()
		p.accepted++
		if p.closed || p.refuse {
			p.mu.Unlock()
			closeConn(c, true)
			continue
		}
		l := &link{client: c, cut: make(chan struct{})}
		p.conns[l] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go p.serve(l)
	}
}

// serve dials the target and forwards both ways until either side ends or the link is cut.
func (p *Proxy) serve(l *link) {
	defer p.wg.Done()
	defer func() {
		p.mu.Lock()
		delete(p.conns, l)
		p.mu.Unlock()
	}()
	// A stalled proxy holds new connections too: accepted, but nothing reaches the target.
	if p.wait(l) != nil {
		return
	}
	server, err := net.DialTimeout("tcp", p.target, 10*time.Second)
	if err != nil {
		l.close(true)
		return
	}
	if !l.setServer(server) {
		_ = server.Close() // cut while dialing
		return
	}
	done := make(chan struct{}, 2)
	go func() { p.pipe(l, server, l.client); done <- struct{}{} }()
	go func() { p.pipe(l, l.client, server); done <- struct{}{} }()
	<-done
	<-done
	l.close(false)
}

// pipe copies src to dst, holding bytes back while the proxy is stalled and delaying each
// chunk while it is slow. An EOF is passed on as a half-close; any other end tears the
// whole link down, which also ends the other direction.
func (p *Proxy) pipe(l *link, dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		for data := buf[:n]; len(data) > 0; {
			if p.wait(l) != nil {
				return
			}
			p.mu.Lock()
			delay := p.delay
			p.mu.Unlock()
			chunk := data
			if delay > 0 {
				chunk = data[:min(len(data), slowChunk)]
				select {
				case <-time.After(delay):
				case <-l.cut:
					return
				}
			}
			if _, werr := dst.Write(chunk); werr != nil {
				l.close(false)
				return
			}
			data = data[len(chunk):]
		}
		if err != nil {
			tc, ok := dst.(*net.TCPConn)
			if errors.Is(err, io.EOF) && ok && tc.CloseWrite() == nil {
				return
			}
			l.close(false)
			return
		}
	}
}

var errCut = errors.New("faultproxy: link cut")

// wait blocks while the proxy is stalled; it fails once the link is cut.
func (p *Proxy) wait(l *link) error {
	for {
		p.mu.Lock()
		stalled, changed := p.stalled, p.changed
		p.mu.Unlock()
		select {
		case <-l.cut:
			return errCut
		default:
		}
		if !stalled {
			return nil
		}
		select {
		case <-changed:
		case <-l.cut:
			return errCut
		}
	}
}

// Cut aborts every open connection with a reset, as a crashed server or a broken network
// path does; the proxy keeps accepting new ones. It returns how many were cut.
func (p *Proxy) Cut() int {
	p.mu.Lock()
	links := make([]*link, 0, len(p.conns))
	for l := range p.conns {
		links = append(links, l)
	}
	p.mu.Unlock()
	for _, l := range links {
		l.close(true)
	}
	return len(links)
}

// Stall stops forwarding bytes in both directions on every connection, open or new, while
// keeping them open: a black-holed path, which neither side sees as an error.
func (p *Proxy) Stall() { p.setStalled(true) }

func (p *Proxy) setStalled(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stalled = on
	close(p.changed)
	p.changed = make(chan struct{})
}

// Slow forwards at most 1 KiB at a time, each chunk after delay d; 0 forwards at full speed.
func (p *Proxy) Slow(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.delay = d
}

// Refuse makes the proxy reset every new connection at once (on), as a port nothing listens
// on, or accept them again (off). Open connections are not affected; Cut them too for a full
// outage.
func (p *Proxy) Refuse(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refuse = on
}

// Resume ends Stall, Slow and Refuse: held bytes flow on.
func (p *Proxy) Resume() {
	p.Slow(0)
	p.Refuse(false)
	p.setStalled(false)
}

// Accepted counts the connections accepted since New, refused ones included.
func (p *Proxy) Accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}

// Open counts the connections open now.
func (p *Proxy) Open() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// Close stops accepting, aborts every connection and waits for the forwarders to return.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	err := p.ln.Close()
	p.Cut()
	p.wg.Wait()
	return err
}
