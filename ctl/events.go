package ctl

import (
	"bytes"
	"container/heap"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/ctl/client"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

const eventsLong = `Events follows what happens on one or several agents, as one stream ordered by time:
sockets opened, accepted, connected, closed (by whom and why), bytes moved (one data line
per socket and --interval, never one per call), the peer's end of stream, resets, errors,
sessions ended and calls refused by a limit.

Agents: --agent NAME=ADDR or --agent ADDR (repeatable), --inventory FILE (every agent of
it, with its credentials), or, with neither, the agent of $SOCKCTL_AGENT or the default.
Each agent's clock stamps its events; lines wait --reorder (250ms) so that the agents'
streams interleave in time order. An agent that cannot be reached is reported on stderr
and the others are followed; the command ends on Ctrl-C or when every agent has stopped.

A caller sees the events of its own sockets and sessions; --all-callers shows everyone's
where the agent's policy gives the caller "events: all". --socket, --kind and --caller
keep some events only. Kinds: opened accepted connected data peer_closed reset error
closed session_ended limit_refused.

An agent never waits for a slow watcher: events it had no room for are dropped and a line
says how many ("dropped N events").

Output: -o table (default) prints a line per event: time, agent, kind, socket, caller,
addresses and what happened; -o json prints one JSON object per line:
{"agent": NAME, "event": {...}} or {"agent": NAME, "dropped": {"count": N, ...}}.

Exit status: 0 ended by Ctrl-C or by every agent stopping; 1 an agent could not be
reached or its stream failed (the others were followed to the end); 2 usage error.`

// defaultReorder is how long events wait so that several agents' streams merge in order.
const defaultReorder = 250 * time.Millisecond

// maxHeld bounds the events waiting for their turn: past it the oldest goes out at once.
const maxHeld = 100000

// eventsOptions are the flags of sockctl events.
type eventsOptions struct {
	agents, sockets, kinds, callers []string
	inventory                       string
	interval, reorder               time.Duration
	all                             bool
}

func (a *app) eventsCommand() *cobra.Command {
	var o eventsOptions
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Follow the events of one or several agents as one time-ordered stream",
		Long:  eventsLong,
		Example: `  sockctl events                                     # the default agent, its own sockets
  sockctl events --agent a=10.77.0.2:7700 --agent b=10.77.0.3:7700
  sockctl events --inventory lab.yaml --kind closed --kind reset -o json
  sockctl events --socket s3fa9c1-4 --interval 100ms
  sockctl events --all-callers --caller token:ci`,
		Args: args(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			req, err := o.request()
			if err != nil {
				return err
			}
			targets, err := a.eventTargets(o)
			if err != nil {
				return err
			}
			return a.followEvents(cmd.Context(), targets, req, o.reorder)
		},
	}
	fl := cmd.Flags()
	// This --agent shadows the global one: here it is repeatable and may name the agent.
	fl.StringArrayVar(&o.agents, "agent", nil, "follow the agent at `NAME=ADDR` or ADDR (HOST:PORT, unix:PATH); repeatable")
	fl.StringVar(&o.inventory, "inventory", "", "follow every agent of the inventory `FILE` (agents: {NAME: ADDR, ...}, as run takes)")
	fl.StringArrayVar(&o.sockets, "socket", nil, "only events of the socket `ID` (and connections its listener accepts); repeatable")
	fl.StringArrayVar(&o.kinds, "kind", nil, "only events of `KIND` (opened, data, closed, ...); repeatable")
	fl.StringArrayVar(&o.callers, "caller", nil, "only events of the caller `ID` (token:ci, uid:1000, ...); another than yourself needs --all-callers")
	fl.BoolVar(&o.all, "all-callers", false, "every caller's events, where the agent's policy says events: all")
	fl.DurationVar(&o.interval, "interval", 0, "how often the agents report bytes moved (data lines); 0 = the agents' default (1s), at least 100ms")
	fl.DurationVar(&o.reorder, "reorder", defaultReorder, "how long lines wait for earlier events of slower agents")
	return cmd
}

// request checks the filters and builds the request every agent gets.
func (o eventsOptions) request() (*sockagentv1.WatchEventsRequest, error) {
	if o.interval != 0 && o.interval < 100*time.Millisecond {
		return nil, usagef("--interval %s: give 0 (the agents' default, 1s) or at least 100ms", o.interval)
	}
	if o.reorder < 0 || o.reorder > time.Minute {
		return nil, usagef("--reorder %s: give 0 up to 1m", o.reorder)
	}
	req := &sockagentv1.WatchEventsRequest{SocketIds: o.sockets, Callers: o.callers, AllCallers: o.all}
	if o.interval > 0 {
		d, err := protoDuration("interval", o.interval)
		if err != nil {
			return nil, err
		}
		req.DataInterval = d
	}
	for _, k := range o.kinds {
		v, ok := sockagentv1.EventKind_value["EVENT_KIND_"+strings.ToUpper(k)]
		if !ok || v == 0 {
			return nil, usagef("--kind %q: not an event kind; give one of %s", k, strings.Join(eventKindNames(), ", "))
		}
		req.Kinds = append(req.Kinds, sockagentv1.EventKind(v))
	}
	return req, nil
}

// eventKindNames are the kinds --kind takes, in the API's order.
func eventKindNames() []string {
	var out []string
	for v := int32(1); ; v++ {
		n, ok := sockagentv1.EventKind_name[v]
		if !ok {
			return out
		}
		out = append(out, strings.ToLower(strings.TrimPrefix(n, "EVENT_KIND_")))
	}
}

func eventKindName(k sockagentv1.EventKind) string {
	return strings.ToLower(strings.TrimPrefix(k.String(), "EVENT_KIND_"))
}

// eventTarget is one agent to follow.
type eventTarget struct {
	name, addr string
	dial       client.Options
}

// eventTargets are the agents of --inventory, then of --agent; with neither, the global agent.
func (a *app) eventTargets(o eventsOptions) ([]eventTarget, error) {
	var out []eventTarget
	seen := map[string]bool{}
	addTarget := func(t eventTarget) error {
		if seen[t.name] {
			return usagef("agent %s given twice; give each agent once", t.name)
		}
		seen[t.name] = true
		out = append(out, t)
		return nil
	}
	if o.inventory != "" {
		inv, err := a.loadInventory(o.inventory)
		if err != nil {
			return nil, err
		}
		names := make([]string, 0, len(inv.Agents))
		for name := range inv.Agents {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			e := inv.Agents[name]
			_ = addTarget(eventTarget{name: name, addr: e.Address, dial: e.apply(a.dialOptions(), filepath.Dir(o.inventory))})
		}
	}
	for _, fl := range o.agents {
		name, addr, ok := strings.Cut(fl, "=")
		if !ok {
			name, addr = fl, fl
		}
		if name == "" || addr == "" {
			return nil, usagef("--agent %q: write NAME=HOST:PORT or HOST:PORT", fl)
		}
		if err := addTarget(eventTarget{name: name, addr: addr, dial: a.dialOptions()}); err != nil {
			return nil, err
		}
	}
	if len(out) == 0 {
		addr := a.agentAddr()
		out = append(out, eventTarget{name: addr, addr: addr, dial: a.dialOptions()})
	}
	return out, nil
}

// agentItem is one response of one agent's stream; without one, a note for stderr, and
// (end set) the end of that stream.
type agentItem struct {
	agent   string
	resp    *sockagentv1.WatchEventsResponse
	arrived time.Time
	seq     uint64 // arrival order, to keep equal times stable
	note    string // what to tell on stderr
	end     bool   // the stream ended
	failure string // why it ended, when it failed
}

// followEvents watches every target at once and prints their events merged in time order.
func (a *app) followEvents(ctx context.Context, targets []eventTarget, req *sockagentv1.WatchEventsRequest, reorder time.Duration) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	items := make(chan agentItem, 256)
	var wg sync.WaitGroup
	for _, t := range targets {
		wg.Go(func() { a.watchAgent(ctx, t, req, items) })
	}
	go func() {
		wg.Wait()
		close(items)
	}()
	if a.output == outputTable {
		a.out.printf("%-15s %-10s %-13s %-12s %-14s %s\n", "TIME", "AGENT", "KIND", "SOCKET", "CALLER", "DETAIL")
	}
	m := &merger{print: a.printEvent, reorder: reorder}
	var failures []string
	tick := time.NewTicker(max(reorder/4, 10*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case it, ok := <-items:
			if !ok {
				m.flush(time.Time{})
				if len(failures) > 0 {
					return failed(fmt.Errorf("events: %s", strings.Join(failures, "; ")))
				}
				return nil
			}
			if it.resp != nil {
				m.add(it)
				continue
			}
			if it.note != "" {
				a.out.errorf("sockctl: %s\n", it.note)
			}
			if it.failure != "" {
				failures = append(failures, it.failure)
			}
		case now := <-tick.C:
			m.flush(now)
		}
	}
}

// watchAgent follows one agent until its stream ends, sending what it reads to items; every
// line about the agent goes there too, so that one goroutine prints.
func (a *app) watchAgent(ctx context.Context, t eventTarget, req *sockagentv1.WatchEventsRequest, items chan<- agentItem) {
	cc, err := client.Dial(t.addr, t.dial)
	if err != nil {
		items <- agentItem{agent: t.name, end: true, note: fmt.Sprintf("agent %s (%s): %v", t.name, t.addr, err), failure: "agent " + t.name + ": " + err.Error()}
		return
	}
	defer cc.Close()
	st, err := client.NewClients(cc).Sockets.WatchEvents(ctx, req)
	if err == nil {
		_, err = st.Header()
	}
	if err == nil {
		items <- agentItem{agent: t.name, note: fmt.Sprintf("following agent %s (%s)", t.name, t.addr)}
		for {
			var r *sockagentv1.WatchEventsResponse
			if r, err = st.Recv(); err != nil {
				break
			}
			items <- agentItem{agent: t.name, resp: r, arrived: time.Now()}
		}
	}
	reason, _ := client.Reason(err)
	switch {
	case ctx.Err() != nil: // Ctrl-C, or the command ending
		items <- agentItem{agent: t.name, end: true}
	case status.Code(err) == codes.Unavailable && reason == contract.ReasonAgentStopping:
		items <- agentItem{agent: t.name, end: true, note: fmt.Sprintf("agent %s (%s) stopped", t.name, t.addr)}
	default:
		rerr := &client.RPCError{Op: "watch events", Agent: t.addr, Dial: t.dial, State: cc.GetState(), Err: err}
		items <- agentItem{agent: t.name, end: true, note: fmt.Sprintf("agent %s: %v", t.name, rerr), failure: "agent " + t.name + ": " + reason}
	}
}

// merger holds events for reorder and gives them out in time order.
type merger struct {
	print   func(agentItem)
	reorder time.Duration
	held    itemHeap
	seq     uint64
}

func (m *merger) add(it agentItem) {
	m.seq++
	it.seq = m.seq
	heap.Push(&m.held, it)
	for len(m.held) > maxHeld {
		m.print(heap.Pop(&m.held).(agentItem))
	}
}

// flush prints, in time order, every held event whose turn has come: the earliest, once it
// has waited reorder (all of them when now is zero).
func (m *merger) flush(now time.Time) {
	for len(m.held) > 0 && (now.IsZero() || !m.held[0].arrived.Add(m.reorder).After(now)) {
		m.print(heap.Pop(&m.held).(agentItem))
	}
}

// itemHeap orders items by their time, then by arrival.
type itemHeap []agentItem

func (h itemHeap) Len() int { return len(h) }
func (h itemHeap) Less(i, j int) bool {
	ti, tj := itemTime(h[i].resp), itemTime(h[j].resp)
	if !ti.Equal(tj) {
		return ti.Before(tj)
	}
	return h[i].seq < h[j].seq
}
func (h itemHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *itemHeap) Push(x any)   { *h = append(*h, x.(agentItem)) }
func (h *itemHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}

func itemTime(r *sockagentv1.WatchEventsResponse) time.Time {
	if d := r.GetDropped(); d != nil {
		return d.GetTime().AsTime()
	}
	return r.GetEvent().GetTime().AsTime()
}

// printEvent prints one item as a table line or a JSON line.
func (a *app) printEvent(it agentItem) {
	if a.output == outputJSON {
		line, err := eventJSON(it)
		if err != nil {
			a.out.errorf("sockctl: %v\n", err)
			return
		}
		a.out.own(line)
		return
	}
	tm := itemTime(it.resp).Local().Format("15:04:05.000000")
	if d := it.resp.GetDropped(); d != nil {
		a.out.printf("%-15s %-10s %-13s dropped %d events: this watcher read too slowly\n", tm, it.agent, "dropped", d.GetCount())
		return
	}
	e := it.resp.GetEvent()
	a.out.printf("%-15s %-10s %-13s %-12s %-14s %s\n", tm, it.agent, eventKindName(e.GetKind()), orDash(e.GetSocketId()), orDash(e.GetCaller()), eventDetail(e))
}

// eventDetail says what happened beyond the kind: addresses, bytes, reason and message.
func eventDetail(e *sockagentv1.Event) string {
	var parts []string
	switch {
	case e.GetLocalAddress() != "" && e.GetRemoteAddress() != "":
		parts = append(parts, e.GetLocalAddress()+" -> "+e.GetRemoteAddress())
	case e.GetLocalAddress() != "":
		parts = append(parts, e.GetLocalAddress())
	case e.GetRemoteAddress() != "":
		parts = append(parts, "-> "+e.GetRemoteAddress())
	}
	if e.GetNetwork() != "" {
		parts = append(parts, e.GetNetwork())
	}
	if e.GetParentId() != "" && e.GetKind() == sockagentv1.EventKind_EVENT_KIND_ACCEPTED {
		parts = append(parts, "on "+e.GetParentId())
	}
	if e.GetKind() == sockagentv1.EventKind_EVENT_KIND_DATA || e.GetKind() == sockagentv1.EventKind_EVENT_KIND_CLOSED {
		parts = append(parts, fmt.Sprintf("in %d out %d", e.GetBytesIn(), e.GetBytesOut()))
	}
	if e.GetSessionId() != "" {
		parts = append(parts, "session "+e.GetSessionId())
	}
	if e.GetReason() != "" {
		parts = append(parts, e.GetReason())
	}
	if e.GetMessage() != "" {
		parts = append(parts, "("+e.GetMessage()+")")
	}
	return strings.Join(parts, " ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// eventJSON is one line of -o json: the agent's name and the event or drop notice, protojson.
func eventJSON(it agentItem) (string, error) {
	key := "event"
	var b []byte
	var err error
	if d := it.resp.GetDropped(); d != nil {
		key = "dropped"
		b, err = protojson.Marshal(d)
	} else {
		b, err = protojson.Marshal(it.resp.GetEvent())
	}
	if err != nil {
		return "", fmt.Errorf("encode event: %w", err)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, b); err != nil {
		return "", fmt.Errorf("encode event: %w", err)
	}
	name, err := json.Marshal(it.agent)
	if err != nil {
		return "", fmt.Errorf("encode event: %w", err)
	}
	return fmt.Sprintf(`{"agent":%s,%q:%s}`+"\n", name, key, compact.String()), nil
}
