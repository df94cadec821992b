package client

import (
	"strings"

	"github.com/sockagent/sockagent/agent/contract"
)

// nextSteps says, for a reason the agent gave, what to try next: a command that shows more,
// or the flag that changes the outcome.
var nextSteps = map[string]string{
	contract.ReasonUnknownSocket:       "'sockctl ls' lists your open sockets",
	contract.ReasonUnknownSession:      "'sockctl sessions ls' lists your open sessions",
	contract.ReasonConnectionRefused:   "nothing listens at that address on the agent's host: check the port, or open a listener ('sockctl listen')",
	contract.ReasonTimeout:             "give it longer with --wait (dial and connect: --connect-timeout)",
	contract.ReasonAddressInUse:        "another socket holds that address: choose another port, or port 0 for one the OS picks",
	contract.ReasonWrongSocketKind:     "'sockctl get ID' shows its kind: accept takes a listener, send and recv a connected socket, sendto and recvfrom a bound datagram socket",
	contract.ReasonSocketBusy:          "an attach or a serve owns the socket ('sockctl get ID' says which): end the attach, or close the socket",
	contract.ReasonPolicyDenied:        "the agent's --policy refuses it; 'sockctl info' shows your rule set",
	contract.ReasonLimitExceeded:       "'sockctl info' shows your limits; close what you no longer need ('sockctl ls', 'sockctl sessions ls')",
	contract.ReasonNotConnected:        "dial or accept gives a connected socket",
	contract.ReasonPathNotFound:        "nothing is bound at that path; 'sockctl info' shows the agent's socket dir",
	contract.ReasonNameNotResolved:     "the name does not resolve on the agent's host: give an IP address",
	contract.ReasonHostUnreachable:     "'sockctl info' lists the agent's interfaces and addresses",
	contract.ReasonNetworkUnreachable:  "'sockctl info' lists the agent's interfaces and addresses",
	contract.ReasonAddressNotAvailable: "the address is not one of the agent's host: 'sockctl info' lists them",
	contract.ReasonAgentStopping:       "the agent is shutting down: retry once it runs again",
	contract.ReasonMessageTooLarge:     "a datagram must fit the network's limit: send less",
}

// NextStep returns what to try after a failure with reason, "" when there is nothing to say.
func NextStep(reason string) string { return nextSteps[reason] }

// withNextStep appends "; next: STEP" to msg when the reason has a next step and msg does
// not already end with advice in parentheses.
func withNextStep(msg, reason string) string {
	step := NextStep(reason)
	if step == "" || strings.HasSuffix(msg, ")") {
		return msg
	}
	return msg + " (next: " + step + ")"
}

// unreachableHint names what to check when the agent's address answered nothing sockctl
// could use: the agent not running, or another address.
func unreachableHint(msg string) string {
	if strings.Contains(msg, "connection refused") || strings.Contains(msg, "no such file or directory") {
		return " (is sockagent running there? sockctl calls --agent, else $SOCKCTL_AGENT, else the default UNIX socket; 'sockagent --listen ADDR' serves on ADDR)"
	}
	return ""
}

// tooLargeHint explains gRPC's own refusal of a request over the agent's message size.
func tooLargeHint(msg string) string {
	if strings.Contains(msg, "received message larger than max") {
		return " (the agent's --max-message-bytes bounds one request, 'sockctl info' shows it: send less per call)"
	}
	return ""
}
