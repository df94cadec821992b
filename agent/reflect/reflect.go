// Package reflect turns on gRPC server reflection (v1 and v1alpha) for an agent:
//
//	agent.New(agent.Config{Reflection: reflect.Register})
//
// It is a package of its own so that only programs that want reflection (sockagent) link it.
package reflect

import (
	"google.golang.org/grpc"
	"google.golang.org/grpc/reflection"
)

// Register registers server reflection on s.
func Register(s *grpc.Server) { reflection.Register(s) }
