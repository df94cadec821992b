package main

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"

	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// --max-message-bytes bounds a request: gRPC refuses a larger one with RESOURCE_EXHAUSTED
// naming the size and the limit, and the agent goes on serving.
func TestMaxMessageBytesFlag(t *testing.T) {
	t.Parallel()
	out, err := exec.Command(sockagentBin, "--max-message-bytes", "1023").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "--max-message-bytes 1023: give at least 1024") {
		t.Errorf("--max-message-bytes 1023: %v %q; want exit status 2 and the fix", err, out)
	}

	p := startLocal(t, "--max-message-bytes", "2048")
	sc := p.sockets()
	_, err = sc.Send(ctxT(t), &sockagentv1.SendRequest{SocketId: "s1", Data: make([]byte, 4096)})
	st := status.Convert(err)
	if st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), fmt.Sprintf("received message larger than max (%d vs. 2048)", 4096+3+4)) {
		t.Errorf("send of 4096 bytes: %v; want RESOURCE_EXHAUSTED received message larger than max (4103 vs. 2048)", err)
	}
	// Under the limit the request reaches the agent (and meets its unknown socket).
	_, err = sc.Send(ctxT(t), &sockagentv1.SendRequest{SocketId: "s1", Data: make([]byte, 2000)})
	if status.Code(err) != codes.NotFound {
		t.Errorf("send of 2000 bytes: %v, want NOT_FOUND", err)
	}
	if code := p.stop(t); code != 0 {
		t.Errorf("exit status %d, want 0", code)
	}
}
