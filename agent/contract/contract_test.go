package contract

import (
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"slices"
	"testing"
	"time"
)

func TestReasons(t *testing.T) {
	upper := regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`)
	seen := map[string]bool{}
	for _, list := range [][]string{AgentReasons(), MeasureReasons(), ClientReasons()} {
		for _, r := range list {
			if !upper.MatchString(r) {
				t.Errorf("reason %q is not upper case", r)
			}
			if seen[r] {
				t.Errorf("reason %s listed twice", r)
			}
			seen[r] = true
			if !IsReason(r) {
				t.Errorf("IsReason(%s) = false", r)
			}
		}
	}
	for _, r := range []string{"", "connection_refused", "CONNECTION_REFUSD", "OK"} {
		if IsReason(r) {
			t.Errorf("IsReason(%q) = true", r)
		}
	}
	AgentReasons()[0] = "CHANGED"
	if AgentReasons()[0] == "CHANGED" {
		t.Error("AgentReasons returns the package's own slice")
	}
}

func TestNetworks(t *testing.T) {
	want := map[Op][]string{
		OpListen:     {"tcp", "tcp4", "tcp6", "unix"},
		OpBind:       {"udp", "udp4", "udp6", "unixgram"},
		OpDial:       {"tcp", "tcp4", "tcp6", "udp", "udp4", "udp6", "unix", "unixgram"},
		OpProbe:      {"tcp", "tcp4", "tcp6", "udp", "udp4", "udp6"},
		OpThroughput: {"tcp", "tcp4", "tcp6", "udp", "udp4", "udp6"},
	}
	if len(Ops()) != len(want) {
		t.Errorf("Ops() = %v", Ops())
	}
	for _, op := range Ops() {
		if got := Networks(op); !slices.Equal(got, want[op]) {
			t.Errorf("Networks(%s) = %v, want %v", op, got, want[op])
		}
		for _, n := range AllNetworks() {
			if NetworkAllowed(op, n) != slices.Contains(want[op], n) {
				t.Errorf("NetworkAllowed(%s, %s) = %v", op, n, NetworkAllowed(op, n))
			}
		}
	}
	if Networks("connect") != nil || NetworkAllowed("connect", "tcp") {
		t.Error("an unknown op accepts networks")
	}
	for n, kind := range map[string][3]bool{ // unix, datagram, udp
		"tcp": {}, "tcp4": {}, "tcp6": {}, "udp": {false, true, true}, "udp4": {false, true, true}, "udp6": {false, true, true},
		"unix": {true, false, false}, "unixgram": {true, true, false}, "sctp": {},
	} {
		if IsUnix(n) != kind[0] || IsDatagram(n) != kind[1] || IsUDP(n) != kind[2] {
			t.Errorf("%s: IsUnix %v IsDatagram %v IsUDP %v, want %v", n, IsUnix(n), IsDatagram(n), IsUDP(n), kind)
		}
	}
}

func TestDefaultAgentSocket(t *testing.T) {
	p := DefaultAgentSocket()
	if os.Geteuid() == 0 && p != "/run/sockagent/sockagent.sock" {
		t.Errorf("root's default socket %s, want /run/sockagent/sockagent.sock", p)
	}
	if !filepath.IsAbs(p) || filepath.Base(p) != "sockagent.sock" || filepath.Base(filepath.Dir(p)) == "" {
		t.Errorf("default socket %s: want an absolute path in a directory of its own", p)
	}
	if DefaultAgent() != "unix:"+p {
		t.Errorf("DefaultAgent %s, want unix:%s", DefaultAgent(), p)
	}
}

func TestSocketIDShape(t *testing.T) {
	t.Parallel()
	const inst = "3fa9c1d2e4b5a6f7"
	if got := FormatSocketID(inst, 12); got != "s3fa9c1-12" {
		t.Fatalf("FormatSocketID = %q, want s3fa9c1-12", got)
	}
	for _, tc := range []struct {
		id   string
		inst string
		n    uint64
		ok   bool
	}{
		{"s3fa9c1-12", "3fa9c1", 12, true},
		{"s000000-1", "000000", 1, true},
		{"s3fa9c1-18446744073709551615", "3fa9c1", 1<<64 - 1, true},
		{"s3fa9c1-18446744073709551616", "", 0, false}, // overflows uint64
		{"s3", "", 0, false},                           // an older agent's id
		{"s3fa9c1-0", "", 0, false},
		{"s3fa9c1-01", "", 0, false},
		{"s3fa9c1-+1", "", 0, false},
		{"s3fa9c1-", "", 0, false},
		{"s3FA9C1-1", "", 0, false},
		{"s3fa9c12-1", "", 0, false},
		{"x3fa9c1-1", "", 0, false},
		{"s3fa9c1-1x", "", 0, false},
		{"", "", 0, false},
	} {
		inst, n, ok := ParseSocketID(tc.id)
		if inst != tc.inst || n != tc.n || ok != tc.ok {
			t.Errorf("ParseSocketID(%q) = %q, %d, %v; want %q, %d, %v", tc.id, inst, n, ok, tc.inst, tc.n, tc.ok)
		}
	}
	for _, tc := range []struct {
		expected string
		valid    bool
		same     bool
	}{
		{inst, true, true},
		{"3fa9c1", true, true},
		{"3fa9c2", true, false},
		{"3fa9c1d2e4b5a6f8", true, false},
		{"3fa9c1d2", false, false},
		{"3FA9C1", false, false},
		{"", false, false},
	} {
		if got := ValidInstance(tc.expected); got != tc.valid {
			t.Errorf("ValidInstance(%q) = %v, want %v", tc.expected, got, tc.valid)
		}
		if got := SameInstance(tc.expected, inst); got != tc.same {
			t.Errorf("SameInstance(%q, %q) = %v, want %v", tc.expected, inst, got, tc.same)
		}
	}
}

func TestBuildFrom(t *testing.T) {
	t.Parallel()
	stamped := &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Path: "github.com/sockagent/sockagent", Version: "v1.2.3"},
		Settings: []debug.BuildSetting{
			{Key: "-trimpath", Value: "true"},
			{Key: "vcs.revision", Value: "a0b1f5ddaf3586652444490cc2a5404cf4d94ab4"},
			{Key: "vcs.time", Value: "2026-12-06T00:36:42Z"},
			{Key: "vcs.modified", Value: "false"},
		},
	}
	modified := *stamped
	modified.Main.Version = "v0.0.0-20261206003642-a0b1f5ddaf35+dirty"
	modified.Settings = []debug.BuildSetting{
		{Key: "vcs.revision", Value: "a0b1f5ddaf3586652444490cc2a5404cf4d94ab4"},
		{Key: "vcs.time", Value: "not a time"},
		{Key: "vcs.modified", Value: "true"},
	}
	for _, tc := range []struct {
		name string
		bi   *debug.BuildInfo
		want Build
		line string
	}{
		{"none", nil, Build{Version: DevVersion, Platform: "linux/arm64"}, "dev (linux/arm64)"},
		{"devel", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}},
			Build{Version: DevVersion, GoVersion: "go1.26.8", Platform: "linux/arm64"}, "dev (go1.26.8 linux/arm64)"},
		{"empty", &debug.BuildInfo{GoVersion: "go1.26.8"},
			Build{Version: DevVersion, GoVersion: "go1.26.8", Platform: "linux/arm64"}, "dev (go1.26.8 linux/arm64)"},
		{"stamped", stamped, Build{
			Version: "v1.2.3", Revision: "a0b1f5ddaf3586652444490cc2a5404cf4d94ab4",
			Time: time.Date(2026, 12, 6, 0, 36, 42, 0, time.UTC), GoVersion: "go1.26.8", Platform: "linux/arm64",
		}, "v1.2.3 (revision a0b1f5ddaf3586652444490cc2a5404cf4d94ab4, committed 2026-12-06T00:36:42Z, go1.26.8 linux/arm64)"},
		{"modified", &modified, Build{
			Version: "v0.0.0-20261206003642-a0b1f5ddaf35+dirty", Revision: "a0b1f5ddaf3586652444490cc2a5404cf4d94ab4",
			Modified: true, GoVersion: "go1.26.8", Platform: "linux/arm64",
		}, "v0.0.0-20261206003642-a0b1f5ddaf35+dirty (revision a0b1f5ddaf3586652444490cc2a5404cf4d94ab4, modified, go1.26.8 linux/arm64)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := BuildFrom(tc.bi, "linux/arm64")
			if got != tc.want {
				t.Errorf("BuildFrom = %+v, want %+v", got, tc.want)
			}
			if s := got.String(); s != tc.line {
				t.Errorf("String = %q, want %q", s, tc.line)
			}
		})
	}
}

func TestReadBuild(t *testing.T) {
	t.Parallel()
	b := ReadBuild()
	if b.Platform != runtime.GOOS+"/"+runtime.GOARCH || b.GoVersion != runtime.Version() || b.Version == "" {
		t.Errorf("ReadBuild = %+v, want this platform, %s and a version", b, runtime.Version())
	}
}
