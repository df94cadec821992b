package agent

import sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"

// measureService is the gRPC adapter of MeasureService: Probe (probe.go) and Throughput
// (throughput.go) open their own sockets, judged by the caller's policy like Dial, and take
// every timing on the agent's host.
type measureService struct {
	sockagentv1.UnimplementedMeasureServiceServer
	t *table
}
