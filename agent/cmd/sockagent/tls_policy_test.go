package main

import (
	"fmt"
	"net"
	"path/filepath"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/agent/internal/testpki"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// The policy's refusals, over real mTLS handshakes with two callers: a denied destination,
// a denied (privileged) port, a per-caller rule set, and another caller's socket.
func TestPolicyOverMTLS(t *testing.T) {
	t.Parallel()
	k := newAgentPKI(t)
	ca := k.ca
	target, err := net.Listen("tcp", "127.0.0.1:0") // a destination that would accept
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	_, port, _ := net.SplitHostPort(target.Addr().String())
	pol := filepath.Join(k.dir, "policy.yaml")
	testpki.WriteFile(t, pol, []byte(fmt.Sprintf(`default:
  destinations:
    deny: [{name: no port %s, cidrs: [127.0.0.0/8], ports: [%s]}]
rule_sets:
  - name: bob
    callers: ["subject:CN=bob"]
    destinations:
      deny: [{name: bob goes nowhere}]
`, port, port)))
	p := startLocal(t, append(k.mtlsFlags(), "--policy", pol)...)
	alice, bob := ca.Client(t, "alice"), ca.Client(t, "bob")
	sa := sockagentv1.NewSocketServiceClient(p.dialWith(t, tlsClient(t, ca, &alice)))
	sb := sockagentv1.NewSocketServiceClient(p.dialWith(t, tlsClient(t, ca, &bob)))

	_, err = sa.Dial(ctxT(t), &sockagentv1.DialRequest{Network: "tcp", Address: target.Addr().String()})
	wantStatus(t, err, codes.PermissionDenied, contract.ReasonPolicyDenied)
	_, err = sa.Listen(ctxT(t), &sockagentv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:80"})
	wantStatus(t, err, codes.PermissionDenied, contract.ReasonPolicyDenied)

	lis := listenTCP(t, sa)
	id := lis.GetSocketId()
	if owner := lis.GetOwner(); owner != "cert:CN=alice,O=sockagent tests" {
		t.Errorf("owner %q, want cert:CN=alice,O=sockagent tests", owner)
	}
	// alice may dial her listener; bob's rule set denies him every destination.
	c, err := sa.Dial(ctxT(t), &sockagentv1.DialRequest{Network: "tcp", Address: lis.GetLocalAddress()})
	if err != nil {
		t.Fatalf("alice dials her listener: %v", err)
	}
	_, err = sb.Dial(ctxT(t), &sockagentv1.DialRequest{Network: "tcp", Address: lis.GetLocalAddress()})
	wantStatus(t, err, codes.PermissionDenied, contract.ReasonPolicyDenied)
	// bob cannot see or close alice's sockets.
	_, err = sb.Close(ctxT(t), &sockagentv1.CloseRequest{SocketId: id})
	wantStatus(t, err, codes.NotFound, contract.ReasonUnknownSocket)
	l, err := sb.ListSockets(ctxT(t), &sockagentv1.ListSocketsRequest{})
	if err != nil || len(l.GetSockets()) != 0 {
		t.Errorf("bob lists %v, %v; want nothing", l.GetSockets(), err)
	}
	for _, sid := range []string{c.GetSocket().GetSocketId(), id} {
		if _, err := sa.Close(ctxT(t), &sockagentv1.CloseRequest{SocketId: sid}); err != nil {
			t.Errorf("alice closes %s: %v", sid, err)
		}
	}
	if code := p.stop(t); code != 0 {
		t.Errorf("exit code %d", code)
	}
}
