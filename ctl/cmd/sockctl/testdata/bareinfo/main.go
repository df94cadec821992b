// Command bareinfo is the baseline of sockctl's start-up benchmark: the same single GetInfo
// call 'sockctl info' makes, with grpc-go alone (no cobra, no output formatting beyond one
// line). Usage: bareinfo HOST:PORT
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: bareinfo HOST:PORT")
		os.Exit(2)
	}
	cc, err := grpc.NewClient(os.Args[1], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintln(os.Stderr, "bareinfo:", err)
		os.Exit(2)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := sockagentv1.NewAgentServiceClient(cc).GetInfo(ctx, &sockagentv1.GetInfoRequest{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "bareinfo:", err)
		os.Exit(1)
	}
	fmt.Println("hostname:", r.GetHostname())
}
