package engine

import (
	"io"
	"net"
	"testing"
)

// benchStream moves b.N x 1 MiB over one TCP connection to addr, whose far end discards.
func benchStream(b *testing.B, addr string) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 1<<20)
	b.SetBytes(int64(len(buf)))
	b.ResetTimer()
	for range b.N {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	_ = c.(*net.TCPConn).CloseWrite()
	_, _ = io.Copy(io.Discard, c) // the sink closes once it read everything
}

// sink accepts connections on loopback and discards what they send, closing each at its end.
func sink(b *testing.B) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(io.Discard, c); _ = c.Close() }()
		}
	}()
	b.Cleanup(func() { _ = ln.Close() })
	return ln
}

// BenchmarkProxyStream compares one TCP stream straight to a sink (raw) with the same stream
// through a proxy without toxics (its splice fast path) and with a toxic that never applies
// to the direction measured.
func BenchmarkProxyStream(b *testing.B) {
	b.Run("raw", func(b *testing.B) { benchStream(b, sink(b).Addr().String()) })
	b.Run("proxy", func(b *testing.B) {
		tb := newTable(0, 1<<20, nil)
		defer tb.Stop()
		ln := sink(b)
		ctx := WithCaller(b.Context(), Caller{ID: "a"})
		in, err := tb.Listen(ctx, "tcp", "127.0.0.1:0", "", nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := tb.ServeProxy(ctx, in.ID, 0, 0, ProxyConfig{Upstream: ln.Addr().String()}); err != nil {
			b.Fatal(err)
		}
		benchStream(b, in.Local)
	})
	b.Run("proxy-latency-0", func(b *testing.B) {
		tb := newTable(0, 1<<20, nil)
		defer tb.Stop()
		ln := sink(b)
		ctx := WithCaller(b.Context(), Caller{ID: "a"})
		in, err := tb.Listen(ctx, "tcp", "127.0.0.1:0", "", nil)
		if err != nil {
			b.Fatal(err)
		}
		lat := Toxic{Direction: Upstream, Toxicity: 1, Kind: ToxicLatency}
		if _, err := tb.ServeProxy(ctx, in.ID, 0, 0, ProxyConfig{Upstream: ln.Addr().String(), Toxics: []Toxic{lat}}); err != nil {
			b.Fatal(err)
		}
		benchStream(b, in.Local)
	})
}
