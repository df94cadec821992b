package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// ipTimeout bounds one `ip` command.
const ipTimeout = 10 * time.Second

// ip runs `ip ARGS...` and returns its stdout; a failure carries the command and its stderr.
func ip(ctx context.Context, log *slog.Logger, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, ipTimeout)
	defer cancel()
	log.Debug("run", "cmd", "ip "+strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, "ip", args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return nil, fmt.Errorf("ip not found: install iproute2: %w", err)
		}
		return nil, fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// ipRun runs several `ip` commands in order and stops at the first failure.
func ipRun(ctx context.Context, log *slog.Logger, cmds ...[]string) error {
	for _, args := range cmds {
		if _, err := ip(ctx, log, args...); err != nil {
			return err
		}
	}
	return nil
}

var quiet = slog.New(slog.DiscardHandler)

// listNamespaces returns the names `ip netns list` shows.
func listNamespaces(ctx context.Context) ([]string, error) {
	out, err := ip(ctx, quiet, "netns", "list")
	if err != nil {
		return nil, err
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		// "NAME" or "NAME (id: 3)"
		if name, _, _ := strings.Cut(strings.TrimSpace(line), " "); name != "" {
			names = append(names, name)
		}
	}
	return names, nil
}

// namespacePIDs returns the processes inside a namespace (`ip netns pids`).
func namespacePIDs(ctx context.Context, ns string) ([]int, error) {
	out, err := ip(ctx, quiet, "netns", "pids", ns)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if p, err := strconv.Atoi(f); err == nil {
			pids = append(pids, p)
		}
	}
	return pids, nil
}

type ipLink struct {
	Name     string `json:"ifname"`
	AddrInfo []struct {
		Family    string `json:"family"`
		Local     string `json:"local"`
		PrefixLen int    `json:"prefixlen"`
	} `json:"addr_info"`
}

// listLinks returns the names of the root namespace's links.
func listLinks(ctx context.Context) ([]string, error) {
	out, err := ip(ctx, quiet, "-j", "link", "show")
	if err != nil {
		return nil, err
	}
	var links []ipLink
	if err := json.Unmarshal(out, &links); err != nil {
		return nil, fmt.Errorf("ip -j link show: %w", err)
	}
	var names []string
	for _, l := range links {
		names = append(names, l.Name)
	}
	return names, nil
}

// linkGone reports whether a link no longer exists (deleting a veth end deletes its peer,
// and deleting a namespace deletes the veth inside it, so a second delete may find nothing).
func linkGone(ctx context.Context, name string) bool {
	_, err := ip(ctx, quiet, "link", "show", "dev", name)
	return err != nil
}

// checkSubnetFree fails with ErrSubnetInUse when an address or a route of the root namespace
// overlaps the subnet: another lab (or anything else) uses it, and packets would go astray.
func checkSubnetFree(ctx context.Context, subnet netip.Prefix, log *slog.Logger) error {
	out, err := ip(ctx, log, "-j", "addr", "show")
	if err != nil {
		return err
	}
	var links []ipLink
	if err := json.Unmarshal(out, &links); err != nil {
		return fmt.Errorf("ip -j addr show: %w", err)
	}
	for _, l := range links {
		for _, a := range l.AddrInfo {
			p, err := netip.ParsePrefix(fmt.Sprintf("%s/%d", a.Local, a.PrefixLen))
			if err == nil && p.Overlaps(subnet) {
				return fmt.Errorf("%w: %s overlaps %s on %s (another lab? salab down, or choose --subnet)", ErrSubnetInUse, subnet, p, l.Name)
			}
		}
	}
	out, err = ip(ctx, log, "-j", "-4", "route", "show", "table", "all")
	if err != nil {
		return err
	}
	var routes []struct {
		Dst string `json:"dst"`
		Dev string `json:"dev"`
	}
	if err := json.Unmarshal(out, &routes); err != nil {
		return fmt.Errorf("ip -j route show: %w", err)
	}
	for _, r := range routes {
		if r.Dst == "default" || r.Dst == "" {
			continue
		}
		dst := r.Dst
		if !strings.Contains(dst, "/") {
			dst += "/32"
		}
		p, err := netip.ParsePrefix(dst)
		if err == nil && p.Overlaps(subnet) {
			return fmt.Errorf("%w: route %s dev %s overlaps %s (choose --subnet)", ErrSubnetInUse, r.Dst, r.Dev, subnet)
		}
	}
	return nil
}

// CheckRoutes verifies that every host's address is reached over the lab's bridge from the
// root namespace. It fails when the lab is gone (or half gone): traffic meant for the lab
// would then take another route, such as the default one, off this machine.
func (l *Lab) CheckRoutes() error {
	var errs []error
	for _, h := range l.Hosts {
		out, err := ip(context.Background(), quiet, "-j", "route", "get", h.Addr.String())
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var routes []struct {
			Dev string `json:"dev"`
		}
		if err := json.Unmarshal(out, &routes); err != nil || len(routes) == 0 {
			errs = append(errs, fmt.Errorf("ip -j route get %s: %q: %v", h.Addr, out, err))
			continue
		}
		if routes[0].Dev != l.Bridge {
			errs = append(errs, fmt.Errorf("host %s (%s) is reached via %s, not the lab's bridge %s: is lab %s up?", h.Name, h.Addr, routes[0].Dev, l.Bridge, l.Prefix))
		}
	}
	return errors.Join(errs...)
}

// macOf is the lab's fixed MAC address of an IPv4 address: locally administered (02), then
// 5a, then the address, so every namespace can know every neighbour's link address in
// advance.
func macOf(a netip.Addr) string {
	b := a.As4()
	return fmt.Sprintf("02:5a:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3])
}

// ipBatch runs `ip [-n NS] -batch -` with lines on its standard input: one process for many
// commands.
func ipBatch(ctx context.Context, log *slog.Logger, ns string, lines []string) error {
	ctx, cancel := context.WithTimeout(ctx, ipTimeout)
	defer cancel()
	args := []string{"-batch", "-"}
	if ns != "" {
		args = append([]string{"-n", ns}, args...)
	}
	log.Debug("run", "cmd", "ip "+strings.Join(args, " "), "lines", len(lines))
	cmd := exec.CommandContext(ctx, "ip", args...)
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("ip %s (%d commands): %w: %s", strings.Join(args, " "), len(lines), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}
