package engine

import (
	"context"
	"errors"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/agent/policy"
)

// FuzzRequestValidation feeds random networks, addresses, timeouts and sizes to the pure
// checks every request goes through: network and address validation, timeouts, read sizes,
// the policy's network, destination, local address and UNIX path checks, the Control hooks,
// the ownership lookup, and the error-to-status mapping. Nothing here opens a socket: the
// Control hooks are called directly, with no connection behind them. Seeds live in
// testdata/fuzz/FuzzRequestValidation and run as a plain test.
func FuzzRequestValidation(f *testing.F) {
	f.Add("tcp", "127.0.0.1:0", int64(5), int32(0), uint32(0), uint32(0), 10)
	f.Add("unix", "/tmp/../etc/x.sock", int64(-1), int32(0), uint32(1<<31), uint32(7), 1<<20)
	f.Add("udp6", "[::ffff:127.0.0.2]:22", int64(1<<40), int32(-5), uint32(4096), uint32(0), -1)
	f.Add("unixgram", "@abstract", int64(0), int32(999999999), uint32(65536), uint32(65537), 4<<20+1)
	pol, err := policy.Parse("fuzz.yaml", []byte(`
default:
  destinations:
    allow: [{name: loopback, cidrs: [127.0.0.0/8, "::1"], ports: ["1024-65535"]}]
    deny: [{name: two, cidrs: [127.0.0.2]}]
  limits: {bytes_per_call: 4096}
`))
	if err != nil {
		f.Fatal(err)
	}
	tb := newTable(time.Second, 1<<20, pol)
	set := pol.For(policy.Identity{ID: "anonymous"})

	f.Fuzz(func(t *testing.T, network, address string, secs int64, nanos int32, maxBytes, exact uint32, dataLen int) {
		var errs []error
		for _, op := range contract.Ops() {
			if err := checkNetwork(op, network); err != nil {
				errs = append(errs, err)
			} else if !slices.Contains(contract.Networks(op), network) {
				t.Fatalf("checkNetwork(%s) accepted %q", op, network)
			}
		}
		for _, n := range []string{network, "unix", "tcp"} {
			err := checkAddress("op", n, address)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if contract.IsUnix(n) && !strings.HasPrefix(address, "@") {
				if !filepath.IsAbs(address) || slices.Contains(strings.Split(filepath.ToSlash(address), "/"), "..") || strings.ContainsRune(address, 0) {
					t.Fatalf("checkAddress(%s) accepted %q", n, address)
				}
				checkPolicy(t, set.CheckUnixPath(address))
			}
		}
		if _, err := tputDurationOf("duration", time.Duration(secs)*time.Second+time.Duration(nanos), time.Millisecond, tputMaxDuration, "10s"); err != nil {
			errs = append(errs, err)
		}
		for _, ask := range []uint32{maxBytes, exact} {
			n, err := tb.readLimit("recv", ask, set)
			if err != nil {
				errs = append(errs, err)
			} else if n <= 0 || n > tb.maxRecv || n > set.Limits.BytesPerCall {
				t.Fatalf("readLimit(%d) = %d", ask, n)
			}
		}
		if err := bytesLimit(dataLen, set, "hint"); err != nil {
			errs = append(errs, err)
		} else if dataLen > set.Limits.BytesPerCall {
			t.Fatalf("bytesLimit accepted %d", dataLen)
		}
		checkPolicy(t, set.CheckNetwork(network))
		if ap, err := netip.ParseAddrPort(address); err == nil {
			checkPolicy(t, set.CheckDestination(ap))
			checkPolicy(t, set.CheckLocal(ap))
			if a := ap.Addr().Unmap(); a == netip.MustParseAddr("127.0.0.2") && set.CheckDestination(ap) == nil {
				t.Fatalf("destination %s passed a deny rule", ap)
			}
		}
		for _, n := range []string{network, "tcp4", "unix"} {
			for _, local := range []bool{true, false} {
				if err := control(set, local)(n, address, nil); err != nil {
					errs = append(errs, err)
				}
			}
		}
		if _, err := tb.get(context.Background(), address); !errors.Is(err, ErrUnknownSocket) {
			t.Fatalf("get(%q) in an empty table: %v", address, err)
		}
		for _, err := range errs {
			err = &OpError{Op: "op", Network: network, Address: address, Err: err}
			if r := Reason(err); !contract.IsReason(r) || err.Error() == "" {
				t.Fatalf("Reason(%v) = %q", err, r)
			}
		}
	})
}

// checkPolicy: a policy check answers nil or a *policy.Denied that maps to POLICY_DENIED.
func checkPolicy(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	var d *policy.Denied
	if !errors.As(err, &d) || d.Rule == "" || d.RuleSet == "" {
		t.Fatalf("policy check: %v", err)
	}
	if r := Reason(err); r != contract.ReasonPolicyDenied {
		t.Fatalf("Reason(%v) = %s, want POLICY_DENIED", err, r)
	}
}
