//go:build linux

package engine

import (
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// tcpStats is what Throughput reads from a TCP connection's TCP_INFO.
type tcpStats struct {
	retrans uint64        // segments retransmitted over the connection's life
	rtt     time.Duration // smoothed round trip
	unsent  bool          // bytes written but not yet acknowledged by the peer
}

// readTCPInfo reads c's TCP_INFO; ok is false when c is not a TCP connection or the call
// fails (a closed socket).
func readTCPInfo(c net.Conn) (st tcpStats, ok bool) {
	sc, isSC := c.(syscall.Conn)
	if !isSC {
		return st, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return st, false
	}
	var (
		info *unix.TCPInfo
		gerr error
	)
	if err := rc.Control(func(fd uintptr) {
		info, gerr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); err != nil || gerr != nil {
		return st, false
	}
	return tcpStats{
		retrans: uint64(info.Total_retrans),
		rtt:     time.Duration(info.Rtt) * time.Microsecond,
		unsent:  info.Unacked > 0 || info.Notsent_bytes > 0,
	}, true
}
