package agent

import (
	"github.com/sockagent/sockagent/agent/internal/rpcstatus"
	"google.golang.org/grpc/status"
)

// toStatus turns any error of the agent into a gRPC status with a google.rpc.ErrorInfo
// (rpcstatus.ToStatus: the engine decides the reason, rpcstatus the code).
func toStatus(err error) *status.Status { return rpcstatus.ToStatus(err) }

// fail is toStatus as the error an RPC handler returns.
func fail(err error) error { return toStatus(err).Err() }
