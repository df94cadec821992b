package ctl

import (
	"strings"
	"testing"
	"time"

	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"google.golang.org/protobuf/types/known/durationpb"
)

// The socket table shows the session, and age and idle time rounded to the second.
func TestSocketsTable(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	w := &writer{stdout: &b}
	err := w.sockets(
		&sockagentv1.Socket{SocketId: "s1", Network: "tcp", Kind: sockagentv1.SocketKind_SOCKET_KIND_STREAM,
			State: sockagentv1.SocketState_SOCKET_STATE_OPEN, SessionId: "sess-1",
			Age: durationpb.New(90*time.Second + 400*time.Millisecond), Idle: durationpb.New(1600 * time.Millisecond)},
		&sockagentv1.Socket{SocketId: "s2", Network: "udp", Kind: sockagentv1.SocketKind_SOCKET_KIND_DATAGRAM,
			State: sockagentv1.SocketState_SOCKET_STATE_OPEN},
	)
	if err != nil {
		t.Fatal(err)
	}
	want := "" +
		"ID  NETWORK  KIND      STATE  LOCAL  REMOTE  SENT  RECV  SESSION  AGE    IDLE\n" +
		"s1  tcp      stream    open   -      -       0     0     sess-1   1m30s  2s\n" +
		"s2  udp      datagram  open   -      -       0     0     -        -      -\n"
	if got := b.String(); got != want {
		t.Errorf("table:\n%s\nwant:\n%s", got, want)
	}
}
