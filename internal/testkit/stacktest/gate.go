package stacktest

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// Gate is a TCP proxy to a real service that refuses connections until
// opened: the service unreachable, then back, without stopping it for the
// other tests. Kafka clients bootstrap through it; the metadata then
// points them at the broker itself.
type Gate struct {
	ln    net.Listener
	open  atomic.Bool
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns []net.Conn
}

// NewGate starts a closed gate to target, stopped with the test.
func NewGate(t testing.TB, target string) *Gate {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &Gate{ln: ln}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if !g.open.Load() {
				c.Close()
				continue
			}
			b, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			g.mu.Lock()
			g.conns = append(g.conns, c, b)
			g.mu.Unlock()
			g.wg.Add(2)
			go func() { defer g.wg.Done(); io.Copy(b, c); b.Close() }()
			go func() { defer g.wg.Done(); io.Copy(c, b); c.Close() }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		g.mu.Lock()
		for _, c := range g.conns {
			c.Close()
		}
		g.mu.Unlock()
		g.wg.Wait()
	})
	return g
}

// Addr is the gate's address.
func (g *Gate) Addr() string { return g.ln.Addr().String() }

// Open lets new connections through.
func (g *Gate) Open() { g.open.Store(true) }

// FreePort returns a loopback address with a port free at the time of the
// call, for a child process's listener.
func FreePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
