package policy

// DefaultYAML is the policy of an agent started without --policy, and the base every policy
// file inherits its missing sections from. In words:
//
//   - every network (tcp, tcp4, tcp6, udp, udp4, udp6, unix, unixgram) may be used;
//   - Dial and SendTo may reach any address and any port: sockagent is a network test tool, and
//     what keeps strangers out is authentication (TLS client certificates, tokens) and the
//     agent listening on loopback by default;
//   - Listen, Bind and Dial's local_address may use any local address but not a privileged
//     port (1-1023), even when the agent runs as root; port 0 (the OS picks) is fine;
//   - UNIX socket paths must lie in the agent's socket directory ($SOCKETS: sockagent
//     --socket-dir, a directory only the agent's user may enter): a path elsewhere (/tmp, where
//     tmux, X11 and ssh-agent listen; /run/docker.sock; /var/run/...) and any abstract ("@name")
//     socket are refused, since other users' and local daemons' sockets live there and an agent
//     run as root would reach them for a caller who cannot;
//   - limits: for all callers together 4096 open sockets, 4096 concurrent blocking calls and
//     256 MiB of data held (Send and SendTo data being written, Recv and RecvFrom buffers
//     being filled, bytes kept from interrupted exact reads); per caller 1024 open sockets, 4 MiB
//     per Send, SendTo, Recv or RecvFrom, 256 concurrent blocking calls, 64 MiB of data held (a
//     quarter of the agent's, so one caller cannot starve the others) and 64 open sessions; per
//     session 256 open sockets, 64 concurrent blocking calls and 64 MiB of data held by its
//     calls.
const DefaultYAML = `# The policy of a sockagent started without --policy.
agent_limits:                  # all callers together
  sockets: 4096                # open sockets
  blocking_calls: 4096         # Dial, Accept, Send, Recv, SendTo, RecvFrom, Attach, Probe, Throughput in progress
  buffered_bytes: 268435456    # Send/SendTo data being written, Recv/RecvFrom buffers (256 MiB)
default:
  networks: [tcp, tcp4, tcp6, udp, udp4, udp6, unix, unixgram]
  destinations:                # Dial and SendTo: any address, any port
    allow:
      - {name: anywhere}
  local:                       # Listen, Bind, Dial's local_address
    allow:
      - {name: any local address}
    deny:
      - {name: privileged ports, ports: ["1-1023"]}
  unix_paths:                  # UNIX socket paths; abstract (@) names are refused
    allow: [$SOCKETS]          # the agent's socket directory (sockagent --socket-dir)
  limits:                      # per caller
    sockets: 1024
    bytes_per_call: 4194304
    blocking_calls: 256
    buffered_bytes: 67108864   # 64 MiB: this caller's share of agent_limits.buffered_bytes
    sessions: 64
  session_limits:              # per session (the sockagent-session header)
    sockets: 256
    blocking_calls: 64
    buffered_bytes: 67108864   # 64 MiB
`
