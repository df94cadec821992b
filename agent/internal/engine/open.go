package engine

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/sockagent/sockagent/agent/contract"
	"github.com/sockagent/sockagent/agent/internal/unixpath"
	"github.com/sockagent/sockagent/agent/policy"
)

// Listen opens a stream listener with options o (nil: none); a repeated requestID returns the
// first result.
func (t *Table) Listen(ctx context.Context, network, address, requestID string, o *Options) (Info, error) {
	return t.idempotent(ctx, "Listen", requestID, func() (Info, error) { return t.listen(ctx, network, address, o, nil) })
}

// listen opens a stream listener with options o; st, when not nil, makes it a TLS listener.
func (t *Table) listen(ctx context.Context, network, address string, o *Options, st *tlsState) (Info, error) {
	return t.bindLocal(ctx, contract.OpListen, network, address, o, nil, func(lc net.ListenConfig, s *sock, kaddr string) (net.Addr, error) {
		ln, err := lc.Listen(ctx, ipv4Wildcard(network, address), kaddr)
		if err != nil {
			return nil, err
		}
		if ul, ok := ln.(*net.UnixListener); ok {
			// Go would remove the path by name at close; the socket's file is removed through
			// the directory handle instead (sock.closeFile).
			ul.SetUnlinkOnClose(false)
		}
		s.kind, s.ln, s.tls = KindListener, ln, st
		return ln.Addr(), nil
	})
}

// Bind opens a bound datagram socket with options o that joins the groups of mc (either nil:
// none); a repeated requestID returns the first result.
func (t *Table) Bind(ctx context.Context, network, address, requestID string, o *Options, mc *Multicast) (Info, error) {
	return t.idempotent(ctx, "Bind", requestID, func() (Info, error) { return t.bind(ctx, network, address, o, mc) })
}

func (t *Table) bind(ctx context.Context, network, address string, o *Options, mc *Multicast) (Info, error) {
	return t.bindLocal(ctx, contract.OpBind, network, address, o, mc, func(lc net.ListenConfig, s *sock, kaddr string) (net.Addr, error) {
		pc, err := lc.ListenPacket(ctx, ipv4Wildcard(network, address), kaddr)
		if err != nil {
			return nil, err
		}
		s.kind, s.pc = KindDatagram, pc
		return pc.LocalAddr(), nil
	})
}

// bindLocal is what Listen and Bind share: the request and policy checks, a socket slot, the
// bind itself (open fills s, binding kaddr: a UNIX path's directory handle, else address), the
// check of the address bound, the multicast groups joined, and registering s.
func (t *Table) bindLocal(ctx context.Context, op contract.Op, network, address string, o *Options, mc *Multicast, open func(lc net.ListenConfig, s *sock, kaddr string) (net.Addr, error)) (Info, error) {
	wrap := func(err error) error { return &OpError{Op: string(op), Network: network, Address: address, Err: err} }
	if err := checkNetwork(op, network); err != nil {
		return Info{}, err
	}
	if err := checkAddress(string(op), network, address); err != nil {
		return Info{}, err
	}
	c, set := t.who(ctx)
	if err := set.CheckNetwork(network); err != nil {
		return Info{}, wrap(err)
	}
	sess, err := t.sessionOfCall(ctx)
	if err != nil {
		return Info{}, wrap(err)
	}
	if err := precheckLocal(set, network, address); err != nil {
		return Info{}, wrap(err)
	}
	if err := checkOptions(o, set, network, true); err != nil {
		return Info{}, wrap(err)
	}
	adm, err := t.admit(c.ID, sess, set, claim{sockets: 1})
	if err != nil {
		return Info{}, wrap(err)
	}
	defer adm.release()
	ub, err := openUnixBind(set, network, address)
	if err != nil {
		return Info{}, wrap(err)
	}
	s := &sock{owner: c.ID, session: sess, network: network, unix: ub}
	bound, err := open(net.ListenConfig{Control: withOptions(control(set, true), o)}, s, kernelAddr(address, ub, nil))
	if err == nil {
		if err = checkBound(set, bound); err == nil && ub != nil {
			err = ub.Commit()
		}
		if err == nil {
			err = s.joinAll(set, mc)
		}
		if err != nil {
			_ = s.closeFile()
		}
	} else {
		_, _ = ub.Close()
	}
	if err != nil {
		err = wrap(callerAddrs(err, network, address, ""))
		t.callError(c.ID, sess, network, address, "", err)
		return Info{}, err
	}
	if err := t.add(s, adm); err != nil {
		return Info{}, wrap(err)
	}
	t.sockEvent(EventOpened, s)
	return s.info(), nil
}

// Dial opens a connected socket with options o (nil: none); a repeated requestID returns the
// first result.
func (t *Table) Dial(ctx context.Context, network, address, local string, timeout time.Duration, requestID string, o *Options) (Info, error) {
	return t.idempotent(ctx, "Dial", requestID, func() (Info, error) { return t.dial(ctx, network, address, local, timeout, o, nil) })
}

// dial opens a connected socket with options o; cl, when not nil, makes it a TLS client whose
// handshake ends within the same timeout as the connect.
func (t *Table) dial(ctx context.Context, network, address, local string, timeout time.Duration, o *Options, cl *TLSClient) (Info, error) {
	deadline := time.Now().Add(t.timeout(timeout))
	wrap := func(err error) error { return &OpError{Op: "dial", Network: network, Address: address, Err: err} }
	if err := checkNetwork(contract.OpDial, network); err != nil {
		return Info{}, err
	}
	if err := checkAddress("dial", network, address); err != nil {
		return Info{}, err
	}
	c, set := t.who(ctx)
	if err := set.CheckNetwork(network); err != nil {
		return Info{}, wrap(err)
	}
	sess, err := t.sessionOfCall(ctx)
	if err != nil {
		return Info{}, wrap(err)
	}
	if local != "" {
		if err := checkAddress("dial: local_address", network, local); err != nil {
			return Info{}, err
		}
	}
	tcfg, err := dialTLSConfig(set, network, address, cl)
	if err != nil {
		return Info{}, wrap(err)
	}
	d, err := dialer(set, network, local, t.timeout(timeout))
	if err == nil {
		err = checkOptions(o, set, network, true)
	}
	if err != nil {
		return Info{}, wrap(err)
	}
	before, after := o.split()
	d.Control = withOptions(d.Control, before)
	if after != nil && after.Keepalive != nil {
		if cfg, ok := after.Keepalive.keepaliveConfig(); ok {
			// Go sets it as it makes the connection, in place of its default: no system
			// call more than a Dial without options makes.
			d.KeepAliveConfig, after.Keepalive = cfg, nil
		} else {
			d.KeepAlive = -1 // the caller's keepalive replaces Go's, which would be set first
		}
	}
	adm, err := t.admit(c.ID, sess, set, claim{blocking: true, sockets: 1, bytes: cl.pemBytes()})
	if err != nil {
		return Info{}, wrap(err)
	}
	defer adm.release()
	conn, ub, err := dialUnixAware(ctx, d, set, network, address, local)
	if err == nil {
		err = afterDial(conn, after, ub)
	}
	if err != nil {
		t.callError(c.ID, sess, network, local, address, err)
		return Info{}, wrap(err)
	}
	var st *tlsState
	if tcfg != nil {
		if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
			deadline = dl
		}
		if st, err = clientHandshake(ctx, conn, tcfg, deadline); err != nil {
			_, _ = ub.Close()
			return Info{}, wrap(err)
		}
		conn = st.conn
	}
	s := &sock{owner: c.ID, session: sess, network: network, kind: KindStream, conn: conn, unix: ub, tls: st}
	if contract.IsDatagram(network) {
		s.kind = KindDatagram
	}
	if err := t.add(s, adm); err != nil {
		return Info{}, wrap(err)
	}
	t.sockEvent(EventConnected, s)
	return s.info(), nil
}

type deadliner interface{ SetDeadline(time.Time) error }

// dialUnixAware connects d to address: a UNIX path through the file unixpath opened, and a
// UNIX local address bound through its directory handle (ub, which the socket keeps so its file
// is removed at close); a local IP address is judged once bound.
func dialUnixAware(ctx context.Context, d net.Dialer, set *policy.RuleSet, network, address, local string) (net.Conn, *unixpath.Bound, error) {
	ub, err := openUnixBind(set, network, local)
	if err != nil {
		return nil, nil, fmt.Errorf("local address %q: %w", local, err)
	}
	if ub != nil {
		d.LocalAddr = &net.UnixAddr{Name: ub.Addr, Net: network}
	}
	tgt, err := openUnixTarget(set, network, address)
	if err != nil {
		_, _ = ub.Close()
		return nil, nil, err
	}
	conn, err := d.DialContext(ctx, network, kernelAddr(address, nil, tgt))
	_ = tgt.Close()
	switch {
	case err != nil && ub != nil && boundBeforeFailure(err) && ub.Commit() == nil:
		_, _ = ub.Close() // removes the file the bind created
	case err != nil:
		_, _ = ub.Close()
	case ub != nil:
		if err = ub.Commit(); err != nil {
			_ = conn.Close()
			_, _ = ub.Close()
		}
	case local != "":
		if err = checkBound(set, conn.LocalAddr()); err != nil {
			_ = conn.Close()
		}
	}
	if err != nil {
		return nil, nil, callerAddrs(err, network, local, address)
	}
	return conn, ub, nil
}

// Accept waits for the next connection on a listener; a repeated requestID returns the first
// result. The connection joins the call's session, else the listener's.
func (t *Table) Accept(ctx context.Context, id string, timeout time.Duration, requestID string) (Info, error) {
	return t.idempotent(ctx, "Accept", requestID, func() (Info, error) { return t.accept(ctx, id, timeout) })
}

func (t *Table) accept(ctx context.Context, id string, timeout time.Duration) (Info, error) {
	s, err := t.get(ctx, id)
	wrap := func(err error) error {
		return &OpError{Op: "accept", SocketID: id, Network: networkOf(s), Address: addressOf(s), Err: err}
	}
	if err != nil {
		return Info{}, wrap(err)
	}
	if s.kind != KindListener {
		return Info{}, wrap(&kindError{fmt.Sprintf("socket is a %s socket, not a listener; Accept needs a socket from Listen", s.kind)})
	}
	dl, ok := s.ln.(deadliner)
	if !ok {
		return Info{}, wrap(&kindError{"listener does not support deadlines"})
	}
	c, set := t.who(ctx)
	sess, err := t.sessionOfCall(ctx)
	if err != nil {
		return Info{}, wrap(err)
	}
	if sess == "" {
		sess = s.session
	}
	// The accepted socket's slot is taken before waiting: a peer never connects into a full agent.
	adm, err := t.admit(c.ID, sess, set, claim{blocking: true, sockets: 1, waits: true})
	if err != nil {
		return Info{}, wrap(err)
	}
	defer adm.release()
	var (
		conn net.Conn
		st   *tlsState
	)
	// A TLS listener's handshake runs inside the Accept's deadline: the one blocking set.
	rec := &deadlineRecorder{setter: dl.SetDeadline}
	err = t.blocking(ctx, s, s.readGate, timeout, rec, nil, func() error {
		var aerr error
		if conn, aerr = s.ln.Accept(); aerr != nil || s.tls == nil {
			return aerr
		}
		if st, aerr = serverHandshake(ctx, conn, s.tls, rec.deadline()); aerr != nil {
			return aerr
		}
		conn = st.conn
		return nil
	})
	if err != nil {
		return Info{}, wrap(err)
	}
	s.accepted.Add(1)
	a := &sock{owner: c.ID, session: sess, network: s.network, kind: KindStream, conn: conn, parent: s.id, tls: st}
	if err := t.add(a, adm); err != nil {
		return Info{}, wrap(err)
	}
	t.sockEvent(EventAccepted, a)
	return a.info(), nil
}

// readLimit turns a Recv or RecvFrom size (0 = the default) into a buffer size within the
