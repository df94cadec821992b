package main

// The attack of findings 1 and 2 against the built binary: a local user (uid 65534) who may
// use UNIX paths in a directory it owns swaps a directory there for a symlink to a root-only
// directory, back and forth, while it asks a root agent to bind, connect, send and close there.
// The attacker is this test binary run again as uid 65534 (runHelper picks it up in TestMain).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/sockagent/sockagent/agent/contract"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// attackEnv, when set, makes the test binary the attacker; its value is an attackConfig.
const attackEnv = "SOCKAGENT_TEST_UNIX_ATTACK"

// Race bounds of the attack: this many tries or this long, whichever ends first.
const (
	attackTries = 3000
	attackTime  = 8 * time.Second
)

// attackConfig tells the attacker where the agent is and what to swap.
type attackConfig struct {
	Addr, Secret string // the agent's TCP address and the attacker's token
	// Allowed is the attacker's directory, the one the policy allows; Outside the root-only
	// directory its symlink points to.
	Allowed, Outside string
	Tries            int
	Limit            time.Duration
}

// attackReport is what the attacker saw, as JSON on its stdout.
type attackReport struct {
	Tries, Swaps int64
	// Succeeded and Denied count the calls that worked and those POLICY_DENIED refused;
	// Reached those of them that connected or sent to allowed/d/t.*, and Hits what the
	// attacker's own sockets there received.
	Succeeded, Denied, Reached, Hits int64
	Errors                           []string // other refusals, the first few
	Leaked                           []string // files left in the swapped directory
	NoSwap                           string   // why the file system could not swap, if it could not
}

// runHelper runs the attacker when the test binary was started as one, and reports whether
// it did and its exit code.
func runHelper() (int, bool) {
	raw := os.Getenv(attackEnv)
	if raw == "" {
		return 0, false
	}
	var cfg attackConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "attacker:", err)
		return 2, true
	}
	r, err := attack(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "attacker:", err)
		return 1, true
	}
	if err := json.NewEncoder(os.Stdout).Encode(r); err != nil {
		return 1, true
	}
	return 0, true
}

// attack is the attacker: Allowed/d, a directory holding the attacker's sockets t.sock and
// t.dg, and Allowed/l, a symlink to Outside, trade places atomically (renameat2
// RENAME_EXCHANGE) as fast as they can while the agent is asked to Listen, Bind and Dial with
// a local address on Allowed/d/NAME and Close, and to Dial and SendTo Allowed/d/t.*.
func attack(cfg attackConfig) (*attackReport, error) {
	d, l := filepath.Join(cfg.Allowed, "d"), filepath.Join(cfg.Allowed, "l")
	if err := os.Mkdir(d, 0o755); err != nil {
		return nil, err
	}
	if err := os.Symlink(cfg.Outside, l); err != nil {
		return nil, err
	}
	var hits atomic.Int64
	own, err := listenOwn(d, &hits)
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(cfg.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	sc := sockagentv1.NewSocketServiceClient(conn)
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+cfg.Secret), cfg.Limit+30*time.Second)
	defer cancel()
	// The peer of Dial's local address and the source of SendTo, out of the swap's reach.
	src, err := sc.Bind(ctx, &sockagentv1.BindRequest{Network: "unixgram", Address: filepath.Join(cfg.Allowed, "src.dg")})
	if err != nil {
		return nil, err
	}
	r := &attackReport{}
	sw := &swap{d: d, l: l}
	if err := sw.start(); err != nil {
		r.NoSwap = err.Error()
		_, _ = sc.Close(ctx, &sockagentv1.CloseRequest{SocketId: src.GetSocket().GetSocketId()})
		return r, nil
	}
	start := time.Now()
	for ; r.Tries < int64(cfg.Tries) && time.Since(start) < cfg.Limit; r.Tries++ {
		r.count(attackOnce(ctx, sc, int(r.Tries), d, src.GetSocket()))
	}
	r.Swaps = sw.halt()
	_, _ = sc.Close(ctx, &sockagentv1.CloseRequest{SocketId: src.GetSocket().GetSocketId()})
	for end := time.Now().Add(2 * time.Second); hits.Load() < r.Reached && time.Now().Before(end); {
		time.Sleep(time.Millisecond)
	}
	own.close()
	r.Hits = hits.Load()
	ents, err := os.ReadDir(d)
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		if e.Name() != "t.sock" && e.Name() != "t.dg" {
			r.Leaked = append(r.Leaked, e.Name())
		}
	}
	return r, nil
}

// outcome of one try: whether it reached t.* (Dial, SendTo), and its error.
type outcome struct {
	reach bool
	err   error
}

// attackOnce makes try i's calls: 0 Listen, 1 Bind, 2 Dial with a local address, each on a
// new name and closed at once (names v* have a victim file waiting outside), 3 Dial unix to
// t.sock, 4 SendTo t.dg.
func attackOnce(ctx context.Context, sc sockagentv1.SocketServiceClient, i int, d string, src *sockagentv1.Socket) outcome {
	var id string
	var err error
	switch i % 5 {
	case 0:
		var r *sockagentv1.ListenResponse
		r, err = sc.Listen(ctx, &sockagentv1.ListenRequest{Network: "unix", Address: filepath.Join(d, fmt.Sprintf("v%d.sock", i))})
		id = r.GetSocket().GetSocketId()
	case 1:
		var r *sockagentv1.BindResponse
		r, err = sc.Bind(ctx, &sockagentv1.BindRequest{Network: "unixgram", Address: filepath.Join(d, fmt.Sprintf("c%d.dg", i))})
		id = r.GetSocket().GetSocketId()
	case 2:
		var r *sockagentv1.DialResponse
		r, err = sc.Dial(ctx, &sockagentv1.DialRequest{Network: "unixgram", Address: src.GetLocalAddress(), LocalAddress: filepath.Join(d, fmt.Sprintf("v%d.dg", i))})
		id = r.GetSocket().GetSocketId()
	case 3:
		var r *sockagentv1.DialResponse
		r, err = sc.Dial(ctx, &sockagentv1.DialRequest{Network: "unix", Address: filepath.Join(d, "t.sock")})
		id = r.GetSocket().GetSocketId()
	case 4:
		_, err = sc.SendTo(ctx, &sockagentv1.SendToRequest{SocketId: src.GetSocketId(), Address: filepath.Join(d, "t.dg"), Data: []byte("x")})
	}
	if id != "" {
		if _, cerr := sc.Close(ctx, &sockagentv1.CloseRequest{SocketId: id}); cerr != nil && err == nil {
			err = cerr
		}
	}
	return outcome{reach: i%5 >= 3, err: err}
}

func (r *attackReport) count(o outcome) {
	switch {
	case o.err == nil:
		r.Succeeded++
		if o.reach {
			r.Reached++
		}
	case reasonOf(o.err) == contract.ReasonPolicyDenied:
		r.Denied++
	case len(r.Errors) < 5:
		r.Errors = append(r.Errors, o.err.Error())
	}
}

func reasonOf(err error) string {
	for _, d := range status.Convert(err).Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok {
			return ei.GetReason()
		}
	}
	return ""
}

// swap trades d and l with renameat2 RENAME_EXCHANGE in a loop until halt.
type swap struct {
	d, l  string
	flips atomic.Int64
	stop  chan struct{}
	done  chan struct{}
}

func (sw *swap) start() error {
	if err := unix.Renameat2(unix.AT_FDCWD, sw.d, unix.AT_FDCWD, sw.l, unix.RENAME_EXCHANGE); err != nil {
		return fmt.Errorf("renameat2 RENAME_EXCHANGE %s %s: %w", sw.d, sw.l, err)
	}
	sw.flips.Add(1)
	sw.stop, sw.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(sw.done)
		for {
			select {
			case <-sw.stop:
				return
			default:
			}
			if unix.Renameat2(unix.AT_FDCWD, sw.d, unix.AT_FDCWD, sw.l, unix.RENAME_EXCHANGE) == nil {
				sw.flips.Add(1)
			}
		}
	}()
	return nil
}

// halt stops the swapping, leaves d the directory again and returns the number of swaps.
func (sw *swap) halt() int64 {
	close(sw.stop)
	<-sw.done
	n := sw.flips.Load()
	if n%2 == 1 {
		_ = unix.Renameat2(unix.AT_FDCWD, sw.d, unix.AT_FDCWD, sw.l, unix.RENAME_EXCHANGE)
	}
	return n
}

// ownSockets are t.sock (stream) and t.dg (datagram) in a directory, counting what reaches them.
type ownSockets struct {
	ln net.Listener
	pc net.PacketConn
	wg sync.WaitGroup
}

func listenOwn(dir string, hits *atomic.Int64) (*ownSockets, error) {
	o := &ownSockets{}
	var err error
	if o.ln, err = net.Listen("unix", filepath.Join(dir, "t.sock")); err != nil {
		return nil, err
	}
	if o.pc, err = net.ListenPacket("unixgram", filepath.Join(dir, "t.dg")); err != nil {
		o.ln.Close()
		return nil, err
	}
	o.wg.Add(2)
	go func() {
		defer o.wg.Done()
		for {
			c, err := o.ln.Accept()
			if err != nil {
				return
			}
			hits.Add(1)
			c.Close()
		}
	}()
	go func() {
		defer o.wg.Done()
		buf := make([]byte, 16)
		for {
			if _, _, err := o.pc.ReadFrom(buf); err != nil {
				return
			}
			hits.Add(1)
		}
	}()
	return o, nil
}

func (o *ownSockets) close() {
	o.ln.(*net.UnixListener).SetUnlinkOnClose(false) // the test counts what stays behind
	o.ln.Close()
	o.pc.Close()
	o.wg.Wait()
}

// TestUnixSwapAttackAsLocalUser: findings 1 and 2 against the built binary, run as root with
// a policy that lets the caller use UNIX paths in a directory the caller (uid 65534) owns.
// The caller, as uid 65534, swaps a directory there for a symlink to a root-only directory
// thousands of times while the agent binds, connects, sends and closes there: nothing is
// created, reached or deleted in the root-only directory, and nothing is left behind.
func TestUnixSwapAttackAsLocalUser(t *testing.T) {
	t.Parallel()
	needRoot(t)
	shared, _ := sharedDir(t)
	attacker := filepath.Join(shared, "attacker")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	copyExecutable(t, self, attacker)
	allowed := filepath.Join(shared, "a")
	if err := os.Mkdir(allowed, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(allowed, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	outside := shortTempDir(t) // root's, mode 0700: uid 65534 may name it, not enter it
	victims := map[string]bool{}
	for i := 0; i < attackTries; i += 5 {
		for _, name := range []string{fmt.Sprintf("v%d.sock", i), fmt.Sprintf("v%d.dg", i+2)} {
			if err := os.WriteFile(filepath.Join(outside, name), []byte("victim"), 0o600); err != nil {
				t.Fatal(err)
			}
			victims[name] = true
		}
	}
	stream := listenCountingAt(t, filepath.Join(outside, "t.sock"))
	dgram, err := net.ListenPacket("unixgram", filepath.Join(outside, "t.dg"))
	if err != nil {
		t.Fatal(err)
	}
	defer dgram.Close()

	files := t.TempDir()
	tokens, pol := filepath.Join(files, "tokens"), filepath.Join(files, "policy.yaml")
	if err := os.WriteFile(tokens, []byte("attacker:attacker-secret-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pol, fmt.Appendf(nil, "default:\n  unix_paths: {allow: [%q]}\n", allowed), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startLocal(t, "--token-file", tokens, "--policy", pol)

	cfg, err := json.Marshal(attackConfig{Addr: p.addr, Secret: "attacker-secret-0123456789", Allowed: allowed, Outside: outside, Tries: attackTries, Limit: attackTime})
	if err != nil {
		t.Fatal(err)
	}
	r := runAttacker(t, attacker, string(cfg))
	if r.NoSwap != "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s; CI must run the swap race (give TMPDIR on tmpfs or ext4)", r.NoSwap)
		}
		t.Skip(r.NoSwap)
	}
	t.Logf("uid %d: %d tries, %d swaps: %d calls succeeded (%d reached its sockets, which got %d), %d refused by the policy",
		nobody, r.Tries, r.Swaps, r.Succeeded, r.Reached, r.Hits, r.Denied)

	checkOutside(t, outside, victims)
	if n := stream.settle(0); n != 0 {
		t.Errorf("the swap won: the root-only stream socket got %d connections", n)
	}
	_ = dgram.SetReadDeadline(time.Now())
	if n, _, err := dgram.ReadFrom(make([]byte, 16)); err == nil {
		t.Errorf("the swap won: the root-only datagram socket got %d bytes", n)
	}
	if len(r.Leaked) > 0 {
		t.Errorf("the agent left %d socket files in the caller's directory: %v", len(r.Leaked), first(r.Leaked))
	}
	if r.Hits != r.Reached {
		t.Errorf("the caller's own sockets got %d connections and datagrams, the calls that reached them %d", r.Hits, r.Reached)
	}
	if len(r.Errors) > 0 {
		t.Errorf("refusals other than POLICY_DENIED: %q", r.Errors)
	}
	if r.Tries < 1000 || r.Succeeded < 100 || r.Denied < 100 || r.Swaps < 1000 {
		t.Errorf("the race was not run: %d tries, %d swaps, %d succeeded, %d refused; want at least 1000, 1000, 100 and 100", r.Tries, r.Swaps, r.Succeeded, r.Denied)
	}
	info, err := sockagentv1.NewAgentServiceClient(p.conn).GetInfo(bearerCtx(t, "attacker-secret-0123456789"), &sockagentv1.GetInfoRequest{})
	if err != nil || info.GetOpenSockets() != 0 {
		t.Errorf("after the attack the agent holds %d sockets (%v), want 0", info.GetOpenSockets(), err)
	}
}

// checkOutside: the root-only directory holds what the test put there (victims, unchanged,
// and the sockets t.sock and t.dg), and nothing else.
func checkOutside(t *testing.T, outside string, victims map[string]bool) {
	t.Helper()
	ents, err := os.ReadDir(outside)
	if err != nil {
		t.Fatal(err)
	}
	var created []string
	for _, e := range ents {
		name := e.Name()
		if name == "t.sock" || name == "t.dg" {
			continue
		}
		if !victims[name] {
			created = append(created, name)
			continue
		}
		delete(victims, name)
		if b, err := os.ReadFile(filepath.Join(outside, name)); err != nil || string(b) != "victim" {
			t.Errorf("victim %s was replaced: %q %v", name, b, err)
		}
	}
	if len(created) > 0 {
		t.Errorf("the swap won: the agent created %d files in the root-only directory: %v", len(created), first(created))
	}
	if len(victims) > 0 {
		var gone []string
		for name := range victims {
			gone = append(gone, name)
		}
		slices.Sort(gone)
		t.Errorf("the swap won: the agent deleted %d files of the root-only directory at close: %v", len(gone), first(gone))
	}
}

// runAttacker runs the attacker as uid 65534, bounded to a minute, and decodes its report.
func runAttacker(t *testing.T, bin, cfg string) *attackReport {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = append(os.Environ(), attackEnv+"="+cfg)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	dieWithTest(cmd)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("attacker as uid %d: %v\n%s", nobody, err, errOut.String())
	}
	var r attackReport
	if err := json.NewDecoder(strings.NewReader(out.String())).Decode(&r); err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("attacker's report %q: %v", out.String(), err)
	}
	return &r
}

// first is at most the first 5 of names, for a message.
func first(names []string) []string { return names[:min(len(names), 5)] }
