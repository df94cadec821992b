package rlimit

// OwnFiles is how many open files the agent keeps for itself beside its sockets and control
// connections: standard streams, the epoll instance and its wake-up descriptor, the listener,
// the audit log, and the short-lived ones (a netlink socket for the interface list, a
// directory read for the open-file count, a DNS query, the second socket of a dual-stack
// Dial race, a control connection accepted only to be refused). An idle agent holds about a
// dozen.
const OwnFiles = 64

// SocketRoom is how many sockets fit in soft open files beside maxConns control connections
// and OwnFiles; negative when they do not fit at all. A soft limit of 0 (unknown, as on
// Windows) or larger than any count fits everything and returns -1 with ok false: there is
// nothing to derive.
func SocketRoom(soft uint64, maxConns int) (room int, ok bool) {
	const unbounded = 1 << 40 // more files than any count the agent takes
	if soft == 0 || soft >= unbounded {
		return -1, false
	}
	return int(soft) - maxConns - OwnFiles, true
}
