//go:build !linux

package engine

import (
	"net"
	"time"
)

// tcpStats is what Throughput reads from a TCP connection's TCP_INFO (Linux only).
type tcpStats struct {
	retrans uint64
	rtt     time.Duration
	unsent  bool
}

// readTCPInfo is not available here: Throughput reports no retransmits and no RTT.
func readTCPInfo(net.Conn) (tcpStats, bool) { return tcpStats{}, false }
