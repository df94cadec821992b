package ctl

// attach and connect: netcat over the agent's Attach stream.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/ctl/client"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// relayFlags are the flags attach and connect share.
type relayFlags struct {
	readSize uint32
	linger   time.Duration
}

func (r *relayFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.Uint32Var(&r.readSize, "read-size", 0, "largest `N` bytes the agent reads into one message (0 = 64 KiB, at most 1 MiB)")
	f.DurationVar(&r.linger, "linger", 0, "datagram sockets: keep printing replies for `D` after standard input ends (0 = stop at once)")
}

const relayHelp = `Standard input is written to the socket and what the socket reads is written to standard
output, unchanged, in both directions at once. At the end of standard input the socket's
write half is shut down (the peer reads EOF); sockctl exits 0 once the peer has closed its
side too. Flow control is end to end: a slow reader on either side slows the other.

Datagram sockets (udp, unixgram): every line of standard input, with its newline, is one
datagram, and every datagram received is written as it came. There is no end of stream:
sockctl stops once standard input ends, or --linger later.

The transfer itself has no deadline: --timeout bounds the other calls only. Interrupt it
with Ctrl-C. -o is ignored: the data is raw. Errors (CONNECTION_RESET, the socket closed
meanwhile: SOCKET_CLOSED, ...) exit 1 with the reason on stderr. When standard output is
closed early (sockctl ... | head -c 1000), sockctl cleans up and then ends as its neighbours
in the pipe do, by SIGPIPE (exit status 141).`

// leaseHelp says how connect and listen --attach leave nothing behind.
const leaseHelp = `The sockets it opens live in a session of its own with a short lease (--lease, 10s), kept
alive while it runs: however sockctl ends, it leaves nothing on the agent. At the end, on
Ctrl-C, SIGTERM, SIGHUP (the terminal closed) or a closed standard output (SIGPIPE) it closes
them at once; killed with SIGKILL, the agent closes them when the lease runs out. With
--session ID they live in your session instead, and sockctl closes them but not the
session.`

func (a *app) attachCommand() *cobra.Command {
	var r relayFlags
	var to string
	cmd := &cobra.Command{
		Use:   "attach [AGENT] ID",
		Short: "Join standard input and output to a socket, like netcat",
		Long: `Attach joins sockctl to socket ID of the agent (a connected stream socket from dial or
accept, or a datagram socket), like netcat. The socket stays open afterwards: close it
with 'sockctl close ID'. While attached, other data calls on it (send, recv, ...) answer
SOCKET_BUSY.

The agent is AGENT when given (HOST:PORT or unix:PATH, as --agent takes), else --agent,
$SOCKCTL_AGENT or the default; 'attach 10.77.0.2:7700 s3fa9c1-3' is 'attach s3fa9c1-3 --agent
10.77.0.2:7700'.

` + relayHelp + `

On a bound, unconnected datagram socket (from bind) give --to ADDRESS: the destination of
the datagrams sent.`,
		Example: `  sockctl dial tcp 127.0.0.1:8080               # prints the socket, say s3fa9c1-1
  sockctl attach s3fa9c1-1 < request.bin > reply.bin
  sockctl accept s3fa9c1-4 --wait 1m             # the accepted connection, say s3fa9c1-2
  sockctl attach s3fa9c1-2                       # type lines; Ctrl-D ends your side
  sockctl bind udp 127.0.0.1:0                   # say s3fa9c1-3
  echo ping | sockctl attach s3fa9c1-3 --to 127.0.0.1:9999 --linger 1s
  sockctl attach 10.77.0.2:7700 s0b12ff-2        # a socket of another agent`,
		Args: args(1, "AGENT", "ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[len(args)-1]
			if len(args) == 2 {
				if err := a.setAgent(args[0]); err != nil {
					return err
				}
			}
			if err := r.check(); err != nil {
				return err
			}
			return a.withAgent(cmd.Context(), func(ag *agentConn) error {
				var s *sockagentv1.Socket
				err := ag.unary(cmd.Context(), "attach "+id, 0, func(ctx context.Context) error {
					resp, err := ag.c.Sockets.GetSocket(ctx, &sockagentv1.GetSocketRequest{SocketId: id})
					s = resp.GetSocket()
					return err
				})
				if err != nil {
					return err
				}
				dgram := s.GetKind() == sockagentv1.SocketKind_SOCKET_KIND_DATAGRAM
				return ag.relay(cmd.Context(), "attach "+id, id, to, dgram, r, a.stdin, a.out.stdout)
			})
		},
	}
	r.register(cmd)
	cmd.Flags().StringVar(&to, "to", "", "destination `ADDRESS` of the datagrams on an unconnected datagram socket (bind)")
	return cmd
}

func (a *app) connectCommand() *cobra.Command {
	var o optFlags
	var tf tlsFlags
	var r relayFlags
	lease := leaseFlag{}
	var local string
	var connectTimeout time.Duration
	cmd := &cobra.Command{
		Use:   "connect NETWORK ADDRESS",
		Short: "Dial ADDRESS from the agent and join standard input and output to it, like netcat",
		Long: `Connect is netcat through the agent: it dials ADDRESS from the agent's host (as 'dial'
does), attaches to the new socket (as 'attach' does) and closes it at the end. NETWORK is
tcp, tcp4, tcp6, udp, udp4, udp6, unix or unixgram. A refused connection exits 1 with
CONNECTION_REFUSED on stderr.

` + leaseHelp + `

` + relayHelp,
		Example: `  sockctl connect tcp 127.0.0.1:8080 < file                 # send a file
  printf 'GET / HTTP/1.0\r\n\r\n' | sockctl connect tcp 127.0.0.1:80
  sockctl connect tcp 127.0.0.1:9000 < request.bin > reply.bin
  echo ping | sockctl connect udp 127.0.0.1:9999 --linger 1s
  sockctl --agent 10.0.0.5:7700 connect tcp 10.0.0.9:22      # from that agent's host
  printf 'GET / HTTP/1.0\r\n\r\n' | sockctl connect tcp example.com:443 --tls-server-name example.com`,
		Args: args(2, "NETWORK", "ADDRESS"),
		RunE: func(cmd *cobra.Command, args []string) error {
			network, address := args[0], args[1]
			if err := checkNetwork(network, contract.OpDial); err != nil {
				return err
			}
			if err := r.check(); err != nil {
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
			if err := lease.check(); err != nil {
				return err
			}
			op := "connect " + network + " " + address
			ctx := cmd.Context()
			return a.withAgent(ctx, func(ag *agentConn) error {
				return ag.leased(ctx, lease, "sockctl "+op, func() error {
					var id string
					err := ag.unary(ctx, "dial "+network+" "+address, connectTimeout, func(ctx context.Context) error {
						resp, err := ag.c.Sockets.Dial(ctx, &sockagentv1.DialRequest{Network: network, Address: address, LocalAddress: local, Timeout: timeout, Options: opts, Tls: cl})
						id = resp.GetSocket().GetSocketId()
						return err
					})
					if err != nil {
						return err
					}
					err = ag.relay(ctx, op, id, "", contract.IsDatagram(network), r, a.stdin, a.out.stdout)
					return errors.Join(err, ag.closeSocket(ctx, id))
				})
			})
		},
	}
	r.register(cmd)
	o.register(cmd.Flags())
	lease.register(cmd)
	cmd.Flags().StringVar(&local, "local", "", "bind the source address `ADDR` first (host:port, port may be 0)")
	cmd.Flags().DurationVar(&connectTimeout, "connect-timeout", 0, "bound on the connect (0 = the agent's default)")
	tf.register(cmd.Flags(), false)
	return cmd
}

func (r *relayFlags) check() error {
	if r.readSize > 1<<20 {
		return usagef("--read-size %d is over 1 MiB (1048576)", r.readSize)
	}
	if r.linger < 0 {
		return usagef("--linger must not be negative")
	}
	return nil
}

// maxDatagramLine bounds one datagram read from a line of standard input; a longer line is
// sent in several datagrams.
const maxDatagramLine = 64 << 10

// relay attaches to socket id and moves stdin to it and what it reads to stdout until both
// directions ended (stream sockets), or stdin ended and --linger passed (datagram sockets).
func (ag *agentConn) relay(ctx context.Context, op, id, to string, dgram bool, r relayFlags, stdin io.Reader, stdout io.Writer) error {
	ctx, cancel := context.WithCancel(client.ForSocket(ctx, id)) // a stream's header goes before its first message
	defer cancel()
	st, err := ag.c.Sockets.Attach(ctx)
	if err != nil {
		return ag.fail(op, 0, err)
	}
	if err := st.Send(&sockagentv1.AttachRequest{SocketId: id, ReadSize: r.readSize}); err != nil && !errors.Is(err, io.EOF) {
		return ag.fail(op, 0, err)
	}
	// Upstream: stdin to the socket, one read (stream) or one line (datagram) per request.
	// A Send error means the stream ended; Recv below says why.
	upErr := make(chan error, 1)
	go func() {
		err := func() error {
			req := &sockagentv1.AttachRequest{Address: to}
			if dgram {
				br := bufio.NewReaderSize(stdin, maxDatagramLine)
				for {
					line, err := br.ReadSlice('\n')
					if len(line) > 0 {
						req.Data = line
						if st.Send(req) != nil {
							return nil
						}
					}
					if errors.Is(err, bufio.ErrBufferFull) {
						continue
					}
					if errors.Is(err, io.EOF) {
						break
					}
					if err != nil {
						return fmt.Errorf("read standard input: %w", err)
					}
				}
				if r.linger > 0 {
					select {
					case <-time.After(r.linger):
					case <-ctx.Done():
						return nil
					}
				}
				_ = st.CloseSend()
				return nil
			}
			buf := make([]byte, 64<<10)
			for {
				n, err := stdin.Read(buf)
				if n > 0 {
					// The message is marshalled before Send returns: buf can be reused.
					req.Data = buf[:n]
					if st.Send(req) != nil {
						return nil
					}
				}
				if errors.Is(err, io.EOF) {
					_ = st.CloseSend()
					return nil
				}
				if err != nil {
					return fmt.Errorf("read standard input: %w", err)
				}
			}
		}()
		upErr <- err
		if err != nil {
			cancel() // ends the stream: the error is stdin's
		}
	}()
	// Downstream: what the socket read, to stdout.
	for {
		resp, err := st.Recv()
		if errors.Is(err, io.EOF) { // the Attach ended OK: both directions are done
			return <-upErr
		}
		if err != nil {
			select {
			case uerr := <-upErr:
				if uerr != nil { // stdin failed first, and the stream ended for it
					return failed(fmt.Errorf("%s: %w", op, uerr))
				}
			default:
			}
			return ag.fail(op, 0, err)
		}
		if len(resp.GetData()) > 0 {
			if _, err := stdout.Write(resp.GetData()); err != nil {
				return failed(fmt.Errorf("%s: write standard output: %w", op, err))
			}
		}
	}
}
