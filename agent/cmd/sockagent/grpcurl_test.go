package main

// The real grpcurl binary against the real sockagent binary: what a user without sockctl does.
// The command lines here are the ones docs/api.md quotes.

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// grpcurl runs grpcurl with args and returns its stdout, stderr and exit code.
func grpcurl(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return runBin(t, grpcurlBin, args...)
}

// grpcurlOK runs grpcurl, fails the test unless it exits 0, and returns stdout.
func grpcurlOK(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := grpcurl(t, args...)
	if code != 0 {
		t.Fatalf("grpcurl %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// grpcurlCall runs `grpcurl -plaintext -d BODY ADDR METHOD` and decodes the JSON reply into resp.
func grpcurlCall(t *testing.T, addr, method, body string, resp proto.Message) {
	t.Helper()
	out := grpcurlOK(t, "-plaintext", "-d", body, addr, method)
	if err := protojson.Unmarshal([]byte(out), resp); err != nil {
		t.Fatalf("%s: reply is not a %T: %v\n%s", method, resp, err, out)
	}
}

// services are the services sockagent serves, as `grpcurl list` prints them.
var services = []string{
	"grpc.health.v1.Health",
	"grpc.reflection.v1.ServerReflection",
	"grpc.reflection.v1alpha.ServerReflection",
	"sockagent.v1.AgentService",
	"sockagent.v1.MeasureService",
	"sockagent.v1.SessionService",
	"sockagent.v1.SocketService",
}

func TestGrpcurlListDescribeHealth(t *testing.T) {
	t.Parallel()
	p := startLocal(t)
	addr := p.addr

	out := grpcurlOK(t, "-plaintext", addr, "list")
	if got := strings.Fields(out); !slices.Equal(got, services) {
		t.Errorf("grpcurl list:\n%s\nwant:\n%s", out, strings.Join(services, "\n"))
	}
	// docs/api.md shows what grpcurl printed, line for line.
	doc, err := os.ReadFile("../../../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	_, shown, ok := strings.Cut(string(doc), "$ grpcurl -plaintext 127.0.0.1:7700 list\n")
	shown, _, ok2 := strings.Cut(shown, "\n$ ")
	if !ok || !ok2 || shown+"\n" != out {
		t.Errorf("docs/api.md shows grpcurl list as:\n%s\ngrpcurl printed:\n%s", shown, out)
	}

	out = grpcurlOK(t, "-plaintext", addr, "describe", "sockagent.v1.SocketService")
	if !strings.Contains(out, "sockagent.v1.SocketService is a service:") {
		t.Errorf("describe: no service header in\n%s", out)
	}
	for _, m := range sockagentv1.SocketService_ServiceDesc.Methods {
		rpc := fmt.Sprintf("rpc %s ( .sockagent.v1.%sRequest ) returns ( .sockagent.v1.%sResponse );", m.MethodName, m.MethodName, m.MethodName)
		if !strings.Contains(out, rpc) {
			t.Errorf("describe: %q missing from\n%s", rpc, out)
		}
	}
	out = grpcurlOK(t, "-plaintext", addr, "describe", "sockagent.v1.DialRequest")
	if !strings.Contains(out, "string network = 1;") || !strings.Contains(out, ".google.protobuf.Duration timeout = 4;") {
		t.Errorf("describe sockagent.v1.DialRequest:\n%s", out)
	}

	out = grpcurlOK(t, "-plaintext", addr, "grpc.health.v1.Health/Check")
	if strings.Join(strings.Fields(out), " ") != `{ "status": "SERVING" }` {
		t.Errorf("health check: %q", out)
	}
	out = grpcurlOK(t, "-plaintext", "-d", `{"service": "sockagent.v1.SocketService"}`, addr, "grpc.health.v1.Health/Check")
	if strings.Join(strings.Fields(out), " ") != `{ "status": "SERVING" }` {
		t.Errorf("health check of sockagent.v1.SocketService: %q", out)
	}
}

// TestGrpcurlTCPExchange re-enacts a TCP client and server with nothing but grpcurl.
func TestGrpcurlTCPExchange(t *testing.T) {
	t.Parallel()
	p := startLocal(t)
	addr := p.addr

	var lis sockagentv1.ListenResponse
	grpcurlCall(t, addr, "sockagent.v1.SocketService/Listen",
		`{"network": "tcp", "address": "127.0.0.1:0"}`, &lis)
	lisID, lisAddr := lis.GetSocket().GetSocketId(), lis.GetSocket().GetLocalAddress()
	if lis.GetSocket().GetKind() != sockagentv1.SocketKind_SOCKET_KIND_LISTENER || !strings.HasPrefix(lisAddr, "127.0.0.1:") {
		t.Fatalf("Listen: %v", &lis)
	}

	var dial sockagentv1.DialResponse
	grpcurlCall(t, addr, "sockagent.v1.SocketService/Dial",
		fmt.Sprintf(`{"network": "tcp", "address": %q, "timeout": "5s"}`, lisAddr), &dial)
	cliID := dial.GetSocket().GetSocketId()
	if dial.GetSocket().GetRemoteAddress() != lisAddr {
		t.Fatalf("Dial: remote %q, want %q", dial.GetSocket().GetRemoteAddress(), lisAddr)
	}

	var acc sockagentv1.AcceptResponse
	grpcurlCall(t, addr, "sockagent.v1.SocketService/Accept",
		fmt.Sprintf(`{"socketId": %q, "timeout": "5s"}`, lisID), &acc)
	srvID := acc.GetSocket().GetSocketId()
	if acc.GetSocket().GetParentId() != lisID || acc.GetSocket().GetRemoteAddress() != dial.GetSocket().GetLocalAddress() {
		t.Fatalf("Accept: %v, want parent %s and remote %s", &acc, lisID, dial.GetSocket().GetLocalAddress())
	}

	// "SGVsbG8sIFdvcmxkIQ==" is base64 for "Hello, World!": JSON carries bytes as base64.
	var sent sockagentv1.SendResponse
	grpcurlCall(t, addr, "sockagent.v1.SocketService/Send",
		fmt.Sprintf(`{"socketId": %q, "data": "SGVsbG8sIFdvcmxkIQ=="}`, cliID), &sent)
	if sent.GetBytesSent() != 13 {
		t.Errorf("Send: bytes_sent %d, want 13", sent.GetBytesSent())
	}
	out := grpcurlOK(t, "-plaintext", "-d", fmt.Sprintf(`{"socketId": %q, "exactBytes": 13, "timeout": "5s"}`, srvID),
		addr, "sockagent.v1.SocketService/Recv")
	if strings.Join(strings.Fields(out), " ") != `{ "data": "SGVsbG8sIFdvcmxkIQ==" }` {
		t.Errorf("Recv: %q, want data SGVsbG8sIFdvcmxkIQ==", out)
	}

	// And back: the server echoes, the client reads.
	grpcurlCall(t, addr, "sockagent.v1.SocketService/Send",
		fmt.Sprintf(`{"socketId": %q, "data": "SGVsbG8sIFdvcmxkIQ=="}`, srvID), &sent)
	var recv sockagentv1.RecvResponse
	grpcurlCall(t, addr, "sockagent.v1.SocketService/Recv",
		fmt.Sprintf(`{"socketId": %q, "exactBytes": 13, "timeout": "5s"}`, cliID), &recv)
	if string(recv.GetData()) != "Hello, World!" || recv.GetEof() {
		t.Errorf("Recv on the client: %q eof=%v, want %q", recv.GetData(), recv.GetEof(), "Hello, World!")
	}

	for _, id := range []string{cliID, srvID, lisID} {
		var closed sockagentv1.CloseResponse
		grpcurlCall(t, addr, "sockagent.v1.SocketService/Close", fmt.Sprintf(`{"socketId": %q}`, id), &closed)
		if closed.GetSocket().GetState() != sockagentv1.SocketState_SOCKET_STATE_CLOSED {
			t.Errorf("Close %s: state %s", id, closed.GetSocket().GetState())
		}
		if id != lisID && (closed.GetSocket().GetBytesSent() != 13 || closed.GetSocket().GetBytesReceived() != 13) {
			t.Errorf("Close %s: sent %d received %d, want 13 and 13", id,
				closed.GetSocket().GetBytesSent(), closed.GetSocket().GetBytesReceived())
		}
	}
	out = grpcurlOK(t, "-plaintext", addr, "sockagent.v1.SocketService/ListSockets")
	if strings.TrimSpace(out) != "{}" {
		t.Errorf("ListSockets after closing everything: %q, want {}", out)
	}
}

// TestGrpcurlError: a refused Dial shows the code and the ErrorInfo reason, and grpcurl exits
// with 64 + the code (Unavailable = 14).
func TestGrpcurlError(t *testing.T) {
	t.Parallel()
	p := startLocal(t)
	refused := closedPort(t)
	out, errOut, code := grpcurl(t, "-plaintext", "-d", fmt.Sprintf(`{"network": "tcp", "address": %q}`, refused),
		p.addr, "sockagent.v1.SocketService/Dial")
	if code != 64+14 {
		t.Errorf("exit code %d, want 78 (64 + Unavailable)", code)
	}
	if out != "" {
		t.Errorf("stdout %q, want nothing", out)
	}
	for _, want := range []string{
		"Code: Unavailable",
		"Message: dial tcp " + refused + ": connect: connection refused",
		`"@type": "type.googleapis.com/google.rpc.ErrorInfo"`,
		`"reason": "CONNECTION_REFUSED"`,
		`"domain": "sockagent.v1"`,
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
}
