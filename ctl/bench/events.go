package bench

import (
	"context"
	"fmt"

	"github.com/sockagent/sockagent/agent"
	"github.com/sockagent/sockagent/ctl/localagent"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// eventsRow alternates Send+Recv on the bench's agent (nobody watching) with the same on a
// second in-process agent that one WatchEvents stream follows (the default data interval),
// read as sockctl events would.
func eventsRow(ctx context.Context, e *env) result {
	on, err := localagent.Start(agent.Config{})
	if err != nil {
		return result{err: err}
	}
	defer on.Close()
	conn, err := dial(on.Addr())
	if err != nil {
		return result{err: err}
	}
	defer conn.Close()
	onSC := sockagentv1.NewSocketServiceClient(conn)
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	st, err := onSC.WatchEvents(watchCtx, &sockagentv1.WatchEventsRequest{})
	if err == nil {
		_, err = st.Header()
	}
	if err != nil {
		return result{err: rpcErr("WatchEvents", err)}
	}
	read := make(chan error, 1)
	go func() {
		for {
			if _, err := st.Recv(); err != nil {
				read <- err
				return
			}
		}
	}()
	onCli, onSrv, closeOn, err := tcpPairOn(ctx, onSC)
	if err != nil {
		return result{err: err}
	}
	defer closeOn()
	cli, srv, closeOff, err := e.tcpPair(ctx)
	if err != nil {
		return result{err: err}
	}
	defer closeOff()
	payload := pattern(pingSize)
	r := alternate(ctx, e.iterations(2000, 200), 20,
		func(ctx context.Context) error { return sendRecv(ctx, onSC, onCli, onSrv, payload) },
		func(ctx context.Context) error { return sendRecv(ctx, e.sc, cli, srv, payload) })
	select {
	case err := <-read: // the watch must last the whole row, or the figure is not with a watcher
		if r.err == nil {
			r.err = fmt.Errorf("the watch ended during the row: %w", rpcErr("WatchEvents", err))
		}
	default:
		stopWatch()
		<-read
	}
	return r
}
