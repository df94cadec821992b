package ctl

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// attachServer accepts one connection on a raw listener of the test and runs serve on it.
func attachServer(t *testing.T, serve func(c *net.TCPConn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		serve(c.(*net.TCPConn))
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return ln.Addr().String()
}

func TestConnectMovesAFile(t *testing.T) {
	t.Parallel()
	addr := startAgent(t)
	file := make([]byte, 4<<20)
	_, _ = rand.Read(file)
	want := sha256.Sum256(file)
	got := make(chan string, 1)
	peer := attachServer(t, func(c *net.TCPConn) {
		h := sha256.New()
		n, _ := io.Copy(h, c) // to the EOF of sockctl's end of input
		sum := hex.EncodeToString(h.Sum(nil))
		got <- sum
		_, _ = io.WriteString(c, sum+" "+strconv.FormatInt(n, 10)+"\n")
		_ = c.CloseWrite()
	})
	r := invocation{stdin: string(file), args: []string{"--agent", addr, "connect", "tcp", peer}}.exec(t)
	r.want(t, ExitOK, nil, nil)
	if s := <-got; s != hex.EncodeToString(want[:]) {
		t.Errorf("the peer got a file with sha256 %s, want %x", s, want)
	}
	if wantOut := hex.EncodeToString(want[:]) + " 4194304\n"; r.stdout != wantOut {
		t.Errorf("stdout %q, want the peer's reply %q", r.stdout, wantOut)
	}
}

func TestConnectRefused(t *testing.T) {
	t.Parallel()
	addr := startAgent(t)
	target := closedPort(t)
	r := invocation{stdin: "never sent", args: []string{"--agent", addr, "connect", "tcp", target}}.exec(t)
	r.want(t, ExitFailure, nil, []string{"dial tcp " + target, "CONNECTION_REFUSED"})
	if r.stdout != "" {
		t.Errorf("stdout %q, want nothing", r.stdout)
	}
}

func TestConnectUDP(t *testing.T) {
	t.Parallel()
	addr := startAgent(t)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	got := make(chan []string, 1)
	go func() { // answer two datagrams in upper case
		var seen []string
		buf := make([]byte, 1500)
		_ = pc.SetDeadline(time.Now().Add(20 * time.Second))
		for range 2 {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				break
			}
			seen = append(seen, string(buf[:n]))
			_, _ = pc.WriteTo([]byte(strings.ToUpper(string(buf[:n]))), from)
		}
		got <- seen
	}()
	r := invocation{stdin: "ping\npong\n", args: []string{"--agent", addr, "connect", "udp", pc.LocalAddr().String(), "--linger", "2s"}}.exec(t)
	r.want(t, ExitOK, nil, nil)
	if seen := <-got; strings.Join(seen, "|") != "ping\n|pong\n" {
		t.Errorf("the peer got datagrams %q, want one per line", seen)
	}
	if r.stdout != "PING\nPONG\n" {
		t.Errorf("stdout %q, want the two replies", r.stdout)
	}
}

func TestAttachCommand(t *testing.T) {
	t.Parallel()
	addr := startAgent(t)
	peer := attachServer(t, func(c *net.TCPConn) { // echo, then close when the input ends
		_, _ = io.Copy(c, c)
		_ = c.CloseWrite()
	})
	var d sockagentv1.DialResponse
	okJSON(t, addr, &d, "dial", "tcp", peer)
	id := d.GetSocket().GetSocketId()
	r := invocation{stdin: "hello through the agent\n", args: []string{"--agent", addr, "attach", id}}.exec(t)
	r.want(t, ExitOK, nil, nil)
	if r.stdout != "hello through the agent\n" {
		t.Errorf("stdout %q, want the echo", r.stdout)
	}
	// The socket stays open, with the counts of the transfer.
	var g sockagentv1.GetSocketResponse
	okJSON(t, addr, &g, "get", id)
	if g.GetSocket().GetBytesSent() != 24 || g.GetSocket().GetBytesReceived() != 24 || g.GetSocket().GetAttached() {
		t.Errorf("after attach: %v", g.GetSocket())
	}
	ok(t, addr, "close", id)

	// The agent as AGENT, netcat style (no --agent); beside another --agent it is a usage error.
	peer2 := attachServer(t, func(c *net.TCPConn) {
		_, _ = io.Copy(c, c)
		_ = c.CloseWrite()
	})
	okJSON(t, addr, &d, "dial", "tcp", peer2)
	id2 := d.GetSocket().GetSocketId()
	(invocation{stdin: "x\n", args: []string{"--agent", "127.0.0.1:1", "attach", addr, id2}}).exec(t).
		want(t, ExitUsage, nil, []string{"agent " + addr + " given twice", "--agent 127.0.0.1:1"})
	r = invocation{stdin: "agent as an argument\n", args: []string{"attach", addr, id2}}.exec(t)
	r.want(t, ExitOK, nil, nil)
	if r.stdout != "agent as an argument\n" {
		t.Errorf("attach AGENT ID: stdout %q, want the echo", r.stdout)
	}
	ok(t, addr, "close", id2)
	sockctl(t, addr, "attach", addr, id2, "s3").want(t, ExitUsage, nil, []string{"expected AGENT ID, got 3 arguments"})

	var l sockagentv1.ListenResponse
	okJSON(t, addr, &l, "listen", "tcp", "127.0.0.1:0")
	lid := l.GetSocket().GetSocketId()
	sockctl(t, addr, "attach", lid).want(t, ExitFailure, nil, []string{"attach " + lid, "WRONG_SOCKET_KIND"})
	sockctl(t, addr, "attach", "s999").want(t, ExitFailure, nil, []string{"attach s999", "UNKNOWN_SOCKET"})
	sockctl(t, addr, "attach", lid, "--read-size", "2000000").want(t, ExitUsage, nil, []string{"--read-size"})
	ok(t, addr, "close", lid)
}

func TestAttachCommandDatagramTo(t *testing.T) {
	t.Parallel()
	addr := startAgent(t)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	var b sockagentv1.BindResponse
	okJSON(t, addr, &b, "bind", "udp", "127.0.0.1:0")
	id := b.GetSocket().GetSocketId()
	got := make(chan string, 1)
	go func() { // answer one datagram
		buf := make([]byte, 1500)
		_ = pc.SetDeadline(time.Now().Add(20 * time.Second))
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			got <- err.Error()
			return
		}
		got <- string(buf[:n]) + " from " + from.String()
		_, _ = pc.WriteTo([]byte("reply\n"), from)
	}()
	r := invocation{stdin: "hi\n", args: []string{"--agent", addr, "attach", id, "--to", pc.LocalAddr().String(), "--linger", "2s"}}.exec(t)
	r.want(t, ExitOK, nil, nil)
	if g, want := <-got, "hi\n from "+b.GetSocket().GetLocalAddress(); g != want {
		t.Errorf("the peer got %q, want %q", g, want)
	}
	if r.stdout != "reply\n" {
		t.Errorf("stdout %q, want the reply", r.stdout)
	}
	// Without --to it only receives; a line to send then has no destination.
	sockctl(t, addr, "attach", id).want(t, ExitOK, nil, nil) // no input: nothing sent
	(invocation{stdin: "x\n", args: []string{"--agent", addr, "attach", id}}).exec(t).want(t, ExitFailure, nil, []string{"INVALID_ADDRESS", "address is empty"})
	ok(t, addr, "close", id)
}
