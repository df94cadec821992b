package bareclient_test

import (
	"testing"

	"github.com/sockagent/sockagent/agent"
	"github.com/sockagent/sockagent/ctl/bench/bareclient"
)

// The bare client names its session with the agent's header, which it does not import.
func TestSessionHeader(t *testing.T) {
	if bareclient.SessionHeader != agent.SessionHeader {
		t.Fatalf("bareclient.SessionHeader %q, agent.SessionHeader %q", bareclient.SessionHeader, agent.SessionHeader)
	}
}
