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

var t0 = time.Now()

func main() {
	t1 := time.Now()
	cc, _ := grpc.NewClient("passthrough:///"+os.Args[1], grpc.WithTransportCredentials(insecure.NewCredentials()))
	t2 := time.Now()
	r, err := sockagentv1.NewAgentServiceClient(cc).GetInfo(context.Background(), &sockagentv1.GetInfoRequest{})
	t3 := time.Now()
	_, err = sockagentv1.NewAgentServiceClient(cc).GetInfo(context.Background(), &sockagentv1.GetInfoRequest{})
	t4 := time.Now()
	cc.Close()
	t5 := time.Now()
	fmt.Fprintln(os.Stderr, "init->main", t1.Sub(t0), "newclient", t2.Sub(t1), "first rpc", t3.Sub(t2), "second", t4.Sub(t3), "close", t5.Sub(t4), r != nil, err)
}
