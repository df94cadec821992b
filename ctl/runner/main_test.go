package runner

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/sockagent/sockagent/agent/bufpool"
)

func TestMain(m *testing.M) {
	bufpool.Install() // as sockctl's main does: the benchmarks measure what sockctl run costs
	goleak.VerifyTestMain(m)
}
