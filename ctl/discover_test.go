package ctl

import (
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/sockagent/sockagent/agent"
)

// testDNS is a DNS server on 127.0.0.1 (UDP) answering from records; names it has no record
// for are NXDOMAIN, and "silent." never gets an answer.
func testDNS(t *testing.T, records map[string][]dns.RR) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		q := r.Question[0]
		if q.Name == "silent.test." {
			return // a server that never answers: the lookup times out
		}
		m := new(dns.Msg)
		m.SetReply(r)
		m.Authoritative = true
		found := false
		for _, rr := range records[q.Name] {
			if rr.Header().Rrtype == q.Qtype {
				m.Answer = append(m.Answer, rr)
			}
			found = true
		}
		if !found {
			m.Rcode = dns.RcodeNameError
		}
		_ = w.WriteMsg(m)
	})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go func() { _ = srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { _ = srv.Shutdown() })
	return pc.LocalAddr().String()
}

func rr(t *testing.T, s string) dns.RR {
	t.Helper()
	r, err := dns.NewRR(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// discoveryAgents starts in-process agents on 127.0.0.1:P, 127.0.0.2:P and [::1]:P (one port
// P, as a headless Service gives), each with its own labels.
func discoveryAgents(t *testing.T) (port int) {
	t.Helper()
	for range 20 {
		l1, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port = l1.Addr().(*net.TCPAddr).Port
		l2, err2 := net.Listen("tcp", net.JoinHostPort("127.0.0.2", strconv.Itoa(port)))
		l3, err3 := net.Listen("tcp", net.JoinHostPort("::1", strconv.Itoa(port)))
		if err2 != nil || err3 != nil {
			l1.Close()
			if l2 != nil {
				l2.Close()
			}
			if l3 != nil {
				l3.Close()
			}
			continue
		}
		serveAgentConfig(t, l1, agent.Config{Labels: map[string]string{"zone": "a"}})
		serveAgentConfig(t, l2, agent.Config{Labels: map[string]string{"zone": "b"}})
		serveAgentConfig(t, l3, agent.Config{Labels: map[string]string{"zone": "c", "ip": "v6"}})
		return port
	}
	t.Fatal("no port free on 127.0.0.1, 127.0.0.2 and ::1 at once")
	return 0
}

// TestDiscover: dns:NAME finds every A and AAAA record's agent, dns+srv:NAME every SRV
// target's, list: the addresses given; each is named by its host name (repeats numbered) with
// the labels its agent reports; NXDOMAIN, a silent server and no answer at all are failures
// that say what to check.
func TestDiscover(t *testing.T) {
	port := discoveryAgents(t)
	p := strconv.Itoa(port)
	server := testDNS(t, map[string][]dns.RR{
		"agents.test.": {rr(t, "agents.test. 5 IN A 127.0.0.1"), rr(t, "agents.test. 5 IN A 127.0.0.2"), rr(t, "agents.test. 5 IN AAAA ::1")},
		"_grpc._tcp.agents.test.": {rr(t, "_grpc._tcp.agents.test. 5 IN SRV 0 0 "+p+" one.test."),
			rr(t, "_grpc._tcp.agents.test. 5 IN SRV 0 0 "+p+" two.test.")},
		"one.test.":   {rr(t, "one.test. 5 IN A 127.0.0.1")},
		"two.test.":   {rr(t, "two.test. 5 IN A 127.0.0.2")},
		"empty.test.": {rr(t, "empty.test. 5 IN TXT nothing")},
	})
	host, err := os.Hostname()
	if err != nil || host == "" {
		t.Fatalf("hostname: %q %v", host, err)
	}
	run := func(args ...string) result {
		return invocation{args: append([]string{"--dns-server", server}, args...)}.exec(t)
	}
	labelsOf := func(out string) map[string]int {
		n := map[string]int{}
		for _, z := range []string{"zone: a", "zone: b", "zone: c"} {
			n[z] = strings.Count(out, z)
		}
		return n
	}

	r := run("discover", "dns:agents.test:"+p)
	if r.code != ExitOK {
		t.Fatalf("discover dns: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"127.0.0.1:" + p, "127.0.0.2:" + p, "[::1]:" + p, host + ":", host + "-2:", host + "-3:", "ip: v6"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("discover dns: no %q in\n%s", want, r.stdout)
		}
	}
	if n := labelsOf(r.stdout); n["zone: a"] != 1 || n["zone: b"] != 1 || n["zone: c"] != 1 {
		t.Errorf("discover dns: labels %v, want each zone once\n%s", n, r.stdout)
	}

	r = run("discover", "dns+srv:_grpc._tcp.agents.test")
	if r.code != ExitOK || !strings.Contains(r.stdout, "address: 127.0.0.1:"+p) || !strings.Contains(r.stdout, "address: 127.0.0.2:"+p) || strings.Contains(r.stdout, "::1") {
		t.Errorf("discover dns+srv: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if n := labelsOf(r.stdout); n["zone: a"] != 1 || n["zone: b"] != 1 || n["zone: c"] != 0 {
		t.Errorf("discover dns+srv: labels %v, want zones a and b\n%s", n, r.stdout)
	}

	r = run("discover", "list:127.0.0.2:"+p+","+closedPort(t))
	if r.code != ExitOK || !strings.Contains(r.stdout, "zone: b") || strings.Count(r.stdout, "address:") != 2 {
		t.Errorf("discover list: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// The inventory works where a file does: a matrix over the discovered agents. The served
	// port is one the kernel had free on the target's own address (a port free on 127.0.0.1
	// may be another test's connection on 127.0.0.2: "address already in use").
	_, sport, _ := net.SplitHostPort(closedPortOn(t, "127.0.0.2"))
	mfile := writeFile(t, t.TempDir(), "m.yaml", "name: discovered\nservices:\n  s: {network: tcp, port: "+sport+"}\nsources: [{zone: a}]\ntargets: [{zone: b}]\nexpect: {default: open}\n")
	if r := run("matrix", mfile, "--inventory", "dns:agents.test:"+p); r.code != ExitOK {
		t.Errorf("matrix over a discovered inventory: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	old := discoveryTimeout
	discoveryTimeout = 300 * time.Millisecond
	t.Cleanup(func() { discoveryTimeout = old })
	for _, tc := range []struct{ spec, want string }{
		{"dns:nope.test", "no such name (NXDOMAIN)"},
		{"dns+srv:nope.test", "no such name (NXDOMAIN)"},
		{"dns:silent.test", "the DNS server did not answer within 300ms"},
		{"dns:empty.test", "or no records of that type"},
	} {
		t0 := time.Now()
		r := run("discover", tc.spec)
		if r.code != ExitFailure || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("discover %s: exit %d, stderr %q; want 1 and %q", tc.spec, r.code, r.stderr, tc.want)
		}
		if d := time.Since(t0); d > 5*time.Second {
			t.Errorf("discover %s took %s", tc.spec, d)
		}
	}
	// Go's resolver finishes a lookup its caller gave up on (each exchange bounded by the
	// discovery's deadline): wait for the silent server's to end, bounded, before goleak looks.
	deadline := time.Now().Add(15 * time.Second)
	for buf := make([]byte, 1<<20); strings.Contains(string(buf[:runtime.Stack(buf, true)]), "net.(*Resolver)"); {
		if time.Now().After(deadline) {
			t.Fatal("DNS lookups still running 15s after the silent server's discovery failed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, tc := range []struct{ spec, want string }{
		{"dns:agents.test:0", `port "0"`},
		{"dns:", "give the name"},
		{"list:nohost", `"nohost" is not HOST:PORT`},
		{"agents.yaml", "give dns:NAME[:PORT]"},
	} {
		if r := run("discover", tc.spec); r.code != ExitUsage || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("discover %s: exit %d, stderr %q; want 2 and %q", tc.spec, r.code, r.stderr, tc.want)
		}
	}
}
