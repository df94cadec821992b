package ctl

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sockagent/sockagent/agent"
	"github.com/sockagent/sockagent/ctl/localagent"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// follow runs sockctl events with args in the background; stop (Ctrl-C) ends it, and wait
// returns its result.
type follow struct {
	stdout, stderr lockedBuf
	cancel         context.CancelFunc
	done           chan int
}

func startEvents(t *testing.T, args ...string) *follow {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	f := &follow{cancel: cancel, done: make(chan int, 1)}
	go func() {
		f.done <- run(ctx, append([]string{"events"}, args...), func(string) string { return "" }, strings.NewReader(""), &f.stdout, &f.stderr)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-f.done:
		case <-time.After(10 * time.Second):
			t.Errorf("sockctl events did not end within 10s of Ctrl-C")
		}
	})
	return f
}

// wait returns the exit code once sockctl events ended, within 10s.
func (f *follow) wait(t *testing.T) int {
	t.Helper()
	select {
	case code := <-f.done:
		f.done <- code
		return code
	case <-time.After(10 * time.Second):
		t.Fatalf("sockctl events still running 10s later\nstdout: %s\nstderr: %s", f.stdout.String(), f.stderr.String())
		return -1
	}
}

func (f *follow) lines() []string {
	s := strings.TrimSpace(f.stdout.String())
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// jsonLine is one line of sockctl events -o json.
type jsonLine struct {
	Agent   string          `json:"agent"`
	Event   json.RawMessage `json:"event"`
	Dropped json.RawMessage `json:"dropped"`
}

// Two agents, one merged stream: the events of both, in the order they happened whichever
// agent they came from, one JSON object per line; Ctrl-C ends it with status 0.
func TestEventsMergesAgents(t *testing.T) {
	a, b := startAgent(t), startAgent(t)
	f := startEvents(t, "--agent", "a="+a, "--agent", "b="+b, "-o", "json", "--reorder", "100ms")
	waitFor(t, func() bool {
		return strings.Contains(f.stderr.String(), "following agent a ("+a+")") && strings.Contains(f.stderr.String(), "following agent b ("+b+")")
	})
	var ids []string
	var agents []string
	for i := range 6 {
		addr, name := a, "a"
		if i%2 == 1 {
			addr, name = b, "b"
		}
		var r sockagentv1.BindResponse
		okJSON(t, addr, &r, "bind", "udp", "127.0.0.1:0")
		ids, agents = append(ids, r.GetSocket().GetSocketId()), append(agents, name)
		t.Cleanup(func() { ok(t, addr, "close", r.GetSocket().GetSocketId()) })
	}
	waitFor(t, func() bool { return len(f.lines()) >= 6 })
	f.cancel()
	if code := f.wait(t); code != ExitOK {
		t.Fatalf("exit %d after Ctrl-C, want 0\nstderr: %s", code, f.stderr.String())
	}
	lines := f.lines()
	if len(lines) != 6 {
		t.Fatalf("%d lines, want 6:\n%s", len(lines), f.stdout.String())
	}
	var prev time.Time
	for i, l := range lines {
		var jl jsonLine
		if err := json.Unmarshal([]byte(l), &jl); err != nil {
			t.Fatalf("line %d is not one JSON object: %v\n%s", i, err, l)
		}
		var e sockagentv1.Event
		if err := protojson.Unmarshal(jl.Event, &e); err != nil {
			t.Fatalf("line %d: event: %v", i, err)
		}
		if jl.Agent != agents[i] || e.GetSocketId() != ids[i] || e.GetKind() != sockagentv1.EventKind_EVENT_KIND_OPENED || e.GetCaller() != "anonymous" {
			t.Errorf("line %d: agent %s %v; want agent %s, %s opened", i, jl.Agent, &e, agents[i], ids[i])
		}
		if tm := e.GetTime().AsTime(); tm.Before(prev) {
			t.Errorf("line %d at %s, before the line above (%s)", i, tm, prev)
		} else {
			prev = tm
		}
	}
}

// The merger orders by event time, whatever order the agents' streams deliver in, once the
// reorder window has passed; equal times keep their arrival order.
func TestEventsMergerOrder(t *testing.T) {
	t.Parallel()
	var got []string
	m := &merger{reorder: 100 * time.Millisecond, print: func(it agentItem) { got = append(got, it.agent+"/"+it.resp.GetEvent().GetSocketId()) }}
	base := time.Unix(1000, 0)
	at := func(agent, id string, dt time.Duration, arrived time.Time) agentItem {
		return agentItem{agent: agent, arrived: arrived, resp: &sockagentv1.WatchEventsResponse{Item: &sockagentv1.WatchEventsResponse_Event{
			Event: &sockagentv1.Event{SocketId: id, Time: timestamppb.New(base.Add(dt))}}}}
	}
	now := time.Unix(2000, 0)
	m.add(at("b", "2", 20*time.Millisecond, now))
	m.add(at("a", "1", 10*time.Millisecond, now.Add(time.Millisecond)))
	m.add(at("a", "3", 20*time.Millisecond, now.Add(2*time.Millisecond)))
	m.flush(now.Add(99 * time.Millisecond))
	if len(got) != 0 {
		t.Fatalf("printed %v before the reorder window passed", got)
	}
	m.flush(now.Add(101 * time.Millisecond)) // a/1 and b/2 have waited 100ms; a/3 99ms
	if want := "a/1 b/2"; strings.Join(got, " ") != want {
		t.Fatalf("printed %v, want %s", got, want)
	}
	m.flush(time.Time{})
	if want := "a/1 b/2 a/3"; strings.Join(got, " ") != want {
		t.Fatalf("printed %v, want %s", got, want)
	}
}

// An agent that cannot be reached is reported and the others are followed; when every agent
// has stopped, events ends, with status 1 for the one that was never reached.
func TestEventsUnreachableAndStopped(t *testing.T) {
	ag, err := localagent.Start(agent.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer ag.Close()
	down := closedPort(t)
	f := startEvents(t, "--agent", "up="+ag.Addr(), "--agent", "down="+down)
	waitFor(t, func() bool { return strings.Contains(f.stderr.String(), "following agent up") })
	var r sockagentv1.ListenResponse
	okJSON(t, ag.Addr(), &r, "listen", "tcp", "127.0.0.1:0")
	id := r.GetSocket().GetSocketId()
	waitFor(t, func() bool { return strings.Contains(f.stdout.String(), id) })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ag.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if code := f.wait(t); code != ExitFailure {
		t.Errorf("exit %d, want 1 (agent down was never reached)", code)
	}
	stderr := f.stderr.String()
	for _, want := range []string{"agent down: cannot reach agent " + down, "agent up (" + ag.Addr() + ") stopped", "sockctl: events: agent down: AGENT_UNAVAILABLE"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	lines := f.lines()
	if len(lines) < 2 || !strings.HasPrefix(lines[0], "TIME ") {
		t.Fatalf("stdout: %s", f.stdout.String())
	}
	// The table: time, agent, kind, socket, caller, then the address and network; and the
	// socket the agent closed as it stopped... which the stopping agent does not tell.
	fields := strings.Fields(lines[1])
	if len(fields) < 7 || fields[1] != "up" || fields[2] != "opened" || fields[3] != id || fields[4] != "anonymous" ||
		fields[5] != r.GetSocket().GetLocalAddress() || fields[6] != "tcp" {
		t.Errorf("table line %q, want TIME up opened %s anonymous %s tcp", lines[1], id, r.GetSocket().GetLocalAddress())
	}
}

// Bad filters are usage errors naming what to give.
func TestEventsUsage(t *testing.T) {
	t.Parallel()
	addr := startAgent(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--kind", "bogus"}, `--kind "bogus": not an event kind; give one of opened, accepted, connected, data, peer_closed, reset, error, closed, session_ended, limit_refused`},
		{[]string{"--kind", "unspecified"}, `--kind "unspecified": not an event kind`},
		{[]string{"--interval", "50ms"}, "--interval 50ms: give 0 (the agents' default, 1s) or at least 100ms"},
		{[]string{"--reorder", "-1s"}, "--reorder -1s: give 0 up to 1m"},
		{[]string{"--agent", "a=" + addr, "--agent", "a=" + addr}, "agent a given twice"},
		{[]string{"--agent", "=x"}, `--agent "=x": write NAME=HOST:PORT or HOST:PORT`},
		{[]string{"--inventory", "/nonexistent/inv.yaml"}, "--inventory: open /nonexistent/inv.yaml"},
	} {
		r := invocation{args: append([]string{"events"}, tc.args...)}.exec(t)
		r.want(t, ExitUsage, nil, []string{tc.want})
	}
	// The agent refuses what only it can judge: another caller's events.
	r := invocation{args: []string{"events", "--agent", addr, "--caller", "token:bob"}}.exec(t)
	r.want(t, ExitFailure, nil, []string{"POLICY_DENIED", `watching the events of caller "token:bob"`, "events: agent " + addr + ": POLICY_DENIED"})
}
