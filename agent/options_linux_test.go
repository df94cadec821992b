package agent_test

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sockagent/sockagent/agent/contract"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

// optPolicy allows the guarded option tos, and the multicast group 239.1.2.3.
const optPolicy = `
default:
  socket_options: [tos]
  destinations:
    allow: [{name: anywhere}, {name: group, cidrs: [239.1.2.3/32]}]
`

// marked is what a receiving socket saw of one datagram: its bytes, and the TTL (hop limit)
// and TOS (traffic class) it arrived with.
type marked struct {
	data     string
	ttl, tos int
}

// markReader is a UDP socket of the test on loopback that reports each datagram's TTL and
// TOS from the kernel's control messages (IP_RECVTTL/IP_RECVTOS, IPV6_RECVHOPLIMIT/
// IPV6_RECVTCLASS): what a peer receives, not what the agent says it set.
func markReader(t *testing.T, network, addr string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenPacket(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	uc := c.(*net.UDPConn)
	rc, err := uc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	_ = rc.Control(func(fd uintptr) {
		if network == "udp6" {
			serr = errors.Join(unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVHOPLIMIT, 1),
				unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVTCLASS, 1))
			return
		}
		serr = errors.Join(unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_RECVTTL, 1),
			unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_RECVTOS, 1))
	})
	if serr != nil {
		t.Fatal(serr)
	}
	return uc
}

func readMarked(t *testing.T, c *net.UDPConn) marked {
	t.Helper()
	buf, oob := make([]byte, 512), make([]byte, 512)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, oobn, _, _, err := c.ReadMsgUDP(buf, oob)
	if err != nil {
		t.Fatalf("read datagram: %v", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		t.Fatal(err)
	}
	m := marked{data: string(buf[:n]), ttl: -1, tos: -1}
	for _, cm := range msgs {
		v := int(cm.Data[0])
		if len(cm.Data) >= 4 { // ints, except IP_TOS's one byte
			v = int(int32(binary.NativeEndian.Uint32(cm.Data[:4])))
		}
		switch {
		case cm.Header.Level == unix.IPPROTO_IP && cm.Header.Type == unix.IP_TTL,
			cm.Header.Level == unix.IPPROTO_IPV6 && cm.Header.Type == unix.IPV6_HOPLIMIT:
			m.ttl = v
		case cm.Header.Level == unix.IPPROTO_IP && cm.Header.Type == unix.IP_TOS:
			m.tos = int(cm.Data[0])
		case cm.Header.Level == unix.IPPROTO_IPV6 && cm.Header.Type == unix.IPV6_TCLASS:
			m.tos = v
		}
	}
	return m
}

// The TTL and TOS given to Dial, Bind and SetOptions are what a peer receives, for IPv4 and
// IPv6, and GetSocket reads them back.
func TestOptionsTTLAndTOSReachThePeer(t *testing.T) {
	e := polEnv(t, optPolicy, false)
	for _, fam := range []struct{ network, loop string }{{"udp4", "127.0.0.1"}, {"udp6", "::1"}} {
		t.Run(fam.network, func(t *testing.T) {
			rx := markReader(t, fam.network, net.JoinHostPort(fam.loop, "0"))
			to := rx.LocalAddr().String()
			// Dial with options.
			r, err := e.sc.Dial(ctxT(t), &sockagentv1.DialRequest{Network: fam.network, Address: to,
				Options: &sockagentv1.SocketOptions{Ttl: proto.Uint32(5), Tos: proto.Uint32(0xb8)}})
			if err != nil {
				t.Fatal(err)
			}
			d := r.GetSocket()
			e.closeAtEnd(t, d.GetSocketId())
			if o := e.options(t, d.GetSocketId()); o.GetTtl() != 5 || o.GetTos() != 0xb8 {
				t.Errorf("effective options ttl %d tos %#x, want 5 and 0xb8", o.GetTtl(), o.GetTos())
			}
			e.send(t, d.GetSocketId(), "dialled")
			if got, want := readMarked(t, rx), (marked{"dialled", 5, 0xb8}); got != want {
				t.Errorf("peer saw %+v, want %+v", got, want)
			}
			// SetOptions changes them on the open socket.
			sr, err := e.sc.SetOptions(ctxT(t), &sockagentv1.SetOptionsRequest{SocketId: d.GetSocketId(),
				Options: &sockagentv1.SocketOptions{Ttl: proto.Uint32(9), Tos: proto.Uint32(0x28)}})
			if err != nil {
				t.Fatal(err)
			}
			if o := sr.GetSocket().GetOptions(); o.GetTtl() != 9 || o.GetTos() != 0x28 {
				t.Errorf("setoptions response ttl %d tos %#x, want 9 and 0x28", o.GetTtl(), o.GetTos())
			}
			e.send(t, d.GetSocketId(), "changed")
			if got, want := readMarked(t, rx), (marked{"changed", 9, 0x28}); got != want {
				t.Errorf("after SetOptions the peer saw %+v, want %+v", got, want)
			}
			// Bind with options, SendTo.
			br, err := e.sc.Bind(ctxT(t), &sockagentv1.BindRequest{Network: fam.network, Address: net.JoinHostPort(fam.loop, "0"),
				Options: &sockagentv1.SocketOptions{Ttl: proto.Uint32(3), Tos: proto.Uint32(0x10)}})
			if err != nil {
				t.Fatal(err)
			}
			e.closeAtEnd(t, br.GetSocket().GetSocketId())
			if _, err := e.sc.SendTo(ctxT(t), &sockagentv1.SendToRequest{SocketId: br.GetSocket().GetSocketId(), Address: to, Data: []byte("bound")}); err != nil {
				t.Fatal(err)
			}
			if got, want := readMarked(t, rx), (marked{"bound", 3, 0x10}); got != want {
				t.Errorf("peer saw %+v, want %+v", got, want)
			}
			g, err := e.sc.GetSocket(ctxT(t), &sockagentv1.GetSocketRequest{SocketId: br.GetSocket().GetSocketId()})
			if err != nil {
				t.Fatal(err)
			}
			if o := g.GetSocket().GetOptions(); o.GetTtl() != 3 || o.GetTos() != 0x10 || o.NoDelay != nil || o.Broadcast == nil {
				t.Errorf("GetSocket options %v: want ttl 3, tos 0x10, broadcast set and no TCP options on a UDP socket", o)
			}
		})
	}
}

// Without options, a peer sees the kernel's defaults: the test above is not passing by luck.
func TestOptionsDefaultsUntouched(t *testing.T) {
	e := newEnv(t)
	rx := markReader(t, "udp4", "127.0.0.1:0")
	d := e.dial(t, "udp4", rx.LocalAddr().String())
	if d.GetOptions() != nil {
		t.Errorf("dial returned options %v; only GetSocket and SetOptions read them back", d.GetOptions())
	}
	e.send(t, d.GetSocketId(), "plain")
	if got := readMarked(t, rx); got.ttl != 64 || got.tos != 0 {
		t.Errorf("peer saw %+v, want the kernel's ttl 64 and tos 0", got)
	}
}

// Linger 0 closes with a reset: the peer's read fails with ECONNRESET; without it, the peer
// reads EOF.
func TestOptionsLingerZeroResets(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name   string
		opts   *sockagentv1.SocketOptions
		wantRS bool
	}{
		{"linger 0", &sockagentv1.SocketOptions{Linger: dur(0)}, true},
		{"no linger", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			r, err := e.sc.Dial(ctxT(t), &sockagentv1.DialRequest{Network: "tcp", Address: ln.Addr().String(), Options: tc.opts})
			if err != nil {
				t.Fatal(err)
			}
			peer, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer peer.Close()
			if tc.wantRS {
				if l := e.options(t, r.GetSocket().GetSocketId()).GetLinger(); l == nil || l.AsDuration() != 0 {
					t.Errorf("effective linger %v, want 0s", l)
				}
			}
			if _, err := e.sc.Close(ctxT(t), &sockagentv1.CloseRequest{SocketId: r.GetSocket().GetSocketId()}); err != nil {
				t.Fatal(err)
			}
			_ = peer.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err := peer.Read(make([]byte, 16))
			switch {
			case tc.wantRS && !errors.Is(err, syscall.ECONNRESET):
				t.Errorf("peer read %d, %v; want ECONNRESET", n, err)
			case !tc.wantRS && !errors.Is(err, io.EOF):
				t.Errorf("peer read %d, %v; want EOF", n, err)
			}
		})
	}
}

func readSysctl(t *testing.T, name string) int {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/" + strings.ReplaceAll(name, ".", "/"))
	if err != nil {
		t.Fatal(err)
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// Buffer sizes read back as the kernel keeps them: doubled, and capped at rmem_max/wmem_max.
func TestOptionsBuffersReadBack(t *testing.T) {
	e := newEnv(t)
	rmax, wmax := readSysctl(t, "net.core.rmem_max"), readSysctl(t, "net.core.wmem_max")
	ask := uint32(16 << 10)
	r, err := e.sc.Bind(ctxT(t), &sockagentv1.BindRequest{Network: "udp", Address: "127.0.0.1:0",
		Options: &sockagentv1.SocketOptions{RecvBuffer: proto.Uint32(ask), SendBuffer: proto.Uint32(ask)}})
	if err != nil {
		t.Fatal(err)
	}
	e.closeAtEnd(t, r.GetSocket().GetSocketId())
	if o := e.options(t, r.GetSocket().GetSocketId()); o.GetRecvBuffer() != 2*ask || o.GetSendBuffer() != 2*ask {
		t.Errorf("recv_buffer %d send_buffer %d, want both %d (the kernel doubles)", o.GetRecvBuffer(), o.GetSendBuffer(), 2*ask)
	}
	big := uint32(max(rmax, wmax)) + 4096
	sr, err := e.sc.SetOptions(ctxT(t), &sockagentv1.SetOptionsRequest{SocketId: r.GetSocket().GetSocketId(),
		Options: &sockagentv1.SocketOptions{RecvBuffer: proto.Uint32(big), SendBuffer: proto.Uint32(big)}})
	if err != nil {
		t.Fatal(err)
	}
	if o := sr.GetSocket().GetOptions(); int(o.GetRecvBuffer()) != 2*rmax || int(o.GetSendBuffer()) != 2*wmax {
		t.Errorf("over the caps: recv_buffer %d send_buffer %d, want %d and %d", o.GetRecvBuffer(), o.GetSendBuffer(), 2*rmax, 2*wmax)
	}
}

// An option the socket's kind does not have, or that only works before the bind, is
// INVALID_ARGUMENT with reason UNSUPPORTED_OPTION naming it; a value out of range is
// INVALID_ARGUMENT naming it; a guarded option the policy does not list is POLICY_DENIED.
// None leaves a socket behind.
func TestOptionsRefused(t *testing.T) {
	e := newEnv(t)
	lis := e.listen(t, "tcp", "127.0.0.1:0")
	udp := e.bind(t, "udp", "127.0.0.1:0")
	for _, tc := range []struct {
		name   string
		call   func() error
		code   codes.Code
		reason string
		option string
		words  []string
	}{
		{"no_delay on UDP", func() error {
			_, err := e.sc.Bind(ctxT(t), &sockagentv1.BindRequest{Network: "udp", Address: "127.0.0.1:0", Options: &sockagentv1.SocketOptions{NoDelay: proto.Bool(true)}})
			return err
		}, codes.InvalidArgument, contract.ReasonUnsupportedOption, "no_delay", []string{"no_delay is not supported on a udp socket", "TCP sockets"}},
		{"broadcast on TCP", func() error {
			_, err := e.sc.Dial(ctxT(t), &sockagentv1.DialRequest{Network: "tcp", Address: lis.GetLocalAddress(), Options: &sockagentv1.SocketOptions{Broadcast: proto.Bool(true)}})
			return err
		}, codes.InvalidArgument, contract.ReasonUnsupportedOption, "broadcast", []string{"UDP sockets"}},
		{"ttl on UNIX", func() error {
			_, err := e.sc.Listen(ctxT(t), &sockagentv1.ListenRequest{Network: "unix", Address: e.sockPath("o.sock"), Options: &sockagentv1.SocketOptions{Ttl: proto.Uint32(3)}})
			return err
		}, codes.InvalidArgument, contract.ReasonUnsupportedOption, "ttl", []string{"on a unix socket"}},
		{"reuse_address once bound", func() error {
			_, err := e.sc.SetOptions(ctxT(t), &sockagentv1.SetOptionsRequest{SocketId: udp.GetSocketId(), Options: &sockagentv1.SocketOptions{ReuseAddress: proto.Bool(true)}})
			return err
		}, codes.InvalidArgument, contract.ReasonUnsupportedOption, "reuse_address", []string{"only before the socket binds"}},
		{"ttl 0", func() error {
			_, err := e.sc.SetOptions(ctxT(t), &sockagentv1.SetOptionsRequest{SocketId: udp.GetSocketId(), Options: &sockagentv1.SocketOptions{Ttl: proto.Uint32(0)}})
			return err
		}, codes.InvalidArgument, contract.ReasonInvalidArgument, "ttl", []string{"ttl 0 out of range: give 1 to 255"}},
		{"multicast_ttl 256", func() error {
			_, err := e.sc.SetOptions(ctxT(t), &sockagentv1.SetOptionsRequest{SocketId: udp.GetSocketId(), Options: &sockagentv1.SocketOptions{MulticastTtl: proto.Uint32(256)}})
			return err
		}, codes.InvalidArgument, contract.ReasonInvalidArgument, "multicast_ttl", []string{"multicast_ttl 256 out of range: give 0 to 255"}},
		{"recv_buffer 0", func() error {
			_, err := e.sc.SetOptions(ctxT(t), &sockagentv1.SetOptionsRequest{SocketId: udp.GetSocketId(), Options: &sockagentv1.SocketOptions{RecvBuffer: proto.Uint32(0)}})
			return err
		}, codes.InvalidArgument, contract.ReasonInvalidArgument, "recv_buffer", []string{"recv_buffer 0 out of range: give 1 to 268435456"}},
		{"max_segment 87", func() error {
			_, err := e.sc.Listen(ctxT(t), &sockagentv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:0", Options: &sockagentv1.SocketOptions{MaxSegment: proto.Uint32(87)}})
			return err
		}, codes.InvalidArgument, contract.ReasonInvalidArgument, "max_segment", []string{"max_segment 87 out of range: give 88 to 65535"}},
		{"keepalive count 128", func() error {
			_, err := e.sc.Listen(ctxT(t), &sockagentv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:0", Options: &sockagentv1.SocketOptions{Keepalive: &sockagentv1.Keepalive{Count: proto.Uint32(128)}}})
			return err
		}, codes.InvalidArgument, contract.ReasonInvalidArgument, "keepalive_count", []string{"keepalive_count 128 out of range: give 1 to 127"}},
		{"join a unicast address", func() error {
			_, err := e.sc.SetOptions(ctxT(t), &sockagentv1.SetOptionsRequest{SocketId: udp.GetSocketId(), Join: []string{"10.0.0.1"}})
			return err
		}, codes.InvalidArgument, contract.ReasonInvalidAddress, "", []string{"not a multicast address"}},
		{"join a group no rule names", func() error {
			_, err := e.sc.SetOptions(ctxT(t), &sockagentv1.SetOptionsRequest{SocketId: udp.GetSocketId(), Join: []string{"239.1.2.3"}})
			return err
		}, codes.PermissionDenied, contract.ReasonPolicyDenied, "", []string{"multicast destination 239.1.2.3"}},
		{"leave a group not joined", func() error {
			_, err := e.sc.SetOptions(ctxT(t), &sockagentv1.SetOptionsRequest{SocketId: udp.GetSocketId(), Leave: []string{"239.1.2.3"}})
			return err
		}, codes.InvalidArgument, contract.ReasonInvalidArgument, "", []string{"leave 239.1.2.3: the socket is not a member"}},
		{"join on TCP", func() error {
			_, err := e.sc.SetOptions(ctxT(t), &sockagentv1.SetOptionsRequest{SocketId: lis.GetSocketId(), Join: []string{"239.1.2.3"}})
			return err
		}, codes.FailedPrecondition, contract.ReasonWrongSocketKind, "", []string{"needs a UDP socket from Bind"}},
		{"linger 1.5s", func() error {
			_, err := e.sc.Listen(ctxT(t), &sockagentv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:0", Options: &sockagentv1.SocketOptions{Linger: dur(1500 * time.Millisecond)}})
			return err
		}, codes.InvalidArgument, contract.ReasonInvalidArgument, "linger", []string{"whole seconds"}},
		{"keepalive idle 0", func() error {
			_, err := e.sc.Listen(ctxT(t), &sockagentv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:0", Options: &sockagentv1.SocketOptions{Keepalive: &sockagentv1.Keepalive{Idle: dur(0)}}})
			return err
		}, codes.InvalidArgument, contract.ReasonInvalidArgument, "keepalive_idle", []string{"from 1s to"}},
		{"congestion not loaded", func() error {
			_, err := e.sc.Listen(ctxT(t), &sockagentv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:0", Options: &sockagentv1.SocketOptions{Congestion: proto.String("tcp_evil")}})
			return err
		}, codes.InvalidArgument, contract.ReasonInvalidArgument, "congestion", []string{"not an algorithm the kernel has loaded", "cubic"}},
		{"bind_to_device by default", func() error {
			_, err := e.sc.SetOptions(ctxT(t), &sockagentv1.SetOptionsRequest{SocketId: udp.GetSocketId(), Options: &sockagentv1.SocketOptions{BindToDevice: proto.String("nope0")}})
			return err
		}, codes.PermissionDenied, contract.ReasonPolicyDenied, "", []string{"socket option bind_to_device", "socket_options"}},
		{"tos by default", func() error {
			_, err := e.sc.SetOptions(ctxT(t), &sockagentv1.SetOptionsRequest{SocketId: udp.GetSocketId(), Options: &sockagentv1.SocketOptions{Tos: proto.Uint32(4)}})
			return err
		}, codes.PermissionDenied, contract.ReasonPolicyDenied, "", []string{"socket option tos not allowed by policy rule \"socket_options\""}},
		{"reuse_port by default", func() error {
			_, err := e.sc.Listen(ctxT(t), &sockagentv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:0", Options: &sockagentv1.SocketOptions{ReusePort: proto.Bool(true)}})
			return err
		}, codes.PermissionDenied, contract.ReasonPolicyDenied, "", []string{"reuse_port"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			wantStatus(t, err, tc.code, tc.reason, tc.words...)
			if tc.option != "" {
				if md := polMeta(err); md["option"] != tc.option {
					t.Errorf("metadata %v, want option %q", md, tc.option)
				}
			}
		})
	}
	if n := e.a.NumSockets(); n != 2 {
		t.Errorf("%d sockets open, want the 2 the test opened: a refused call left one behind", n)
	}
}

// Every TCP option a caller may set reads back as set, on a dialled socket and its listener.
func TestOptionsTCPReadBack(t *testing.T) {
	e := newEnv(t)
	lr, err := e.sc.Listen(ctxT(t), &sockagentv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:0",
		Options: &sockagentv1.SocketOptions{ReuseAddress: proto.Bool(true), MaxSegment: proto.Uint32(1000)}})
	if err != nil {
		t.Fatal(err)
	}
	lis := lr.GetSocket()
	e.closeAtEnd(t, lis.GetSocketId())
	if o := e.options(t, lis.GetSocketId()); !o.GetReuseAddress() || o.GetReusePort() || o.GetMaxSegment() != 1000 {
		t.Errorf("listener options %v: want reuse_address, not reuse_port, max_segment 1000", o)
	}
	want := &sockagentv1.SocketOptions{
		NoDelay:      proto.Bool(false),
		Keepalive:    &sockagentv1.Keepalive{Enabled: proto.Bool(true), Idle: dur(7 * time.Second), Interval: dur(3 * time.Second), Count: proto.Uint32(4)},
		Linger:       dur(2 * time.Second),
		Ttl:          proto.Uint32(17),
		DontFragment: proto.Bool(true),
		Congestion:   proto.String("reno"),
	}
	r, err := e.sc.Dial(ctxT(t), &sockagentv1.DialRequest{Network: "tcp", Address: lis.GetLocalAddress(), Options: want})
	if err != nil {
		t.Fatal(err)
	}
	e.closeAtEnd(t, r.GetSocket().GetSocketId())
	e.accept(t, lis.GetSocketId())
	got := e.options(t, r.GetSocket().GetSocketId())
	for name, ok := range map[string]bool{
		"no_delay false (Go sets it true)": got.NoDelay != nil && !got.GetNoDelay(),
		"keepalive":                        proto.Equal(got.GetKeepalive(), want.GetKeepalive()),
		"linger 2s":                        got.GetLinger().AsDuration() == 2*time.Second,
		"ttl 17":                           got.GetTtl() == 17,
		"dont_fragment":                    got.GetDontFragment(),
		"congestion reno":                  got.GetCongestion() == "reno",
		"no UDP options":                   got.Broadcast == nil && got.MulticastTtl == nil && got.MulticastLoop == nil,
	} {
		if !ok {
			t.Errorf("%s: effective options %v", name, got)
		}
	}
	// SetOptions turns them back.
	sr, err := e.sc.SetOptions(ctxT(t), &sockagentv1.SetOptionsRequest{SocketId: r.GetSocket().GetSocketId(),
		Options: &sockagentv1.SocketOptions{NoDelay: proto.Bool(true), Linger: dur(-time.Second), Keepalive: &sockagentv1.Keepalive{Enabled: proto.Bool(false)}, DontFragment: proto.Bool(false)}})
	if err != nil {
		t.Fatal(err)
	}
	if o := sr.GetSocket().GetOptions(); !o.GetNoDelay() || o.GetLinger() != nil || o.GetKeepalive().GetEnabled() || o.GetDontFragment() {
		t.Errorf("after SetOptions: %v; want no_delay, linger off, keepalive off, dont_fragment off", o)
	}
}

// bind_to_device, allowed by the policy, binds to an interface that exists and reads back its
// name; an interface that does not exist is INVALID_ARGUMENT naming the option.
func TestOptionsBindToDevice(t *testing.T) {
	e := polEnv(t, "default: {socket_options: [bind_to_device, reuse_port, broadcast]}\n", false)
	r, err := e.sc.Bind(ctxT(t), &sockagentv1.BindRequest{Network: "udp4", Address: "127.0.0.1:0",
		Options: &sockagentv1.SocketOptions{BindToDevice: proto.String("lo"), ReusePort: proto.Bool(true), Broadcast: proto.Bool(true)}})
	if err != nil {
		t.Fatal(err)
	}
	e.closeAtEnd(t, r.GetSocket().GetSocketId())
	if o := e.options(t, r.GetSocket().GetSocketId()); o.GetBindToDevice() != "lo" || !o.GetReusePort() || !o.GetBroadcast() {
		t.Errorf("options %v: want bind_to_device lo, reuse_port, broadcast", o)
	}
	_, err = e.sc.SetOptions(ctxT(t), &sockagentv1.SetOptionsRequest{SocketId: r.GetSocket().GetSocketId(),
		Options: &sockagentv1.SocketOptions{BindToDevice: proto.String("nope0")}})
	wantStatus(t, err, codes.InvalidArgument, contract.ReasonInvalidArgument, `bind_to_device "nope0": no such interface`)
	if md := polMeta(err); md["option"] != "bind_to_device" {
		t.Errorf("metadata %v, want option bind_to_device", md)
	}
}

// options returns socket id's effective options, from GetSocket.
func (e *env) options(t *testing.T, id string) *sockagentv1.SocketOptions {
	t.Helper()
	g, err := e.sc.GetSocket(ctxT(t), &sockagentv1.GetSocketRequest{SocketId: id})
	if err != nil {
		t.Fatal(err)
	}
	return g.GetSocket().GetOptions()
}
