package ctl

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// app is one run of sockctl: its inputs, outputs and global flags.
type app struct {
	getenv func(string) string
	stdin  io.Reader
	out    *writer

	agentFlag    string
	agentChanged bool
	output       outputFormat
	timeout      time.Duration
	dial         dialOptions // --tls --ca --cert --key --server-name --token-file
}

// dialOptions are the credentials of the global flags; --token-file defaults to
// $SOCKCTL_TOKEN_FILE.
func (a *app) dialOptions() dialOptions {
	o := a.dial
	if o.TokenFile == "" {
		o.TokenFile = a.getenv(envTokenFile)
	}
	return o
}

// agentAddr is --agent if given, else $SOCKCTL_AGENT if set, else the default.
func (a *app) agentAddr() string {
	if !a.agentChanged {
		if env := a.getenv(envAgent); env != "" {
			return env
		}
	}
	return a.agentFlag
}

// setAgent makes addr, given as a command's AGENT argument, the agent of this invocation. It
// is a usage error beside an --agent that names another.
func (a *app) setAgent(addr string) error {
	if a.agentChanged && a.agentFlag != addr {
		return usagef("agent %s given twice: as AGENT and as --agent %s; give one", addr, a.agentFlag)
	}
	if addr == "" {
		return usagef("AGENT is empty: give HOST:PORT or unix:PATH")
	}
	a.agentFlag, a.agentChanged = addr, true
	return nil
}

const rootLong = `sockctl drives real OS sockets on a sockagent daemon: one command per RPC of
sockagent.v1. Each command makes one call to one agent and prints the result.

A TCP exchange, the textbook way. The agent chooses socket ids (s1, s2, ...); CLIENT and
SERVER below stand for the ids that dial and accept print.

  sockctl listen tcp 127.0.0.1:9000    # socket, bind, listen: prints the listener, s1
  sockctl accept s1 --wait 1m &        # accept: blocks until a peer connects -> SERVER
  sockctl dial tcp 127.0.0.1:9000      # connect -> CLIENT
  sockctl send CLIENT 'Hello, World!'  # sendall
  sockctl recv SERVER                  # recv: prints Hello, World!
  sockctl send SERVER 'Hi!'            # and back: 'recv CLIENT' prints Hi!
  sockctl close CLIENT                 # close: now 'recv SERVER' says EOF
  sockctl close SERVER
  sockctl close s1
  sockctl ls                           # what is still open

UDP: 'bind udp ADDR' for each end, then 'sendto' and 'recvfrom'.

Moving and measuring bytes: 'connect tcp HOST:PORT < file' is netcat through the agent
(attach joins an existing socket); 'serve ID echo|discard|source' makes the agent itself a
peer; 'probe' times connects or echo round trips and 'throughput' moves bytes to a discard
(or from a source), socket to socket on the agent's host, never through gRPC.

Blocking: dial, accept, send, recv, sendto and recvfrom wait on the network for at most
their own timeout (--wait, --connect-timeout; 0 = the agent's default) and never past the
RPC deadline (--timeout), which is raised to that wait plus 5s when it would be shorter.
The other commands do not block.

Output: -o table (default) prints a line per socket, and the raw received bytes for recv
and recvfrom; -o json prints the whole response as protojson.

Security: an agent serving TLS wants --ca FILE (the CA that signed its certificate; --tls
alone trusts the system's CAs), an agent requiring client certificates (mTLS) also --cert
FILE --key FILE, and one requiring tokens --token-file FILE (or $SOCKCTL_TOKEN_FILE): its
first token, NAME:SECRET or SECRET, goes as 'authorization: Bearer SECRET'. A token is sent
in clear text only to an agent on this host (loopback or unix:); to any other, TLS is
required. --server-name NAME verifies the agent's certificate for NAME instead of the host
dialled. 'sockctl pki init' makes a CA and certificates for a lab.

Exit status: 0 success; 1 the operation failed (the agent's reason, such as
CONNECTION_REFUSED, is printed on stderr) or the agent could not be reached ("cannot reach
agent"); 2 usage error (unknown command or flag, wrong arguments).`

// exitHelp ends every command's help.
const exitHelp = `Exit status: 0 done; 1 the call failed (stderr says why, with the agent's reason such as
UNKNOWN_SOCKET or TIMEOUT) or the agent could not be reached; 2 usage error.`

// newRootCommand builds a fresh command tree bound to a.
func (a *app) newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "sockctl",
		Short:         "Drive the sockets of a sockagent daemon",
		Long:          rootLong,
		SilenceUsage:  true,
		SilenceErrors: true,
		// Without a command, sockctl names the commands and exits 2.
		RunE: func(cmd *cobra.Command, _ []string) error {
			var names []string
			for _, c := range cmd.Commands() {
				if c.IsAvailableCommand() && c.Name() != "help" {
					names = append(names, c.Name())
				}
			}
			return usagef("no command given; commands: %s", strings.Join(names, " "))
		},
		CompletionOptions: cobra.CompletionOptions{HiddenDefaultCmd: true},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err: err} })

	a.output = outputTable
	f := root.PersistentFlags()
	f.StringVar(&a.agentFlag, "agent", defaultAgent, "agent `ADDRESS`, HOST:PORT or unix:PATH; when not given, $"+envAgent+" if set")
	f.VarP(&a.output, "output", "o", "output format: table or json")
	f.DurationVar(&a.timeout, "timeout", defaultTimeout, "deadline of the RPC, 0 = none; raised to --wait/--connect-timeout + 5s when shorter")
	f.BoolVar(&a.dial.TLS, "tls", false, "connect with TLS, verifying the agent's certificate against the system's CAs (implied by --ca, --cert, --server-name)")
	f.StringVar(&a.dial.CA, "ca", "", "connect with TLS, verifying the agent's certificate with the CA certificate(s) in `FILE` (PEM)")
	f.StringVar(&a.dial.Cert, "cert", "", "client certificate `FILE` (PEM) for an agent that requires one (mTLS); needs --key")
	f.StringVar(&a.dial.Key, "key", "", "private key `FILE` (PEM) of --cert")
	f.StringVar(&a.dial.ServerName, "server-name", "", "`NAME` the agent's certificate must carry (default: the host of --agent)")
	f.StringVar(&a.dial.TokenFile, "token-file", "", "send the first token in `FILE` (NAME:SECRET or SECRET) as 'authorization: Bearer SECRET'; when not given, $"+envTokenFile+" if set")
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		a.agentChanged = cmd.Flags().Changed("agent")
		if a.agentAddr() == "" {
			return usagef("--agent is empty")
		}
		if a.timeout < 0 {
			return usagef("--timeout must not be negative")
		}
		return a.dial.check()
	}

	root.AddCommand(
		a.listenCommand(), a.bindCommand(), a.dialCommand(), a.acceptCommand(),
		a.sendCommand(), a.recvCommand(), a.sendToCommand(), a.recvFromCommand(),
		a.shutdownCommand(), a.closeCommand(), a.lsCommand(), a.getCommand(), a.infoCommand(),
		a.serveCommand(), a.probeCommand(), a.throughputCommand(),
		a.demoCommand(), a.runCommand(), a.validateCommand(), a.pkiCommand(),
		a.attachCommand(), a.connectCommand(),
	)
	for _, c := range root.Commands() {
		if !strings.Contains(c.Long, "Exit status:") { // demo, run, validate and pki say their own
			c.Long += "\n\n" + exitHelp
		}
	}
	return root
}

// args returns an argument validator for between min and len(names) arguments, named in the
// error message.
func args(min int, names ...string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(names) == 0 && len(args) > 0 {
			return usagef("takes no arguments, got %d", len(args))
		}
		if len(args) < min || len(args) > len(names) {
			return usagef("expected %s, got %d argument%s", strings.Join(names, " "), len(args), plural(len(args)))
		}
		return nil
	}
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// Networks each command accepts, as sockagent.v1 documents them.
const (
	listenNetworks = "tcp tcp4 tcp6 unix"
	bindNetworks   = "udp udp4 udp6 unixgram"
	dialNetworks   = "tcp tcp4 tcp6 udp udp4 udp6 unix unixgram"
)

// checkNetwork rejects a network the command cannot use (exit 2).
func checkNetwork(network, valid string) error {
	names := strings.Fields(valid)
	if !slices.Contains(names, network) {
		return usagef("unknown network %q: use one of %s", network, strings.Join(names, ", "))
	}
	return nil
}

// protoDuration converts a flag value to the request's timeout: nil (agent default) for 0.
func protoDuration(name string, d time.Duration) (*durationpb.Duration, error) {
	if d < 0 {
		return nil, usagef("--%s must not be negative", name)
	}
	if d == 0 {
		return nil, nil
	}
	return durationpb.New(d), nil
}

// socketResponse is a response that carries one socket.
type socketResponse interface {
	proto.Message
	GetSocket() *sockagentv1.Socket
}

// socketResult prints a socket-returning response: a table row or protojson.
func (a *app) socketResult(resp socketResponse) error {
	if a.output == outputJSON {
		return a.out.json(resp)
	}
	return a.out.sockets(resp.GetSocket())
}

// bindLocal is the RunE of listen and bind: check NETWORK against nets, make the call, print
// the new socket.
func (a *app) bindLocal(op, nets string, rpc func(ctx context.Context, c clients, network, address string) (socketResponse, error)) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		network, address := args[0], args[1]
		if err := checkNetwork(network, nets); err != nil {
			return err
		}
		return a.call(cmd.Context(), op+" "+network+" "+address, 0, func(ctx context.Context, c clients) error {
			resp, err := rpc(ctx, c, network, address)
			if err != nil {
				return err
			}
			return a.socketResult(resp)
		})
	}
}

// onSocket is the RunE of the non-blocking commands on socket ID that print one socket.
func (a *app) onSocket(op string, rpc func(ctx context.Context, c clients, id string) (socketResponse, error)) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		id := args[0]
		return a.call(cmd.Context(), op+" "+id, 0, func(ctx context.Context, c clients) error {
			resp, err := rpc(ctx, c, id)
			if err != nil {
				return err
			}
			return a.socketResult(resp)
		})
	}
}

func (a *app) listenCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "listen NETWORK ADDRESS",
		Short: "Open a stream listener (socket, bind, listen)",
		Long: `Listen opens a stream listener on the agent bound to ADDRESS and prints it; its
LOCAL column shows the port the OS chose for port 0. NETWORK is tcp, tcp4, tcp6 or unix.
Does not block. Use 'accept ID' to take connections.`,
		Example: `  sockctl listen tcp 127.0.0.1:8080
  sockctl listen tcp 0.0.0.0:0 -o json     # port chosen by the OS, in localAddress
  sockctl listen tcp6 '[::1]:8080'
  sockctl listen unix /tmp/echo.sock`,
		Args: args(2, "NETWORK", "ADDRESS"),
		RunE: a.bindLocal("listen", listenNetworks, func(ctx context.Context, c clients, network, address string) (socketResponse, error) {
			return c.sockets.Listen(ctx, &sockagentv1.ListenRequest{Network: network, Address: address})
		}),
	}
}

func (a *app) bindCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "bind NETWORK ADDRESS",
		Short: "Open a bound datagram socket (socket, bind)",
		Long: `Bind opens a datagram socket on the agent bound to ADDRESS and prints it.
NETWORK is udp, udp4, udp6 or unixgram. Does not block. Use 'sendto' and 'recvfrom' on it.`,
		Example: `  sockctl bind udp 127.0.0.1:9999
  sockctl bind udp 127.0.0.1:0 -o json     # port chosen by the OS, in localAddress
  sockctl bind unixgram /tmp/dgram.sock`,
		Args: args(2, "NETWORK", "ADDRESS"),
		RunE: a.bindLocal("bind", bindNetworks, func(ctx context.Context, c clients, network, address string) (socketResponse, error) {
			return c.sockets.Bind(ctx, &sockagentv1.BindRequest{Network: network, Address: address})
		}),
	}
}

func (a *app) dialCommand() *cobra.Command {
	var local string
	var connectTimeout time.Duration
	cmd := &cobra.Command{
		Use:   "dial NETWORK ADDRESS",
		Short: "Open a connected socket (socket, connect)",
		Long: `Dial connects a new socket on the agent to ADDRESS and prints it. NETWORK is tcp,
tcp4, tcp6, udp, udp4, udp6, unix or unixgram (udp only fixes the peer; nothing is sent).
Blocks until connected, --connect-timeout (0 = the agent's default) or --timeout.
A refused connection exits 1 with CONNECTION_REFUSED on stderr.`,
		Example: `  sockctl dial tcp 127.0.0.1:8080
  sockctl dial tcp 10.0.0.2:80 --local 10.0.0.1:0 --connect-timeout 3s
  sockctl dial udp 127.0.0.1:9999
  sockctl dial unix /tmp/echo.sock`,
		Args: args(2, "NETWORK", "ADDRESS"),
		RunE: func(cmd *cobra.Command, args []string) error {
			network, address := args[0], args[1]
			if err := checkNetwork(network, dialNetworks); err != nil {
				return err
			}
			timeout, err := protoDuration("connect-timeout", connectTimeout)
			if err != nil {
				return err
			}
			req := &sockagentv1.DialRequest{Network: network, Address: address, LocalAddress: local, Timeout: timeout}
			return a.call(cmd.Context(), "dial "+network+" "+address, connectTimeout, func(ctx context.Context, c clients) error {
				resp, err := c.sockets.Dial(ctx, req)
				if err != nil {
					return err
				}
				return a.socketResult(resp)
			})
		},
	}
	cmd.Flags().StringVar(&local, "local", "", "bind the source address `ADDR` first (host:port, port may be 0)")
	cmd.Flags().DurationVar(&connectTimeout, "connect-timeout", 0, "bound on the connect (0 = the agent's default)")
	return cmd
}

func (a *app) acceptCommand() *cobra.Command {
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "accept ID",
		Short: "Wait for a connection on a listener (accept)",
		Long: `Accept waits for the next connection on listener ID and prints it as a new socket
(its id is in the ID column). Blocks until a peer connects, --wait (0 = the agent's
default), --timeout, or the listener is closed; a timeout exits 1 with TIMEOUT.`,
		Example: `  sockctl accept s1
  sockctl accept s1 --wait 2m -o json`,
		Args: args(1, "ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			timeout, err := protoDuration("wait", wait)
			if err != nil {
				return err
			}
			return a.call(cmd.Context(), "accept "+id, wait, func(ctx context.Context, c clients) error {
				resp, err := c.sockets.Accept(ctx, &sockagentv1.AcceptRequest{SocketId: id, Timeout: timeout})
				if err != nil {
					return err
				}
				return a.socketResult(resp)
			})
		},
	}
	cmd.Flags().DurationVar(&wait, "wait", 0, "how long to wait for a peer (0 = the agent's default)")
	return cmd
}

// dataFlags are the data sources of send and sendto.
type dataFlags struct {
	file  string
	hex   bool
	wait  time.Duration
	stdin io.Reader
}

func (d *dataFlags) register(f *pflag.FlagSet) {
	f.StringVar(&d.file, "file", "", "send the contents of file `F` instead of DATA")
	f.BoolVar(&d.hex, "hex", false, "DATA (or the file, or stdin) is hex digits, spaces allowed: 48656c6c6f")
	f.DurationVar(&d.wait, "wait", 0, "how long the write may block (0 = the agent's default)")
}

const dataHelp = `DATA is sent as given (use the shell for escapes: $'line\n'). With --file F the file's
contents are sent; with DATA '-' or absent, standard input is read to its end and sent.
With --hex, the data is hex digits (whitespace ignored).`

func (a *app) sendCommand() *cobra.Command {
	d := &dataFlags{stdin: a.stdin}
	cmd := &cobra.Command{
		Use:   "send ID [DATA|-]",
		Short: "Write data to a connected socket (sendall)",
		Long: `Send writes all of the data to connected socket ID (one datagram on a datagram socket)
and prints the byte count. Blocks until written, --wait (0 = the agent's default) or
--timeout.

` + dataHelp,
		Example: `  sockctl send s3 'Hello, World!'
  sockctl send s3 --file request.bin
  printf 'GET / HTTP/1.0\r\n\r\n' | sockctl send s3
  sockctl send s3 --hex '48 65 6c 6c 6f'`,
		Args: args(1, "ID", "[DATA]"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			timeout, err := protoDuration("wait", d.wait)
			if err != nil {
				return err
			}
			data, err := d.read(args[1:])
			if err != nil {
				return err
			}
			return a.call(cmd.Context(), "send "+id, d.wait, func(ctx context.Context, c clients) error {
				resp, err := c.sockets.Send(ctx, &sockagentv1.SendRequest{SocketId: id, Data: data, Timeout: timeout})
				if err != nil {
					return err
				}
				if a.output == outputJSON {
					return a.out.json(resp)
				}
				a.out.printf("sent %d byte%s\n", resp.GetBytesSent(), plural(int(resp.GetBytesSent())))
				return nil
			})
		},
	}
	d.register(cmd.Flags())
	return cmd
}

func (a *app) sendToCommand() *cobra.Command {
	d := &dataFlags{stdin: a.stdin}
	cmd := &cobra.Command{
		Use:   "sendto ID ADDRESS [DATA|-]",
		Short: "Send one datagram to an address (sendto)",
		Long: `SendTo sends the data as one datagram from bound datagram socket ID to ADDRESS and prints
the byte count. Blocks until sent, --wait (0 = the agent's default) or --timeout.

` + dataHelp,
		Example: `  sockctl sendto s1 127.0.0.1:9999 'Hello, World!'
  echo ping | sockctl sendto s1 127.0.0.1:9999`,
		Args: args(2, "ID", "ADDRESS", "[DATA]"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, address := args[0], args[1]
			timeout, err := protoDuration("wait", d.wait)
			if err != nil {
				return err
			}
			data, err := d.read(args[2:])
			if err != nil {
				return err
			}
			req := &sockagentv1.SendToRequest{SocketId: id, Address: address, Data: data, Timeout: timeout}
			return a.call(cmd.Context(), "sendto "+id+" "+address, d.wait, func(ctx context.Context, c clients) error {
				resp, err := c.sockets.SendTo(ctx, req)
				if err != nil {
					return err
				}
				if a.output == outputJSON {
					return a.out.json(resp)
				}
				a.out.printf("sent %d byte%s to %s\n", resp.GetBytesSent(), plural(int(resp.GetBytesSent())), address)
				return nil
			})
		},
	}
	d.register(cmd.Flags())
	return cmd
}

func (a *app) recvCommand() *cobra.Command {
	var maxBytes, exact uint32
	var wait time.Duration
	var asHex bool
	cmd := &cobra.Command{
		Use:   "recv ID",
		Short: "Read from a connected socket (recv)",
		Long: `Recv reads from connected socket ID: up to --max-bytes (0 = 65536), or exactly --exact
bytes (which overrides --max-bytes). Blocks until data arrives, end of stream, --wait
(0 = the agent's default), --timeout, or the socket is closed.

With -o table the bytes are written to stdout as they are (like netcat; --hex prints them
as one line of hex instead). End of stream is not an error: sockctl prints EOF on stderr
and exits 0 (-o json shows "eof": true). A timeout exits 1 with TIMEOUT; bytes read
before it are kept for the next recv.`,
		Example: `  sockctl recv s2
  sockctl recv s2 --exact 13 --wait 5s
  sockctl recv s2 --hex
  sockctl recv s2 -o json     # data in base64, and "eof"`,
		Args: args(1, "ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			timeout, err := protoDuration("wait", wait)
			if err != nil {
				return err
			}
			req := &sockagentv1.RecvRequest{SocketId: id, MaxBytes: maxBytes, ExactBytes: exact, Timeout: timeout}
			return a.call(cmd.Context(), "recv "+id, wait, func(ctx context.Context, c clients) error {
				resp, err := c.sockets.Recv(ctx, req)
				if err != nil {
					return err
				}
				if a.output == outputJSON {
					return a.out.json(resp)
				}
				if len(resp.GetData()) > 0 {
					if err := a.out.raw(resp.GetData(), asHex); err != nil {
						return err
					}
				}
				if resp.GetEof() {
					a.out.errorf("EOF\n")
				}
				return nil
			})
		},
	}
	cmd.Flags().Uint32Var(&maxBytes, "max-bytes", 0, "read at most `N` bytes (0 = 65536)")
	cmd.Flags().Uint32Var(&exact, "exact", 0, "wait for exactly `N` bytes; fewer only at end of stream")
	cmd.Flags().BoolVar(&asHex, "hex", false, "print the data as hex on one line")
	cmd.Flags().DurationVar(&wait, "wait", 0, "how long to wait for data (0 = the agent's default)")
	return cmd
}

func (a *app) recvFromCommand() *cobra.Command {
	var maxBytes uint32
	var wait time.Duration
	var asHex bool
	cmd := &cobra.Command{
		Use:   "recvfrom ID",
		Short: "Receive one datagram and its sender (recvfrom)",
		Long: `RecvFrom receives one datagram on datagram socket ID, truncated to --max-bytes
(0 = 65536). Blocks until a datagram arrives, --wait (0 = the agent's default), --timeout,
or the socket is closed; a timeout exits 1 with TIMEOUT.

With -o table the datagram is written to stdout as it is (--hex: as one line of hex) and
the sender is printed on stderr as "from ADDRESS (N bytes)"; -o json prints both on stdout.`,
		Example: `  sockctl recvfrom s1
  sockctl recvfrom s1 --wait 10s -o json`,
		Args: args(1, "ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			timeout, err := protoDuration("wait", wait)
			if err != nil {
				return err
			}
			req := &sockagentv1.RecvFromRequest{SocketId: id, MaxBytes: maxBytes, Timeout: timeout}
			return a.call(cmd.Context(), "recvfrom "+id, wait, func(ctx context.Context, c clients) error {
				resp, err := c.sockets.RecvFrom(ctx, req)
				if err != nil {
					return err
				}
				if a.output == outputJSON {
					return a.out.json(resp)
				}
				if err := a.out.raw(resp.GetData(), asHex); err != nil {
					return err
				}
				a.out.errorf("from %s (%d byte%s)\n", dash(resp.GetAddress()), len(resp.GetData()), plural(len(resp.GetData())))
				return nil
			})
		},
	}
	cmd.Flags().Uint32Var(&maxBytes, "max-bytes", 0, "truncate the datagram to `N` bytes (0 = 65536)")
	cmd.Flags().BoolVar(&asHex, "hex", false, "print the data as hex on one line")
	cmd.Flags().DurationVar(&wait, "wait", 0, "how long to wait for a datagram (0 = the agent's default)")
	return cmd
}

// directions maps shutdown's argument to the proto enum.
func direction(s string) (sockagentv1.ShutdownDirection, bool) {
	switch s {
	case "read":
		return sockagentv1.ShutdownDirection_SHUTDOWN_DIRECTION_READ, true
	case "write":
		return sockagentv1.ShutdownDirection_SHUTDOWN_DIRECTION_WRITE, true
	case "both":
		return sockagentv1.ShutdownDirection_SHUTDOWN_DIRECTION_BOTH, true
	}
	return 0, false
}

func (a *app) shutdownCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "shutdown ID read|write|both",
		Short: "Half-close a connected stream socket (shutdown)",
		Long: `Shutdown half-closes connected stream socket ID and prints it: write sends end of
stream to the peer (its recv says EOF), read stops reading, both does both. The socket
stays in the agent's table until 'close'. Does not block.`,
		Example: `  sockctl shutdown s3 write`,
		Args:    args(2, "ID", "read|write|both"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			dir, ok := direction(args[1])
			if !ok {
				return usagef("unknown direction %q: use read, write or both", args[1])
			}
			return a.call(cmd.Context(), "shutdown "+id+" "+args[1], 0, func(ctx context.Context, c clients) error {
				resp, err := c.sockets.Shutdown(ctx, &sockagentv1.ShutdownRequest{SocketId: id, Direction: dir})
				if err != nil {
					return err
				}
				return a.socketResult(resp)
			})
		},
	}
}

func (a *app) closeCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "close ID",
		Short: "Close a socket (close)",
		Long: `Close closes socket ID and prints its final state and counters. Calls blocked on it
fail with SOCKET_CLOSED; the id then answers UNKNOWN_SOCKET. Does not block.`,
		Example: `  sockctl close s3`,
		Args:    args(1, "ID"),
		RunE: a.onSocket("close", func(ctx context.Context, c clients, id string) (socketResponse, error) {
			return c.sockets.Close(ctx, &sockagentv1.CloseRequest{SocketId: id})
		}),
	}
}

func (a *app) getCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "get ID",
		Short: "Show one socket",
		Long: `Get prints socket ID's addresses, state and byte counters (-o json adds message
counts, parent, age and pending calls). Does not block.`,
		Example: `  sockctl get s2
  sockctl get s2 -o json`,
		Args: args(1, "ID"),
		RunE: a.onSocket("get", func(ctx context.Context, c clients, id string) (socketResponse, error) {
			return c.sockets.GetSocket(ctx, &sockagentv1.GetSocketRequest{SocketId: id})
		}),
	}
}

func (a *app) lsCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List the agent's open sockets",
		Long: `Ls prints every open socket of the agent, oldest first, as a table with a header
(the header alone when there are none). Does not block.`,
		Example: `  sockctl ls
  sockctl ls -o json`,
		Args: args(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.call(cmd.Context(), "list sockets", 0, func(ctx context.Context, c clients) error {
				resp, err := c.sockets.ListSockets(ctx, &sockagentv1.ListSocketsRequest{})
				if err != nil {
					return err
				}
				if a.output == outputJSON {
					return a.out.json(resp)
				}
				return a.out.sockets(resp.GetSockets()...)
			})
		},
	}
}

func (a *app) infoCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "info",
		Short: "Describe the agent: host, version, interfaces, limits",
		Long: `Info prints the agent's hostname, version, platform, uptime, limits and accepted
networks as "key: value" lines, then its network interfaces with their addresses.
Does not block; a quick way to check that the agent is reachable.`,
		Example: `  sockctl info
  sockctl --agent 10.0.0.2:7700 info -o json`,
		Args: args(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.call(cmd.Context(), "get info", 0, func(ctx context.Context, c clients) error {
				resp, err := c.agent.GetInfo(ctx, &sockagentv1.GetInfoRequest{})
				if err != nil {
					return err
				}
				if a.output == outputJSON {
					return a.out.json(resp)
				}
				return a.out.info(resp)
			})
		},
	}
}

// read returns the data to send from argument DATA (at most one), --file or stdin.
func (d *dataFlags) read(args []string) ([]byte, error) {
	var data []byte
	switch {
	case d.file != "" && len(args) > 0:
		return nil, usagef("give DATA or --file, not both")
	case d.file != "":
		b, err := readFile(d.file)
		if err != nil {
			return nil, failed(err)
		}
		data = b
	case len(args) == 0 || args[0] == "-":
		b, err := io.ReadAll(d.stdin)
		if err != nil {
			return nil, failed(fmt.Errorf("read standard input: %w", err))
		}
		data = b
	default:
		data = []byte(args[0])
	}
	if d.hex {
		return decodeHex(data)
	}
	return data, nil
}
