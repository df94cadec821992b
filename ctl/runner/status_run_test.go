package runner

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sockagent/sockagent/ctl/localagent"
	"github.com/sockagent/sockagent/ctl/scenario"
)

// A run tells OnStart as each step's call begins (before OnStep says it ended; not for a
// step that never got that far), and reports when each step began and the addresses of the
// socket it made or used, or the address it reached when it made no connected socket.
func TestRunStartsAndAddresses(t *testing.T) {
	t.Parallel()
	text := `name: addresses
agents: {a: local, b: local}
steps:
  - {on: a, listen: {network: tcp, address: "127.0.0.1:0"}, as: lis}
  - {on: b, dial: {network: tcp, address: "${a.host}:${lis.local_port}"}, as: cli}
  - {on: a, accept: {socket: lis, timeout: 5s}, as: conn}
  - {on: b, send: {socket: cli, data: "hi"}}
  - {on: a, recv: {socket: conn, exact_bytes: 2, timeout: 5s}}
  - {on: b, dial: {network: tcp, address: "127.0.0.1:1", timeout: 2s}, expect: {error: CONNECTION_REFUSED}}
  - {on: a, bind: {network: udp, address: "127.0.0.1:0"}, as: u}
  - {on: a, close: {socket: "${env.NOPE}"}}
  - {on: b, close: {socket: cli}}
`
	path := filepath.Join(t.TempDir(), "addresses.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := scenario.Parse(path, []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var events []string
	note := func(what string) func(StepReport) {
		return func(s StepReport) {
			mu.Lock()
			defer mu.Unlock()
			events = append(events, fmt.Sprintf("%s %s %s %s %s %q", what, s.Index, s.Agent, s.Action, s.Name, s.Status))
		}
	}
	cfg := Config{File: f, KeepGoing: true, StartLocal: localagent.StartHook, StepTimeout: 10 * time.Second,
		OnStart: note("start"), OnStep: note("end")}
	rep := Run(context.Background(), cfg)
	want := []string{
		`start 1 a listen listen tcp 127.0.0.1:0 ""`, `end 1 a listen listen tcp 127.0.0.1:0 "passed"`,
		`start 2 b dial dial tcp ${a.host}:${lis.local_port} ""`, `end 2 b dial dial tcp ${a.host}:${lis.local_port} "passed"`,
		`start 3 a accept accept lis ""`, `end 3 a accept accept lis "passed"`,
		`start 4 b send send cli ""`, `end 4 b send send cli "passed"`,
		`start 5 a recv recv conn ""`, `end 5 a recv recv conn "passed"`,
		`start 6 b dial dial tcp 127.0.0.1:1 ""`, `end 6 b dial dial tcp 127.0.0.1:1 "passed"`,
		`start 7 a bind bind udp 127.0.0.1:0 ""`, `end 7 a bind bind udp 127.0.0.1:0 "passed"`,
		`end 8 a close close ${env.NOPE} "failed"`,
		`start 9 b close close cli ""`, `end 9 b close close cli "passed"`,
	}
	if strings.Join(events, "\n") != strings.Join(want, "\n") {
		t.Errorf("OnStart and OnStep calls\n%s\nwant\n%s", strings.Join(events, "\n"), strings.Join(want, "\n"))
	}
	lis := rep.Steps[0].LocalAddress
	cli := rep.Steps[1].LocalAddress
	if !strings.HasPrefix(lis, "127.0.0.1:") || !strings.HasPrefix(cli, "127.0.0.1:") || lis == cli {
		t.Fatalf("listener at %q, dialler at %q", lis, cli)
	}
	u := rep.Steps[6].LocalAddress
	wantAddr := map[string][2]string{
		"1": {lis, ""}, "2": {cli, lis}, "3": {lis, cli}, "4": {cli, lis}, "5": {lis, cli},
		"6": {"", "127.0.0.1:1"}, "7": {u, ""}, "8": {"", ""}, "9": {cli, lis},
	}
	prev := 0.0
	for _, s := range rep.Steps {
		if got := [2]string{s.LocalAddress, s.RemoteAddress}; got != wantAddr[s.Index] {
			t.Errorf("step %s (%s): addresses %q, want %q", s.Index, s.Status, got, wantAddr[s.Index])
		}
		switch {
		case s.Index == "8":
			if s.StartMS != 0 || s.Reason != "SCENARIO_ERROR" {
				t.Errorf("step 8 that did not start: start %v, reason %s", s.StartMS, s.Reason)
			}
		case s.StartMS < prev || s.StartMS > rep.DurationMS || s.StartMS+s.DurationMS > rep.DurationMS:
			t.Errorf("step %s began at %v ms and took %v ms, after %v ms, in a run of %v ms", s.Index, s.StartMS, s.DurationMS, prev, rep.DurationMS)
		default:
			prev = s.StartMS + s.DurationMS
		}
	}
	if !strings.HasPrefix(u, "127.0.0.1:") || rep.Steps[1].StartMS <= 0 {
		t.Errorf("bind at %q; step 2 began at %v ms", u, rep.Steps[1].StartMS)
	}
}
