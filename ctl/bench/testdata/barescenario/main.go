// Command barescenario is the baseline of sockbench's scenario row, as a process like
// sockctl: bareclient.Scenario against the agent at HOST:PORT. It lives under testdata so
// `go build ./...` and `go test ./...` skip it; sockbench builds it by path.
//
//	barescenario 127.0.0.1:7700 497 PAYLOAD
package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/sockagent/sockagent/ctl/bench/bareclient"
)

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: barescenario HOST:PORT PAIRS PAYLOAD")
		os.Exit(2)
	}
	pairs, err := strconv.Atoi(os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, "barescenario: PAIRS:", err)
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := bareclient.Scenario(ctx, os.Args[1], pairs, []byte(os.Args[3])); err != nil {
		fmt.Fprintln(os.Stderr, "barescenario:", err)
		os.Exit(1)
	}
}
