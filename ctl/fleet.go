package ctl

// fleet: ls, info and sessions ls over several agents at once. The agents come from
// --inventory (a file or a discovery), repeated --agent and --select; each is asked on its
// own connection, --concurrency at a time and each within --agent-timeout, and the answers
// are merged into one table with an AGENT column first (or one JSON array). An agent that
// does not answer is a row with its reason, and the exit status says so (ExitUnreachable).

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/ctl/client"
	"github.com/sockagent/sockagent/ctl/scenario"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// ExitUnreachable means a fleet view (ls, info or sessions ls over several agents) printed
// what the agents that answered said, and some agents did not answer: their rows say why.
const ExitUnreachable = 3

const (
	// defaultFleetConcurrency is how many agents a fleet view asks at once.
	defaultFleetConcurrency = 32
	// defaultAgentTimeout bounds each agent's answer, so that one hung agent holds the view
	// no longer than this.
	defaultAgentTimeout = 5 * time.Second
	// maxAgentTimeout bounds --agent-timeout.
	maxAgentTimeout = time.Hour
)

// fleetHelp ends the help of the commands that take several agents.
const fleetHelp = `Several agents: --inventory FILE|dns:NAME[:PORT]|dns+srv:NAME|list:ADDR,ADDR (every
agent of it), --agent repeated (NAME=ADDR, a name of the inventory, or ADDR) and --select
(KEY=VALUE[,KEY=VALUE]: the agents whose labels match every pair, values may be patterns
such as eu-*; a name pattern such as web*; or all; repeatable: an agent any of them picks)
print one table with an AGENT column first, rows by agent name and then in the agent's
order; -o json prints one array whose items carry "agent", and {"agent", "address",
"error": {"reason", "message"}} for an agent that did not answer. --select without --agent
or --inventory picks from $SOCKCTL_INVENTORY. The agents are asked --concurrency at a time,
each within --agent-timeout (and --timeout); one that does not answer is a row
"NAME  -  unreachable: WHY". One --agent without --select prints as for a single agent.

Exit status: 0 done (every agent answered); 1 the call failed (stderr says why) or the one
agent could not be reached; 2 usage error; 3 some agents of several did not answer (their
rows say why; the others' answers are printed).`

// fleetOptions are the flags of a command that takes several agents.
type fleetOptions struct {
	agents, selects []string
	inventory       string
	concurrency     int
	agentTimeout    time.Duration
}

// register adds the flags to cmd. --agent and --inventory shadow the global ones: here
// --agent is repeatable, and --inventory alone means every agent of it.
func (o *fleetOptions) register(a *app, cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringArrayVar(&o.agents, "agent", nil, "the agent at `NAME=ADDR`, an inventory name, or ADDR (HOST:PORT, unix:PATH); repeatable: one table of them all; when not given, $"+envAgent+" or the default")
	fl.StringVar(&o.inventory, "inventory", "", "every agent of `SPEC`: an inventory FILE, dns:NAME[:PORT], dns+srv:NAME or list:ADDR,ADDR; with --agent, names for it")
	fl.StringArrayVar(&o.selects, "select", nil, "only the agents whose labels match `KEY=VALUE[,KEY=VALUE]` (values may be patterns), whose name matches a pattern, or all; repeatable")
	fl.IntVar(&o.concurrency, "concurrency", defaultFleetConcurrency, "ask at most `N` agents at once")
	fl.DurationVar(&o.agentTimeout, "agent-timeout", defaultAgentTimeout, "each agent must answer within `D`, else its row says it did not")
	_ = cmd.RegisterFlagCompletionFunc("agent", a.agentNames)
}

// check refuses flag values that cannot work.
func (o *fleetOptions) check() error {
	if o.concurrency < 1 || o.concurrency > maxFanoutConcurrency {
		return usagef("--concurrency %d: give 1 up to %d", o.concurrency, maxFanoutConcurrency)
	}
	if o.agentTimeout <= 0 || o.agentTimeout > maxAgentTimeout {
		return usagef("--agent-timeout %s: give more than 0, up to %s", o.agentTimeout, maxAgentTimeout)
	}
	return nil
}

// fleet reports whether the flags ask for several agents, or for agents picked from an
// inventory, rather than the one agent of today's commands.
func (o *fleetOptions) fleet() bool {
	return len(o.selects) > 0 || len(o.agents) > 1 || o.inventory != "" && len(o.agents) == 0
}

// fleetTarget is one agent of a fleet view.
type fleetTarget struct {
	name, addr string
	dial       client.Options
	labels     map[string]string
}

// fleetTargets are the agents the flags name, sorted by name: those of --agent (looked up in
// the inventory), else every agent of the inventory; then those --select picks.
func (a *app) fleetTargets(o *fleetOptions) ([]fleetTarget, error) {
	sels, err := parseSelectors(o.selects)
	if err != nil {
		return nil, err
	}
	spec := o.inventory
	if spec == "" {
		spec = a.inventoryPath()
	}
	inv := &inventoryFile{}
	if spec != "" {
		if inv, err = a.loadInventory(spec); err != nil {
			return nil, err
		}
	} else if len(o.agents) == 0 {
		return nil, usagef("--select picks agents of an inventory: give --inventory FILE (or dns:NAME, list:ADDR,ADDR), set $%s, or name the agents with --agent", envInventory)
	}
	fromInventory := func(name string, e inventoryEntry) fleetTarget {
		return fleetTarget{name: name, addr: e.Address, dial: e.apply(a.dialOptions(), filepath.Dir(spec)), labels: e.Labels}
	}
	var all []fleetTarget
	for _, v := range o.agents {
		e, known := inv.Agents[v]
		name, addr, named := strings.Cut(v, "=")
		switch {
		case known:
			all = append(all, fromInventory(v, e))
		case named && name != "" && addr != "":
			all = append(all, fleetTarget{name: name, addr: addr, dial: a.dialOptions()})
		case v != "" && !named:
			all = append(all, fleetTarget{name: v, addr: v, dial: a.dialOptions()})
		default:
			return nil, usagef("--agent %q: give NAME=HOST:PORT, HOST:PORT, unix:PATH or a name of the inventory", v)
		}
	}
	if len(o.agents) == 0 {
		for name, e := range inv.Agents {
			all = append(all, fromInventory(name, e))
		}
	}
	return pickTargets(all, sels, o.selects, spec)
}

// pickTargets keeps the targets a selector picks (all without selectors), sorted by name,
// refusing a name given twice, an inventory or a selection of none, and more than
// maxDiscovered.
func pickTargets(all []fleetTarget, sels []scenario.Selector, flags []string, spec string) ([]fleetTarget, error) {
	var out []fleetTarget
	for _, t := range all {
		if len(sels) == 0 || slices.ContainsFunc(sels, func(s scenario.Selector) bool { return s.Picks(t.name, t.labels) }) {
			out = append(out, t)
		}
	}
	slices.SortStableFunc(out, func(x, y fleetTarget) int { return strings.Compare(x.name, y.name) })
	for i := 1; i < len(out); i++ {
		if out[i].name == out[i-1].name {
			return nil, usagef("agent %s given twice; give each agent once", out[i].name)
		}
	}
	switch {
	case len(all) == 0:
		return nil, failed(fmt.Errorf("--inventory %s names no agents: give agents: {NAME: HOST:PORT, ...}", spec))
	case len(out) == 0 && spec != "":
		return nil, failed(fmt.Errorf("--select %s picks none of the %d agents of %s: 'sockctl info --inventory %s' shows their labels", strings.Join(flags, " --select "), len(all), spec, spec))
	case len(out) == 0:
		return nil, failed(fmt.Errorf("--select %s picks none of the agents given with --agent (they carry no labels: select by name, or give --inventory)", strings.Join(flags, " --select ")))
	case len(out) > maxDiscovered:
		return nil, usagef("%d agents: a view takes at most %d; narrow it with --select", len(out), maxDiscovered)
	}
	return out, nil
}

// parseSelectors reads --select: KEY=VALUE[,KEY=VALUE] (labels, values may be patterns), all,
// or a name pattern; the same selectors as a scenario's on: and a matrix's sources.
func parseSelectors(flags []string) ([]scenario.Selector, error) {
	var out []scenario.Selector
	for _, f := range flags {
		s, err := parseSelector(f)
		if err != nil {
			return nil, usagef("--select %q: %v", f, err)
		}
		out = append(out, s)
	}
	return out, nil
}

func parseSelector(f string) (scenario.Selector, error) {
	pattern := func(p string) error {
		if _, err := path.Match(p, ""); err != nil {
			return fmt.Errorf("%q is not a pattern (* ? [a-z]): %w", p, err)
		}
		return nil
	}
	switch {
	case f == "":
		return scenario.Selector{}, fmt.Errorf("empty; give KEY=VALUE, a name pattern such as web*, or all")
	case f == "all":
		return scenario.Selector{All: true}, nil
	case !strings.Contains(f, "="):
		return scenario.Selector{Name: f}, pattern(f)
	}
	labels := map[string]string{}
	for _, kv := range strings.Split(f, ",") {
		k, v, _ := strings.Cut(kv, "=")
		if err := contract.CheckLabel(k, ""); err != nil {
			return scenario.Selector{}, err
		}
		if err := pattern(v); err != nil {
			return scenario.Selector{}, err
		}
		if _, dup := labels[k]; dup {
			return scenario.Selector{}, fmt.Errorf("label %s given twice", k)
		}
		labels[k] = v
	}
	return scenario.Selector{Labels: labels}, nil
}

// view is what a command shows of one agent's answer T: as today for one agent (print), and
// as rows, JSON items, ids and notes of a fleet view.
type view[T proto.Message] struct {
	op     string                                                 // what is asked: "list sockets"
	call   func(ctx context.Context, c client.Clients) (T, error) // the RPC
	print  func(T) error                                          // one agent: today's output
	header string                                                 // the table's header, tab-separated, without AGENT
	rows   func(T) [][]string                                     // the table's cells, without AGENT
	items  func(T) []proto.Message                                // the items of -o json
	ids    func(T) []string                                       // -o id; nil: the command prints no ids
	notes  func(T) []string                                       // lines under the table; nil: none
}

// runView runs a command that takes several agents: as it always did for one agent, else as
// a fleet view.
func runView[T proto.Message](ctx context.Context, a *app, o *fleetOptions, v view[T]) error {
	if err := o.check(); err != nil {
		return err
	}
	if !o.fleet() {
		if len(o.agents) == 1 { // the one agent, by its inventory name or NAME=ADDR
			ts, err := a.fleetTargets(o)
			if err != nil {
				return err
			}
			a.agentFlag, a.agentChanged, a.dial = ts[0].addr, true, ts[0].dial
		}
		return a.call(ctx, v.op, 0, func(ctx context.Context, c client.Clients) error {
			resp, err := v.call(ctx, c)
			if err != nil {
				return err
			}
			return v.print(resp)
		})
	}
	targets, err := a.fleetTargets(o)
	if err != nil {
		return err
	}
	for _, t := range targets { // settings that cannot work are the user's to fix first
		cc, err := dialAgent(t.addr, t.dial)
		if err != nil {
			return fmt.Errorf("agent %s: %w", t.name, err)
		}
		_ = cc.Close()
	}
	timeout := o.agentTimeout
	if a.timeout > 0 {
		timeout = min(timeout, a.timeout)
	}
	answers := fanOut(ctx, targets, o.concurrency, timeout, v.call)
	if err := printView(a, v, answers); err != nil {
		return err
	}
	return unanswered(answers)
}

// asItems is ms as the items of -o json.
func asItems[M proto.Message](ms []M) []proto.Message {
	out := make([]proto.Message, len(ms))
	for i, m := range ms {
		out[i] = m
	}
	return out
}

// answer is one agent's answer, or why there is none.
type answer[T any] struct {
	target fleetTarget
	resp   T
	err    error
	reason string // the reason of err: AGENT_UNAVAILABLE, or the agent's
}

// fanOut asks every target with call, n at a time, each within timeout, and returns their
// answers in the targets' order.
func fanOut[T any](ctx context.Context, targets []fleetTarget, n int, timeout time.Duration, call func(context.Context, client.Clients) (T, error)) []answer[T] {
	out := make([]answer[T], len(targets))
	var g errgroup.Group
	g.SetLimit(max(n, 1))
	for i, t := range targets {
		g.Go(func() error {
			out[i] = ask(ctx, t, timeout, call)
			return nil
		})
	}
	_ = g.Wait() // every call reports into out
	return out
}

// ask asks one agent on a connection of its own.
func ask[T any](ctx context.Context, t fleetTarget, timeout time.Duration, call func(context.Context, client.Clients) (T, error)) answer[T] {
	ans := answer[T]{target: t}
	cc, err := client.Dial(t.addr, t.dial)
	if err != nil { // a file read a moment ago and gone since
		ans.err, ans.reason = fmt.Errorf("error: %w", err), contract.ReasonAgentUnavailable
		return ans
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if ans.resp, err = call(ctx, client.NewClients(cc)); err != nil {
		ans.reason, ans.err = whyNoAnswer(t, timeout, cc.GetState(), err)
	}
	return ans
}

// whyNoAnswer says, in a table row, why an agent gave no answer: not reached (with what to
// check), no answer in time, or the agent's own refusal.
func whyNoAnswer(t fleetTarget, timeout time.Duration, state connectivity.State, err error) (string, error) {
	st := status.Convert(err)
	switch {
	case client.Transient(err):
		if _, cause, dialing := strings.Cut(st.Message(), "while dialing: "); dialing {
			cause = strings.Trim(cause[strings.LastIndex(cause, ": ")+1:], ` "`)
			return contract.ReasonAgentUnavailable, fmt.Errorf("unreachable: %s (is sockagent running at %s?)", cause, t.addr)
		}
		full := (&client.RPCError{Agent: t.addr, Dial: t.dial, Err: err}).Error()
		return contract.ReasonAgentUnavailable, fmt.Errorf("unreachable: %s", strings.TrimPrefix(full, "cannot reach agent "+t.addr+": "))
	case st.Code() == codes.DeadlineExceeded && state != connectivity.Ready:
		return contract.ReasonAgentUnavailable, fmt.Errorf("unreachable: no answer within %s (--agent-timeout): is %s a sockagent?", timeout, t.addr)
	case st.Code() == codes.DeadlineExceeded:
		return contract.ReasonAgentUnavailable, fmt.Errorf("no answer within %s (--agent-timeout)", timeout)
	}
	reason, _ := client.Reason(err)
	return reason, fmt.Errorf("error: %w", &client.RPCError{Op: "ask " + t.name, Agent: t.addr, Dial: t.dial, State: state, Err: err})
}

// printView prints the answers as -o asks: one table, one JSON array, or the ids.
func printView[T proto.Message](a *app, v view[T], answers []answer[T]) error {
	switch a.output {
	case outputJSON:
		return fleetJSON(a.out, v, answers)
	case outputID:
		var buf bytes.Buffer
		for _, ans := range answers {
			if ans.err != nil {
				a.out.errorf("sockctl: agent %s (%s): %v\n", ans.target.name, ans.target.addr, ans.err)
				continue
			}
			for _, id := range v.ids(ans.resp) {
				buf.WriteString(id + "\n")
			}
		}
		a.out.own(buf.String())
		return nil
	}
	rows := []fleetRow{{cells: append([]string{"AGENT"}, strings.Split(v.header, "\t")...)}}
	var notes []string
	for _, ans := range answers {
		name := clean(ans.target.name)
		if ans.err != nil {
			rows = append(rows, fleetRow{cells: []string{name, "-"}, reason: clean(ans.err.Error())})
			continue
		}
		for _, r := range v.rows(ans.resp) {
			rows = append(rows, fleetRow{cells: append([]string{name}, r...)})
		}
		if v.notes != nil {
			for _, n := range v.notes(ans.resp) {
				notes = append(notes, name+" "+n)
			}
		}
	}
	var buf bytes.Buffer
	alignRows(&buf, rows)
	for _, n := range notes {
		buf.WriteString(n + "\n")
	}
	a.out.own(buf.String())
	return nil
}

// infoHeader is the header of info's fleet table, a line per agent.
const infoHeader = "HOSTNAME\tVERSION\tOS/ARCH\tUPTIME\tSOCKETS\tLABELS"

// infoCells are an agent's cells under infoHeader: its labels as KEY=VALUE, sorted.
func infoCells(r *sockagentv1.GetInfoResponse) []string {
	labels := make([]string, 0, len(r.GetLabels()))
	for k, v := range r.GetLabels() {
		labels = append(labels, k+"="+v)
	}
	slices.Sort(labels)
	return []string{dash(r.GetHostname()), dash(r.GetVersion()), clean(r.GetOs() + "/" + r.GetArch()),
		seconds(r.GetUptime()), fmt.Sprint(r.GetOpenSockets()), dash(strings.Join(labels, ","))}
}

// fleetRow is one line of a fleet table: cells, or an agent's name, "-" and why it did not
// answer.
type fleetRow struct {
	cells  []string
	reason string
}

// alignRows writes rows aligned as text/tabwriter with a padding of 2 aligns a table whose
// lines have the same cells: each cell but a line's last padded to its column's width. A
// reason follows its row's cells and widens no column, where tabwriter would end the
// columns at that line.
func alignRows(buf *bytes.Buffer, rows []fleetRow) {
	var width []int
	padded := func(r fleetRow) []string {
		if r.reason != "" {
			return r.cells
		}
		return r.cells[:len(r.cells)-1]
	}
	for _, r := range rows {
		for i, c := range padded(r) {
			if i == len(width) {
				width = append(width, 0)
			}
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
	}
	for _, r := range rows {
		p := padded(r)
		for i, c := range p {
			buf.WriteString(c + strings.Repeat(" ", width[i]+2-utf8.RuneCountInString(c)))
		}
		if r.reason != "" {
			buf.WriteString(r.reason)
		} else {
			buf.WriteString(r.cells[len(p)])
		}
		buf.WriteByte('\n')
	}
}

// fleetJSON prints one JSON array: every item of every agent with "agent" first, and an
// object for each agent that did not answer, in the agents' order.
func fleetJSON[T proto.Message](w *writer, v view[T], answers []answer[T]) error {
	type failure struct {
		Reason  string `json:"reason"`
		Message string `json:"message"`
	}
	type unanswered struct {
		Agent   string  `json:"agent"`
		Address string  `json:"address"`
		Error   failure `json:"error"`
	}
	items := []json.RawMessage{} // [] when there is nothing, not null
	for _, ans := range answers {
		if ans.err != nil {
			b, err := json.Marshal(unanswered{Agent: ans.target.name, Address: ans.target.addr, Error: failure{Reason: ans.reason, Message: ans.err.Error()}})
			if err != nil {
				return fmt.Errorf("encode the error of agent %s: %w", ans.target.name, err)
			}
			items = append(items, b)
			continue
		}
		for _, it := range v.items(ans.resp) {
			b, err := itemJSON(ans.target.name, it)
			if err != nil {
				return err
			}
			items = append(items, b)
		}
	}
	b, err := json.MarshalIndent(items, "", "  ")
	if err != nil {
		return fmt.Errorf("encode the answers: %w", err)
	}
	_, err = w.stdout.Write(append(b, '\n'))
	return err
}

// unanswered is ExitUnreachable's error when some agents did not answer, nil when all did.
func unanswered[T any](answers []answer[T]) error {
	var names []string
	for _, ans := range answers {
		if ans.err != nil {
			names = append(names, ans.target.name)
		}
	}
	if len(names) == 0 {
		return nil
	}
	return &partial{err: fmt.Errorf("%d of %d agents did not answer: %s", len(names), len(answers), strings.Join(names, ", "))}
}

// partial is a fleet view that printed the answers of some agents only (ExitUnreachable).
type partial struct{ err error }

func (p *partial) Error() string { return p.err.Error() }
func (p *partial) Unwrap() error { return p.err }

// itemJSON is item as compact protojson with "agent": name spliced in first.
func itemJSON(name string, item proto.Message) (json.RawMessage, error) {
	b, err := protojson.Marshal(item)
	if err != nil {
		return nil, fmt.Errorf("encode the answer of agent %s: %w", name, err)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, b); err != nil {
		return nil, fmt.Errorf("encode the answer of agent %s: %w", name, err)
	}
	n, _ := json.Marshal(name)
	rest := strings.TrimPrefix(compact.String(), "{")
	if rest != "}" {
		rest = "," + rest
	}
	return json.RawMessage(`{"agent":` + string(n) + rest), nil
}
