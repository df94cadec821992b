package ctl

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
	"golang.org/x/sync/errgroup"

	"github.com/sockagent/sockagent/ctl/client"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// Discovered inventories: --inventory takes, beside a file,
//
//	dns:NAME[:PORT]   every A and AAAA record of NAME is an agent on PORT (default 7700): a
//	                  Kubernetes headless Service
//	dns+srv:NAME      every SRV record of NAME gives an agent's host and port
//	list:ADDR,ADDR    these addresses
//
// Each agent found is asked for GetInfo and named by the host name it reports (NAME-2, NAME-3
// when several report the same), carrying the labels it was started with (sockagent --label).
const (
	defaultDiscoveryPort = 7700
	maxDiscovered        = 4096 // agents one inventory may name
	discoverParallel     = 32   // GetInfo calls at once
)

// discoveryTimeout bounds the DNS lookup, and then each GetInfo, of a discovered inventory.
var discoveryTimeout = 5 * time.Second

// isDiscovered reports whether --inventory names a discovery rather than a file.
func isDiscovered(spec string) bool {
	for _, p := range []string{"dns:", "dns+srv:", "list:"} {
		if strings.HasPrefix(spec, p) {
			return true
		}
	}
	return false
}

// loadInventory reads --inventory: a file, or a discovery (isDiscovered).
func (a *app) loadInventory(spec string) (*inventoryFile, error) {
	if !isDiscovered(spec) {
		return readInventoryFile(spec)
	}
	ctx, cancel := context.WithTimeout(context.Background(), discoveryTimeout)
	addrs, err := a.discoverAddrs(ctx, spec)
	cancel()
	if err != nil {
		return nil, err
	}
	return a.nameAgents(addrs), nil
}

// resolver is the system's, or one that asks --dns-server.
func (a *app) resolver() *net.Resolver {
	if a.dnsServer == "" {
		return net.DefaultResolver
	}
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, network, a.dnsServer)
		if err == nil {
			// Go's resolver finishes a lookup after its caller gave up (others may share it):
			// the deadline ends a silent server's exchange with the discovery, not later.
			_ = c.SetDeadline(time.Now().Add(discoveryTimeout))
		}
		return c, err
	}}
}

// discoverAddrs turns a discovery into agent addresses, in the order DNS gave them.
func (a *app) discoverAddrs(ctx context.Context, spec string) ([]string, error) {
	var addrs []string
	switch {
	case strings.HasPrefix(spec, "list:"):
		for _, addr := range strings.Split(strings.TrimPrefix(spec, "list:"), ",") {
			if _, _, err := net.SplitHostPort(addr); err != nil {
				return nil, usagef("--inventory %s: %q is not HOST:PORT", spec, addr)
			}
			addrs = append(addrs, addr)
		}
	case strings.HasPrefix(spec, "dns+srv:"):
		name := strings.TrimPrefix(spec, "dns+srv:")
		if name == "" {
			return nil, usagef("--inventory dns+srv:NAME: give the SRV name, such as _grpc._tcp.sockagent.sockagent.svc.cluster.local")
		}
		_, srvs, err := a.resolver().LookupSRV(ctx, "", "", name)
		if err != nil {
			return nil, dnsFailure(spec, err)
		}
		// Each target is resolved here, with the same resolver, so the agents are dialled
		// at the addresses this DNS gave (--dns-server), not re-resolved elsewhere.
		for _, s := range srvs {
			ips, err := a.resolver().LookupIPAddr(ctx, s.Target)
			if err != nil {
				return nil, dnsFailure(spec+" (target "+s.Target+")", err)
			}
			for _, ip := range ips {
				addrs = append(addrs, net.JoinHostPort(ip.IP.String(), strconv.Itoa(int(s.Port))))
			}
		}
	default:
		name, port := strings.TrimPrefix(spec, "dns:"), defaultDiscoveryPort
		if i := strings.LastIndexByte(name, ':'); i >= 0 {
			p, err := strconv.Atoi(name[i+1:])
			if err != nil || p < 1 || p > 65535 {
				return nil, usagef("--inventory %s: port %q: give 1 to 65535", spec, name[i+1:])
			}
			name, port = name[:i], p
		}
		if name == "" {
			return nil, usagef("--inventory dns:NAME[:PORT]: give the name, such as sockagent.sockagent.svc.cluster.local")
		}
		ips, err := a.resolver().LookupIPAddr(ctx, name)
		if err != nil {
			return nil, dnsFailure(spec, err)
		}
		for _, ip := range ips {
			addrs = append(addrs, net.JoinHostPort(ip.IP.String(), strconv.Itoa(port)))
		}
	}
	if len(addrs) == 0 {
		return nil, &failure{err: fmt.Errorf("--inventory %s: no agents found", spec)}
	}
	if len(addrs) > maxDiscovered {
		return nil, &failure{err: fmt.Errorf("--inventory %s: %d agents found; at most %d", spec, len(addrs), maxDiscovered)}
	}
	return addrs, nil
}

// dnsFailure says why a lookup failed and what to check.
func dnsFailure(spec string, err error) error {
	var de *net.DNSError
	switch {
	case errors.As(err, &de) && de.IsNotFound:
		return &failure{err: fmt.Errorf("--inventory %s: no such name (NXDOMAIN), or no records of that type: check the name (a headless Service is NAME.NAMESPACE.svc.cluster.local)", spec)}
	case errors.As(err, &de) && de.IsTimeout, errors.Is(err, context.DeadlineExceeded):
		return &failure{err: fmt.Errorf("--inventory %s: the DNS server did not answer within %s: check --dns-server or the system's resolver", spec, discoveryTimeout)}
	}
	return &failure{err: fmt.Errorf("--inventory %s: %w", spec, err)}
}

// nameAgents asks every address for GetInfo at once (bounded) and names each by its host name,
// with its labels; an agent that does not answer keeps its address as its name, so the
// command using the inventory reports it as unreachable.
func (a *app) nameAgents(addrs []string) *inventoryFile {
	type found struct {
		host   string
		labels map[string]string
	}
	res := make([]found, len(addrs))
	var g errgroup.Group
	g.SetLimit(discoverParallel)
	for i, addr := range addrs {
		g.Go(func() error {
			res[i].host, res[i].labels = a.agentIdentity(addr)
			return nil
		})
	}
	_ = g.Wait() // every answer goes into res
	inv := &inventoryFile{Agents: map[string]inventoryEntry{}}
	for i, addr := range addrs {
		base := res[i].host
		if base == "" {
			base = addr
		}
		name := base
		for n := 2; ; n++ {
			if _, taken := inv.Agents[name]; !taken {
				break
			}
			name = fmt.Sprintf("%s-%d", base, n)
		}
		inv.Agents[name] = inventoryEntry{Address: addr, Labels: res[i].labels}
	}
	return inv
}

// agentIdentity is the host name and labels addr's agent reports; "" when it does not answer.
func (a *app) agentIdentity(addr string) (string, map[string]string) {
	conn, err := client.Dial(addr, a.dialOptions())
	if err != nil {
		return "", nil
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), discoveryTimeout)
	defer cancel()
	info, err := sockagentv1.NewAgentServiceClient(conn).GetInfo(ctx, &sockagentv1.GetInfoRequest{})
	if err != nil {
		return "", nil
	}
	return info.GetHostname(), info.GetLabels()
}

// discoverCommand prints the inventory a discovery finds, as a file --inventory reads.
func (a *app) discoverCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "discover SPEC",
		Short: "Find agents by DNS (or a list) and print them as an inventory",
		Long: `Discover finds agents the way --inventory does when given a discovery instead of a
file, and prints the inventory it found (YAML, as --inventory reads it):

  dns:NAME[:PORT]   every A and AAAA record of NAME is an agent on PORT (default 7700), as a
                    Kubernetes headless Service gives
  dns+srv:NAME      every SRV record of NAME gives an agent's host and port
  list:ADDR,ADDR    these addresses

Each agent is asked for GetInfo (with the global credential flags) and named by its host name
(NAME-2, NAME-3 for repeats), carrying the labels it was started with (sockagent --label); one
that does not answer is named by its address. --dns-server asks that server instead of the
system's resolver. Exit status: 0 found, 1 nothing found or DNS failed, 2 bad input.`,
		Example: `  sockctl discover dns:sockagent.sockagent.svc.cluster.local
  sockctl discover dns+srv:_grpc._tcp.sockagent.sockagent.svc.cluster.local --token-file t
  sockctl matrix web.yaml --inventory dns:sockagent.sockagent.svc.cluster.local`,
		Args: args(1, "SPEC"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			if !isDiscovered(argv[0]) {
				return usagef("discover %q: give dns:NAME[:PORT], dns+srv:NAME or list:ADDR,ADDR", argv[0])
			}
			inv, err := a.loadInventory(argv[0])
			if err != nil {
				return err
			}
			names := make([]string, 0, len(inv.Agents))
			for n := range inv.Agents {
				names = append(names, n)
			}
			slices.Sort(names)
			var b strings.Builder
			b.WriteString("agents:\n")
			for _, n := range names {
				e := inv.Agents[n]
				entry := map[string]any{"address": e.Address}
				if len(e.Labels) > 0 {
					entry["labels"] = e.Labels
				}
				line, err := yaml.Marshal(map[string]any{n: entry})
				if err != nil {
					return err
				}
				b.WriteString("  " + strings.TrimSuffix(strings.ReplaceAll(string(line), "\n", "\n  "), "  "))
			}
			a.out.printf("%s", b.String())
			return nil
		},
	}
}
