// Package lab builds a small test network on one Linux machine: N hosts as network
// namespaces joined by veth pairs to a bridge in the root namespace, each with its own IPv4
// address and a sockagent process serving on ADDR:7700, so scenarios run across "hosts" with
// agents as separate processes. It needs root and iproute2 (`ip`).
//
// With the defaults (prefix "salab", subnet 10.77.0.0/24, 3 hosts):
//
//	root namespace   bridge salab-br 10.77.0.1/24
//	  salab-h1 (veth) <-> eth0 in namespace salab-h1, 10.77.0.2/24, agent 10.77.0.2:7700
//	  salab-h2 (veth) <-> eth0 in namespace salab-h2, 10.77.0.3/24, agent 10.77.0.3:7700
//	  salab-h3 (veth) <-> eth0 in namespace salab-h3, 10.77.0.4/24, agent 10.77.0.4:7700
//
// The hosts have no default route: they reach each other and the root namespace over the
// bridge, nothing else. Everything a lab creates is named from its prefix, so Teardown finds
// it again after a crash, without the state file. Link names are at most 15 bytes: a prefix
// longer than 10 bytes is shortened (4 bytes and a hash) for the link names only.
//
// The state (names, addresses, agent pids) and the agents' logs live in the state directory,
// /run/salab/PREFIX by default (os.TempDir()/salab/PREFIX when not root).
package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Defaults of Config.
const (
	DefaultPrefix    = "salab"
	DefaultHosts     = 3
	DefaultAgentPort = 7700
)

// DefaultSubnet is the lab's private range: the bridge takes .1, host i takes .(i+1).
var DefaultSubnet = netip.MustParsePrefix("10.77.0.0/24")

// Bounds of the waits Up and Down make; each polls an observable condition.
const (
	agentReadyTimeout = 15 * time.Second // every agent answers GetInfo over the bridge
	ringTimeout       = 3 * time.Second  // each host connects to the next over the bridge
	termTimeout       = 5 * time.Second  // agents exit after SIGTERM (then SIGKILL)
	killTimeout       = 3 * time.Second  // agents are gone after SIGKILL
	pollInterval      = 20 * time.Millisecond
)

// ErrSubnetInUse is returned (wrapped) by Up when an address of the subnet is already on an
// interface of the root namespace, such as another lab's bridge.
var ErrSubnetInUse = errors.New("subnet already in use")

// ErrBadConfig is returned (wrapped) by Up when the Config is wrong: a bad prefix, host
// count, name, subnet or port.
var ErrBadConfig = errors.New("bad lab configuration")

// Config says what lab Up builds. The zero value is a 3-host lab named "salab" on
// 10.77.0.0/24.
type Config struct {
	// Prefix names everything the lab creates: namespaces PREFIX-h1..., links and the
	// state directory. Lower-case letters, digits and '-', starting with a letter, at most
	// 32 bytes. Default "salab".
	Prefix string
	// Hosts is the number of hosts (namespaces with an agent each). Default 3.
	Hosts int
	// Names are the hosts' names in the inventory (default h1, h2, ...); if given, Hosts
	// defaults to len(Names). Namespaces are always PREFIX-h1, PREFIX-h2, ...
	Names []string
	// Subnet is the lab's IPv4 range; it must hold Hosts+1 addresses after the network
	// address. Default 10.77.0.0/24.
	Subnet netip.Prefix
	// AgentBin is the sockagent binary. If empty: built from the source tree when the
	// working directory is inside the sockagent module (go build into the state
	// directory), else "sockagent" looked up in PATH.
	AgentBin string
	// AgentArgs are extra flags for every agent (--listen, --log-format and --insecure are
	// set: a lab agent serves plaintext without tokens on its namespace address).
	AgentArgs []string
	// AgentPort is the port every agent serves on. Default 7700.
	AgentPort int
	// StateDir holds the state file, the agents' logs and a built agent. Default
	// /run/salab/PREFIX as root, else os.TempDir()/salab/PREFIX.
	StateDir string
	// Logger receives progress (Info) and every command run (Debug). Default: discard.
	Logger *slog.Logger
	// Labels are the hosts' labels by host name, written into the inventory for matrices
	// and selectors ({role: web}); see ParseLabels.
	Labels map[string]map[string]string
	// Attached makes every agent die with the thread that starts it (Linux's parent-death
	// signal) instead of outliving this process: for tests, whose crash must not leave
	// agents running. salab leaves it off, since its agents outlive `salab up`.
	Attached bool
}

// Host is one host of a lab.
type Host struct {
	Name      string     `json:"name"`       // inventory name: h1, h2, ... (or Config.Names)
	Namespace string     `json:"namespace"`  // network namespace: PREFIX-h1, ...
	Link      string     `json:"link"`       // the veth end in the root namespace, on the bridge
	Addr      netip.Addr `json:"addr"`       // the host's address (on eth0 in its namespace)
	AgentAddr string     `json:"agent_addr"` // HOST:PORT of its sockagent
	PID       int        `json:"pid"`        // the sockagent process
	Log       string     `json:"log"`        // the sockagent's stdout and stderr
	// Labels are the host's labels in the inventory.
	Labels map[string]string `json:"labels,omitempty"`
}

// Lab is a running lab, made by Up or read back by Open.
type Lab struct {
	Prefix     string       `json:"prefix"`
	Subnet     netip.Prefix `json:"subnet"`
	Bridge     string       `json:"bridge"`
	BridgeAddr netip.Addr   `json:"bridge_addr"`
	StateDir   string       `json:"state_dir"`
	AgentBin   string       `json:"agent_bin"`
	Hosts      []Host       `json:"hosts"`

	log   *slog.Logger
	procs map[int]*agentProc // agents this process started (Up), by pid
	mu    sync.Mutex
}

// stateFile is the name of the state file inside the state directory.
const stateFile = "state.json"

var (
	prefixRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)
	nameRE   = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]{0,31}$`)
)

// CheckPrefix reports whether prefix can name a lab.
func CheckPrefix(prefix string) error {
	if !prefixRE.MatchString(prefix) || strings.HasSuffix(prefix, "-") {
		return fmt.Errorf("prefix %q: use 1 to 32 lower-case letters, digits and '-', starting with a letter and not ending with '-'", prefix)
	}
	return nil
}

// linkBase is the start of the lab's link names: the prefix itself when short enough for
// "BASE-h999" to fit in 15 bytes, else its first 4 bytes and 6 hex digits of its hash.
func linkBase(prefix string) string {
	if len(prefix) <= 10 {
		return prefix
	}
	h := fnv.New32a()
	h.Write([]byte(prefix))
	return fmt.Sprintf("%s%06x", prefix[:4], h.Sum32()&0xffffff)
}

// BridgeName is the name of the lab's bridge for prefix: "salab-br" for "salab".
func BridgeName(prefix string) string { return linkBase(prefix) + "-br" }

func namespaceName(prefix string, i int) string { return fmt.Sprintf("%s-h%d", prefix, i) }
func linkName(prefix string, i int) string      { return fmt.Sprintf("%s-h%d", linkBase(prefix), i) }

// DefaultStateDir is where a lab with this prefix keeps its state unless told otherwise.
func DefaultStateDir(prefix string) string {
	if os.Geteuid() == 0 {
		if fi, err := os.Stat("/run"); err == nil && fi.IsDir() {
			return filepath.Join("/run/salab", prefix)
		}
	}
	return filepath.Join(os.TempDir(), "salab", prefix)
}

func (c *Config) setDefaults() error {
	if err := c.check(); err != nil {
		return fmt.Errorf("%w: %w", ErrBadConfig, err)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

func (c *Config) check() error {
	if runtime.GOOS != "linux" {
		return errors.New("a lab needs Linux (network namespaces)")
	}
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if err := CheckPrefix(c.Prefix); err != nil {
		return err
	}
	if c.Hosts == 0 {
		c.Hosts = len(c.Names)
		if c.Hosts == 0 {
			c.Hosts = DefaultHosts
		}
	}
	if c.Hosts < 1 || c.Hosts > 250 {
		return fmt.Errorf("hosts %d: give 1 to 250", c.Hosts)
	}
	if len(c.Names) > 0 && len(c.Names) != c.Hosts {
		return fmt.Errorf("%d names for %d hosts", len(c.Names), c.Hosts)
	}
	seen := map[string]bool{}
	for _, n := range c.Names {
		if !nameRE.MatchString(n) || seen[n] {
			return fmt.Errorf("host name %q: use a letter, then letters, digits, '_' or '-', each name once", n)
		}
		seen[n] = true
	}
	if !c.Subnet.IsValid() {
		c.Subnet = DefaultSubnet
	}
	c.Subnet = c.Subnet.Masked()
	if !c.Subnet.Addr().Is4() {
		return fmt.Errorf("subnet %s: give an IPv4 range such as 10.77.0.0/24", c.Subnet)
	}
	if bits := 32 - c.Subnet.Bits(); bits < 31 && 1<<bits < c.Hosts+3 || bits < 2 {
		return fmt.Errorf("subnet %s is too small for %d hosts and a bridge", c.Subnet, c.Hosts)
	}
	if c.AgentPort == 0 {
		c.AgentPort = DefaultAgentPort
	}
	if c.AgentPort < 1 || c.AgentPort > 65535 {
		return fmt.Errorf("agent port %d: give 1 to 65535", c.AgentPort)
	}
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir(c.Prefix)
	}
	return nil
}

// nthAddr is the n-th address after the subnet's network address.
func nthAddr(p netip.Prefix, n int) netip.Addr {
	a := p.Addr()
	for range n {
		a = a.Next()
	}
	return a
}

// Up builds a lab: it first removes whatever a lab of the same prefix left (Teardown), then
// creates the bridge, one namespace and veth pair per host, starts a sockagent in each
// namespace, waits until every agent answers GetInfo over the bridge, and checks that each
// host reaches the next one (h1 -> h2 -> ... -> h1) through its agent. The agents are
// detached (own session) and outlive this process; Down or Teardown stops them. On error
// Up removes what it made.
func Up(ctx context.Context, cfg Config) (*Lab, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if cfg.AgentBin != "" { // a wrong path fails before the lab of the same prefix goes
		bin, err := agentBinary(ctx, cfg.AgentBin, "", log)
		if err != nil {
			return nil, err
		}
		cfg.AgentBin = bin
	}
	if err := Teardown(cfg.Prefix, cfg.StateDir, log); err != nil {
		return nil, fmt.Errorf("remove the previous lab %s: %w", cfg.Prefix, err)
	}
	if err := checkSubnetFree(ctx, cfg.Subnet, log); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.StateDir, 0o755); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	l := &Lab{
		Prefix:     cfg.Prefix,
		Subnet:     cfg.Subnet,
		Bridge:     BridgeName(cfg.Prefix),
		BridgeAddr: nthAddr(cfg.Subnet, 1),
		StateDir:   cfg.StateDir,
		log:        log,
		procs:      map[int]*agentProc{},
	}
	for i := 1; i <= cfg.Hosts; i++ {
		name := fmt.Sprintf("h%d", i)
		if len(cfg.Names) > 0 {
			name = cfg.Names[i-1]
		}
		addr := nthAddr(cfg.Subnet, i+1)
		l.Hosts = append(l.Hosts, Host{
			Name:      name,
			Namespace: namespaceName(cfg.Prefix, i),
			Link:      linkName(cfg.Prefix, i),
			Addr:      addr,
			AgentAddr: netip.AddrPortFrom(addr, uint16(cfg.AgentPort)).String(),
			Log:       filepath.Join(cfg.StateDir, name+".log"),
			Labels:    cfg.Labels[name],
		})
	}
	if err := l.build(ctx, cfg); err != nil {
		if derr := l.Down(); derr != nil {
			err = fmt.Errorf("%w (and removing the half-made lab: %v)", err, derr)
		}
		return nil, err
	}
	return l, nil
}

func (l *Lab) build(ctx context.Context, cfg Config) error {
	// A state file from the start, so Teardown can find the agents' pids even after a crash
	// half-way through.
	if err := l.save(); err != nil {
		return err
	}
	bin, err := agentBinary(ctx, cfg.AgentBin, l.StateDir, l.log)
	if err != nil {
		return err
	}
	l.AgentBin = bin
	l.log.Info("creating bridge", "bridge", l.Bridge, "addr", netip.PrefixFrom(l.BridgeAddr, l.Subnet.Bits()))
	if err := ipRun(ctx, l.log,
		[]string{"link", "add", l.Bridge, "address", macOf(l.BridgeAddr), "type", "bridge", "stp_state", "0", "forward_delay", "0"},
		[]string{"addr", "add", netip.PrefixFrom(l.BridgeAddr, l.Subnet.Bits()).String(), "dev", l.Bridge},
		[]string{"link", "set", l.Bridge, "up"},
	); err != nil {
		return err
	}
	for _, h := range l.Hosts {
		l.log.Info("creating host", "host", h.Name, "netns", h.Namespace, "link", h.Link, "addr", h.Addr)
		if err := ipRun(ctx, l.log,
			[]string{"netns", "add", h.Namespace},
			[]string{"link", "add", h.Link, "type", "veth", "peer", "name", "eth0", "address", macOf(h.Addr), "netns", h.Namespace},
			[]string{"link", "set", h.Link, "master", l.Bridge},
			[]string{"link", "set", h.Link, "up"},
			[]string{"-n", h.Namespace, "addr", "add", netip.PrefixFrom(h.Addr, l.Subnet.Bits()).String(), "dev", "eth0"},
			[]string{"-n", h.Namespace, "link", "set", "eth0", "up"},
			[]string{"-n", h.Namespace, "link", "set", "lo", "up"},
		); err != nil {
			return err
		}
	}
	if err := l.staticNeighbours(ctx); err != nil {
		return err
	}
	for i := range l.Hosts {
		h := &l.Hosts[i]
		p, err := startAgent(l.AgentBin, h.Namespace, h.AgentAddr, h.Log, cfg.AgentArgs, cfg.Attached, l.log)
		if err != nil {
			return fmt.Errorf("host %s: %w", h.Name, err)
		}
		h.PID = p.pid
		l.mu.Lock()
		l.procs[p.pid] = p
		l.mu.Unlock()
	}
	if err := l.save(); err != nil {
		return err
	}
	var wg sync.WaitGroup
	errs := make([]error, len(l.Hosts))
	for i, h := range l.Hosts {
		wg.Go(func() {
			l.mu.Lock()
			p := l.procs[h.PID]
			l.mu.Unlock()
			if err := waitAgent(ctx, h, p, agentReadyTimeout); err != nil {
				errs[i] = fmt.Errorf("host %s: %w", h.Name, err)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := l.CheckRoutes(); err != nil {
		return err
	}
	if err := checkRing(ctx, l.Hosts, ringTimeout); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(l.StateDir, "inventory.yaml"), []byte(l.Inventory()), 0o644); err != nil {
		return fmt.Errorf("write inventory: %w", err)
	}
	l.log.Info("lab up", "prefix", l.Prefix, "hosts", len(l.Hosts), "state", l.StateDir)
	return nil
}

func (l *Lab) save() error {
	data, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(l.StateDir, stateFile), append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}

// Open reads back the lab a previous Up (maybe in another process) left in stateDir ("" for
// DefaultStateDir(prefix)). The Lab it returns can Cut, Heal, Inventory and Down.
func Open(prefix, stateDir string) (*Lab, error) {
	if err := CheckPrefix(prefix); err != nil {
		return nil, err
	}
	if stateDir == "" {
		stateDir = DefaultStateDir(prefix)
	}
	data, err := os.ReadFile(filepath.Join(stateDir, stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no lab %q: %s not found (salab up --prefix %s makes one)", prefix, filepath.Join(stateDir, stateFile), prefix)
	}
	if err != nil {
		return nil, err
	}
	l := &Lab{log: slog.New(slog.DiscardHandler), procs: map[int]*agentProc{}}
	if err := json.Unmarshal(data, l); err != nil {
		return nil, fmt.Errorf("read %s: %w", filepath.Join(stateDir, stateFile), err)
	}
	if l.Prefix != prefix {
		return nil, fmt.Errorf("%s belongs to lab %q, not %q", filepath.Join(stateDir, stateFile), l.Prefix, prefix)
	}
	return l, nil
}

// SetLogger sets where the lab reports what it does (Down, Cut, Heal).
func (l *Lab) SetLogger(log *slog.Logger) {
	if log != nil {
		l.log = log
	}
}

// Host returns the host with this inventory name ("h2"), or namespace name.
func (l *Lab) Host(name string) (Host, bool) {
	for _, h := range l.Hosts {
		if h.Name == name || h.Namespace == name {
			return h, true
		}
	}
	return Host{}, false
}

func (l *Lab) hostNames() string {
	var names []string
	for _, h := range l.Hosts {
		names = append(names, h.Name)
	}
	return strings.Join(names, ", ")
}

// Cut sets the host's link down at the bridge (the veth end in the root namespace): the
// host keeps running, its agent and sockets stay, but no packet reaches it or leaves it
// until Heal.
func (l *Lab) Cut(host string) error { return l.setLink(host, "down") }

// Heal sets the host's link up again after Cut.
func (l *Lab) Heal(host string) error { return l.setLink(host, "up") }

func (l *Lab) setLink(host, state string) error {
	h, ok := l.Host(host)
	if !ok {
		return fmt.Errorf("lab %s has no host %q (its hosts: %s)", l.Prefix, host, l.hostNames())
	}
	l.log.Info("link "+state, "host", h.Name, "link", h.Link)
	return ipRun(context.Background(), l.log, []string{"link", "set", h.Link, state})
}

// Inventory is the lab's agents as YAML, the format `sockctl run --inventory FILE` reads:
//
//	# salab PREFIX: 3 hosts
//	agents:
//	  h1: 10.77.0.2:7700
//	  h2: {address: 10.77.0.3:7700, labels: {role: db}}
func (l *Lab) Inventory() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# salab %s: %d hosts\nagents:\n", l.Prefix, len(l.Hosts))
	for _, h := range l.Hosts {
		if len(h.Labels) == 0 {
			fmt.Fprintf(&b, "  %s: %s\n", h.Name, h.AgentAddr)
			continue
		}
		keys := make([]string, 0, len(h.Labels))
		for k := range h.Labels {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		labels := make([]string, len(keys))
		for i, k := range keys {
			labels[i] = k + ": " + h.Labels[k]
		}
		fmt.Fprintf(&b, "  %s: {address: %s, labels: {%s}}\n", h.Name, h.AgentAddr, strings.Join(labels, ", "))
	}
	return b.String()
}

// Down stops the agents and removes the namespaces, links, bridge and state of the lab.
// It is idempotent.
func (l *Lab) Down() error {
	l.mu.Lock()
	procs := maps.Clone(l.procs)
	l.mu.Unlock()
	var pids []int
	for _, h := range l.Hosts {
		if h.PID > 0 {
			pids = append(pids, h.PID)
		}
	}
	return teardown(l.Prefix, l.StateDir, l.Hosts, pids, procs, l.log)
}

// Teardown removes every trace of the lab with this prefix, with or without its state file:
// it stops the processes inside the namespaces PREFIX-h<N> (and the agents the state file
// names), deletes those namespaces, the links BASE-h<N> and the bridge, and the state
// directory's files ("" for DefaultStateDir(prefix)). Nothing is an error when absent.
func Teardown(prefix, stateDir string, log *slog.Logger) error {
	if err := CheckPrefix(prefix); err != nil {
		return err
	}
	if stateDir == "" {
		stateDir = DefaultStateDir(prefix)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var hosts []Host
	var pids []int
	if l, err := Open(prefix, stateDir); err == nil {
		hosts = l.Hosts
		for _, h := range l.Hosts {
			if h.PID > 0 {
				pids = append(pids, h.PID)
			}
		}
	}
	return teardown(prefix, stateDir, hosts, pids, nil, log)
}

func teardown(prefix, stateDir string, hosts []Host, statePIDs []int, procs map[int]*agentProc, log *slog.Logger) error {
	ctx := context.Background()
	var errs []error
	nsRE := regexp.MustCompile(`^` + regexp.QuoteMeta(prefix) + `-h[0-9]+$`)
	namespaces, err := listNamespaces(ctx)
	if err != nil {
		errs = append(errs, err)
	}
	namespaces = slices.DeleteFunc(namespaces, func(n string) bool { return !nsRE.MatchString(n) })

	// The processes to stop: everything inside our namespaces, and the agents of the state
	// file that still run as agents of this lab (a pid may have been reused since).
	victims := map[int]bool{}
	for _, ns := range namespaces {
		pids, err := namespacePIDs(ctx, ns)
		if err != nil {
			errs = append(errs, err)
		}
		for _, p := range pids {
			victims[p] = true
		}
	}
	for _, p := range statePIDs {
		for _, h := range hosts {
			if h.PID == p && isAgentOf(p, h.AgentAddr) {
				victims[p] = true
			}
		}
	}
	if len(victims) > 0 {
		pids := make([]int, 0, len(victims))
		for p := range victims {
			pids = append(pids, p)
		}
		slices.Sort(pids)
		log.Info("stopping agents", "pids", pids)
		if err := stopProcesses(pids, procs); err != nil {
			errs = append(errs, err)
		}
	}
	for _, ns := range namespaces {
		log.Info("deleting namespace", "netns", ns)
		if err := ipRun(ctx, log, []string{"netns", "del", ns}); err != nil {
			errs = append(errs, err)
		}
	}
	linkRE := regexp.MustCompile(`^` + regexp.QuoteMeta(linkBase(prefix)) + `-(h[0-9]+|br)$`)
	links, err := listLinks(ctx)
	if err != nil {
		errs = append(errs, err)
	}
	for _, ln := range links {
		if !linkRE.MatchString(ln) {
			continue
		}
		log.Info("deleting link", "link", ln)
		if err := ipRun(ctx, log, []string{"link", "del", ln}); err != nil && !linkGone(ctx, ln) {
			errs = append(errs, err)
		}
	}
	if err := removeState(stateDir, hosts); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// removeState deletes the files a lab writes into its state directory, then the directory if
// it is empty; never anything else.
func removeState(dir string, hosts []Host) error {
	names := []string{stateFile, "inventory.yaml", "sockagent"}
	for _, h := range hosts {
		names = append(names, filepath.Base(h.Log))
	}
	if ents, err := os.ReadDir(dir); err == nil {
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), ".log") {
				names = append(names, e.Name())
			}
		}
	}
	var errs []error
	for _, h := range hosts {
		if err := os.RemoveAll(socketDirOf(h.Log)); err != nil {
			errs = append(errs, err)
		}
	}
	for _, n := range names {
		if err := os.Remove(filepath.Join(dir, n)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	// A directory the user also keeps other files in stays.
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, syscall.ENOTEMPTY) && !errors.Is(err, syscall.EEXIST) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Leftovers lists what of the lab with this prefix still exists: namespaces and links, by
// name. After Down or Teardown it is empty.
func Leftovers(prefix string) ([]string, error) {
	ctx := context.Background()
	nsRE := regexp.MustCompile(`^` + regexp.QuoteMeta(prefix) + `-h[0-9]+$`)
	linkRE := regexp.MustCompile(`^` + regexp.QuoteMeta(linkBase(prefix)) + `-(h[0-9]+|br)$`)
	var out []string
	nss, err := listNamespaces(ctx)
	if err != nil {
		return nil, err
	}
	for _, n := range nss {
		if nsRE.MatchString(n) {
			out = append(out, "netns "+n)
		}
	}
	links, err := listLinks(ctx)
	if err != nil {
		return nil, err
	}
	for _, n := range links {
		if linkRE.MatchString(n) {
			out = append(out, "link "+n)
		}
	}
	return out, nil
}

// Labs lists the prefixes of the labs whose namespaces exist (PREFIX-h<N>).
func Labs() ([]string, error) {
	nss, err := listNamespaces(context.Background())
	if err != nil {
		return nil, err
	}
	re := regexp.MustCompile(`^([a-z][a-z0-9-]*)-h[0-9]+$`)
	var out []string
	for _, n := range nss {
		if m := re.FindStringSubmatch(n); m != nil && !slices.Contains(out, m[1]) {
			out = append(out, m[1])
		}
	}
	slices.Sort(out)
	return out, nil
}

// staticNeighbours gives every namespace (and the root namespace, on the bridge) a permanent
// neighbour entry for every other address of the lab, with the MACs the lab set (macOf). A
// lab of a hundred hosts whose agents all contact each other at once would otherwise send
// thousands of ARP requests in a burst, each flooded to every port of the bridge: the
// kernel's backlog (net.core.netdev_max_backlog) overflows and packets are lost, which a
// connectivity matrix would report as the network's verdict.
func (l *Lab) staticNeighbours(ctx context.Context) error {
	entry := func(a netip.Addr, dev string) string {
		return fmt.Sprintf("neigh replace %s lladdr %s dev %s nud permanent", a, macOf(a), dev)
	}
	root := make([]string, 0, len(l.Hosts))
	for _, h := range l.Hosts {
		root = append(root, entry(h.Addr, l.Bridge))
	}
	if err := ipBatch(ctx, l.log, "", root); err != nil {
		return err
	}
	errs := make([]error, len(l.Hosts))
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i, h := range l.Hosts {
		lines := []string{entry(l.BridgeAddr, "eth0")}
		for _, o := range l.Hosts {
			if o.Addr != h.Addr {
				lines = append(lines, entry(o.Addr, "eth0"))
			}
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = ipBatch(ctx, l.log, h.Namespace, lines)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("static neighbour entries: %w", err)
	}
	n := len(l.Hosts) * len(l.Hosts)
	l.log.Info("static neighbour entries: no ARP in the lab", "entries", n, "hosts", len(l.Hosts),
		"why", "a burst of first contacts would flood the bridge with ARP and overflow the kernel's backlog")
	return nil
}

// ParseLabels reads salab's --labels: comma-separated HOSTS:KEY=VALUE items, where HOSTS is a
// host name, a range of numbered names (h1-h50) or * for every host; a host named by several
// items gets all their labels, the last value of a key winning. names are the lab's hosts.
func ParseLabels(spec string, names []string) (map[string]map[string]string, error) {
	out := map[string]map[string]string{}
	for _, item := range strings.Split(spec, ",") {
		item = strings.TrimSpace(item)
		hosts, kv, ok := strings.Cut(item, ":")
		k, v, ok2 := strings.Cut(kv, "=")
		if !ok || !ok2 || !labelRE.MatchString(k) || !labelValueRE.MatchString(v) {
			return nil, fmt.Errorf("--labels item %q: write HOSTS:KEY=VALUE, such as h1-h50:role=web (KEY a letter then letters, digits, '_', '.' or '-'; VALUE letters, digits, '_', '.' or '-')", item)
		}
		picked, err := pickHosts(hosts, names)
		if err != nil {
			return nil, fmt.Errorf("--labels item %q: %w", item, err)
		}
		for _, n := range picked {
			if out[n] == nil {
				out[n] = map[string]string{}
			}
			out[n][k] = v
		}
	}
	return out, nil
}

var (
	labelRE      = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]{0,62}$`)
	labelValueRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,63}$`)
	rangeRE      = regexp.MustCompile(`^([A-Za-z_-]*)(\d+)-([A-Za-z_-]*)(\d+)$`)
)

// pickHosts returns the names a HOSTS part of --labels picks: *, a name, or a range.
func pickHosts(hosts string, names []string) ([]string, error) {
	if hosts == "*" {
		return names, nil
	}
	if slices.Contains(names, hosts) {
		return []string{hosts}, nil
	}
	m := rangeRE.FindStringSubmatch(hosts)
	if m == nil || m[1] != m[3] {
		return nil, fmt.Errorf("no host %q (hosts: %s; a range is h1-h50)", hosts, strings.Join(names, ", "))
	}
	lo, _ := strconv.Atoi(m[2])
	hi, _ := strconv.Atoi(m[4])
	var out []string
	for i := lo; i <= hi && i-lo < 100_000; i++ {
		n := fmt.Sprintf("%s%d", m[1], i)
		if !slices.Contains(names, n) {
			return nil, fmt.Errorf("range %s: no host %q (hosts: %s)", hosts, n, strings.Join(names, ", "))
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("range %s is empty: give the lower number first", hosts)
	}
	return out, nil
}
