// Package contract is what the agent and its clients agree on beyond the generated API: the
// google.rpc.ErrorInfo domain, every error reason, the metadata headers that name a session and
// the agent instance a client expects, the shape of socket ids, and the network names each
// operation accepts.
//
// It is a leaf: it imports neither gRPC nor the generated code nor any server package, so
// the agent, its policy, sockctl and the scenario files share one list of each, as
// containerd's errdefs is shared by its daemon and its clients.
package contract

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
)

// Domain is the google.rpc.ErrorInfo domain of every error the agent returns.
const Domain = "sockagent.v1"

// SessionHeader is the gRPC metadata key naming the session that a Listen, Bind, Dial, Accept,
// Probe or Throughput opens its sockets in.
const SessionHeader = "sockagent-session"

// InstanceHeader is the gRPC metadata key by which a client names the agent instance it
// expects a call naming a socket id to reach: GetInfo.instance_id, or its short form (the
// digits between "s" and "-" of a socket id). A call whose header names another instance is
// UNKNOWN_SOCKET: the agent restarted since the client learnt the instance, and the ids it
// holds are gone.
const InstanceHeader = "sockagent-instance"

// Shapes of agent instance ids and socket ids. A socket id is "s", the first
// SocketIDInstanceLen digits of the instance id, "-" and a count from 1 ("s3fa9c1-12"): short
// enough to type, and an id from before a restart never names a socket of the new instance.
const (
	// InstanceIDLen is the length of an instance id: lowercase hexadecimal digits, random per
	// agent start.
	InstanceIDLen = 16
	// SocketIDInstanceLen is how many leading digits of the instance id a socket id carries.
	SocketIDInstanceLen = 6
	// maxSocketIDLen bounds what ParseSocketID reads: "s", the instance, "-", a uint64.
	maxSocketIDLen = 1 + SocketIDInstanceLen + 1 + 20
)

// FormatSocketID returns the id of the n-th socket of instance (an id of InstanceIDLen
// digits, or at least its first SocketIDInstanceLen).
func FormatSocketID(instance string, n uint64) string {
	return "s" + ShortInstance(instance) + "-" + strconv.FormatUint(n, 10)
}

// ShortInstance returns the part of instance that socket ids carry.
func ShortInstance(instance string) string {
	if len(instance) > SocketIDInstanceLen {
		return instance[:SocketIDInstanceLen]
	}
	return instance
}

// ParseSocketID splits a socket id of the shape FormatSocketID makes into the short instance
// and the count; ok is false for any other string (an id of an older agent, such as "s3",
// included).
func ParseSocketID(id string) (instance string, n uint64, ok bool) {
	if len(id) > maxSocketIDLen || len(id) < 1+SocketIDInstanceLen+2 || id[0] != 's' || id[1+SocketIDInstanceLen] != '-' {
		return "", 0, false
	}
	instance = id[1 : 1+SocketIDInstanceLen]
	if !isHex(instance) {
		return "", 0, false
	}
	digits := id[2+SocketIDInstanceLen:]
	if digits[0] < '1' || digits[0] > '9' { // no sign, no leading zero: one spelling per id
		return "", 0, false
	}
	n, err := strconv.ParseUint(digits, 10, 64)
	if err != nil {
		return "", 0, false
	}
	return instance, n, true
}

// ValidInstance reports whether s has the shape of an instance id or of its short form:
// InstanceIDLen or SocketIDInstanceLen lowercase hexadecimal digits.
func ValidInstance(s string) bool {
	return (len(s) == InstanceIDLen || len(s) == SocketIDInstanceLen) && isHex(s)
}

// SameInstance reports whether expected (an instance id or its short form) names instance.
func SameInstance(expected, instance string) bool {
	return expected == instance || (len(expected) == SocketIDInstanceLen && expected == ShortInstance(instance))
}

func isHex(s string) bool {
	for i := range len(s) {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Reasons carried in google.rpc.ErrorInfo.reason by the agent. Scripts match on these strings.
const (
	ReasonConnectionRefused   = "CONNECTION_REFUSED"
	ReasonConnectionReset     = "CONNECTION_RESET"
	ReasonHostUnreachable     = "HOST_UNREACHABLE"
	ReasonNetworkUnreachable  = "NETWORK_UNREACHABLE"
	ReasonTimeout             = "TIMEOUT"
	ReasonAddressInUse        = "ADDRESS_IN_USE"
	ReasonAddressNotAvailable = "ADDRESS_NOT_AVAILABLE"
	ReasonBrokenPipe          = "BROKEN_PIPE"
	ReasonSocketClosed        = "SOCKET_CLOSED"
	ReasonUnknownSocket       = "UNKNOWN_SOCKET"
	ReasonWrongSocketKind     = "WRONG_SOCKET_KIND"
	ReasonNotConnected        = "NOT_CONNECTED"
	ReasonInvalidAddress      = "INVALID_ADDRESS"
	ReasonInvalidNetwork      = "INVALID_NETWORK"
	ReasonInvalidArgument     = "INVALID_ARGUMENT"
	ReasonNameNotResolved     = "NAME_NOT_RESOLVED"
	ReasonPathNotFound        = "PATH_NOT_FOUND"
	ReasonAccessDenied        = "ACCESS_DENIED"
	ReasonMessageTooLarge     = "MESSAGE_TOO_LARGE"
	ReasonTooManyOpenFiles    = "TOO_MANY_OPEN_FILES"
	ReasonNoBufferSpace       = "NO_BUFFER_SPACE"
	ReasonAgentStopping       = "AGENT_STOPPING"
	ReasonCancelled           = "CANCELLED"
	ReasonOSError             = "OS_ERROR"
	ReasonPolicyDenied        = "POLICY_DENIED"
	ReasonLimitExceeded       = "LIMIT_EXCEEDED"
	ReasonUnknownSession      = "UNKNOWN_SESSION"
	ReasonSocketBusy          = "SOCKET_BUSY"
	// ReasonUnsupportedOption: a socket option the platform or the socket's kind does not
	// have; metadata option names it.
	ReasonUnsupportedOption = "UNSUPPORTED_OPTION"
	// ReasonTLSHandshakeFailed: the TLS handshake failed for a reason other than the peer's
	// certificate: the peer does not speak TLS, or no version, cipher suite or ALPN protocol
	// is common to both ends, or the peer sent no certificate where one was required.
	ReasonTLSHandshakeFailed = "TLS_HANDSHAKE_FAILED"
	// ReasonCertificateInvalid: the peer's certificate was refused (unknown authority,
	// expired, not valid for the name); the message carries the verifier's words.
	ReasonCertificateInvalid = "CERTIFICATE_INVALID"
	// ReasonUnauthenticated: missing or invalid credentials. The status message is always
	// UnauthenticatedMessage: nothing else is revealed.
	ReasonUnauthenticated = "UNAUTHENTICATED"
)

// MaxPEMBytes bounds each PEM field of a TLS request (a certificate chain, a key, a set of
// CAs): the agent refuses larger ones, and clients refuse to send them.
const MaxPEMBytes = 64 << 10

// UnauthenticatedMessage is the fixed message of every UNAUTHENTICATED status.
const UnauthenticatedMessage = "missing or invalid credentials"

// Reasons of failed measurement attempts, counted in ProbeResponse.errors and
// ThroughputSummary.errors beside the reasons above.
const (
	// ReasonEchoMismatch: the bytes that came back differ from the bytes sent.
	ReasonEchoMismatch = "ECHO_MISMATCH"
	// ReasonEOF: the target closed the connection before echoing everything.
	ReasonEOF = "EOF"
)

// Reasons a client gives to failures that are not the target's: the agent itself could not be
// reached, a step ran out of time on the client's side, the scenario itself is wrong, an
// expectation did not hold, or a probe made no attempt that could succeed or fail.
const (
	ReasonAgentUnavailable  = "AGENT_UNAVAILABLE"
	ReasonStepTimeout       = "STEP_TIMEOUT"
	ReasonScenarioError     = "SCENARIO_ERROR"
	ReasonExpectationFailed = "EXPECTATION_FAILED"
	ReasonProbeFailed       = "PROBE_FAILED"
)

var agentReasons = []string{
	ReasonConnectionRefused, ReasonConnectionReset, ReasonHostUnreachable, ReasonNetworkUnreachable,
	ReasonTimeout, ReasonAddressInUse, ReasonAddressNotAvailable, ReasonBrokenPipe,
	ReasonSocketClosed, ReasonUnknownSocket, ReasonWrongSocketKind, ReasonNotConnected,
	ReasonInvalidAddress, ReasonInvalidNetwork, ReasonInvalidArgument, ReasonNameNotResolved,
	ReasonPathNotFound, ReasonAccessDenied, ReasonMessageTooLarge, ReasonTooManyOpenFiles,
	ReasonNoBufferSpace, ReasonAgentStopping, ReasonCancelled, ReasonOSError,
	ReasonPolicyDenied, ReasonLimitExceeded, ReasonUnknownSession, ReasonSocketBusy,
	ReasonUnauthenticated, ReasonUnsupportedOption, ReasonTLSHandshakeFailed, ReasonCertificateInvalid,
}

var measureReasons = []string{ReasonEchoMismatch, ReasonEOF}

var clientReasons = []string{ReasonAgentUnavailable, ReasonStepTimeout, ReasonScenarioError, ReasonExpectationFailed, ReasonProbeFailed}

// AgentReasons lists every reason an agent puts in an ErrorInfo.
func AgentReasons() []string { return slices.Clone(agentReasons) }

// MeasureReasons lists the reasons only measurement error counts carry.
func MeasureReasons() []string { return slices.Clone(measureReasons) }

// ClientReasons lists the reasons a client (sockctl, the scenario runner) gives on its own.
func ClientReasons() []string { return slices.Clone(clientReasons) }

// IsReason reports whether r is a reason of any of the three lists.
func IsReason(r string) bool {
	return slices.Contains(agentReasons, r) || slices.Contains(measureReasons, r) || slices.Contains(clientReasons, r)
}

// Op is an operation that takes a network name.
type Op string

// Operations with their own set of networks.
const (
	OpListen     Op = "listen"     // stream listeners
	OpBind       Op = "bind"       // bound datagram sockets
	OpDial       Op = "dial"       // connected sockets (also Attach-by-dial: sockctl connect)
	OpProbe      Op = "probe"      // MeasureService.Probe
	OpThroughput Op = "throughput" // MeasureService.Throughput
)

var networks = map[Op][]string{
	OpListen:     {"tcp", "tcp4", "tcp6", "unix"},
	OpBind:       {"udp", "udp4", "udp6", "unixgram"},
	OpDial:       {"tcp", "tcp4", "tcp6", "udp", "udp4", "udp6", "unix", "unixgram"},
	OpProbe:      {"tcp", "tcp4", "tcp6", "udp", "udp4", "udp6"},
	OpThroughput: {"tcp", "tcp4", "tcp6", "udp", "udp4", "udp6"},
}

// Networks returns the network names op accepts, in a fixed order; nil for an unknown op.
func Networks(op Op) []string { return slices.Clone(networks[op]) }

// AllNetworks lists every network name the agent knows (those of Dial).
func AllNetworks() []string { return Networks(OpDial) }

// Ops lists the operations that take a network name.
func Ops() []Op { return []Op{OpListen, OpBind, OpDial, OpProbe, OpThroughput} }

// NetworkAllowed reports whether op accepts network.
func NetworkAllowed(op Op, network string) bool { return slices.Contains(networks[op], network) }

// IsUnix reports whether network is a UNIX-domain network (its addresses are paths).
func IsUnix(network string) bool { return network == "unix" || network == "unixgram" }

// IsDatagram reports whether network carries datagrams (message boundaries kept).
func IsDatagram(network string) bool {
	return network == "udp" || network == "udp4" || network == "udp6" || network == "unixgram"
}

// IsUDP reports whether network is one of udp, udp4, udp6.
func IsUDP(network string) bool { return network == "udp" || network == "udp4" || network == "udp6" }

// DefaultAgentSocket is the UNIX socket sockagent serves on and sockctl calls when neither is
// told otherwise: in a directory only the agent's user may enter (/run/sockagent for root,
// $XDG_RUNTIME_DIR/sockagent or $TMPDIR/sockagent-UID for others), so no other local user can
// reach an agent started with no flags.
func DefaultAgentSocket() string {
	uid := os.Geteuid()
	switch {
	case uid == 0:
		return "/run/sockagent/sockagent.sock"
	case os.Getenv("XDG_RUNTIME_DIR") != "":
		return filepath.Join(os.Getenv("XDG_RUNTIME_DIR"), "sockagent", "sockagent.sock")
	case uid < 0: // no user ids (Windows)
		return filepath.Join(os.TempDir(), "sockagent", "sockagent.sock")
	}
	return filepath.Join(os.TempDir(), "sockagent-"+strconv.Itoa(uid), "sockagent.sock")
}

// DefaultAgent is DefaultAgentSocket as an agent address: "unix:PATH".
func DefaultAgent() string { return "unix:" + DefaultAgentSocket() }

// Socket option names, as SocketOptions spells its fields, sockctl's --opt KEY=VALUE takes
// them and scenario files' options: maps key them.
const (
	OptNoDelay           = "no_delay"
	OptKeepalive         = "keepalive"
	OptKeepaliveIdle     = "keepalive_idle"
	OptKeepaliveInterval = "keepalive_interval"
	OptKeepaliveCount    = "keepalive_count"
	OptRecvBuffer        = "recv_buffer"
	OptSendBuffer        = "send_buffer"
	OptLinger            = "linger"
	OptTTL               = "ttl"
	OptTOS               = "tos"
	OptReuseAddress      = "reuse_address"
	OptReusePort         = "reuse_port"
	OptBindToDevice      = "bind_to_device"
	OptMaxSegment        = "max_segment"
	OptCongestion        = "congestion"
	OptDontFragment      = "dont_fragment"
	OptBroadcast         = "broadcast"
	OptMulticastTTL      = "multicast_ttl"
	OptMulticastLoop     = "multicast_loop"
)

var socketOptions = []string{
	OptNoDelay, OptKeepalive, OptKeepaliveIdle, OptKeepaliveInterval, OptKeepaliveCount,
	OptRecvBuffer, OptSendBuffer, OptLinger, OptTTL, OptTOS, OptReuseAddress, OptReusePort,
	OptBindToDevice, OptMaxSegment, OptCongestion, OptDontFragment, OptBroadcast,
	OptMulticastTTL, OptMulticastLoop,
}

// SocketOptions lists every socket option name, keepalive's parts as keepalive_idle,
// keepalive_interval and keepalive_count beside keepalive (on or off).
func SocketOptions() []string { return slices.Clone(socketOptions) }

// IsGuarded reports whether the option name is one of GuardedOptions.
func IsGuarded(name string) bool {
	switch name {
	case OptBindToDevice, OptBroadcast, OptReusePort, OptTOS:
		return true
	}
	return false
}

// GuardedOptions lists the options that need privilege or reach other traffic, which a
// policy rule set must list in socket_options before a caller may set them.
func GuardedOptions() []string {
	return []string{OptBindToDevice, OptBroadcast, OptReusePort, OptTOS}
}

// Kinds of socket option values, as OptionKind reports them.
const (
	OptionBool     = "bool"     // true or false
	OptionUint     = "uint"     // a whole number
	OptionDuration = "duration" // a Go duration: 10s, 1m30s
	OptionString   = "string"
)

var optionKinds = map[string]string{
	OptNoDelay: OptionBool, OptKeepalive: OptionBool, OptKeepaliveIdle: OptionDuration,
	OptKeepaliveInterval: OptionDuration, OptKeepaliveCount: OptionUint, OptRecvBuffer: OptionUint,
	OptSendBuffer: OptionUint, OptLinger: OptionDuration, OptTTL: OptionUint, OptTOS: OptionUint,
	OptReuseAddress: OptionBool, OptReusePort: OptionBool, OptBindToDevice: OptionString,
	OptMaxSegment: OptionUint, OptCongestion: OptionString, OptDontFragment: OptionBool,
	OptBroadcast: OptionBool, OptMulticastTTL: OptionUint, OptMulticastLoop: OptionBool,
}

// OptionKind is the kind of value the socket option name takes (OptionBool, OptionUint,
// OptionDuration, OptionString); "" for a name that is no option.
func OptionKind(name string) string { return optionKinds[name] }
