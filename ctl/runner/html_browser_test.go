package runner

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// browser starts a headless Chromium for the test (Debian's chromium; with CI set, a
// missing one fails the test) and returns its context; the browser dies with the test
// (the allocator's cancel, and chromedp's Pdeathsig on Linux).
func browser(t *testing.T) context.Context {
	t.Helper()
	path := ""
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if os.Getenv("SOCKAGENT_NO_BROWSER") != "" && os.Getenv("CI") == "" {
		path = "" // a mutation run of the Go code: its own tests judge it
	}
	if path == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("no chromium on PATH: .ci/run installs Debian's chromium; apt-get install chromium")
		}
		t.Skip("no chromium on PATH (apt-get install chromium), or SOCKAGENT_NO_BROWSER set")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.UserDataDir(t.TempDir()), chromedp.DisableGPU, chromedp.Flag("disable-dev-shm-usage", true))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()
		_ = chromedp.Cancel(ctx) // waits for the browser to exit, before TempDir's removal
	})
	if err := chromedp.Do(ctx); err != nil { // starts the browser, without a deadline
		t.Fatalf("start %s: %v", path, err)
	}
	return ctx
}

// page is what a report drew in the browser, and what it asked of the console and the
// network while it did.
type page struct {
	console  []string // errors, warnings and exceptions
	requests []string // every URL the page requested
}

// load opens file in a new tab of the browser, runs check there, and returns what the
// console and the network saw. The tab closes before load returns.
func load(t *testing.T, bctx context.Context, file string, check func(ctx context.Context)) page {
	t.Helper()
	ctx, cancel := chromedp.NewContext(bctx)
	defer cancel()
	var (
		mu sync.Mutex
		p  page
		wg sync.WaitGroup
	)
	msgs := chromedp.Console(ctx)
	reqs := chromedp.Events(ctx, network.RequestWillBeSent)
	lctx, stop := context.WithCancel(ctx)
	wg.Go(func() {
		for m, err := range msgs {
			if err != nil || lctx.Err() != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleWarning || m.IsException() {
				mu.Lock()
				p.console = append(p.console, m.String())
				mu.Unlock()
			}
		}
	})
	wg.Go(func() {
		for ev, err := range reqs {
			if err != nil || lctx.Err() != nil {
				return
			}
			mu.Lock()
			p.requests = append(p.requests, ev.Request.URL)
			mu.Unlock()
		}
	})
	tctx, tcancel := context.WithTimeout(ctx, 60*time.Second)
	defer tcancel()
	if err := chromedp.Do(tctx, chromedp.Navigate("file://"+file)); err != nil {
		t.Fatalf("open %s: %v", file, err)
	}
	check(tctx)
	// What the page logged up to now is queued: one more round trip makes sure it arrived.
	if _, err := chromedp.Run(tctx, chromedp.Evaluate[int](`1`)); err != nil {
		t.Fatal(err)
	}
	stop()
	cancel() // ends the iterators
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	return p
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// writeReport renders r into a file of the test's and returns its path.
func writeReport(t *testing.T, name string, r *Report) string {
	t.Helper()
	var b strings.Builder
	if err := WriteHTML(&b, r); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// checkQuiet fails the test when the page logged an error or a warning, or requested
// anything but its own file.
func checkQuiet(t *testing.T, p page, file string) {
	t.Helper()
	if len(p.console) > 0 {
		t.Errorf("the page logged:\n%s", strings.Join(p.console, "\n"))
	}
	for _, u := range p.requests {
		if u != "file://"+file && !strings.HasPrefix(u, "data:") {
			t.Errorf("the page requested %s", u)
		}
	}
	if len(p.requests) == 0 {
		t.Error("no request seen, not even the page's own: the network events are not watched")
	}
}

// The small report in a real browser: one lifeline per agent, one arrow per step between two
// agents with the right ends, the failed steps in the fail colour, the skipped one in the
// skip colour, the link of a send to its recv, the detail of a clicked step; nothing logged
// and nothing fetched.
func TestHTMLInBrowser(t *testing.T) {
	bctx := browser(t)
	file := writeReport(t, "small.html", smallReport())
	p := load(t, bctx, file, func(ctx context.Context) {
		if n := eval[int](t, ctx, `document.querySelectorAll("line.lifeline").length`); n != 3 {
			t.Errorf("%d lifelines, want 3 (one per agent)", n)
		}
		if got := eval[string](t, ctx, `[...document.querySelectorAll("line.lifeline")].map(l => l.dataset.agent + "@" + l.getAttribute("x1")).join(" ")`); got != "a@90 b@290 c@490" {
			t.Errorf("lifelines %q", got)
		}
		arrows := eval[string](t, ctx, `[...document.querySelectorAll("g.step.arrow")].map(g => g.dataset.index + ":" + g.dataset.from + ">" + g.dataset.to + ":" + g.querySelector("line").getAttribute("x1") + ">" + g.querySelector("line").getAttribute("x2")).join(" ")`)
		if want := "2.1:b>a:290>90 2.2:b>a:290>90 3:b>a:290>90 4:b>a:290>90 7@b:b>a:290>90 7@c:c>a:490>90"; arrows != want {
			t.Errorf("arrows\n%s\nwant\n%s", arrows, want)
		}
		kinds := eval[string](t, ctx, `[...document.querySelectorAll("g.step")].map(g => g.dataset.index + "=" + [...g.classList].slice(1).join("/")).join(" ")`)
		if want := "1=pass/self 2.1=pass/arrow 2.2=pass/arrow 3=pass/arrow 4=fail/arrow 5=fail/lost 6=skip/self 7@b=pass/arrow 7@c=fail/arrow 8=pass/note"; kinds != want {
			t.Errorf("steps\n%s\nwant\n%s", kinds, want)
		}
		colour := func(index string) string {
			return eval[string](t, ctx, fmt.Sprintf(`getComputedStyle(document.querySelector('g.step[data-index="%s"] line, g.step[data-index="%s"] rect')).stroke`, index, index))
		}
		for index, want := range map[string]string{"3": "rgb(26, 127, 55)", "4": "rgb(207, 34, 46)", "7@c": "rgb(207, 34, 46)", "6": "rgb(140, 149, 159)"} {
			if got := colour(index); got != want {
				t.Errorf("step %s drawn in %s, want %s", index, got, want)
			}
		}
		if got := eval[string](t, ctx, `[...document.querySelectorAll("path.link")].map(l => l.dataset.send + ">" + l.dataset.recv).join(" ")`); got != "3>4" {
			t.Errorf("links %q, want 3>4", got)
		}
		if got := eval[string](t, ctx, `document.querySelectorAll("rect.block").length + " " + document.querySelector("text.blocklabel").textContent`); got != "2 par 2" {
			t.Errorf("blocks: %q", got)
		}
		if got := eval[string](t, ctx, `getComputedStyle(document.querySelector('#steps tr.fail td.st')).color`); got != "rgb(207, 34, 46)" {
			t.Errorf("failed row in %s", got)
		}
		if got := eval[string](t, ctx, `document.querySelector('g.step[data-index="4"] title').textContent`); !strings.Contains(got, "EXPECTATION_FAILED") {
			t.Errorf("tooltip of step 4: %q", got)
		}
		got := eval[string](t, ctx, `document.querySelector('g.step[data-index="4"] line').dispatchEvent(new MouseEvent("click", {bubbles: true})), document.getElementById("detail").textContent`)
		want := "step 4 on a (line 14): failed in 2.5 ms\nrequest: recv conn exact_bytes=5\nreason: EXPECTATION_FAILED\nresult: got \"Hellx\", want \"Hello\"\naddresses: 127.0.0.1:1000 -> 127.0.0.1:2000"
		if got != want {
			t.Errorf("detail after a click\n%q\nwant\n%q", got, want)
		}
		if n := eval[int](t, ctx, `document.querySelectorAll(".sel").length`); n != 2 {
			t.Errorf("%d elements selected by the click, want 2 (the arrow and the row)", n)
		}
		if got := eval[string](t, ctx, `document.getElementById("summary").className + ": " + document.getElementById("summary").textContent`); got != "summary bad: 6 passed, 3 failed, 1 skipped in 1.2s" {
			t.Errorf("summary %q", got)
		}
	})
	checkQuiet(t, p, file)
}

// The checks of TestHTMLInBrowser see what they look for: a page that throws, logs an
// error and asks for something on the network is caught.
func TestHTMLInBrowserCatches(t *testing.T) {
	bctx := browser(t)
	file := writeReport(t, "bad.html", smallReport())
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(data), "</body>", `<img src="http://127.0.0.1:9/x.png"><script>console.error("planted"); null.planted</script></body>`, 1)
	bad = strings.Replace(bad, `<meta http-equiv="Content-Security-Policy"`, `<meta name="x"`, 1) // let the fetch out
	if err := os.WriteFile(file, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	p := load(t, bctx, file, func(context.Context) {})
	joined := strings.Join(p.console, "\n")
	for _, want := range []string{"error: planted", "exception: ", "planted"} {
		if !strings.Contains(joined, want) {
			t.Errorf("console %q lacks %q", joined, want)
		}
	}
	if !strings.Contains(strings.Join(p.requests, " "), "http://127.0.0.1:9/x.png") {
		t.Errorf("requests %q lack the planted one", p.requests)
	}
}

// A report of a thousand steps stays under 2 MB and the browser draws it in under a second
// (from the start of navigation to the first frame after load, measured by the page's
// clock), every step of it.
func TestHTMLLargeInBrowser(t *testing.T) {
	bctx := browser(t)
	r := largeReport(1000)
	file := writeReport(t, "large.html", r)
	st, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("1000 steps: %d bytes", st.Size())
	if st.Size() >= 2<<20 || st.Size() < 200<<10 {
		t.Errorf("report of 1000 steps is %d bytes, want under 2 MiB (and over 200 KiB: is it all there?)", st.Size())
	}
	var drawn float64
	p := load(t, bctx, file, func(ctx context.Context) {
		t.Logf("domInteractive %.0f, loadEventEnd %.0f", eval[float64](t, ctx, `performance.getEntriesByType("navigation")[0].domInteractive`), eval[float64](t, ctx, `performance.getEntriesByType("navigation")[0].loadEventEnd`))
		drawn = eval[float64](t, ctx, `new Promise(done => requestAnimationFrame(() => requestAnimationFrame(() => done(performance.now()))))`)
		if n := eval[int](t, ctx, `document.querySelectorAll("g.step").length + document.querySelectorAll("#steps tbody tr").length`); n != 2000 {
			t.Errorf("%d steps drawn and listed, want 1000 of each", n)
		}
	})
	t.Logf("1000 steps drawn %.0f ms after the navigation started", drawn)
	if drawn <= 0 || drawn >= 1000 {
		t.Errorf("drawn %.0f ms after the navigation started, want under 1000 ms", drawn)
	}
	checkQuiet(t, p, file)
}

// smallReport is a run of three agents: a listens and accepts from b, b sends, a's recv
// fails its expectation, c's dial is refused by an address no agent owns, a step is skipped,
// a probe fans out to b and c (c's fails), and a sleep runs on no agent.
func smallReport() *Report {
	r := &Report{Name: "small", File: "small.yaml", DurationMS: 1200,
		Agents: []AgentReport{{Name: "a", Address: "local (127.0.0.1:7001)", Reachable: true},
			{Name: "b", Address: "127.0.0.1:7002", Reachable: true}, {Name: "c", Address: "127.0.0.1:7003", Reachable: true}},
		Steps: []StepReport{
			{Index: "1", Agent: "a", Action: "listen", Status: StatusPassed, Name: "listen tcp", LocalAddress: "127.0.0.1:1000", DurationMS: 0.5},
			{Index: "2.2", Agent: "b", Action: "dial", Status: StatusPassed, Name: "dial tcp", LocalAddress: "127.0.0.1:2000", RemoteAddress: "127.0.0.1:1000", DurationMS: 1},
			{Index: "2.1", Agent: "a", Action: "accept", Status: StatusPassed, Name: "accept lis", LocalAddress: "127.0.0.1:1000", RemoteAddress: "127.0.0.1:2000", DurationMS: 1},
			{Index: "3", Agent: "b", Action: "send", Status: StatusPassed, Name: "send cli", LocalAddress: "127.0.0.1:2000", RemoteAddress: "127.0.0.1:1000", DurationMS: 0.1},
			{Index: "4", Line: 14, Agent: "a", Action: "recv", Status: StatusFailed, Name: "recv conn", Detail: "recv conn exact_bytes=5", Reason: "EXPECTATION_FAILED",
				Message: `got "Hellx", want "Hello"`, LocalAddress: "127.0.0.1:1000", RemoteAddress: "127.0.0.1:2000", DurationMS: 2.5},
			{Index: "5", Agent: "c", Action: "dial", Status: StatusFailed, Name: "dial tcp", Reason: "CONNECTION_REFUSED", RemoteAddress: "127.0.0.1:1", DurationMS: 0.2},
			{Index: "6", Agent: "c", Action: "close", Status: StatusSkipped, Name: "close x", Message: "not run: an earlier step failed"},
			{Index: "7@c", Agent: "c", Action: "probe", Status: StatusFailed, Name: "probe", Reason: "TIMEOUT", RemoteAddress: "127.0.0.1:1000", DurationMS: 3},
			{Index: "7@b", Agent: "b", Action: "probe", Status: StatusPassed, Name: "probe", RemoteAddress: "127.0.0.1:1000", DurationMS: 3},
			{Index: "8", Action: "sleep", Status: StatusPassed, Name: "sleep 1ms", DurationMS: 1},
		}}
	r.count()
	return r
}

// largeReport is a run of n steps on ten agents: blocks of four parallel branches, each a
// dial, a send and a recv, some failed and some skipped.
func largeReport(n int) *Report {
	r := &Report{Name: "large", File: "large.yaml", DurationMS: 5000}
	for i := range 10 {
		r.Agents = append(r.Agents, AgentReport{Name: fmt.Sprintf("h%d", i), Address: fmt.Sprintf("10.0.0.%d:7700", i+1), Reachable: true})
	}
	r.Steps = append(r.Steps, StepReport{Index: "1", Agent: "h0", Action: "listen", Status: StatusPassed, LocalAddress: "10.0.0.1:80"})
	for i := 1; len(r.Steps) < n; i++ {
		for b := 1; b <= 4 && len(r.Steps) < n; b++ {
			agent := fmt.Sprintf("h%d", 1+(i+b)%9)
			local := fmt.Sprintf("10.0.0.%d:%d", 2+(i+b)%9, 1000+i*4+b)
			for k, action := range []string{"dial", "send", "recv"} {
				if len(r.Steps) == n {
					break
				}
				s := StepReport{Index: fmt.Sprintf("%d.%d[0].%d", i+1, b, k+1), Agent: agent, Action: action, Status: StatusPassed,
					Name: action + " " + agent, Detail: action + " tcp 10.0.0.1:80 timeout=\"5s\"", Message: "s1234ab-1 " + local + " -> 10.0.0.1:80",
					LocalAddress: local, RemoteAddress: "10.0.0.1:80", DurationMS: float64(i%7) + 0.25, StartMS: float64(i)}
				switch {
				case i%13 == 0 && k == 2:
					s.Status, s.Reason, s.Message = StatusFailed, "TIMEOUT", "no data within 5s"
				case i%13 == 0 && k > 0:
				case i%17 == 0:
					s.Status, s.Message = StatusSkipped, "not run: an earlier step failed"
				}
				r.Steps = append(r.Steps, s)
			}
		}
	}
	r.count()
	return r
}

// The committed sample (docs/report-fan-in.html, kept current by ctl's TestSampleReport)
// draws in the browser as the run it shows: three lifelines, 24 arrows and the listener's
// box, 8 send/recv links, all passed; nothing logged, nothing fetched.
func TestHTMLSampleInBrowser(t *testing.T) {
	bctx := browser(t)
	file, err := filepath.Abs(filepath.Join("..", "..", "docs", "report-fan-in.html"))
	if err != nil {
		t.Fatal(err)
	}
	p := load(t, bctx, file, func(ctx context.Context) {
		got := eval[string](t, ctx, `["line.lifeline", "g.step.arrow", "g.step.self", "g.step.pass", "g.step.fail", "path.link", "rect.block"].map(s => document.querySelectorAll(s).length).join(" ")`)
		if got != "3 24 1 25 0 8 3" {
			t.Errorf("lifelines, arrows, boxes, passed, failed, links, blocks: %s; want 3 24 1 25 0 8 3", got)
		}
	})
	checkQuiet(t, p, file)
}
