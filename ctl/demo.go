package ctl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/sockagent/sockagent/ctl/localagent"
	"github.com/spf13/cobra"
)

const demoLong = `Demo re-enacts the four textbook socket programs — TCP server, TCP client, UDP
server, UDP client — through sockctl: it runs each sockctl command in turn, prints it with
what it printed, and checks the result (the bytes received, the error reasons, the exit
codes). It ends with every socket closed.

Without --agent (and without $SOCKCTL_AGENT) it starts a sockagent in-process on
127.0.0.1:0, so it needs no setup; with --agent it drives that agent, on loopback
addresses of that agent's host, with the credentials of --tls, --ca, --cert, --key,
--server-name and --token-file (which the in-process agent, plaintext, ignores).

Exit status: 0 every step came out as expected; 1 a step did not (stderr says which);
2 usage error.`

func (a *app) demoCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "demo",
		Short: "Re-enact the textbook TCP and UDP exchanges, printing each sockctl command",
		Long:  demoLong,
		Example: `  sockctl demo
  sockctl demo --agent 127.0.0.1:7700
  sockctl demo --agent 10.77.0.2:7700 --ca pki/ca.pem --cert pki/client.pem --key pki/client-key.pem`,
		Args: args(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			target, creds := a.agentAddr(), a.dialOptions().Args()
			if !a.agentChanged && a.getenv(envAgent) == "" {
				creds = nil // the in-process agent serves plaintext on loopback
				addr, stop, err := localagent.StartHook(cmd.Context())
				if err != nil {
					return failed(fmt.Errorf("demo: %w", err))
				}
				defer stop()
				target = addr
				a.out.printf("# an in-process sockagent serves on %s\n", target)
			}
			d := &demo{ctx: cmd.Context(), target: target, creds: creds, a: a}
			err := d.runLeased()
			if err != nil {
				return failed(fmt.Errorf("demo: %w", err))
			}
			a.out.printf("\n# demo passed: %d sockctl commands, every result as expected, every socket closed\n", d.steps)
			return nil
		},
	}
}

// runLeased runs the demo and closes what it opened. On an agent of its own (in-process)
// that is all; on another agent every socket is opened in a session with a short lease, so
// a demo killed midway (SIGKILL) leaves nothing behind either.
func (d *demo) runLeased() error {
	if d.a.agentChanged || d.a.getenv(envAgent) != "" {
		return d.a.withAgent(d.ctx, func(ag *agentConn) error {
			return ag.leased(d.ctx, leaseFlag{ttl: defaultLease}, "sockctl demo", func() error {
				d.session = ag.session
				defer d.cleanup()
				return d.run()
			})
		})
	}
	defer d.cleanup()
	return d.run()
}

// demo runs sockctl commands against one agent and checks what they print.
type demo struct {
	ctx    context.Context
	target string
	creds  []string // the credential flags (--ca FILE ...) given to every command
	// session is the leased session the commands open their sockets in ("" = none).
	session string
	a       *app
	steps   int
	open    []string // socket ids to close if the demo stops early
}

// sockctl runs one sockctl command, prints it and its output, and checks its exit code.
func (d *demo) sockctl(wantExit int, args ...string) (stdout, stderr string, err error) {
	d.steps++
	quoted := make([]string, len(args))
	for i, s := range args {
		quoted[i] = s
		if strings.ContainsAny(s, " !'\"$") {
			quoted[i] = "'" + s + "'"
		}
	}
	d.a.out.printf("$ sockctl %s\n", strings.Join(quoted, " "))
	var out, errOut bytes.Buffer
	code := run(d.ctx, d.argv(args...), nil, nil, &out, &errOut)
	d.a.out.own(out.String())
	if out.Len() > 0 && !bytes.HasSuffix(out.Bytes(), []byte("\n")) {
		d.a.out.printf("\n")
	}
	for _, line := range strings.SplitAfter(errOut.String(), "\n") {
		if line != "" {
			d.a.out.own("  (stderr) " + line)
		}
	}
	if errOut.Len() > 0 && !strings.HasSuffix(errOut.String(), "\n") {
		d.a.out.printf("\n")
	}
	if code != wantExit {
		return out.String(), errOut.String(), fmt.Errorf("step %d 'sockctl %s' exited %d, want %d", d.steps, strings.Join(args, " "), code, wantExit)
	}
	return out.String(), errOut.String(), nil
}

// argv is the command line of one sockctl command against the demo's agent.
func (d *demo) argv(args ...string) []string {
	argv := append([]string{"--agent", d.target}, d.creds...)
	if d.session != "" {
		argv = append(argv, "--session", d.session)
	}
	return append(argv, args...)
}

// opens runs a command that prints one socket row and returns the new socket's id and local
// address.
func (d *demo) opens(args ...string) (id, local string, err error) {
	out, _, err := d.sockctl(ExitOK, args...)
	if err != nil {
		return "", "", err
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		return "", "", fmt.Errorf("step %d: want a header and one socket row, got %q", d.steps, out)
	}
	f := strings.Fields(lines[1])
	if len(f) < 5 {
		return "", "", fmt.Errorf("step %d: short socket row %q", d.steps, lines[1])
	}
	d.open = append(d.open, f[0])
	return f[0], f[4], nil
}

// expect runs a command and checks its stdout exactly and that stderr contains a word.
func (d *demo) expect(wantExit int, wantOut, wantErr string, args ...string) error {
	out, errOut, err := d.sockctl(wantExit, args...)
	if err != nil {
		return err
	}
	if wantOut != "" && out != wantOut {
		return fmt.Errorf("step %d printed %q, want %q", d.steps, out, wantOut)
	}
	if !strings.Contains(errOut, wantErr) {
		return fmt.Errorf("step %d: stderr %q lacks %q", d.steps, errOut, wantErr)
	}
	return nil
}

func (d *demo) close(id string) error {
	if err := d.expect(ExitOK, "", "", "close", id); err != nil {
		return err
	}
	for i, o := range d.open {
		if o == id {
			d.open = append(d.open[:i], d.open[i+1:]...)
			break
		}
	}
	return nil
}

// cleanup closes whatever a failed demo left open.
func (d *demo) cleanup() {
	for _, id := range d.open {
		var out, errOut bytes.Buffer
		run(context.WithoutCancel(d.ctx), d.argv("close", id), nil, nil, &out, &errOut)
	}
	d.open = nil
}

const greeting = "Hello, World!"

func (d *demo) run() error {
	w := d.a.out
	w.printf("\n# TCP: a server listens and accepts, a client connects; both send and receive.\n")
	lis, addr, err := d.opens("listen", "tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	cli, _, err := d.opens("dial", "tcp", addr, "--connect-timeout", "5s")
	if err != nil {
		return err
	}
	srv, _, err := d.opens("accept", lis, "--wait", "5s")
	if err != nil {
		return err
	}
	steps := []func() error{
		func() error { return d.expect(ExitOK, "", "", "send", cli, greeting) },
		func() error { return d.expect(ExitOK, greeting, "", "recv", srv, "--exact", "13", "--wait", "5s") },
		func() error { return d.expect(ExitOK, "", "", "send", srv, greeting) },
		func() error { return d.expect(ExitOK, greeting, "", "recv", cli, "--exact", "13", "--wait", "5s") },
		func() error { return d.close(cli) },
		func() error { return d.expect(ExitOK, "", "EOF", "recv", srv, "--wait", "5s") },
		func() error { return d.close(srv) },
		func() error { return d.close(lis) },
		func() error {
			w.printf("\n# Nobody listens there any more: the agent says why the dial failed.\n")
			return d.expect(ExitFailure, "", "CONNECTION_REFUSED", "dial", "tcp", addr)
		},
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return err
		}
	}

	w.printf("\n# UDP: a server binds and answers one datagram; a client sends and reads the answer.\n")
	usrv, uaddr, err := d.opens("bind", "udp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	ucli, caddr, err := d.opens("bind", "udp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	steps = []func() error{
		func() error { return d.expect(ExitOK, "", "", "sendto", ucli, uaddr, greeting) },
		func() error { return d.expect(ExitOK, greeting, "from "+caddr, "recvfrom", usrv, "--wait", "5s") },
		func() error { return d.expect(ExitOK, "", "", "sendto", usrv, caddr, greeting) },
		func() error { return d.expect(ExitOK, greeting, "from "+uaddr, "recvfrom", ucli, "--wait", "5s") },
		func() error { return d.close(usrv) },
		func() error { return d.close(ucli) },
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return err
		}
	}
	out, _, err := d.sockctl(ExitOK, "ls")
	if err != nil {
		return err
	}
	if n := strings.Count(strings.TrimSpace(out), "\n"); n != 0 {
		return errors.New("sockets are still open after the demo")
	}
	return nil
}
