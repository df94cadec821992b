package main

// Floods by callers without credentials against the built sockagent (a process of its own,
// with its own open-file limit): large token-less requests, health.Watch streams, and
// connections that send the HTTP/2 preface and nothing more. Under each, an authenticated
// caller's GetInfo keeps answering (its p99 is logged), and the agent's peak RSS (VmHWM) stays
// under a bound.
//
// They do not call t.Parallel: they run before the parallel tests start, alone on the CPUs,
// so that the latencies and the memory they measure are the flood's.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/agent/internal/load"
	"github.com/sockagent/sockagent/agent/internal/rlimit"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

const floodSecret = "flood-secret-0123456789"

// floodAgent starts sockagent with a token file and flags, and an authenticated client of it
// from 127.0.0.1 that has made one GetInfo.
func floodAgent(t *testing.T, flags ...string) (*proc, load.Proc, sockagentv1.AgentServiceClient) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(file, []byte("ci:"+floodSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startLocal(t, append([]string{"--log-format", "json", "--token-file", file}, flags...)...)
	ac := sockagentv1.NewAgentServiceClient(p.conn)
	if _, err := ac.GetInfo(authCtx(t), &sockagentv1.GetInfoRequest{}); err != nil {
		t.Fatal(err)
	}
	return p, load.Proc(p.cmd.Process.Pid), ac
}

// floodCtx is a context of the test without credentials; authCtx has the token.
func floodCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func authCtx(t *testing.T) context.Context {
	return metadata.AppendToOutgoingContext(floodCtx(t), "authorization", "Bearer "+floodSecret)
}

// honest calls GetInfo in a loop until stop is closed, and returns the latencies; every call
// must succeed.
func honest(t *testing.T, ac sockagentv1.AgentServiceClient, stop <-chan struct{}) <-chan []time.Duration {
	out := make(chan []time.Duration, 1)
	ctx := authCtx(t)
	go func() {
		var lat []time.Duration
		for {
			select {
			case <-stop:
				out <- lat
				return
			default:
			}
			start := time.Now()
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, err := ac.GetInfo(cctx, &sockagentv1.GetInfoRequest{})
			cancel()
			if err != nil {
				t.Errorf("authenticated GetInfo during the flood: %v", err)
			}
			lat = append(lat, time.Since(start))
			time.Sleep(2 * time.Millisecond) // a steady caller, not a second flood
		}
	}()
	return out
}

// p99 is the 99th percentile of lat.
func p99(lat []time.Duration) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	s := slices.Clone(lat)
	slices.Sort(s)
	return s[(len(s)*99)/100]
}

// measure runs flood while an authenticated caller calls GetInfo, and checks the agent's peak
// RSS against maxRSS and the p99 against maxP99.
func measure(t *testing.T, pr load.Proc, ac sockagentv1.AgentServiceClient, maxRSS int64, maxP99 time.Duration, flood func()) {
	t.Helper()
	before, err := pr.RSS()
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	lats := honest(t, ac, stop)
	start := time.Now()
	flood()
	took := time.Since(start)
	close(stop)
	lat := <-lats
	peak, err := pr.PeakRSS()
	if err != nil {
		t.Fatal(err)
	}
	q := p99(lat)
	t.Logf("flood took %s; authenticated GetInfo: %d calls, p99 %s, max %s; agent RSS %.1f MiB before, peak %.1f MiB",
		took.Round(time.Millisecond), len(lat), q.Round(time.Microsecond), slices.Max(append(lat, 0)).Round(time.Microsecond),
		float64(before)/(1<<20), float64(peak)/(1<<20))
	if len(lat) < 10 {
		t.Errorf("only %d GetInfo calls during the flood", len(lat))
	}
	if q > maxP99 {
		t.Errorf("GetInfo p99 %s during the flood, want at most %s", q, maxP99)
	}
	if peak > maxRSS {
		t.Errorf("agent peak RSS %d MiB, want at most %d MiB", peak>>20, maxRSS>>20)
	}
}

// rawCodec sends requests already encoded, so that 300 of 4 MiB share one buffer.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *v.(*[]byte), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*v.(*[]byte) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

// attacker is a client of the agent whose connections come from src, without credentials.
func attacker(t *testing.T, p *proc, src string) *grpc.ClientConn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := grpc.NewClient("passthrough:///"+p.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestFloodLargeUnauthenticated: 300 token-less 4 MiB requests at once (1.2 GB) are refused
// from their headers, UNAUTHENTICATED; the agent's RSS stays under 64 MiB and the log grows
// by a bounded number of short lines.
func TestFloodLargeUnauthenticated(t *testing.T) {
	p, pr, ac := floodAgent(t)
	big, err := proto.Marshal(&sockagentv1.SendRequest{SocketId: "s-1", Data: make([]byte, 4<<20)})
	if err != nil {
		t.Fatal(err)
	}
	const n, conns = 300, 30
	clients := make([]*grpc.ClientConn, conns)
	for i := range clients {
		clients[i] = attacker(t, p, fmt.Sprintf("127.0.0.%d", 2+i%8))
	}
	logBefore := len(p.log.String())
	var refused atomic.Int32
	rounds := 0
	measure(t, pr, ac, 64<<20, time.Second, func() {
		// Round after round of 300 at once, for 2 s (at most 20 rounds), so that the honest
		// caller's latencies are the flood's.
		for start := time.Now(); rounds < 20 && time.Since(start) < 2*time.Second; rounds++ {
			floodRound(t, clients, n, &big, &refused)
		}
	})
	if refused.Load() != int32(n*rounds) {
		t.Errorf("%d of %d refused", refused.Load(), n*rounds)
	}
	grew := len(p.log.String()) - logBefore
	t.Logf("%d rounds of %d token-less %d-byte requests; the log grew by %d bytes", rounds, n, len(big), grew)
	if grew > 64<<10 {
		t.Errorf("the log grew by %d bytes, want at most 64 KiB", grew)
	}
}

// floodRound sends n token-less requests big at once over clients, and counts those refused
// UNAUTHENTICATED with the fixed message.
func floodRound(t *testing.T, clients []*grpc.ClientConn, n int, big *[]byte, refused *atomic.Int32) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			var reply []byte
			err := clients[i%len(clients)].Invoke(floodCtx(t), sockagentv1.SocketService_Send_FullMethodName, big, &reply,
				grpc.ForceCodec(rawCodec{}))
			if st := status.Convert(err); st.Code() == codes.Unauthenticated && st.Message() == contract.UnauthenticatedMessage {
				refused.Add(1)
			} else {
				t.Errorf("token-less 4 MiB Send: %v, want UNAUTHENTICATED", err)
			}
		})
	}
	wg.Wait()
}

// TestFloodHealthWatch: 60,000 token-less health.Watch streams on one connection (64 at a
// time): 4 stay open, every other one is refused at once with LIMIT_EXCEEDED; the agent's RSS
// stays under 64 MiB.
func TestFloodHealthWatch(t *testing.T) {
	p, pr, ac := floodAgent(t, "--auth-timeout", "5m")
	c := attacker(t, p, "127.0.0.2")
	hc := healthpb.NewHealthClient(c)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const n, workers = 60000, 64
	var open, refused, other atomic.Int32
	var next atomic.Int32
	measure(t, pr, ac, 64<<20, time.Second, func() {
		deadline := time.Now().Add(90 * time.Second)
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for next.Add(1) <= n && time.Now().Before(deadline) {
					w, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{})
					if err == nil {
						_, err = w.Recv()
					}
					switch {
					case err == nil:
						open.Add(1)
					case limitOf(err) == "unauthenticated_health_per_connection":
						refused.Add(1)
					default:
						if other.Add(1) <= 3 {
							t.Errorf("Watch: %v", err)
						}
					}
				}
			})
		}
		wg.Wait()
	})
	t.Logf("%d Watch streams: %d open, %d refused", open.Load()+refused.Load()+other.Load(), open.Load(), refused.Load())
	if open.Load() != 4 || refused.Load() != n-4 {
		t.Errorf("%d Watch streams open, %d refused, %d other, want 4, %d, 0", open.Load(), refused.Load(), other.Load(), n-4)
	}
}

// limitOf is the limit a LIMIT_EXCEEDED error names, or "".
func limitOf(err error) string {
	st := status.Convert(err)
	for _, d := range st.Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok && st.Code() == codes.ResourceExhausted && ei.GetReason() == contract.ReasonLimitExceeded {
			return ei.GetMetadata()["limit"]
		}
	}
	return ""
}

// TestFloodPrefaceOnly: 20,000 connections from 8 addresses that send the HTTP/2 preface and
// nothing more: the agent serves at most --max-unauthenticated of them at once and closes
// each at --auth-timeout, the others as soon as they are accepted; its open files stay
// bounded, an authenticated GetInfo keeps answering, and a new caller gets in once the flood
// stops.
func TestFloodPrefaceOnly(t *testing.T) {
	const authTimeout = time.Second
	p, pr, ac := floodAgent(t, "--auth-timeout", authTimeout.String())
	fdsBefore, err := pr.FDs()
	if err != nil {
		t.Fatal(err)
	}
	const n, dialers = 20000, 64
	var servedN, refusedN, failed atomic.Int32
	var maxFDs atomic.Int64
	var early, late atomic.Int32 // served connections closed before the timeout, or long after
	measure(t, pr, ac, 64<<20, time.Second, func() {
		deadline := time.Now().Add(60 * time.Second)
		done := make(chan struct{})
		go func() { // the agent's open files, sampled
			for {
				select {
				case <-done:
					return
				case <-time.After(20 * time.Millisecond):
				}
				if f, err := pr.FDs(); err == nil && int64(f) > maxFDs.Load() {
					maxFDs.Store(int64(f))
				}
			}
		}()
		var next atomic.Int32
		var wg sync.WaitGroup
		for w := range dialers {
			wg.Go(func() {
				d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+w%8))}, Timeout: 5 * time.Second}
				for next.Add(1) <= n && time.Now().Before(deadline) {
					start := time.Now()
					c, err := d.Dial("tcp", p.addr)
					if err != nil {
						if failed.Add(1) <= 3 {
							t.Errorf("dial: %v", err)
						}
						continue
					}
					_, _ = c.Write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))
					wg.Go(func() {
						defer c.Close()
						wasServed, closed := readUntilClosed(c, authTimeout+10*time.Second)
						switch {
						case !wasServed:
							refusedN.Add(1)
						default:
							servedN.Add(1)
							if d := closed.Sub(start); d < authTimeout {
								early.Add(1)
							} else if d > authTimeout+3*time.Second {
								late.Add(1)
							}
						}
					})
				}
			})
		}
		wg.Wait()
		close(done)
	})
	t.Logf("%d preface-only connections: %d served and closed at the auth timeout, %d closed at once; agent fds %d before, at most %d during",
		servedN.Load()+refusedN.Load(), servedN.Load(), refusedN.Load(), fdsBefore, maxFDs.Load())
	if got := servedN.Load() + refusedN.Load(); got != n || failed.Load() != 0 {
		t.Errorf("%d connections closed by the agent, %d dials failed; want %d and 0", got, failed.Load(), n)
	}
	if servedN.Load() == 0 || early.Load() != 0 || late.Load() != 0 {
		t.Errorf("%d served, of which %d closed before %s and %d more than 3s after it", servedN.Load(), early.Load(), authTimeout, late.Load())
	}
	// The unauthenticated connections, and at most the files the agent keeps for itself
	// (rlimit.OwnFiles: the honest client's connection, connections accepted only to be
	// refused, the runtime's): without the bounds it reached the open-file limit.
	if max := int64(fdsBefore + 256 + rlimit.OwnFiles); maxFDs.Load() > max {
		t.Errorf("the agent had %d open files, want at most %d", maxFDs.Load(), max)
	}
	late2 := sockagentv1.NewAgentServiceClient(attacker(t, p, "127.0.0.1"))
	if _, err := late2.GetInfo(authCtx(t), &sockagentv1.GetInfoRequest{}); err != nil {
		t.Errorf("a new authenticated caller after the flood: %v", err)
	}
}

// readUntilClosed reads c until the agent closes it or limit passes: whether the agent served
// it (sent anything), and when it closed.
func readUntilClosed(c net.Conn, limit time.Duration) (served bool, closed time.Time) {
	_ = c.SetReadDeadline(time.Now().Add(limit))
	buf := make([]byte, 1024)
	for {
		n, err := c.Read(buf)
		served = served || n > 0
		if err != nil {
			if errors.Is(err, io.EOF) || strings.Contains(err.Error(), "reset") {
				return served, time.Now()
			}
			return served, time.Now().Add(time.Hour) // still open: counts as late
		}
	}
}
