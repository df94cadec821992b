package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// errNoIperf3 is the tcp row's baseline error when iperf3 is not installed.
var errNoIperf3 = errors.New("iperf3 not installed (run .ci/bench, which installs it)")

// iperf3Result is the part of `iperf3 -c ... -J` sockbench reads.
type iperf3Result struct {
	Error string `json:"error"`
	End   struct {
		SumReceived struct {
			Bytes         int64   `json:"bytes"`
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
	} `json:"end"`
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// iperf3 runs `iperf3 -s -1` and `iperf3 -c 127.0.0.1 -J` for d (whole seconds: -t takes no
// fraction) on a free port, and returns the bits per second the server received and the CPU
// seconds per GB received that both processes spent (user + system of each, from start to
// exit: their start-up and the client's connection attempts included; 0 when the server did
// not exit on its own).
func iperf3(ctx context.Context, d time.Duration) (bps, cpu float64, note string, err error) {
	bin, err := exec.LookPath("iperf3")
	if err != nil {
		return 0, 0, "", errNoIperf3
	}
	secs := max(1, int(math.Ceil(d.Seconds()-1e-9)))
	if time.Duration(secs)*time.Second != d {
		note = fmt.Sprintf("iperf3 ran %ds (its -t takes whole seconds)", secs)
	}
	port, err := freePort()
	if err != nil {
		return 0, 0, note, err
	}
	p := strconv.Itoa(port)
	ictx, cancel := context.WithTimeout(ctx, time.Duration(secs)*time.Second+30*time.Second)
	defer cancel()
	var (
		srvOut bytes.Buffer
		cliCPU time.Duration // every client run's, the refused attempts' too
	)
	srv := exec.CommandContext(ictx, bin, "-s", "-1", "-B", "127.0.0.1", "-p", p)
	dieWithParent(srv)
	srv.Stdout, srv.Stderr = &srvOut, &srvOut
	if err := srv.Start(); err != nil {
		return 0, 0, note, fmt.Errorf("start iperf3 -s: %w", err)
	}
	exited := make(chan struct{}) // closed once the server exited and was reaped
	go func() {
		_ = srv.Wait()
		close(exited)
	}()
	defer func() {
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = srv.Process.Kill()
			<-exited
		}
	}()
	// The server is listening once a client connects; until then the client is refused.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var out, errb bytes.Buffer
		cli := exec.CommandContext(ictx, bin, "-c", "127.0.0.1", "-p", p, "-t", strconv.Itoa(secs), "-J")
		dieWithParent(cli)
		cli.Stdout, cli.Stderr = &out, &errb
		runErr := cli.Run()
		if cli.ProcessState != nil {
			cliCPU += cli.ProcessState.UserTime() + cli.ProcessState.SystemTime()
		}
		var res iperf3Result
		if jerr := json.Unmarshal(out.Bytes(), &res); jerr != nil {
			return 0, 0, note, fmt.Errorf("iperf3 -c: %v; output %q %s", runErr, clip(out.String(), 200), strings.TrimSpace(errb.String()))
		}
		if res.Error == "" && res.End.SumReceived.BitsPerSecond > 0 {
			return res.End.SumReceived.BitsPerSecond, cpuPerGB(cliCPU+serverCPU(srv, exited), res.End.SumReceived.Bytes), note, nil
		}
		if strings.Contains(res.Error, "connect") && time.Now().Before(deadline) {
			select {
			case <-ictx.Done():
				return 0, 0, note, fmt.Errorf("iperf3: %w", ictx.Err())
			case <-exited:
				return 0, 0, note, fmt.Errorf("iperf3 -s exited early: %s", strings.TrimSpace(srvOut.String()))
			case <-time.After(20 * time.Millisecond):
			}
			continue
		}
		return 0, 0, note, fmt.Errorf("iperf3 -c: %s (%v)", res.Error, runErr)
	}
}

// serverCPU waits up to 5 s for the server (iperf3 -s -1 exits after its one test) and returns
// its CPU time; 0 if it did not exit.
func serverCPU(srv *exec.Cmd, exited <-chan struct{}) time.Duration {
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		return 0
	}
	if srv.ProcessState == nil {
		return 0
	}
	return srv.ProcessState.UserTime() + srv.ProcessState.SystemTime()
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
