package engine

// AgentStats is a snapshot of the whole agent for its metrics: what is open now, and what has
// moved since the agent started. Taking one costs a walk of the table, never a cost on the
// calls that move data: the traffic of live sockets is read from their own counters, and a
// socket's counters join the table's totals when it goes (forgetLocked).
type AgentStats struct {
	// Sockets counts the open sockets by network, kind and state.
	Sockets map[SocketClass]int
	// Traffic is, per network, what the agent's sockets have moved since the agent started
	// (closed sockets included; served connections' bytes are in Served).
	Traffic map[string]Traffic
	// Sessions is the number of open sessions.
	Sessions int
	// Served sums the serving behaviours of the open sockets, by behaviour; Closed holds what
	// closed served sockets moved.
	Served map[string]ServedTotals
	// Proxy sums the counters of every proxy since the agent started (closed ones included).
	Proxy ProxyTotals
}

// ProxyTotals is what the agent's proxies did: the ProxyState counters, summed.
type ProxyTotals struct {
	Connections, BytesUpstream, BytesDownstream  uint64
	DatagramsUpstream, DatagramsDownstream       uint64
	DatagramsDropped, DatagramsDuplicated        uint64
	DatagramsReordered, Resets, UpstreamFailures uint64
}

func (a *ProxyTotals) add(p *ProxyInfo) {
	a.Connections += p.Connections
	a.BytesUpstream += p.BytesUpstream
	a.BytesDownstream += p.BytesDownstream
	a.DatagramsUpstream += p.DatagramsUpstream
	a.DatagramsDownstream += p.DatagramsDownstream
	a.DatagramsDropped += p.DatagramsDropped
	a.DatagramsDuplicated += p.DatagramsDuplicated
	a.DatagramsReordered += p.DatagramsReordered
	a.Resets += p.Resets
	a.UpstreamFailures += p.UpstreamFailures
}

// SocketClass is one group of AgentStats.Sockets.
type SocketClass struct {
	Network, Kind, State string
}

// Traffic is what sockets of one network moved: bytes, and the messages that carried them
// (datagrams on datagram sockets, reads and writes on streams).
type Traffic struct {
	BytesIn, BytesOut, MsgsIn, MsgsOut uint64
}

// ServedTotals is what one serving behaviour did across the sockets it served.
type ServedTotals struct {
	Connections, Errors                          uint64
	Active                                       uint64
	BytesIn, BytesOut, DatagramsIn, DatagramsOut uint64
}

// stateName names a socket state in metrics labels.
func stateName(s State) string {
	switch s {
	case StateOpen:
		return "open"
	case StateReadShut:
		return "read_shut"
	case StateWriteShut:
		return "write_shut"
	case StateShut:
		return "shut"
	}
	return "closed"
}

// gone is what closed sockets moved, kept so that counters never go back when a socket closes.
type gone struct {
	traffic map[string]Traffic
	served  map[string]ServedTotals
	proxy   ProxyTotals
}

// addGoneLocked folds the counters of s, which is leaving the table, into the totals.
func (t *Table) addGoneLocked(s *sock) {
	if t.gone.traffic == nil {
		t.gone.traffic, t.gone.served = map[string]Traffic{}, map[string]ServedTotals{}
	}
	tr := t.gone.traffic[s.network]
	tr.add(Traffic{BytesIn: s.bytesRecv.Load(), BytesOut: s.bytesSent.Load(), MsgsIn: s.msgsRecv.Load(), MsgsOut: s.msgsSent.Load()})
	t.gone.traffic[s.network] = tr
	if sv := s.serving.Load(); sv != nil {
		in := sv.info()
		st := t.gone.served[in.Behaviour.String()]
		st.add(in, false)
		t.gone.served[in.Behaviour.String()] = st
		if in.Proxy != nil {
			t.gone.proxy.add(in.Proxy)
		}
	}
}

func (a *Traffic) add(b Traffic) {
	a.BytesIn += b.BytesIn
	a.BytesOut += b.BytesOut
	a.MsgsIn += b.MsgsIn
	a.MsgsOut += b.MsgsOut
}

func (a *ServedTotals) add(in *ServingInfo, live bool) {
	a.Connections += in.Connections
	a.Errors += in.Errors
	a.BytesIn += in.BytesIn
	a.BytesOut += in.BytesOut
	a.DatagramsIn += in.DatagramsIn
	a.DatagramsOut += in.DatagramsOut
	if live {
		a.Active += uint64(in.Active)
	}
}

// Stats takes a snapshot of every socket and session of the agent, whoever owns them.
func (t *Table) Stats() AgentStats {
	st := AgentStats{Sockets: map[SocketClass]int{}, Traffic: map[string]Traffic{}, Served: map[string]ServedTotals{}}
	t.mu.Lock()
	ss := make([]*sock, 0, len(t.socks))
	for _, s := range t.socks {
		ss = append(ss, s)
	}
	for nw, tr := range t.gone.traffic {
		st.Traffic[nw] = tr
	}
	for b, sv := range t.gone.served {
		st.Served[b] = sv
	}
	st.Sessions = len(t.sessions)
	st.Proxy = t.gone.proxy
	t.mu.Unlock()
	for _, s := range ss {
		in := s.info()
		st.Sockets[SocketClass{Network: in.Network, Kind: in.Kind.String(), State: stateName(in.State)}]++
		tr := st.Traffic[in.Network]
		tr.add(Traffic{BytesIn: in.BytesRecv, BytesOut: in.BytesSent, MsgsIn: in.MsgsRecv, MsgsOut: in.MsgsSent})
		st.Traffic[in.Network] = tr
		if in.Serving != nil {
			sv := st.Served[in.Serving.Behaviour.String()]
			sv.add(in.Serving, true)
			st.Served[in.Serving.Behaviour.String()] = sv
			if in.Serving.Proxy != nil {
				st.Proxy.add(in.Serving.Proxy)
			}
		}
	}
	return st
}
