package agent_test

// Tests of the policy (--policy), socket ownership and the limits, in-process: the agent
// behind bufconn, real sockets on loopback. Callers are real token callers ("token:NAME") of
// the agent's own authentication, so ownership and per-caller rule sets are tested as they run.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sockagent/sockagent/agent"
	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/agent/policy"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// polTokens are the callers of polEnv: "token:alice", "token:bob", "token:carol".
const polTokens = "alice:secret-alice\nbob:secret-bob\ncarol:secret-carol\n"

// polEnv is an agent with the policy src ("" = the default) and, when tokens is set, token
// authentication with polTokens.
func polEnv(t *testing.T, src string, tokens bool) *env {
	t.Helper()
	cfg := agent.Config{}
	if src != "" {
		p, err := policy.Parse("test-policy.yaml", []byte(src))
		if err != nil {
			t.Fatal(err)
		}
		cfg.Policy = p
	}
	if tokens {
		toks, err := agent.ParseTokens(strings.NewReader(polTokens))
		if err != nil {
			t.Fatal(err)
		}
		cfg.Tokens = toks
	}
	return newEnvWith(t, cfg)
}

// polAs returns a context of the test whose RPCs come from the token caller name.
func polAs(t *testing.T, name string) context.Context {
	return metadata.AppendToOutgoingContext(ctxT(t), "authorization", "Bearer secret-"+name)
}

// polCaller opens sockets as one caller and closes them as that caller when the test ends.
type polCaller struct {
	e   *env
	ctx context.Context
	md  metadata.MD
}

func (e *env) as(t *testing.T, name string) *polCaller {
	ctx := polAs(t, name)
	md, _ := metadata.FromOutgoingContext(ctx)
	return &polCaller{e: e, ctx: ctx, md: md}
}

// keep fails the test on err, else closes the socket at the end of the test.
func (c *polCaller) keep(t *testing.T, r interface{ GetSocket() *sockagentv1.Socket }, err error) *sockagentv1.Socket {
	t.Helper()
	if err != nil {
		t.Fatalf("open as %v: %v", c.md.Get("authorization"), err)
	}
	id := r.GetSocket().GetSocketId()
	t.Cleanup(func() {
		ctx := metadata.NewOutgoingContext(context.Background(), c.md)
		if _, err := c.e.sc.Close(ctx, &sockagentv1.CloseRequest{SocketId: id}); err != nil && status.Code(err) != codes.NotFound {
			t.Errorf("close %s: %v", id, err)
		}
	})
	return r.GetSocket()
}

func (c *polCaller) listen(t *testing.T, network, address string) *sockagentv1.Socket {
	t.Helper()
	r, err := c.e.sc.Listen(c.ctx, &sockagentv1.ListenRequest{Network: network, Address: address})
	return c.keep(t, r, err)
}

func (c *polCaller) bind(t *testing.T, network, address string) *sockagentv1.Socket {
	t.Helper()
	r, err := c.e.sc.Bind(c.ctx, &sockagentv1.BindRequest{Network: network, Address: address})
	return c.keep(t, r, err)
}

func (c *polCaller) dial(t *testing.T, network, address string) *sockagentv1.Socket {
	t.Helper()
	r, err := c.e.sc.Dial(c.ctx, &sockagentv1.DialRequest{Network: network, Address: address, Timeout: dur(5 * time.Second)})
	return c.keep(t, r, err)
}

func (c *polCaller) accept(t *testing.T, id string) *sockagentv1.Socket {
	t.Helper()
	r, err := c.e.sc.Accept(c.ctx, &sockagentv1.AcceptRequest{SocketId: id, Timeout: dur(5 * time.Second)})
	return c.keep(t, r, err)
}

// polMeta returns the metadata of err's ErrorInfo.
func polMeta(err error) map[string]string {
	for _, d := range status.Convert(err).Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok {
			return ei.GetMetadata()
		}
	}
	return nil
}

// wantDenied checks a POLICY_DENIED refusal naming rule and rule set, message and metadata.
func wantDenied(t *testing.T, err error, rule, set string, msgParts ...string) {
	t.Helper()
	wantStatus(t, err, codes.PermissionDenied, contract.ReasonPolicyDenied, append(msgParts, fmt.Sprintf("policy rule %q", rule), fmt.Sprintf("(rule set %q)", set))...)
	if md := polMeta(err); md["rule"] != rule || md["rule_set"] != set {
		t.Errorf("metadata %v, want rule %q rule_set %q", md, rule, set)
	}
}

// wantLimit checks a LIMIT_EXCEEDED refusal naming the limit.
func wantLimit(t *testing.T, err error, limit string, max int) {
	t.Helper()
	wantStatus(t, err, codes.ResourceExhausted, contract.ReasonLimitExceeded, fmt.Sprintf("limit %s (%d) exceeded", limit, max))
	if md := polMeta(err); md["limit"] != limit {
		t.Errorf("metadata %v, want limit %q", md, limit)
	}
}

func TestPolicyDestinations(t *testing.T) {
	t.Parallel()
	e := polEnv(t, `
default:
  destinations:
    allow: [{name: loopback high, cidrs: [127.0.0.0/8], ports: ["1024-65535"]}]
    deny: [{name: not 127.0.0.2, cidrs: [127.0.0.2/32]}]
`, false)
	ctx := ctxT(t)
	ok := e.listen(t, "tcp", "127.0.0.1:0")
	e.dial(t, "tcp", ok.GetLocalAddress())
	e.accept(t, ok.GetSocketId())

	// 127.0.0.2 lies in "loopback high" too: deny wins.
	lis := e.listen(t, "tcp", "127.0.0.2:0")
	addr := lis.GetLocalAddress()
	_, port, _ := net.SplitHostPort(addr)
	for _, a := range []string{addr, "[::ffff:127.0.0.2]:" + port} {
		_, err := e.sc.Dial(ctx, &sockagentv1.DialRequest{Network: "tcp", Address: a})
		wantDenied(t, err, "not 127.0.0.2", "default", "dial tcp "+a+": destination 127.0.0.2:"+port+" denied by")
	}
	_, err := e.sc.Dial(ctx, &sockagentv1.DialRequest{Network: "udp", Address: addr})
	wantDenied(t, err, "not 127.0.0.2", "default")
	// Nothing reached the listener: the refusal came before connect.
	_, err = e.sc.Accept(ctx, &sockagentv1.AcceptRequest{SocketId: lis.GetSocketId(), Timeout: dur(50 * time.Millisecond)})
	wantStatus(t, err, codes.DeadlineExceeded, "TIMEOUT")

	// A port outside every allow rule: no allow rule matches, so "destinations.allow" refuses.
	_, err = e.sc.Dial(ctx, &sockagentv1.DialRequest{Network: "tcp", Address: "127.0.0.1:1"})
	wantDenied(t, err, "destinations.allow", "default", "destination 127.0.0.1:1 not allowed by policy")

	// SendTo is judged on its destination, datagram by datagram.
	a := e.bind(t, "udp", "127.0.0.1:0")
	b := e.bind(t, "udp", "127.0.0.1:0")
	_, err = e.sc.SendTo(ctx, &sockagentv1.SendToRequest{SocketId: a.GetSocketId(), Address: "127.0.0.2:" + port, Data: []byte("x")})
	wantDenied(t, err, "not 127.0.0.2", "default", "sendto "+a.GetSocketId()+" udp 127.0.0.2:"+port)
	if _, err := e.sc.SendTo(ctx, &sockagentv1.SendToRequest{SocketId: a.GetSocketId(), Address: b.GetLocalAddress(), Data: []byte("ok")}); err != nil {
		t.Fatalf("sendto an allowed destination: %v", err)
	}
	r, err := e.sc.RecvFrom(ctx, &sockagentv1.RecvFromRequest{SocketId: b.GetSocketId(), Timeout: dur(5 * time.Second)})
	if err != nil || string(r.GetData()) != "ok" {
		t.Fatalf("recvfrom: %q, %v", r.GetData(), err)
	}
	if n := e.a.NumSockets(); n != 6 {
		t.Errorf("%d sockets open, want 6 (refusals must not leave sockets behind)", n)
	}
}

func TestPolicyLocalPorts(t *testing.T) {
	t.Parallel()
	t.Run("default", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		ctx := ctxT(t)
		// Privileged local ports are refused even to root, before any bind.
		_, err := e.sc.Listen(ctx, &sockagentv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:80"})
		wantDenied(t, err, "privileged ports", "default", "listen tcp 127.0.0.1:80: local address 127.0.0.1:80 denied by")
		_, err = e.sc.Listen(ctx, &sockagentv1.ListenRequest{Network: "tcp", Address: "0.0.0.0:22"})
		wantDenied(t, err, "privileged ports", "default")
		_, err = e.sc.Bind(ctx, &sockagentv1.BindRequest{Network: "udp", Address: "127.0.0.1:53"})
		wantDenied(t, err, "privileged ports", "default", "bind udp 127.0.0.1:53")
		_, err = e.sc.Bind(ctx, &sockagentv1.BindRequest{Network: "udp6", Address: "[::1]:1023"})
		wantDenied(t, err, "privileged ports", "default")
		_, err = e.sc.Dial(ctx, &sockagentv1.DialRequest{Network: "tcp", Address: freePort(t), LocalAddress: "127.0.0.1:1000"})
		wantDenied(t, err, "privileged ports", "default")
		// A privileged remote port is fine: refused by the target, not by the policy.
		_, err = e.sc.Dial(ctx, &sockagentv1.DialRequest{Network: "tcp", Address: "127.0.0.1:1"})
		wantStatus(t, err, codes.Unavailable, "CONNECTION_REFUSED")
		// Port 0 and unprivileged ports work (the matcher's tests judge other local addresses;
		// this one binds, so loopback).
		lis := e.listen(t, "tcp", "127.0.0.1:0")
		_, port, _ := net.SplitHostPort(lis.GetLocalAddress())
		e.dial(t, "tcp", "127.0.0.1:"+port)
		e.accept(t, lis.GetSocketId())
		if n := e.a.NumSockets(); n != 3 {
			t.Errorf("%d sockets open, want 3", n)
		}
	})
	t.Run("port 0 judged as bound", func(t *testing.T) {
		t.Parallel()
		// Only ports 1024-1100 allowed: the OS picks an ephemeral port far above them, so a
		// listener on port 0 is refused once bound, and closed.
		e := polEnv(t, "default:\n  local: {allow: [{name: low, ports: [\"1024-1100\"]}]}\n", false)
		_, err := e.sc.Listen(ctxT(t), &sockagentv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:0"})
		wantDenied(t, err, "local.allow", "default", "listen tcp 127.0.0.1:0: local address 127.0.0.1:")
		_, err = e.sc.Bind(ctxT(t), &sockagentv1.BindRequest{Network: "udp", Address: "127.0.0.1:0"})
		wantDenied(t, err, "local.allow", "default")
		_, err = e.sc.Dial(ctxT(t), &sockagentv1.DialRequest{Network: "udp", Address: "127.0.0.1:9999", LocalAddress: "127.0.0.1:0"})
		wantDenied(t, err, "local.allow", "default")
		if n := e.a.NumSockets(); n != 0 {
			t.Errorf("%d sockets open, want 0", n)
		}
	})
}

func TestPolicyNetworks(t *testing.T) {
	t.Parallel()
	e := polEnv(t, "default:\n  networks: [tcp, tcp4]\n", false)
	ctx := ctxT(t)
	e.listen(t, "tcp4", "127.0.0.1:0")
	for _, call := range []struct {
		network string
		err     error
	}{
		{"udp", func() error {
			_, err := e.sc.Bind(ctx, &sockagentv1.BindRequest{Network: "udp", Address: "127.0.0.1:0"})
			return err
		}()},
		{"tcp6", func() error {
			_, err := e.sc.Listen(ctx, &sockagentv1.ListenRequest{Network: "tcp6", Address: "[::1]:0"})
			return err
		}()},
		{"unix", func() error {
			_, err := e.sc.Dial(ctx, &sockagentv1.DialRequest{Network: "unix", Address: filepath.Join(t.TempDir(), "x.sock")})
			return err
		}()},
	} {
		wantDenied(t, call.err, "networks", "default", "network "+call.network+" not allowed by policy")
	}
	// An unknown network is a bad request, whatever the policy.
	_, err := e.sc.Listen(ctx, &sockagentv1.ListenRequest{Network: "sctp", Address: "127.0.0.1:0"})
	wantStatus(t, err, codes.InvalidArgument, "INVALID_NETWORK")
}

func TestPolicyUnixPaths(t *testing.T) {
	t.Parallel()
	t.Run("default", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		ctx := ctxT(t)
		dir := e.a.SocketDir()
		e.listen(t, "unix", filepath.Join(dir, "ok.sock"))
		e.bind(t, "unixgram", filepath.Join(dir, "ok.dg"))

		// The shared temporary directory, where other users' sockets live, is not allowed.
		tmp := t.TempDir()
		peer, err := net.Listen("unix", filepath.Join(tmp, "peer.sock"))
		if err != nil {
			t.Fatal(err)
		}
		defer peer.Close()
		_, err = e.sc.Dial(ctx, &sockagentv1.DialRequest{Network: "unix", Address: filepath.Join(tmp, "peer.sock")})
		wantDenied(t, err, "unix_paths.allow", "default", "dial unix "+filepath.Join(tmp, "peer.sock"))
		_, err = e.sc.Listen(ctx, &sockagentv1.ListenRequest{Network: "unix", Address: filepath.Join(tmp, "l.sock")})
		wantDenied(t, err, "unix_paths.allow", "default")
		if _, serr := os.Lstat(filepath.Join(tmp, "l.sock")); !errors.Is(serr, os.ErrNotExist) {
			t.Errorf("refused listen left a file behind: %v", serr)
		}

		outside := "/var/lib/sockagent-test-" + strings.ReplaceAll(t.Name(), "/", "-") + ".sock"
		_, err = e.sc.Listen(ctx, &sockagentv1.ListenRequest{Network: "unix", Address: outside})
		wantDenied(t, err, "unix_paths.allow", "default", "UNIX path "+outside+" not allowed by policy")
		if _, serr := os.Lstat(outside); !errors.Is(serr, os.ErrNotExist) {
			t.Errorf("refused listen left %s behind: %v", outside, serr)
		}
		_, err = e.sc.Dial(ctx, &sockagentv1.DialRequest{Network: "unix", Address: "/run/docker.sock"})
		wantDenied(t, err, "unix_paths.allow", "default", "dial unix /run/docker.sock")
		_, err = e.sc.Bind(ctx, &sockagentv1.BindRequest{Network: "unixgram", Address: "@sockagent-test"})
		wantDenied(t, err, "unix_paths.allow", "default")
		// A symlink in an allowed directory is judged by where it leads.
		link := filepath.Join(dir, "link.sock")
		if err := os.Symlink("/run/docker.sock", link); err != nil {
			t.Fatal(err)
		}
		_, err = e.sc.Dial(ctx, &sockagentv1.DialRequest{Network: "unix", Address: link})
		wantDenied(t, err, "unix_paths.allow", "default")
		// SendTo and Dial's local address are judged too.
		dg := e.bind(t, "unixgram", filepath.Join(dir, "from.dg"))
		_, err = e.sc.SendTo(ctx, &sockagentv1.SendToRequest{SocketId: dg.GetSocketId(), Address: "/run/systemd/notify", Data: []byte("x")})
		wantDenied(t, err, "unix_paths.allow", "default")
		_, err = e.sc.Dial(ctx, &sockagentv1.DialRequest{Network: "unixgram", Address: filepath.Join(dir, "ok.dg"), LocalAddress: "/var/lib/x.dg"})
		wantDenied(t, err, "unix_paths.allow", "default")
	})
	t.Run("deny prefix", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		e := polEnv(t, fmt.Sprintf("default:\n  unix_paths: {allow: [%q], deny: [%q]}\n", dir, filepath.Join(dir, "private")), false)
		if err := os.Mkdir(filepath.Join(dir, "private"), 0o700); err != nil {
			t.Fatal(err)
		}
		e.listen(t, "unix", filepath.Join(dir, "public.sock"))
		_, err := e.sc.Listen(ctxT(t), &sockagentv1.ListenRequest{Network: "unix", Address: filepath.Join(dir, "private", "p.sock")})
		wantDenied(t, err, "unix_paths.deny "+filepath.Join(dir, "private"), "default", "denied by policy")
		// The default's $TMPDIR is not inherited: the section was given whole. (The parent of
		// the test's directory is under $TMPDIR, wherever that is.)
		_, err = e.sc.Listen(ctxT(t), &sockagentv1.ListenRequest{Network: "unix", Address: filepath.Join(filepath.Dir(dir), "sockagent-test-elsewhere.sock")})
		wantDenied(t, err, "unix_paths.allow", "default")
	})
}

// TestHostileInput: bad requests get the right code and a clear message, whatever the policy.
func TestHostileInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := ctxT(t)
	dir := e.a.SocketDir()
	cli, _ := e.pair(t)
	dg := e.bind(t, "unixgram", filepath.Join(dir, "a.dg"))
	for _, tc := range []struct {
		name   string
		err    error
		code   codes.Code
		reason string
		msg    string
	}{
		{"listen ..", errOf(e.sc.Listen(ctx, &sockagentv1.ListenRequest{Network: "unix", Address: dir + "/../x.sock"})), codes.InvalidArgument, "INVALID_ADDRESS", `contains ".."`},
		{"bind ..", errOf(e.sc.Bind(ctx, &sockagentv1.BindRequest{Network: "unixgram", Address: "/tmp/../etc/x"})), codes.InvalidArgument, "INVALID_ADDRESS", `UNIX socket path "/tmp/../etc/x" contains ".."`},
		{"dial ..", errOf(e.sc.Dial(ctx, &sockagentv1.DialRequest{Network: "unix", Address: "/tmp/a/../../run/docker.sock"})), codes.InvalidArgument, "INVALID_ADDRESS", `contains ".."`},
		{"dial local ..", errOf(e.sc.Dial(ctx, &sockagentv1.DialRequest{Network: "unixgram", Address: dir + "/a.dg", LocalAddress: dir + "/.."})), codes.InvalidArgument, "INVALID_ADDRESS", "local_address"},
		{"sendto ..", errOf(e.sc.SendTo(ctx, &sockagentv1.SendToRequest{SocketId: dg.GetSocketId(), Address: "/tmp/../x", Data: []byte("x")})), codes.InvalidArgument, "INVALID_ADDRESS", `contains ".."`},
		{"relative unix", errOf(e.sc.Listen(ctx, &sockagentv1.ListenRequest{Network: "unix", Address: "x.sock"})), codes.InvalidArgument, "INVALID_ADDRESS", "is relative"},
		{"nul in path", errOf(e.sc.Listen(ctx, &sockagentv1.ListenRequest{Network: "unix", Address: "/tmp/a\x00b"})), codes.InvalidArgument, "INVALID_ADDRESS", "NUL"},
		{"unknown network", errOf(e.sc.Dial(ctx, &sockagentv1.DialRequest{Network: "ip4:icmp", Address: "127.0.0.1"})), codes.InvalidArgument, "INVALID_NETWORK", "not allowed here"},
		{"no port", errOf(e.sc.Dial(ctx, &sockagentv1.DialRequest{Network: "tcp", Address: "127.0.0.1"})), codes.InvalidArgument, "INVALID_ADDRESS", "missing port"},
		{"garbage address", errOf(e.sc.Listen(ctx, &sockagentv1.ListenRequest{Network: "tcp", Address: "[::1:80"})), codes.InvalidArgument, "INVALID_ADDRESS", ""},
		{"port out of range", errOf(e.sc.Listen(ctx, &sockagentv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:70000"})), codes.InvalidArgument, "INVALID_ADDRESS", ""},
		{"negative timeout", errOf(e.sc.Recv(ctx, &sockagentv1.RecvRequest{SocketId: cli, Timeout: dur(-time.Nanosecond)})), codes.InvalidArgument, "INVALID_ARGUMENT", "out of range"},
		{"absurd timeout", errOf(e.sc.Accept(ctx, &sockagentv1.AcceptRequest{SocketId: cli, Timeout: dur(1000 * time.Hour)})), codes.InvalidArgument, "INVALID_ARGUMENT", "out of range"},
		{"invalid duration", errOf(e.sc.Dial(ctx, &sockagentv1.DialRequest{Network: "tcp", Address: "127.0.0.1:1", Timeout: &durationpb.Duration{Seconds: 1, Nanos: -1}})), codes.InvalidArgument, "INVALID_ARGUMENT", "timeout"},
		{"max_bytes over the agent's limit", errOf(e.sc.Recv(ctx, &sockagentv1.RecvRequest{SocketId: cli, MaxBytes: 1<<32 - 1})), codes.InvalidArgument, "INVALID_ARGUMENT", "the agent's limit is"},
		{"exact_bytes over the agent's limit", errOf(e.sc.Recv(ctx, &sockagentv1.RecvRequest{SocketId: cli, ExactBytes: 1 << 30})), codes.InvalidArgument, "INVALID_ARGUMENT", "the agent's limit is"},
	} {
		t.Run(tc.name, func(t *testing.T) { wantStatus(t, tc.err, tc.code, tc.reason, tc.msg) })
	}
	// Data past gRPC's 4 MiB message limit never reaches the agent: gRPC refuses it.
	_, err := e.sc.Send(ctx, &sockagentv1.SendRequest{SocketId: cli, Data: make([]byte, 5<<20)})
	if st := status.Convert(err); st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "larger than max") {
		t.Errorf("5 MiB Send: %v, want RESOURCE_EXHAUSTED saying the message is larger than max", err)
	}
	// The connection is still fine afterwards.
	e.send(t, cli, "still here")
}

func errOf[R any](_ R, err error) error { return err }

// TestPolicyPerCaller: the first rule set whose callers match applies, else the default.
func TestPolicyPerCaller(t *testing.T) {
	t.Parallel()
	e := polEnv(t, `
default:
  destinations: {allow: [{name: loopback, cidrs: [127.0.0.0/8, "::1"]}]}
rule_sets:
  - name: sandbox
    callers: ["token:bob"]
    destinations: {deny: [{name: nowhere}]}
    networks: [tcp]
  - name: never used
    callers: ["token:b*"]
    destinations: {deny: [{name: shadowed}]}
`, true)
	alice, bob := polAs(t, "alice"), polAs(t, "bob")
	lis := e.as(t, "alice").listen(t, "tcp", "127.0.0.1:0")
	e.as(t, "alice").dial(t, "tcp", lis.GetLocalAddress())
	_, err := e.sc.Dial(bob, &sockagentv1.DialRequest{Network: "tcp", Address: lis.GetLocalAddress()})
	wantDenied(t, err, "nowhere", "sandbox")
	_, err = e.sc.Bind(bob, &sockagentv1.BindRequest{Network: "udp", Address: "127.0.0.1:0"})
	wantDenied(t, err, "networks", "sandbox")
	_, err = e.sc.Dial(alice, &sockagentv1.DialRequest{Network: "tcp", Address: "192.0.2.1:9"})
	wantDenied(t, err, "destinations.allow", "default")
	// Bob may still listen: local addresses come from the default (inherited from the built-in).
	e.as(t, "bob").listen(t, "tcp", "127.0.0.1:0")
}

// TestOwnership: another caller's socket answers as an unknown one does, and is invisible.
func TestOwnership(t *testing.T) {
	t.Parallel()
	e := polEnv(t, "", true)
	alice, bob := polAs(t, "alice"), polAs(t, "bob")
	lis := e.as(t, "alice").listen(t, "tcp", "127.0.0.1:0")
	cli := e.as(t, "alice").dial(t, "tcp", lis.GetLocalAddress())
	srv := e.as(t, "alice").accept(t, lis.GetSocketId())
	for _, s := range []*sockagentv1.Socket{lis, cli, srv} {
		if s.GetOwner() != "token:alice" {
			t.Errorf("socket %s: owner %q, want token:alice", s.GetSocketId(), s.GetOwner())
		}
	}
	mine := e.as(t, "bob").bind(t, "udp", "127.0.0.1:0")

	inst, _, _ := contract.ParseSocketID(lis.GetSocketId())
	never := contract.FormatSocketID(inst, 999999) // this instance's shape: a socket closed or never opened
	neverMsg := map[string]string{}
	for _, id := range []string{never, lis.GetSocketId(), cli.GetSocketId(), srv.GetSocketId()} {
		calls := map[string]error{
			"get":      errOf(e.sc.GetSocket(bob, &sockagentv1.GetSocketRequest{SocketId: id})),
			"accept":   errOf(e.sc.Accept(bob, &sockagentv1.AcceptRequest{SocketId: id, Timeout: dur(time.Second)})),
			"send":     errOf(e.sc.Send(bob, &sockagentv1.SendRequest{SocketId: id, Data: []byte("x")})),
			"recv":     errOf(e.sc.Recv(bob, &sockagentv1.RecvRequest{SocketId: id, Timeout: dur(time.Second)})),
			"sendto":   errOf(e.sc.SendTo(bob, &sockagentv1.SendToRequest{SocketId: id, Address: "127.0.0.1:9", Data: []byte("x")})),
			"recvfrom": errOf(e.sc.RecvFrom(bob, &sockagentv1.RecvFromRequest{SocketId: id, Timeout: dur(time.Second)})),
			"shutdown": errOf(e.sc.Shutdown(bob, &sockagentv1.ShutdownRequest{SocketId: id, Direction: sockagentv1.ShutdownDirection_SHUTDOWN_DIRECTION_BOTH})),
			"close":    errOf(e.sc.Close(bob, &sockagentv1.CloseRequest{SocketId: id})),
		}
		for op, err := range calls {
			wantStatus(t, err, codes.NotFound, "UNKNOWN_SOCKET", op+" "+id, ": unknown socket (never opened, or already closed)")
			// Word for word what an id never opened gets: nothing tells that the socket exists.
			m := status.Convert(err).Message()
			if id == never {
				neverMsg[op] = m
			} else if want := strings.ReplaceAll(neverMsg[op], never, id); m != want {
				t.Errorf("%s %s as bob: message %q, want %q as for an unknown id", op, id, m, want)
			}
			if md := polMeta(err); len(md) != len(polMeta(calls[op])) || md["network"] != "" {
				t.Errorf("%s %s as bob: metadata %v tells about the socket", op, id, md)
			}
		}
	}
	list := func(ctx context.Context) []string {
		r, err := e.sc.ListSockets(ctx, &sockagentv1.ListSocketsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, s := range r.GetSockets() {
			ids = append(ids, s.GetSocketId()+"="+s.GetOwner())
		}
		return ids
	}
	if got, want := fmt.Sprint(list(bob)), fmt.Sprint([]string{mine.GetSocketId() + "=token:bob"}); got != want {
		t.Errorf("bob lists %s, want %s", got, want)
	}
	if got := list(alice); len(got) != 3 {
		t.Errorf("alice lists %v, want her 3 sockets", got)
	}
	// Alice's sockets still work after bob's attempts (his Close closed nothing).
	if _, err := e.sc.Send(alice, &sockagentv1.SendRequest{SocketId: cli.GetSocketId(), Data: []byte("hi")}); err != nil {
		t.Fatal(err)
	}
	r, err := e.sc.Recv(alice, &sockagentv1.RecvRequest{SocketId: srv.GetSocketId(), ExactBytes: 2, Timeout: dur(5 * time.Second)})
	if err != nil || string(r.GetData()) != "hi" {
		t.Fatalf("recv: %q, %v", r.GetData(), err)
	}
}

// TestOwnershipAnonymous: without authentication every caller is "anonymous" and sees the
// anonymous sockets, as before ownership existed.
func TestOwnershipAnonymous(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := e.listen(t, "tcp", "127.0.0.1:0")
	if s.GetOwner() != "anonymous" {
		t.Errorf("owner %q, want anonymous", s.GetOwner())
	}
	r, err := e.sc.ListSockets(ctxT(t), &sockagentv1.ListSocketsRequest{})
	if err != nil || len(r.GetSockets()) != 1 || r.GetSockets()[0].GetSocketId() != s.GetSocketId() {
		t.Errorf("list: %v, %v", r.GetSockets(), err)
	}
}

func TestLimits(t *testing.T) {
	t.Parallel()
	const src = `
agent_limits: {sockets: 5}
default:
  limits: {sockets: 3, bytes_per_call: 1024, blocking_calls: 2}
rule_sets:
  - {name: small, callers: ["token:carol"], limits: {sockets: 1}}
`
	t.Run("sockets", func(t *testing.T) {
		t.Parallel()
		e := polEnv(t, src, true)
		alice, bob, carol := polAs(t, "alice"), polAs(t, "bob"), polAs(t, "carol")
		listen := func(ctx context.Context) (*sockagentv1.ListenResponse, error) {
			return e.sc.Listen(ctx, &sockagentv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:0"})
		}
		var ids []string
		for range 3 {
			ids = append(ids, e.as(t, "alice").listen(t, "tcp", "127.0.0.1:0").GetSocketId())
		}
		_, err := listen(alice)
		wantLimit(t, err, "limits.sockets", 3)
		wantStatus(t, err, codes.ResourceExhausted, "LIMIT_EXCEEDED", `(rule set "default"): caller "token:alice" has 3 open sockets`)
		// Accept and Dial need a free slot too.
		_, err = e.sc.Accept(alice, &sockagentv1.AcceptRequest{SocketId: ids[0], Timeout: dur(time.Second)})
		wantLimit(t, err, "limits.sockets", 3)
		_, err = e.sc.Dial(alice, &sockagentv1.DialRequest{Network: "udp", Address: "127.0.0.1:9"})
		wantLimit(t, err, "limits.sockets", 3)
		// A closed socket frees its slot.
		if _, err := e.sc.Close(alice, &sockagentv1.CloseRequest{SocketId: ids[0]}); err != nil {
			t.Fatal(err)
		}
		e.as(t, "alice").listen(t, "tcp", "127.0.0.1:0")
		// carol's rule set allows one socket.
		e.as(t, "carol").listen(t, "tcp", "127.0.0.1:0")
		_, err = listen(carol)
		wantLimit(t, err, "limits.sockets", 1)
		// Agent-wide: 3 (alice) + 1 (carol) + 1 (bob) = 5.
		e.as(t, "bob").listen(t, "tcp", "127.0.0.1:0")
		_, err = listen(bob)
		wantLimit(t, err, "agent_limits.sockets", 5)
		wantStatus(t, err, codes.ResourceExhausted, "LIMIT_EXCEEDED", "the agent has 5 open sockets")
	})
	const small = "default:\n  limits: {bytes_per_call: 1024, blocking_calls: 2}\n"
	t.Run("bytes per call", func(t *testing.T) {
		t.Parallel()
		e := polEnv(t, small, false)
		ctx := ctxT(t)
		cli, srv := e.pair(t)
		_, err := e.sc.Send(ctx, &sockagentv1.SendRequest{SocketId: cli, Data: make([]byte, 1025)})
		wantLimit(t, err, "limits.bytes_per_call", 1024)
		wantStatus(t, err, codes.ResourceExhausted, "LIMIT_EXCEEDED", "send "+cli+" tcp", "1025 bytes in one call; send in several calls")
		e.send(t, cli, strings.Repeat("x", 1024))
		_, err = e.sc.Recv(ctx, &sockagentv1.RecvRequest{SocketId: srv, MaxBytes: 1025})
		wantLimit(t, err, "limits.bytes_per_call", 1024)
		_, err = e.sc.Recv(ctx, &sockagentv1.RecvRequest{SocketId: srv, ExactBytes: 4096})
		wantLimit(t, err, "limits.bytes_per_call", 1024)
		if got := e.recvExact(t, srv, 1024); len(got) != 1024 {
			t.Errorf("recv %d bytes", len(got))
		}
		a := e.bind(t, "udp", "127.0.0.1:0")
		_, err = e.sc.SendTo(ctx, &sockagentv1.SendToRequest{SocketId: a.GetSocketId(), Address: a.GetLocalAddress(), Data: make([]byte, 2000)})
		wantLimit(t, err, "limits.bytes_per_call", 1024)
		_, err = e.sc.RecvFrom(ctx, &sockagentv1.RecvFromRequest{SocketId: a.GetSocketId(), MaxBytes: 2000})
		wantLimit(t, err, "limits.bytes_per_call", 1024)
		// max_bytes 0 means the default read size, cut to the limit: not an error.
		e.send(t, cli, strings.Repeat("y", 1000))
		e.send(t, cli, strings.Repeat("z", 1000))
		r, err := e.sc.Recv(ctx, &sockagentv1.RecvRequest{SocketId: srv, Timeout: dur(5 * time.Second)})
		if err != nil || len(r.GetData()) == 0 || len(r.GetData()) > 1024 {
			t.Errorf("recv with max_bytes 0: %d bytes, %v; want 1 to 1024", len(r.GetData()), err)
		}
	})
	t.Run("blocking calls", func(t *testing.T) {
		t.Parallel()
		e := polEnv(t, small, false)
		ctx := ctxT(t)
		cli, srv := e.pair(t)
		bctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() {
				_, err := e.sc.Recv(bctx, &sockagentv1.RecvRequest{SocketId: srv, Timeout: dur(time.Minute)})
				if status.Code(err) != codes.Canceled {
					t.Errorf("blocked recv: %v, want CANCELLED", err)
				}
			})
		}
		e.waitPending(t, srv, 2)
		_, err := e.sc.Recv(ctx, &sockagentv1.RecvRequest{SocketId: cli, Timeout: dur(time.Second)})
		wantLimit(t, err, "limits.blocking_calls", 2)
		wantStatus(t, err, codes.ResourceExhausted, "LIMIT_EXCEEDED", `caller "anonymous" has 2 blocking calls in progress`)
		_, err = e.sc.Send(ctx, &sockagentv1.SendRequest{SocketId: cli, Data: []byte("x")})
		wantLimit(t, err, "limits.blocking_calls", 2)
		// Non-blocking calls still work.
		if _, err := e.sc.GetSocket(ctx, &sockagentv1.GetSocketRequest{SocketId: cli}); err != nil {
			t.Error(err)
		}
		cancel()
		wg.Wait()
		e.waitPending(t, srv, 0)
		// The slots are back: two calls at once work again.
		e.send(t, cli, "ab")
		if got := e.recvExact(t, srv, 2); got != "ab" {
			t.Errorf("recv %q", got)
		}
	})
}

// TestFloodOfRefusals: thousands of refused and half-open requests leave the agent healthy:
// no socket, goroutine or counted call left behind, GetInfo answers, sockets still open.
func TestFloodOfRefusals(t *testing.T) {
	e := polEnv(t, `
default:
  destinations: {deny: [{name: no 127.0.0.9, cidrs: [127.0.0.9]}]}
  limits: {sockets: 4, blocking_calls: 8, bytes_per_call: 4096}
`, true)
	alice, bob := polAs(t, "alice"), polAs(t, "bob")
	lis := e.as(t, "alice").listen(t, "tcp", "127.0.0.1:0")
	if _, err := e.ac.GetInfo(alice, &sockagentv1.GetInfoRequest{}); err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	base := runtime.NumGoroutine()

	dir := t.TempDir()
	reqs := []func() error{
		func() error {
			return errOf(e.sc.Dial(bob, &sockagentv1.DialRequest{Network: "tcp", Address: "127.0.0.9:8080"}))
		},
		func() error {
			return errOf(e.sc.Accept(bob, &sockagentv1.AcceptRequest{SocketId: lis.GetSocketId(), Timeout: dur(time.Second)}))
		},
		func() error {
			return errOf(e.sc.Listen(bob, &sockagentv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:443"}))
		},
		func() error {
			return errOf(e.sc.Listen(bob, &sockagentv1.ListenRequest{Network: "unix", Address: dir + "/../x"}))
		},
		func() error {
			return errOf(e.sc.Bind(bob, &sockagentv1.BindRequest{Network: "udp", Address: "127.0.0.1"}))
		},
		func() error {
			return errOf(e.sc.Send(bob, &sockagentv1.SendRequest{SocketId: lis.GetSocketId(), Data: make([]byte, 64<<10)}))
		},
		func() error { // half-open: waits, then times out; some are over blocking_calls
			return errOf(e.sc.Accept(alice, &sockagentv1.AcceptRequest{SocketId: lis.GetSocketId(), Timeout: dur(time.Millisecond)}))
		},
		func() error {
			return errOf(e.sc.Recv(alice, &sockagentv1.RecvRequest{SocketId: lis.GetSocketId(), MaxBytes: 1 << 20}))
		},
		func() error {
			return errOf(e.sc.GetSocket(polAs(t, "wrong"), &sockagentv1.GetSocketRequest{SocketId: lis.GetSocketId()}))
		},
	}
	wantCode := []codes.Code{codes.PermissionDenied, codes.NotFound, codes.PermissionDenied, codes.InvalidArgument,
		codes.InvalidArgument, codes.NotFound, codes.DeadlineExceeded, codes.FailedPrecondition, codes.Unauthenticated}
	const workers, per = 50, 100 // 5000 requests
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		bad []string
	)
	for w := range workers {
		wg.Go(func() {
			for i := range per {
				k := (w + i) % len(reqs)
				err := reqs[k]()
				c := status.Code(err)
				// A Dial holds a socket slot while it connects, and the destination is judged at
				// connect time: bob's concurrent dials can meet his socket limit first.
				if c != wantCode[k] && !((k == 0 || k == 6) && c == codes.ResourceExhausted) && !(k == 7 && c == codes.InvalidArgument) {
					mu.Lock()
					bad = append(bad, fmt.Sprintf("request %d: %v", k, err))
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if len(bad) > 0 {
		t.Errorf("%d unexpected answers, such as %s", len(bad), bad[0])
	}
	if n := e.a.NumSockets(); n != 1 {
		t.Errorf("%d sockets open after the flood, want 1 (the listener)", n)
	}
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > base+5 {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines after the flood, %d before", runtime.NumGoroutine(), base)
		}
		time.Sleep(10 * time.Millisecond) // polling interval: the goroutine count decides
	}
	if r, err := e.ac.GetInfo(alice, &sockagentv1.GetInfoRequest{}); err != nil || r.GetOpenSockets() != 1 {
		t.Fatalf("GetInfo after the flood: %v, %v", r, err)
	}
	// No slot leaked: alice can still hold all the waiting calls her 8 blocking calls allow (6:
	// a quarter is kept for calls that complete them) and open her 3 remaining sockets.
	cli := e.as(t, "alice").dial(t, "tcp", lis.GetLocalAddress())
	e.as(t, "alice").accept(t, lis.GetSocketId())
	e.as(t, "alice").listen(t, "tcp", "127.0.0.1:0")
	bctx, cancel := context.WithCancel(alice)
	for range 6 {
		wg.Go(func() {
			_, _ = e.sc.Recv(bctx, &sockagentv1.RecvRequest{SocketId: cli.GetSocketId(), Timeout: dur(time.Minute)})
		})
	}
	e.waitPendingCtx(t, alice, cli.GetSocketId(), 6)
	cancel()
	wg.Wait()
}

// waitPendingCtx is waitPending as the caller of ctx.
func (e *env) waitPendingCtx(t *testing.T, ctx context.Context, id string, n uint32) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := e.sc.GetSocket(ctx, &sockagentv1.GetSocketRequest{SocketId: id})
		if err != nil {
			t.Fatalf("get %s: %v", id, err)
		}
		if r.GetSocket().GetPendingCalls() == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("socket %s: pending_calls %d, want %d", id, r.GetSocket().GetPendingCalls(), n)
		}
		time.Sleep(time.Millisecond) // polling interval, not synchronisation: the condition decides
	}
}
