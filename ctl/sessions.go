package ctl

// sessions: open, keep alive, close and list the caller's sessions; --session puts the
// sockets a command opens in one.

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sockagent/sockagent/ctl/client"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// envSession names the environment variable that sets --session when it is not given.
const envSession = "SOCKCTL_SESSION"

// The range of a session's lease the agent accepts.
const (
	minSessionTTL = time.Second
	maxSessionTTL = 24 * time.Hour
)

// sessionID is --session if given, else $SOCKCTL_SESSION.
func (a *app) sessionID() string {
	if a.session != "" {
		return a.session
	}
	return a.getenv(envSession)
}

const sessionsLong = `A session is a lease on sockets: the agent closes every socket opened in it when the
session is closed, or when no keepalive comes within its TTL, so a script that dies leaves
nothing behind. Open one, give its id to the commands that open sockets with --session ID
(or $SOCKCTL_SESSION), keep it alive while you work, close it at the end.`

func (a *app) sessionsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sessions",
		Short: "Open, keep alive, close and list sessions (leases on sockets)",
		Long:  sessionsLong,
		Example: `  export SOCKCTL_SESSION=$(sockctl -o id sessions open --ttl 5m --name my-test)
  sockctl listen tcp 127.0.0.1:9000             # in the session
  sockctl sessions keepalive "$SOCKCTL_SESSION"
  sockctl sessions ls
  sockctl sessions close "$SOCKCTL_SESSION"     # closes the listener too`,
		Args: args(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usagef("sessions needs a command: open, keepalive, close or ls")
		},
	}
	cmd.AddCommand(a.sessionsOpenCommand(), a.sessionsKeepAliveCommand(), a.sessionsCloseCommand(), a.sessionsLsCommand())
	return cmd
}

func (a *app) sessionsOpenCommand() *cobra.Command {
	var ttl time.Duration
	var name string
	cmd := &cobra.Command{
		Use:   "open",
		Short: "Open a session and print it",
		Long: sessionsLong + `

Open starts a session whose lease lasts --ttl (1s up to 24h) from now and from every
keepalive, and prints it; -o id prints only its id. Does not block.`,
		Example: `  sockctl sessions open --ttl 10m --name nightly
  id=$(sockctl -o id sessions open)`,
		Args: args(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if ttl < minSessionTTL || ttl > maxSessionTTL {
				return usagef("--ttl %s: give %s up to %s", ttl, minSessionTTL, maxSessionTTL)
			}
			return a.call(cmd.Context(), "open session", 0, func(ctx context.Context, c client.Clients) error {
				resp, err := c.Sessions.OpenSession(ctx, &sockagentv1.OpenSessionRequest{Ttl: durationpb.New(ttl), Name: name})
				if err != nil {
					return err
				}
				return a.sessionResult(resp, resp.GetSession())
			})
		},
	}
	cmd.Flags().DurationVar(&ttl, "ttl", 30*time.Second, "the lease: the agent closes the session and its sockets when no keepalive comes within `D`")
	cmd.Flags().StringVar(&name, "name", "", "a label for the session, shown by 'sessions ls' (at most 128 bytes)")
	return idsOnly(cmd)
}

func (a *app) sessionsKeepAliveCommand() *cobra.Command {
	var every time.Duration
	cmd := &cobra.Command{
		Use:   "keepalive ID",
		Short: "Extend a session's lease (once, or --every D until interrupted)",
		Long: `KeepAlive extends session ID's lease to now + its TTL and prints the session. With
--every D it does so every D until interrupted (Ctrl-C, or kill), printing nothing more: run
it in the background while a script works, and the session ends one TTL after the script
does. An unknown session (closed, expired, another caller's) exits 1 with UNKNOWN_SESSION.`,
		Example: `  sockctl sessions keepalive 7f3a9c...
  sockctl sessions keepalive "$SOCKCTL_SESSION" --every 10s &`,
		Args: args(1, "ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			if every < 0 {
				return usagef("--every must not be negative")
			}
			return a.withAgent(cmd.Context(), func(ag *agentConn) error {
				keep := func() (*sockagentv1.KeepAliveResponse, error) {
					var resp *sockagentv1.KeepAliveResponse
					err := ag.unary(cmd.Context(), "keep session "+id+" alive", 0, func(ctx context.Context) error {
						var err error
						resp, err = ag.c.Sessions.KeepAlive(ctx, &sockagentv1.KeepAliveRequest{SessionId: id})
						return err
					})
					return resp, err
				}
				resp, err := keep()
				if err != nil {
					return err
				}
				if err := a.sessionResult(resp, resp.GetSession()); err != nil || every == 0 {
					return err
				}
				return keepEvery(cmd.Context(), every, keep)
			})
		},
	}
	cmd.Flags().DurationVar(&every, "every", 0, "keep the session alive every `D` until interrupted (0 = once)")
	return idsOnly(cmd)
}

// keepEvery calls keep every period until ctx ends (exit 0) or keep fails.
func keepEvery(ctx context.Context, period time.Duration, keep func() (*sockagentv1.KeepAliveResponse, error)) error {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if _, err := keep(); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

func (a *app) sessionsCloseCommand() *cobra.Command {
	return idsOnly(&cobra.Command{
		Use:   "close ID",
		Short: "Close a session and every socket in it",
		Long: `Close ends session ID and closes every socket opened in it (calls blocked on them fail
with SOCKET_CLOSED), then prints the session and how many sockets it closed. Does not block.`,
		Example: `  sockctl sessions close 7f3a9c...`,
		Args:    args(1, "ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			return a.call(cmd.Context(), "close session "+id, 0, func(ctx context.Context, c client.Clients) error {
				resp, err := c.Sessions.CloseSession(ctx, &sockagentv1.CloseSessionRequest{SessionId: id})
				if err != nil {
					return err
				}
				if a.output == outputTable {
					a.out.printf("closed session %s: %d socket%s closed\n", resp.GetSession().GetSessionId(), resp.GetClosedSockets(), plural(int(resp.GetClosedSockets())))
					return nil
				}
				return a.sessionResult(resp, resp.GetSession())
			})
		},
	})
}

func (a *app) sessionsLsCommand() *cobra.Command {
	var fo fleetOptions
	cmd := idsOnly(&cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List your open sessions on the agent, or on several",
		Long: `Ls prints your open sessions on the agent, oldest first, as a table with a header (the
header alone when there are none): id, name, lease, when it expires unless kept alive, and
its open sockets. Does not block.

` + fleetHelp,
		Example: `  sockctl sessions ls
  sockctl sessions ls -o json
  sockctl sessions ls --inventory lab.yaml                 # on every agent, one table
  sockctl sessions ls --inventory list:10.77.0.2:7700,10.77.0.3:7700 -o id`,
		Args: args(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runView(cmd.Context(), a, &fo, view[*sockagentv1.ListSessionsResponse]{
				op: "list sessions",
				call: func(ctx context.Context, c client.Clients) (*sockagentv1.ListSessionsResponse, error) {
					return c.Sessions.ListSessions(ctx, &sockagentv1.ListSessionsRequest{})
				},
				print: func(resp *sockagentv1.ListSessionsResponse) error {
					return a.sessionResult(resp, resp.GetSessions()...)
				},
				header: sessionHeader,
				rows: func(resp *sockagentv1.ListSessionsResponse) (rows [][]string) {
					now := time.Now()
					for _, s := range resp.GetSessions() {
						rows = append(rows, sessionCells(now, s))
					}
					return rows
				},
				items: func(resp *sockagentv1.ListSessionsResponse) []proto.Message { return asItems(resp.GetSessions()) },
				ids: func(resp *sockagentv1.ListSessionsResponse) (ids []string) {
					for _, s := range resp.GetSessions() {
						ids = append(ids, clean(s.GetSessionId()))
					}
					return ids
				},
			})
		},
	})
	fo.register(a, cmd)
	return cmd
}

// sessionResult prints the response m carrying sessions: protojson, their ids, or a table.
func (a *app) sessionResult(m proto.Message, sessions ...*sockagentv1.Session) error {
	switch a.output {
	case outputJSON:
		return a.out.json(m)
	case outputID:
		var buf bytes.Buffer
		for _, s := range sessions {
			buf.WriteString(clean(s.GetSessionId()) + "\n")
		}
		a.out.own(buf.String())
		return nil
	}
	return a.out.sessions(time.Now(), sessions...)
}

// sessionHeader is the table header of session rows.
const sessionHeader = "SESSION\tNAME\tTTL\tEXPIRES IN\tSOCKETS"

// sessions prints sessions as a table with a header; EXPIRES IN is counted from now, rounded
// to the second.
func (w *writer) sessions(now time.Time, sessions ...*sockagentv1.Session) error {
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, sessionHeader)
	for _, s := range sessions {
		fmt.Fprintln(tw, strings.Join(sessionCells(now, s), "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := w.stdout.Write(buf.Bytes())
	return err
}

// sessionCells are a session's cells under sessionHeader, EXPIRES IN counted from now.
func sessionCells(now time.Time, s *sockagentv1.Session) []string {
	left := "-"
	if s.GetExpiresAt() != nil {
		left = max(s.GetExpiresAt().AsTime().Sub(now), 0).Round(time.Second).String()
	}
	return []string{clean(s.GetSessionId()), dash(s.GetName()), seconds(s.GetTtl()), left, fmt.Sprint(s.GetSockets())}
}
