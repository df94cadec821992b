package ctl

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
	"unicode"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/ctl/client"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// checkNetwork rejects a network op cannot use (exit 2).
func checkNetwork(network string, op contract.Op) error {
	if !contract.NetworkAllowed(op, network) {
		return usagef("unknown network %q: use one of %s", network, strings.Join(contract.Networks(op), ", "))
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
	switch a.output {
	case outputJSON:
		return a.out.json(resp)
	case outputID:
		return a.out.ids(resp.GetSocket())
	}
	return a.out.sockets(resp.GetSocket())
}

// socketCall makes one call that answers with a socket (see call) and prints the socket.
func (a *app) socketCall(ctx context.Context, op string, wait time.Duration, rpc func(ctx context.Context, c client.Clients) (socketResponse, error)) error {
	return a.call(ctx, op, wait, func(ctx context.Context, c client.Clients) error {
		resp, err := rpc(ctx, c)
		if err != nil {
			return err
		}
		return a.socketResult(resp)
	})
}

// bindLocal is the RunE of listen and bind: check NETWORK against nets, make the call, print
// the new socket.
func (a *app) bindLocal(op string, nets contract.Op, rpc func(ctx context.Context, c client.Clients, network, address string) (socketResponse, error)) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		network, address := args[0], args[1]
		if err := checkNetwork(network, nets); err != nil {
			return err
		}
		return a.socketCall(cmd.Context(), op+" "+network+" "+address, 0, func(ctx context.Context, c client.Clients) (socketResponse, error) {
			return rpc(ctx, c, network, address)
		})
	}
}

// onSocket is the RunE of the non-blocking commands on socket ID that print one socket.
func (a *app) onSocket(op string, rpc func(ctx context.Context, c client.Clients, id string) (socketResponse, error)) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		id := args[0]
		return a.socketCall(cmd.Context(), op+" "+id, 0, func(ctx context.Context, c client.Clients) (socketResponse, error) {
			return rpc(ctx, c, id)
		})
	}
}

func (a *app) listenCommand() *cobra.Command {
	var o optFlags
	var tf tlsFlags
	var nc ncFlags
	cmd := &cobra.Command{
		Use:   "listen NETWORK ADDRESS",
		Short: "Open a stream listener (socket, bind, listen); with --accept --attach, nc -l",
		Long: `Listen opens a stream listener on the agent bound to ADDRESS and prints it; its
LOCAL column shows the port the OS chose for port 0. NETWORK is tcp, tcp4, tcp6 or unix.
Does not block. Use 'accept ID' to take connections. With --tls-cert and --tls-key it
serves TLS: accept (and serve) complete the handshake first; --tls-ca requires client
certificates.

With --accept --attach it is 'nc -l' through the agent: it listens, says where on stderr,
waits for one connection (--wait, 0 = the agent's default), joins standard input and
output to it, and at the end closes the connection and the listener.

` + leaseHelp + `

` + relayHelp,
		Example: `  sockctl listen tcp 127.0.0.1:8080
  sockctl listen tcp 0.0.0.0:0 -o json     # port chosen by the OS, in localAddress
  sockctl listen tcp6 '[::1]:8080'
  sockctl listen unix /run/sockagent/sockets/echo.sock   # in the agent's socket dir (sockctl info)
  sockctl listen tcp 127.0.0.1:0 --opt max_segment=1200 --opt recv_buffer=1048576
  sockctl listen tcp 127.0.0.1:8443 --tls-cert server.pem --tls-key server-key.pem
  sockctl listen tcp 127.0.0.1:9000 --accept --attach --wait 10m > received.bin   # nc -l`,
		Args: args(2, "NETWORK", "ADDRESS"),
		RunE: func(cmd *cobra.Command, args []string) error {
			srv, err := tf.server()
			if err != nil {
				return err
			}
			opts, err := o.options()
			if err != nil {
				return err
			}
			req := func(network, address string) *sockagentv1.ListenRequest {
				return &sockagentv1.ListenRequest{Network: network, Address: address, Options: opts, Tls: srv}
			}
			if !nc.accept && !nc.attach {
				return a.bindLocal("listen", contract.OpListen, func(ctx context.Context, c client.Clients, network, address string) (socketResponse, error) {
					return c.Sockets.Listen(ctx, req(network, address))
				})(cmd, args)
			}
			if err := checkNetwork(args[0], contract.OpListen); err != nil {
				return err
			}
			if err := nc.check(); err != nil {
				return err
			}
			return a.listenAttach(cmd.Context(), req(args[0], args[1]), nc)
		},
	}
	o.register(cmd.Flags())
	tf.register(cmd.Flags(), true)
	nc.register(cmd)
	return idsOnly(cmd)
}

// ncFlags are listen's flags for 'nc -l': accept one connection and attach to it.
type ncFlags struct {
	accept, attach bool
	wait           time.Duration
	relay          relayFlags
	lease          leaseFlag
}

func (n *ncFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.BoolVar(&n.accept, "accept", false, "accept one connection (with --attach: nc -l)")
	f.BoolVar(&n.attach, "attach", false, "join standard input and output to the accepted connection (with --accept)")
	f.DurationVar(&n.wait, "wait", 0, "with --accept: how long to wait for a peer (0 = the agent's default)")
	n.relay.register(cmd)
	n.lease.register(cmd)
}

func (n *ncFlags) check() error {
	if n.accept != n.attach {
		return usagef("--accept and --attach go together (nc -l): give both, or neither to only listen")
	}
	if n.wait < 0 {
		return usagef("--wait must not be negative")
	}
	if err := n.relay.check(); err != nil {
		return err
	}
	return n.lease.check()
}

// listenAttach is listen --accept --attach: listen (req), accept one connection, relay
// standard input and output to it, close both, all inside a leased session.
func (a *app) listenAttach(ctx context.Context, req *sockagentv1.ListenRequest, nc ncFlags) error {
	timeout, err := protoDuration("wait", nc.wait)
	if err != nil {
		return err
	}
	op := "listen " + req.GetNetwork() + " " + req.GetAddress()
	return a.withAgent(ctx, func(ag *agentConn) error {
		return ag.leased(ctx, nc.lease, "sockctl "+op+" --accept --attach", func() error {
			var lis *sockagentv1.Socket
			err := ag.unary(ctx, op, 0, func(ctx context.Context) error {
				resp, err := ag.c.Sockets.Listen(ctx, req)
				lis = resp.GetSocket()
				return err
			})
			if err != nil {
				return err
			}
			a.out.errorf("listening on %s (%s)\n", lis.GetLocalAddress(), lis.GetSocketId())
			var conn *sockagentv1.Socket
			err = ag.unary(ctx, "accept "+lis.GetSocketId(), nc.wait, func(ctx context.Context) error {
				resp, err := ag.c.Sockets.Accept(ctx, &sockagentv1.AcceptRequest{SocketId: lis.GetSocketId(), Timeout: timeout})
				conn = resp.GetSocket()
				return err
			})
			if err != nil {
				return errors.Join(err, ag.closeSocket(ctx, lis.GetSocketId()))
			}
			a.out.errorf("connection from %s (%s)\n", conn.GetRemoteAddress(), conn.GetSocketId())
			err = ag.relay(ctx, op, conn.GetSocketId(), "", false, nc.relay, a.stdin, a.out.stdout)
			return errors.Join(err, ag.closeSocket(ctx, conn.GetSocketId()), ag.closeSocket(ctx, lis.GetSocketId()))
		})
	})
}

func (a *app) bindCommand() *cobra.Command {
	var (
		o     optFlags
		join  []string
		iface string
	)
	cmd := &cobra.Command{
		Use:   "bind NETWORK ADDRESS",
		Short: "Open a bound datagram socket (socket, bind)",
		Long: `Bind opens a datagram socket on the agent bound to ADDRESS and prints it.
NETWORK is udp, udp4, udp6 or unixgram. Does not block. Use 'sendto' and 'recvfrom' on it.`,
		Example: `  sockctl bind udp 127.0.0.1:9999
  sockctl bind udp 127.0.0.1:0 -o json     # port chosen by the OS, in localAddress
  sockctl bind unixgram /run/sockagent/sockets/dgram.sock   # in the agent's socket dir (sockctl info)
  sockctl bind udp 0.0.0.0:5000 --join 239.1.2.3%eth0 --join 239.1.2.4%eth0
  sockctl bind udp6 '[::]:5000' --join 'ff15::1' --multicast-if eth0 --opt multicast_loop=false`,
		Args: args(2, "NETWORK", "ADDRESS"),
		RunE: a.bindLocal("bind", contract.OpBind, func(ctx context.Context, c client.Clients, network, address string) (socketResponse, error) {
			opts, err := o.options()
			if err != nil {
				return nil, err
			}
			req := &sockagentv1.BindRequest{Network: network, Address: address, Options: opts}
			if len(join) > 0 || iface != "" {
				req.Multicast = &sockagentv1.MulticastOptions{Groups: join, Interface: iface}
			}
			return c.Sockets.Bind(ctx, req)
		}),
	}
	o.register(cmd.Flags())
	cmd.Flags().StringArrayVar(&join, "join", nil, "join multicast group `GROUP[%IFACE]` once bound (repeatable; the policy must name the group)")
	cmd.Flags().StringVar(&iface, "multicast-if", "", "join groups on, and send multicast through, interface `IFACE`")
	return idsOnly(cmd)
}

func (a *app) dialCommand() *cobra.Command {
	var o optFlags
	var tf tlsFlags
	var local string
	var connectTimeout time.Duration
	cmd := &cobra.Command{
		Use:   "dial NETWORK ADDRESS",
		Short: "Open a connected socket (socket, connect)",
		Long: `Dial connects a new socket on the agent to ADDRESS and prints it. NETWORK is tcp,
tcp4, tcp6, udp, udp4, udp6, unix or unixgram (udp only fixes the peer; nothing is sent).
Blocks until connected, --connect-timeout (0 = the agent's default) or --timeout.
A refused connection exits 1 with CONNECTION_REFUSED on stderr. Any --tls-* flag or --alpn
makes the socket a TLS client (connect and handshake both within --connect-timeout); the
socket then carries the decrypted stream, and 'get' shows the TLS version, cipher suite,
ALPN and the server's certificate. A refused certificate exits 1 with CERTIFICATE_INVALID.`,
		Example: `  sockctl dial tcp 127.0.0.1:8080
  sockctl dial tcp 10.0.0.2:80 --local 10.0.0.1:0 --connect-timeout 3s
  sockctl dial tcp example.com:443 --tls-server-name example.com --alpn h2,http/1.1
  sockctl dial tcp 127.0.0.1:8443 --tls-ca ca.pem --tls-cert client.pem --tls-key client-key.pem
  sockctl dial udp 127.0.0.1:9999
  sockctl dial unix /run/sockagent/sockets/echo.sock
  sockctl dial tcp 127.0.0.1:8080 --opt no_delay=false --opt ttl=5 --opt linger=0s`,
		Args: args(2, "NETWORK", "ADDRESS"),
		RunE: func(cmd *cobra.Command, args []string) error {
			network, address := args[0], args[1]
			if err := checkNetwork(network, contract.OpDial); err != nil {
				return err
			}
			timeout, err := protoDuration("connect-timeout", connectTimeout)
			if err != nil {
				return err
			}
			opts, err := o.options()
			if err != nil {
				return err
			}
			cl, err := tf.client(false)
			if err != nil {
				return err
			}
			req := &sockagentv1.DialRequest{Network: network, Address: address, LocalAddress: local, Timeout: timeout, Options: opts, Tls: cl}
			return a.socketCall(cmd.Context(), "dial "+network+" "+address, connectTimeout, func(ctx context.Context, c client.Clients) (socketResponse, error) {
				return c.Sockets.Dial(ctx, req)
			})
		},
	}
	cmd.Flags().StringVar(&local, "local", "", "bind the source address `ADDR` first (host:port, port may be 0)")
	cmd.Flags().DurationVar(&connectTimeout, "connect-timeout", 0, "bound on the connect (0 = the agent's default)")
	o.register(cmd.Flags())
	tf.register(cmd.Flags(), false)
	return idsOnly(cmd)
}

func (a *app) acceptCommand() *cobra.Command {
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "accept ID",
		Short: "Wait for a connection on a listener (accept)",
		Long: `Accept waits for the next connection on listener ID and prints it as a new socket
(its id is in the ID column). Blocks until a peer connects, --wait (0 = the agent's
default), --timeout, or the listener is closed; a timeout exits 1 with TIMEOUT.`,
		Example: `  sockctl accept s3fa9c1-1
  sockctl accept s3fa9c1-1 --wait 2m -o json`,
		Args: args(1, "ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			timeout, err := protoDuration("wait", wait)
			if err != nil {
				return err
			}
			return a.socketCall(cmd.Context(), "accept "+id, wait, func(ctx context.Context, c client.Clients) (socketResponse, error) {
				return c.Sockets.Accept(ctx, &sockagentv1.AcceptRequest{SocketId: id, Timeout: timeout})
			})
		},
	}
	cmd.Flags().DurationVar(&wait, "wait", 0, "how long to wait for a peer (0 = the agent's default)")
	return idsOnly(cmd)
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
and prints the byte count, like sendall. Blocks until written, --wait (0 = the agent's
default) or --timeout, each of which bounds every call.

Data over 1 MiB goes to a stream socket in several calls, each as large as the agent takes
in one (its --max-message-bytes and your bytes_per_call: 'sockctl info' shows both), in
order; a failure midway says how many bytes were sent before it. A datagram is never split:
one over that size is refused before anything is sent.

` + dataHelp,
		Example: `  sockctl send s3fa9c1-3 'Hello, World!'
  sockctl send s3fa9c1-3 --file request.bin
  printf 'GET / HTTP/1.0\r\n\r\n' | sockctl send s3fa9c1-3
  sockctl send s3fa9c1-3 --hex '48 65 6c 6c 6f'`,
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
			return a.withAgent(cmd.Context(), func(ag *agentConn) error {
				sent, err := ag.sendAll(cmd.Context(), id, data, timeout, d.wait)
				if err != nil {
					return err
				}
				if a.output == outputJSON {
					return a.out.json(&sockagentv1.SendResponse{BytesSent: sent})
				}
				a.out.printf("sent %d byte%s\n", sent, plural(int(sent)))
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
		Example: `  sockctl sendto s3fa9c1-1 127.0.0.1:9999 'Hello, World!'
  echo ping | sockctl sendto s3fa9c1-1 127.0.0.1:9999`,
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
			return a.call(cmd.Context(), "sendto "+id+" "+address, d.wait, func(ctx context.Context, c client.Clients) error {
				resp, err := c.Sockets.SendTo(ctx, req)
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

One recv reads at most the agent's "max recv bytes" ('sockctl info'; 1 MiB unless the agent
was started with --max-recv-bytes) and your "bytes per call": a larger --max-bytes or
--exact is refused with INVALID_ARGUMENT or LIMIT_EXCEEDED naming the limit. To read more,
recv again, or 'sockctl attach ID > FILE' copies the stream to its end.

With -o table the bytes are written to stdout as they are (like netcat; --hex prints them
as one line of hex instead); on a terminal, data that does not end with a newline gets one,
so the prompt starts on a line of its own. End of stream is not an error: sockctl prints EOF on stderr
and exits 0 (-o json shows "eof": true). A timeout exits 1 with TIMEOUT; bytes read
before it are kept for the next recv.`,
		Example: `  sockctl recv s3fa9c1-2
  sockctl recv s3fa9c1-2 --exact 13 --wait 5s
  sockctl recv s3fa9c1-2 --hex
  sockctl recv s3fa9c1-2 -o json     # data in base64, and "eof"`,
		Args: args(1, "ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			timeout, err := protoDuration("wait", wait)
			if err != nil {
				return err
			}
			req := &sockagentv1.RecvRequest{SocketId: id, MaxBytes: maxBytes, ExactBytes: exact, Timeout: timeout}
			return a.call(cmd.Context(), "recv "+id, wait, func(ctx context.Context, c client.Clients) error {
				resp, err := c.Sockets.Recv(ctx, req)
				if err != nil {
					return err
				}
				if a.output == outputJSON {
					return a.out.json(resp)
				}
				if len(resp.GetData()) > 0 {
					if err := a.out.received(resp.GetData(), asHex); err != nil {
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

With -o table the datagram is written to stdout as it is (--hex: as one line of hex; on a
terminal, with a newline after it when it has none) and the sender is printed on stderr as "from ADDRESS (N bytes)"; -o json prints both on stdout.`,
		Example: `  sockctl recvfrom s3fa9c1-1
  sockctl recvfrom s3fa9c1-1 --wait 10s -o json`,
		Args: args(1, "ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			timeout, err := protoDuration("wait", wait)
			if err != nil {
				return err
			}
			req := &sockagentv1.RecvFromRequest{SocketId: id, MaxBytes: maxBytes, Timeout: timeout}
			return a.call(cmd.Context(), "recvfrom "+id, wait, func(ctx context.Context, c client.Clients) error {
				resp, err := c.Sockets.RecvFrom(ctx, req)
				if err != nil {
					return err
				}
				if a.output == outputJSON {
					return a.out.json(resp)
				}
				if err := a.out.received(resp.GetData(), asHex); err != nil {
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

func (a *app) shutdownCommand() *cobra.Command {
	return idsOnly(&cobra.Command{
		Use:   "shutdown ID read|write|both",
		Short: "Half-close a connected stream socket (shutdown)",
		Long: `Shutdown half-closes connected stream socket ID and prints it: write sends end of
stream to the peer (its recv says EOF), read stops reading, both does both. The socket
stays in the agent's table until 'close'. Does not block.`,
		Example: `  sockctl shutdown s3fa9c1-3 write`,
		Args:    args(2, "ID", "read|write|both"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			dir, ok := client.ShutdownDirection(args[1])
			if !ok {
				return usagef("unknown direction %q: use read, write or both", args[1])
			}
			return a.socketCall(cmd.Context(), "shutdown "+id+" "+args[1], 0, func(ctx context.Context, c client.Clients) (socketResponse, error) {
				return c.Sockets.Shutdown(ctx, &sockagentv1.ShutdownRequest{SocketId: id, Direction: dir})
			})
		},
	})
}

func (a *app) closeCommand() *cobra.Command {
	return idsOnly(&cobra.Command{
		Use:   "close ID",
		Short: "Close a socket (close)",
		Long: `Close closes socket ID and prints its final state and counters. Calls blocked on it
fail with SOCKET_CLOSED; the id then answers UNKNOWN_SOCKET. Does not block.`,
		Example: `  sockctl close s3fa9c1-3`,
		Args:    args(1, "ID"),
		RunE: a.onSocket("close", func(ctx context.Context, c client.Clients, id string) (socketResponse, error) {
			return c.Sockets.Close(ctx, &sockagentv1.CloseRequest{SocketId: id})
		}),
	})
}

func (a *app) getCommand() *cobra.Command {
	return idsOnly(&cobra.Command{
		Use:   "get ID",
		Short: "Show one socket",
		Long: `Get prints socket ID's addresses, state and byte counters, and under the table its
effective socket options as the kernel reports them and the multicast groups it joined (-o
json adds message counts, parent, age and pending calls). Does not block.`,
		Example: `  sockctl get s3fa9c1-2
  sockctl get s3fa9c1-2 -o json`,
		Args: args(1, "ID"),
		RunE: a.onSocket("get", func(ctx context.Context, c client.Clients, id string) (socketResponse, error) {
			return c.Sockets.GetSocket(ctx, &sockagentv1.GetSocketRequest{SocketId: id})
		}),
	})
}

func (a *app) lsCommand() *cobra.Command {
	var fo fleetOptions
	cmd := idsOnly(&cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List the open sockets of the agent, or of several",
		Long: `Ls prints every open socket of the agent, oldest first, as a table with a header
(the header alone when there are none). Does not block.

` + fleetHelp,
		Example: `  sockctl ls
  sockctl ls -o json
  sockctl ls --inventory lab.yaml --select role=web        # every web agent, one table
  sockctl ls --agent h1=10.77.0.2:7700 --agent h2=10.77.0.3:7700 -o json`,
		Args: args(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runView(cmd.Context(), a, &fo, view[*sockagentv1.ListSocketsResponse]{
				op: "list sockets",
				call: func(ctx context.Context, c client.Clients) (*sockagentv1.ListSocketsResponse, error) {
					return c.Sockets.ListSockets(ctx, &sockagentv1.ListSocketsRequest{})
				},
				print: func(resp *sockagentv1.ListSocketsResponse) error {
					switch a.output {
					case outputJSON:
						return a.out.json(resp)
					case outputID:
						return a.out.ids(resp.GetSockets()...)
					}
					return a.out.sockets(resp.GetSockets()...)
				},
				header: socketHeader,
				rows: func(resp *sockagentv1.ListSocketsResponse) (rows [][]string) {
					for _, s := range resp.GetSockets() {
						rows = append(rows, socketCells(s))
					}
					return rows
				},
				items: func(resp *sockagentv1.ListSocketsResponse) []proto.Message { return asItems(resp.GetSockets()) },
				ids: func(resp *sockagentv1.ListSocketsResponse) (ids []string) {
					for _, s := range resp.GetSockets() {
						ids = append(ids, clean(s.GetSocketId()))
					}
					return ids
				},
				notes: func(resp *sockagentv1.ListSocketsResponse) []string {
					var buf bytes.Buffer
					socketNotes(&buf, resp.GetSockets())
					return strings.FieldsFunc(buf.String(), func(r rune) bool { return r == '\n' })
				},
			})
		},
	})
	fo.register(a, cmd)
	return cmd
}

func (a *app) infoCommand() *cobra.Command {
	var fo fleetOptions
	cmd := &cobra.Command{
		Use:   "info",
		Short: "Describe the agent, or several: host, version, interfaces, limits",
		Long: `Info prints the agent's hostname, version, platform, uptime, limits and accepted
networks as "key: value" lines, then its network interfaces with their addresses.
Does not block; a quick way to check that the agent is reachable.

Of several agents, info prints a line each: hostname, version, os/arch, uptime, open
sockets and labels (-o json: every agent's whole answer).

` + fleetHelp,
		Example: `  sockctl info
  sockctl --agent 10.0.0.2:7700 info -o json
  sockctl info --inventory dns:sockagent.sockagent.svc.cluster.local   # is every agent up?
  sockctl info --inventory lab.yaml --select zone=eu-*`,
		Args: args(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runView(cmd.Context(), a, &fo, view[*sockagentv1.GetInfoResponse]{
				op: "get info",
				call: func(ctx context.Context, c client.Clients) (*sockagentv1.GetInfoResponse, error) {
					return c.Agent.GetInfo(ctx, &sockagentv1.GetInfoRequest{})
				},
				print: func(resp *sockagentv1.GetInfoResponse) error {
					if a.output == outputJSON {
						return a.out.json(resp)
					}
					return a.out.info(resp)
				},
				header: infoHeader,
				rows:   func(resp *sockagentv1.GetInfoResponse) [][]string { return [][]string{infoCells(resp)} },
				items:  func(resp *sockagentv1.GetInfoResponse) []proto.Message { return []proto.Message{resp} },
			})
		},
	}
	fo.register(a, cmd)
	return cmd
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

// readFile reads the data of --file.
func readFile(name string) ([]byte, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("read --file: %w", err)
	}
	return b, nil
}

// decodeHex decodes hex digits, ignoring whitespace; bad input is a usage error.
func decodeHex(text []byte) ([]byte, error) {
	digits := strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return -1
		}
		return r
	}, string(text))
	b, err := hex.DecodeString(digits)
	if err != nil {
		return nil, usagef("--hex: invalid hex data: %v", err)
	}
	return b, nil
}
