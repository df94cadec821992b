// Package reflection turns on gRPC server reflection (v1 and v1alpha) for an agent, so that
// grpcurl works without .proto files:
//
//	agent.New(agent.Config{Reflection: reflection.Register})
//
// It is a package of its own so that only programs that want reflection (sockagent) link
// protobuf's descriptor machinery; agents embedded elsewhere (sockctl's local agents) start
// without it.
package reflection

import (
	"google.golang.org/grpc"
	grpcreflection "google.golang.org/grpc/reflection"
)

// Register registers server reflection on s.
func Register(s *grpc.Server) { grpcreflection.Register(s) }
