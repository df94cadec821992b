package ctl

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sockagent/sockagent/ctl/client"
	"github.com/sockagent/sockagent/ctl/runner"
	"github.com/sockagent/sockagent/ctl/scenario"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// outputFormat is the value of -o/--output: table, json or id.
type outputFormat string

const (
	outputTable outputFormat = "table"
	outputJSON  outputFormat = "json"
	// outputID prints only the ids of the sockets (or sessions) a command prints, one a
	// line, for scripts: id=$(sockctl -o id dial tcp HOST:PORT).
	outputID outputFormat = "id"
)

func (o *outputFormat) String() string { return string(*o) }
func (o *outputFormat) Type() string   { return "table|json|id" }

// Set accepts only the known formats, so a bad -o is a flag error (exit 2).
func (o *outputFormat) Set(s string) error {
	switch f := outputFormat(s); f {
	case outputTable, outputJSON, outputID:
		*o = f
		return nil
	}
	return fmt.Errorf("must be table, json or id")
}

// printsIDs marks the commands that print sockets or sessions, and so take -o id.
const printsIDs = "prints-ids"

// idsOnly marks cmd as one that takes -o id.
func idsOnly(cmd *cobra.Command) *cobra.Command {
	if cmd.Annotations == nil {
		cmd.Annotations = map[string]string{}
	}
	cmd.Annotations[printsIDs] = "yes"
	return cmd
}

// checkOutput refuses -o id on a command that prints no socket or session.
func checkOutput(cmd *cobra.Command, o outputFormat) error {
	if o != outputID || cmd.Annotations[printsIDs] != "" {
		return nil
	}
	var takers []string
	for _, c := range cmd.Root().Commands() {
		if c.Annotations[printsIDs] != "" {
			takers = append(takers, c.Name())
		}
	}
	return usagef("-o id prints the ids of the sockets or sessions a command prints, and %s prints none; use -o id with %s", cmd.Name(), strings.Join(takers, ", "))
}

// ids prints the ids of sockets, one a line.
func (w *writer) ids(socks ...*sockagentv1.Socket) error {
	var buf bytes.Buffer
	for _, s := range socks {
		buf.WriteString(clean(s.GetSocketId()) + "\n")
	}
	_, err := w.stdout.Write(buf.Bytes())
	return err
}

// writer is sockctl's only printer: results to stdout, diagnostics to stderr.
type writer struct {
	stdout io.Writer
	stderr io.Writer
	tty    bool // stdout is a terminal
}

// errorf prints a diagnostic on stderr; its arguments are shown printable (see clean).
func (w *writer) errorf(format string, args ...any) {
	fmt.Fprintf(w.stderr, format, cleanArgs(args)...)
}

// printf prints a result on stdout; its arguments are shown printable (see clean).
func (w *writer) printf(format string, args ...any) {
	fmt.Fprintf(w.stdout, format, cleanArgs(args)...)
}

// clean shows a string an agent or its peers chose (an address, a path, a host name, an error
// message) on one line with every terminal control character escaped (runner.Printable), so
// that none can rewrite the user's terminal. Every printer of such strings passes them here.
func clean(s string) string { return runner.Printable(s) }

// cleanText is clean for text that may span lines (a diagnostic listing several problems):
// each line is cleaned, the newlines kept.
func cleanText(s string) string {
	if !strings.Contains(s, "\n") {
		return clean(s)
	}
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = clean(l)
	}
	return strings.Join(lines, "\n")
}

// cleanArgs cleans the string, error and Stringer arguments of a format (cleanText); the
// format itself is sockctl's own.
func cleanArgs(args []any) []any {
	for i, a := range args {
		switch v := a.(type) {
		case string:
			args[i] = cleanText(v)
		case error:
			args[i] = cleanText(v.Error())
		case fmt.Stringer:
			args[i] = cleanText(v.String())
		}
	}
	return args
}

// own writes text sockctl itself printed and cleaned already (the demo shows the output of
// the commands it runs) to stdout unchanged.
func (w *writer) own(s string) {
	_, _ = io.WriteString(w.stdout, s)
}

// raw writes received bytes to stdout unchanged, or as one line of hex.
func (w *writer) raw(data []byte, asHex bool) error {
	if asHex {
		_, err := fmt.Fprintln(w.stdout, hex.EncodeToString(data))
		return err
	}
	_, err := w.stdout.Write(data)
	return err
}

// received writes received bytes as raw does; on a terminal, data that does not end with a
// newline gets one, so that the shell's prompt does not follow it on the same line.
func (w *writer) received(data []byte, asHex bool) error {
	if err := w.raw(data, asHex); err != nil {
		return err
	}
	if w.tty && !asHex && len(data) > 0 && data[len(data)-1] != '\n' {
		_, err := io.WriteString(w.stdout, "\n")
		return err
	}
	return nil
}

// json prints m as protojson, indented by two spaces. protojson's own whitespace varies on
// purpose between builds; json.Indent makes it byte-stable.
func (w *writer) json(m proto.Message) error {
	b, err := protojson.MarshalOptions{Multiline: true, EmitUnpopulated: false}.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, b, "", "  "); err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	buf.WriteByte('\n')
	_, err = w.stdout.Write(buf.Bytes())
	return err
}

// socketHeader is the table header of socket rows.
const socketHeader = "ID\tNETWORK\tKIND\tSTATE\tLOCAL\tREMOTE\tSENT\tRECV\tSESSION\tAGE\tIDLE"

// sockets prints sockets as a table with a header (also when there are none). AGE and IDLE
// are rounded to the second. A served socket's counters and an attached socket's note follow
// the table, a line each.
func (w *writer) sockets(socks ...*sockagentv1.Socket) error {
	var buf bytes.Buffer // one write
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, socketHeader)
	for _, s := range socks {
		fmt.Fprintln(tw, strings.Join(socketCells(s), "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	socketNotes(&buf, socks)
	_, err := w.stdout.Write(buf.Bytes())
	return err
}

// socketCells are a socket's cells under socketHeader.
func socketCells(s *sockagentv1.Socket) []string {
	return []string{clean(s.GetSocketId()), dash(s.GetNetwork()), kindName(s.GetKind()), stateName(s.GetState()),
		dash(s.GetLocalAddress()), dash(s.GetRemoteAddress()), fmt.Sprint(s.GetBytesSent()), fmt.Sprint(s.GetBytesReceived()),
		dash(s.GetSessionId()), seconds(s.GetAge()), seconds(s.GetIdle())}
}

// socketNotes writes what a table row cannot hold, a line each: a served socket's counters,
// an attached socket's note, its options, groups and TLS session.
func socketNotes(buf *bytes.Buffer, socks []*sockagentv1.Socket) {
	for _, s := range socks {
		if s.GetServing() != nil {
			buf.WriteString(serving(s) + "\n")
		}
		if s.GetProxy() != nil {
			buf.WriteString(proxyLines(s))
		}
		if s.GetAttached() {
			buf.WriteString(clean(s.GetSocketId()) + " attached: an Attach stream owns its data; other data calls answer SOCKET_BUSY\n")
		}
		if o := client.FormatOptions(s.GetOptions()); o != "" {
			buf.WriteString(clean(s.GetSocketId()) + " options: " + clean(o) + "\n")
		}
		if g := s.GetMulticastGroups(); len(g) > 0 {
			buf.WriteString(clean(s.GetSocketId()) + " multicast groups: " + clean(strings.Join(g, " ")) + "\n")
		}
		if s.GetTls() != nil {
			buf.WriteString(tlsLine(s) + "\n")
		}
	}
}

// seconds shows d rounded to the second, "-" when absent.
func seconds(d *durationpb.Duration) string {
	if d == nil {
		return "-"
	}
	return d.AsDuration().Round(time.Second).String()
}

// info prints the agent's description as "key: value" lines, then its interfaces.
func (w *writer) info(r *sockagentv1.GetInfoResponse) error {
	var buf bytes.Buffer // one write: sockctl's start-up budget is a few milliseconds
	tw := tabwriter.NewWriter(&buf, 0, 0, 1, ' ', 0)
	kv := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, clean(v)) }
	kv("hostname", r.GetHostname())
	kv("version", r.GetVersion())
	kv("os/arch", r.GetOs()+"/"+r.GetArch())
	kv("pid", fmt.Sprint(r.GetPid()))
	kv("instance", r.GetInstanceId())
	if r.GetStartedAt() != nil {
		kv("started", r.GetStartedAt().AsTime().Format(time.RFC3339))
	}
	if r.GetUptime() != nil {
		kv("uptime", r.GetUptime().AsDuration().Round(time.Second).String())
	}
	kv("open sockets", fmt.Sprint(r.GetOpenSockets()))
	kv("socket dir", dash(r.GetSocketDir()))
	kv("networks", strings.Join(r.GetNetworks(), " "))
	if l := r.GetLimits(); l != nil {
		if l.GetDefaultTimeout() != nil {
			kv("default timeout", l.GetDefaultTimeout().AsDuration().String())
		}
		kv("max recv bytes", fmt.Sprint(l.GetMaxRecvBytes()))
		kv("max message bytes", fmt.Sprint(l.GetMaxMessageBytes()))
		if l.GetIdleTimeout() != nil {
			kv("idle timeout", l.GetIdleTimeout().AsDuration().String())
		}
		kv("open files", fmt.Sprintf("%d soft, %d hard", l.GetOpenFilesSoft(), l.GetOpenFilesHard()))
		kv("agent limits", fmt.Sprintf("%d sockets, %d blocking calls, %d buffered bytes",
			l.GetAgentSockets(), l.GetAgentBlockingCalls(), l.GetAgentBufferedBytes()))
		kv("your limits", fmt.Sprintf("rule set %s: %d sockets, %d bytes per call, %d blocking calls, %d buffered bytes, %d sessions",
			dash(l.GetRuleSet()), l.GetCallerSockets(), l.GetBytesPerCall(), l.GetCallerBlockingCalls(), l.GetCallerBufferedBytes(), l.GetCallerSessions()))
		kv("session limits", fmt.Sprintf("%d sockets, %d blocking calls, %d buffered bytes",
			l.GetSessionSockets(), l.GetSessionBlockingCalls(), l.GetSessionBufferedBytes()))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	buf.WriteString("interfaces:\n")
	tw = tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	for _, i := range r.GetInterfaces() {
		fmt.Fprintf(tw, "  %s\tindex %d\tmtu %d\t%s\t%s\n", clean(i.GetName()), i.GetIndex(), i.GetMtu(),
			dash(strings.Join(i.GetFlags(), ",")), dash(strings.Join(i.GetAddresses(), " ")))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := w.stdout.Write(buf.Bytes())
	return err
}

// kindName is a SocketKind without its prefix, in lower case: listener, stream, datagram.
func kindName(k sockagentv1.SocketKind) string {
	return enumName(k.String(), "SOCKET_KIND_")
}

// stateName is a SocketState without its prefix, in lower case: open, write-shut, closed.
func stateName(s sockagentv1.SocketState) string {
	return enumName(s.String(), "SOCKET_STATE_")
}

func enumName(s, prefix string) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(s, prefix)), "_", "-")
}

// dash stands in for an empty table cell, and cleans a full one.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return clean(s)
}

// probe prints a probe's results as "key: value" lines.
func (w *writer) probe(network string, r *sockagentv1.ProbeResponse) error {
	tw := tabwriter.NewWriter(w.stdout, 0, 0, 1, ' ', 0)
	kv := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, clean(v)) }
	kv("target", fmt.Sprintf("%s %s", network, dash(r.GetRemoteAddress())))
	kv("local", dash(r.GetLocalAddress()))
	kv("sent", fmt.Sprint(r.GetSent()))
	kv("received", fmt.Sprint(r.GetReceived()))
	kv("loss", scenario.FormatFigure("loss", r.GetLoss()))
	if r.GetReceived() > 0 {
		f := runner.ProbeFigures(r)
		var parts []string
		for _, k := range []string{"rtt_min", "rtt_p50", "rtt_p90", "rtt_p99", "rtt_max", "rtt_mean"} {
			parts = append(parts, strings.TrimPrefix(k, "rtt_")+" "+scenario.FormatFigure(k, f[k]))
		}
		kv("rtt", strings.Join(parts, "  "))
	}
	for _, e := range r.GetErrors() {
		kv("errors", fmt.Sprintf("%s %d: %s", e.GetReason(), e.GetCount(), e.GetMessage()))
	}
	if r.GetElapsed() != nil {
		kv("elapsed", r.GetElapsed().AsDuration().Round(time.Millisecond).String())
	}
	return tw.Flush()
}

// jsonLine prints m as protojson on one line.
func (w *writer) jsonLine(m *sockagentv1.ThroughputResponse) error {
	b, err := protojson.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	_, err = fmt.Fprintf(w.stdout, "%s\n", b)
	return err
}

// intervalLine shows one interval report: "  1.00-2.00s  1.10 GiB  9.41 Gbit/s  retr 0  rtt 40µs  total 2.20 GiB".
func intervalLine(iv *sockagentv1.ThroughputInterval, total uint64) string {
	secs := func(d time.Duration) string { return fmt.Sprintf("%.2f", d.Seconds()) }
	s := fmt.Sprintf("%6s-%ss  %10s  %12s", secs(iv.GetStart().AsDuration()), secs(iv.GetEnd().AsDuration()),
		scenario.FormatBytes(iv.GetBytes()), scenario.FormatBitRate(iv.GetBitsPerSecond()))
	if iv.GetDatagrams() > 0 || iv.GetLost() > 0 {
		s += fmt.Sprintf("  datagrams %d lost %d", iv.GetDatagrams(), iv.GetLost())
	} else {
		s += fmt.Sprintf("  retr %d", iv.GetRetransmits())
		if iv.GetRtt() != nil {
			s += "  rtt " + scenario.FormatFigure("rtt", runner.Nanos(iv.GetRtt()))
		}
	}
	return s + "  total " + scenario.FormatBytes(total)
}

// liveLine prints interval lines: on a terminal it rewrites one line in place, else it
// prints one line each.
type liveLine struct {
	w     io.Writer
	tty   bool
	dirty bool // a rewritten line is on screen without its newline
}

func (l *liveLine) show(s string) error {
	var err error
	if l.tty {
		_, err = fmt.Fprintf(l.w, "\r%s\x1b[K", s)
		l.dirty = true
	} else {
		_, err = fmt.Fprintln(l.w, s)
	}
	return err
}

// end finishes a rewritten line so that what follows starts on a line of its own.
func (l *liveLine) end() {
	if l.dirty {
		fmt.Fprintln(l.w)
		l.dirty = false
	}
}

// isTerminal reports whether w is a terminal: a file the terminal ioctls answer on (not
// merely a character device, which /dev/null is too).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// terminalWidth is the width of w, a terminal, in columns; 80 when it does not say.
func terminalWidth(w io.Writer) int {
	if f, ok := w.(*os.File); ok {
		if cols, _, err := term.GetSize(int(f.Fd())); err == nil && cols > 0 {
			return cols
		}
	}
	return 80
}

// tlsLine shows a TLS socket's session on one line: "s1 tls: TLS 1.3
// TLS_AES_128_GCM_SHA256, alpn h2, server name db.lab, peer CN=db (issuer CN=lab CA),
// expires 2027-01-01T00:00:00Z"; a listener's: "s1 tls: listener, minimum TLS 1.2".
func tlsLine(s *sockagentv1.Socket) string {
	ti := s.GetTls()
	ver := func(v sockagentv1.TlsVersion) string {
		return "TLS " + strings.ReplaceAll(enumName(v.String(), "TLS_VERSION_"), "-", ".")
	}
	if ti.GetListener() {
		return fmt.Sprintf("%s tls: listener, minimum %s", clean(s.GetSocketId()), ver(ti.GetMinVersion()))
	}
	parts := []string{ver(ti.GetVersion()) + " " + clean(ti.GetCipherSuite())}
	if ti.GetAlpn() != "" {
		parts = append(parts, "alpn "+clean(ti.GetAlpn()))
	}
	if ti.GetServerName() != "" {
		parts = append(parts, "server name "+clean(ti.GetServerName()))
	}
	if ti.GetPeerSubject() != "" {
		parts = append(parts, fmt.Sprintf("peer %s (issuer %s)", clean(ti.GetPeerSubject()), clean(ti.GetPeerIssuer())))
	}
	if ti.GetPeerNotAfter() != nil {
		parts = append(parts, "expires "+ti.GetPeerNotAfter().AsTime().UTC().Format(time.RFC3339))
	}
	return fmt.Sprintf("%s tls: %s", clean(s.GetSocketId()), strings.Join(parts, ", "))
}

// serving shows a served socket's counters on one line: "s1 serving echo: connections 3
// (1 active), in 1.20 MiB, out 1.20 MiB".
func serving(s *sockagentv1.Socket) string {
	sv := s.GetServing()
	parts := []string{}
	if s.GetKind() == sockagentv1.SocketKind_SOCKET_KIND_LISTENER || sv.GetConnections() > 0 {
		parts = append(parts, fmt.Sprintf("connections %d (%d active)", sv.GetConnections(), sv.GetActiveConnections()))
	}
	parts = append(parts, "in "+scenario.FormatBytes(sv.GetBytesIn()), "out "+scenario.FormatBytes(sv.GetBytesOut()))
	if sv.GetDatagramsIn() > 0 || sv.GetDatagramsOut() > 0 || s.GetKind() == sockagentv1.SocketKind_SOCKET_KIND_DATAGRAM {
		parts = append(parts, fmt.Sprintf("datagrams in %d, out %d", sv.GetDatagramsIn(), sv.GetDatagramsOut()))
	}
	if sv.GetErrors() > 0 {
		parts = append(parts, fmt.Sprintf("errors %d (last: %s)", sv.GetErrors(), clean(sv.GetLastError())))
	}
	return fmt.Sprintf("%s serving %s: %s", clean(s.GetSocketId()), enumName(sv.GetBehaviour().String(), "BEHAVIOUR_"), strings.Join(parts, ", "))
}
