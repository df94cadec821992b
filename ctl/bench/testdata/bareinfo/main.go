// Command bareinfo is the baseline of sockbench's sockctl row: the barest Go binary making the
// call `sockctl info` makes (AgentService.GetInfo over plaintext gRPC), printing the agent's
// hostname. It lives under testdata so `go build ./...` and `go test ./...` skip it; sockbench
// builds it by path.
//
//	bareinfo 127.0.0.1:7700
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: bareinfo HOST:PORT")
		os.Exit(2)
	}
	conn, err := grpc.NewClient(os.Args[1], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintln(os.Stderr, "bareinfo:", err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	r, err := sockagentv1.NewAgentServiceClient(conn).GetInfo(ctx, &sockagentv1.GetInfoRequest{})
	cancel()
	conn.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bareinfo:", err)
		os.Exit(1)
	}
	fmt.Println("hostname:", r.GetHostname())
}
