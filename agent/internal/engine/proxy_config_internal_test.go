package engine

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestProxyConfig: upstream_timeout's bounds, a UDP proxy to its own address, a serve that
// finds the socket busy, and an abstract UNIX upstream.
func TestProxyConfig(t *testing.T) {
	t.Parallel()
	tb, ctx := proxyTable(t, "")
	lis, err := tb.Listen(ctx, "tcp", "127.0.0.1:0", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		timeout time.Duration
		ok      bool
	}{{-1, false}, {maxUpstreamTimeout + 1, false}, {maxUpstreamTimeout, true}} {
		_, err := tb.ServeProxy(ctx, lis.ID, 0, 0, ProxyConfig{Upstream: "127.0.0.1:9", UpstreamTimeout: tc.timeout})
		if tc.ok != (err == nil) || !tc.ok && (Reason(err) != "INVALID_ARGUMENT" || !strings.Contains(err.Error(), "upstream_timeout")) {
			t.Errorf("upstream_timeout %v: %v", tc.timeout, err)
		}
	}
	// Served now: another Serve finds it busy, proxy or not.
	if _, err := tb.ServeProxy(ctx, lis.ID, 0, 0, ProxyConfig{Upstream: "127.0.0.1:9"}); Reason(err) != "SOCKET_BUSY" {
		t.Errorf("second proxy serve: %v", err)
	}
	if _, err := tb.Serve(ctx, lis.ID, BehaviourEcho, 0, 0); Reason(err) != "SOCKET_BUSY" {
		t.Errorf("echo on a proxy: %v", err)
	}
	in, _ := tb.GetFor(ctx, lis.ID)
	if pi := in.Serving.Proxy; pi == nil || pi.Upstream != "127.0.0.1:9" {
		t.Errorf("proxy after the refusals: %+v", in.Serving)
	}

	udp, err := tb.Bind(ctx, "udp", "127.0.0.1:0", "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tb.ServeProxy(ctx, udp.ID, 0, 0, ProxyConfig{Upstream: udp.Local}); Reason(err) != "INVALID_ADDRESS" || !strings.Contains(err.Error(), "own address") {
		t.Errorf("UDP proxy to itself: %v", err)
	}
	ug, err := tb.Bind(ctx, "unixgram", "@sockagent-proxy-test-"+fmt.Sprint(os.Getpid()), "", nil, nil)
	if err == nil {
		if _, err := tb.ServeProxy(ctx, ug.ID, 0, 0, ProxyConfig{Upstream: "@x"}); Reason(err) != "WRONG_SOCKET_KIND" {
			t.Errorf("unixgram proxy: %v", err)
		}
	}
}

// TestSameEndpoint: what a connect to reaches the socket bound to local.
func TestSameEndpoint(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		local, to string
		want      bool
	}{
		{"127.0.0.1:80", "127.0.0.1:80", true},
		{"127.0.0.1:80", "127.0.0.1:81", false},
		{"127.0.0.1:80", "127.0.0.2:80", false},
		{"0.0.0.0:80", "127.0.0.2:80", true},
		{"0.0.0.0:80", "0.0.0.0:80", true},
		{"[::]:80", "[::1]:80", true},
		{"0.0.0.0:80", "192.0.2.1:80", false},
	} {
		l, to := netipMust(tc.local), netipMust(tc.to)
		if got := sameEndpoint(l, to); got != tc.want {
			t.Errorf("sameEndpoint(%s, %s) = %v", tc.local, tc.to, got)
		}
	}
}

// TestProxyAbstractUpstream: a UNIX proxy forwards to an abstract name, judged by name; and
// closing a UNIX proxy lets go of the upstream's file.
func TestProxyAbstractUpstream(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tb, ctx := proxyTable(t, fmt.Sprintf("default:\n  unix_paths:\n    allow: [%q, \"@sockagent-\"]\n", dir))
	name := fmt.Sprintf("@sockagent-up-%d-%d", os.Getpid(), time.Now().UnixNano())
	startUpstream(t, "unix", name, false)
	lis, err := tb.Listen(ctx, "unix", filepath.Join(dir, "p.sock"), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tb.ServeProxy(ctx, lis.ID, 0, 0, ProxyConfig{Upstream: name}); err != nil {
		t.Fatal(err)
	}
	c := dialT(t, "unix", lis.Local)
	echo(t, c, "abstract")
	if _, err := tb.ServeProxy(ctx, mustListenUnix(t, tb, ctx, dir), 0, 0, ProxyConfig{Upstream: "@other-name"}); Reason(err) != "POLICY_DENIED" {
		t.Errorf("an abstract name the policy does not allow: %v", err)
	}

	// A path upstream: its file is held open while the proxy serves, and let go at Close.
	pathUp := startUpstream(t, "unix", filepath.Join(dir, "up.sock"), false)
	id := mustListenUnix(t, tb, ctx, dir)
	if _, err := tb.ServeProxy(ctx, id, 0, 0, ProxyConfig{Upstream: pathUp.ln.Addr().String()}); err != nil {
		t.Fatal(err)
	}
	s, _ := tb.peek(ctx, id)
	px := s.serving.Load().px
	held := runtime.GOOS == "linux"
	if link, err := os.Readlink(px.addr); held && (err != nil || !strings.HasSuffix(link, "up.sock")) {
		t.Errorf("the upstream is given as %s -> %s, %v; want its file, held open", px.addr, link, err)
	}
	if _, err := tb.Close(ctx, id); err != nil {
		t.Fatal(err)
	}
	if px.ctx.Err() == nil {
		t.Error("the proxy's connects are not cancelled after Close")
	}
	if link, err := os.Readlink(px.addr); held && err == nil && strings.HasSuffix(link, "up.sock") {
		t.Errorf("the upstream's file is still open after Close: %s -> %s", px.addr, link)
	}
}

func mustListenUnix(t *testing.T, tb *Table, ctx context.Context, dir string) string {
	t.Helper()
	in, err := tb.Listen(ctx, "unix", filepath.Join(dir, fmt.Sprintf("l%d.sock", time.Now().UnixNano())), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	return in.ID
}

func netipMust(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// TestProxyClientReset: a client that resets its connection ends the pair, and watchers hear
// of the reset on the proxy socket, with the client's address.
func TestProxyClientReset(t *testing.T) {
	t.Parallel()
	tb, ctx := proxyTable(t, "")
	wctx, cancel := context.WithCancel(ctx)
	var (
		mu    sync.Mutex
		items []WatchItem
	)
	started, done := make(chan struct{}), make(chan error, 1)
	go func() {
		done <- tb.Watch(wctx, WatchSpec{Kinds: []EventKind{EventReset, EventError}}, func() error { close(started); return nil }, func(it WatchItem) error {
			mu.Lock()
			defer mu.Unlock()
			items = append(items, it)
			return nil
		})
	}()
	<-started
	defer func() { cancel(); <-done }()
	up := startUpstream(t, "tcp", "127.0.0.1:0", false)
	in := startProxy(t, tb, ctx, "tcp", up.ln.Addr().String())
	c := dialT(t, "tcp", in.Local)
	echo(t, c, "then a reset")
	local := c.LocalAddr().String()
	resetConn(c)
	waitFor(t, 5*time.Second, "the pair ends", func() bool { return proxyInfo(t, tb, ctx, in.ID).Active == 0 })
	waitFor(t, 5*time.Second, "a reset event", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, it := range items {
			if it.Event.SocketID == in.ID && it.Event.Remote == local {
				return true
			}
		}
		return false
	})
}
