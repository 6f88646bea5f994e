package faultproxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// echoServer echoes every line back until the client closes.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	conns := make(chan net.Conn, 100)
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns <- c
			go func() { _, _ = io.Copy(c, c); _ = c.Close() }()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
		close(conns)
		for c := range conns {
			_ = c.Close()
		}
	})
	return ln.Addr().String()
}

func newProxy(t *testing.T, target string) *Proxy {
	t.Helper()
	p, err := New(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

type client struct {
	c net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &client{c: c, r: bufio.NewReader(c)}
}

// roundTrip sends a line and reads it back within timeout.
func (c *client) roundTrip(line string, timeout time.Duration) (string, error) {
	_ = c.c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.c.Write([]byte(line + "\n")); err != nil {
		return "", err
	}
	got, err := c.r.ReadString('\n')
	return strings.TrimSuffix(got, "\n"), err
}

func TestForwardsAndCounts(t *testing.T) {
	p := newProxy(t, echoServer(t))
	a, b := dial(t, p.Addr()), dial(t, p.Addr())
	for _, c := range []*client{a, b} {
		if got, err := c.roundTrip("hello", 5*time.Second); err != nil || got != "hello" {
			t.Fatalf("round trip: %q, %v", got, err)
		}
	}
	if p.Accepted() != 2 || p.Open() != 2 {
		t.Fatalf("accepted %d, open %d; want 2, 2", p.Accepted(), p.Open())
	}
}

func TestCutResetsOpenConnections(t *testing.T) {
	p := newProxy(t, echoServer(t))
	c := dial(t, p.Addr())
	if _, err := c.roundTrip("x", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if n := p.Cut(); n != 1 {
		t.Fatalf("cut %d connections, want 1", n)
	}
	if _, err := c.roundTrip("y", 5*time.Second); err == nil {
		t.Fatal("a cut connection still works")
	} else if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a cut connection hangs instead of failing: %v", err)
	}
	// New connections work.
	if got, err := dial(t, p.Addr()).roundTrip("z", 5*time.Second); err != nil || got != "z" {
		t.Fatalf("after the cut: %q, %v", got, err)
	}
}

func TestStallHoldsBytesUntilResume(t *testing.T) {
	p := newProxy(t, echoServer(t))
	open := dial(t, p.Addr())
	if _, err := open.roundTrip("a", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	p.Stall()
	if _, err := open.roundTrip("b", 300*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("stalled open connection: %v, want a timeout", err)
	}
	fresh := dial(t, p.Addr())
	if _, err := fresh.roundTrip("c", 300*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("stalled new connection: %v, want a timeout", err)
	}
	p.Resume()
	// The held bytes arrive: "b" was sent before the stall was lifted.
	_ = open.c.SetDeadline(time.Now().Add(5 * time.Second))
	if got, err := open.r.ReadString('\n'); err != nil || got != "b\n" {
		t.Fatalf("after resume: %q, %v", got, err)
	}
	_ = fresh.c.SetDeadline(time.Now().Add(5 * time.Second))
	if got, err := fresh.r.ReadString('\n'); err != nil || got != "c\n" {
		t.Fatalf("new connection after resume: %q, %v", got, err)
	}
}

func TestRefuse(t *testing.T) {
	p := newProxy(t, echoServer(t))
	open := dial(t, p.Addr())
	// Accepted (not only queued by the kernel) before Refuse.
	if _, err := open.roundTrip("first", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	p.Refuse(true)
	// The reset may come as the dial's answer or as the first read's.
	if c, err := net.Dial("tcp", p.Addr()); err == nil {
		cl := &client{c: c, r: bufio.NewReader(c)}
		_, err = cl.roundTrip("x", 5*time.Second)
		_ = c.Close()
		if err == nil {
			t.Fatal("a refused connection works")
		}
	}
	if got, err := open.roundTrip("still", 5*time.Second); err != nil || got != "still" {
		t.Fatalf("an open connection broke on Refuse: %q, %v", got, err)
	}
	p.Resume()
	if got, err := dial(t, p.Addr()).roundTrip("y", 5*time.Second); err != nil || got != "y" {
		t.Fatalf("after Resume: %q, %v", got, err)
	}
}

func TestSlow(t *testing.T) {
	p := newProxy(t, echoServer(t))
	c := dial(t, p.Addr())
	p.Slow(50 * time.Millisecond)
	start := time.Now()
	// 3 KiB each way: at least 3 chunks per direction.
	line := strings.Repeat("s", 3*slowChunk)
	if got, err := c.roundTrip(line, 10*time.Second); err != nil || got != line {
		t.Fatalf("slow round trip failed: %v", err)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Fatalf("3 KiB each way took %s through a proxy slowed to 1 KiB per 50ms", d)
	}
}
