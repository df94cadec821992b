package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The proxy rows' third-party baseline is toxiproxy (github.com/Shopify/toxiproxy/v2). Its
// dependencies stay out of sockagent's go.mod: the nested module ctl/bench/toxiproxy names
// it as a tool, and sockbench builds its server from there once into the user's cache
// directory, then starts it on 127.0.0.1 and drives it over its HTTP API.

// toxiproxyVersion is the version ctl/bench/toxiproxy/go.mod requires (a test keeps the two
// equal); the cached binary's name carries it, so a new version is built anew.
const toxiproxyVersion = "v2.12.0"

// envToxiproxy names a toxiproxy-server binary to use instead of building one.
const envToxiproxy = "SOCKBENCH_TOXIPROXY"

// toxiproxyModule is where the nested module is, relative to the repository's root.
const toxiproxyModule = "ctl/bench/toxiproxy"

// errToxiproxy prefixes every reason the toxiproxy baseline is missing.
var errToxiproxy = errors.New("toxiproxy baseline unavailable")

// toxiproxyBinary returns the toxiproxy-server to run: $SOCKBENCH_TOXIPROXY, or the cached
// build of toxiproxyVersion, built first from the nested module found above dir.
func toxiproxyBinary(ctx context.Context, dir string, progress func(string, ...any)) (string, error) {
	if p := os.Getenv(envToxiproxy); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%w: $%s: %v", errToxiproxy, envToxiproxy, err)
		}
		return p, nil
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("%w: no cache directory for its build (%v); set $%s to a toxiproxy-server binary", errToxiproxy, err, envToxiproxy)
	}
	bin := filepath.Join(cache, "sockagent", "toxiproxy-server-"+toxiproxyVersion)
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	mod, err := findUp(dir, toxiproxyModule)
	if err != nil {
		return "", fmt.Errorf("%w: %v; run sockbench in the sockagent repository, or set $%s to a toxiproxy-server binary", errToxiproxy, err, envToxiproxy)
	}
	progress("building toxiproxy-server %s into %s (once)", toxiproxyVersion, filepath.Dir(bin))
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return "", fmt.Errorf("%w: %v", errToxiproxy, err)
	}
	// Built apart: not with the flags a coverage or race run of sockagent's tests sets.
	tmp := bin + ".tmp" + strconv.Itoa(os.Getpid())
	build := exec.CommandContext(ctx, "go", "build", "-o", tmp, "github.com/Shopify/toxiproxy/v2/cmd/server")
	build.Dir = mod
	build.Env = append(os.Environ(), "GOFLAGS=", "GOWORK=off", "CGO_ENABLED=0")
	dieWithParent(build)
	if out, err := build.CombinedOutput(); err != nil {
		_ = os.Remove(tmp)
		return "", fmt.Errorf("%w: go build in %s: %v: %s", errToxiproxy, mod, err, clip(strings.TrimSpace(string(out)), 500))
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", fmt.Errorf("%w: %v", errToxiproxy, err)
	}
	return bin, nil
}

// findUp finds rel in dir or the nearest of its parents that has it.
func findUp(dir, rel string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for d := abs; ; d = filepath.Dir(d) {
		p := filepath.Join(d, rel)
		if _, err := os.Stat(filepath.Join(p, "go.mod")); err == nil {
			return p, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("%s/go.mod not found in %s or above", rel, abs)
		}
	}
}

// toxiproxy is a running toxiproxy-server and its API's address.
type toxiproxy struct {
	cmd    *exec.Cmd
	api    string // http://127.0.0.1:PORT
	exited chan struct{}
	out    bytes.Buffer // its log, for errors
	client *http.Client
}

// startToxiproxy starts bin on a free 127.0.0.1 port and waits until its API answers.
func startToxiproxy(ctx context.Context, bin string) (*toxiproxy, error) {
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errToxiproxy, err)
	}
	t := &toxiproxy{api: "http://127.0.0.1:" + strconv.Itoa(port), exited: make(chan struct{}), client: &http.Client{Timeout: closeBudget}}
	// Not CommandContext: the server outlives the row that started it; close stops it.
	t.cmd = exec.Command(bin, "-host", "127.0.0.1", "-port", strconv.Itoa(port))
	dieWithParent(t.cmd)
	t.cmd.Stdout, t.cmd.Stderr = &t.out, &t.out
	if err := t.cmd.Start(); err != nil {
		return nil, fmt.Errorf("%w: start %s: %v", errToxiproxy, bin, err)
	}
	go func() {
		_ = t.cmd.Wait()
		close(t.exited)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := t.call(ctx, http.MethodGet, "/version", nil, nil)
		if err == nil {
			return t, nil
		}
		select {
		case <-t.exited:
			return nil, fmt.Errorf("%w: %s exited: %s", errToxiproxy, bin, clip(t.out.String(), 500))
		case <-ctx.Done():
			t.close()
			return nil, fmt.Errorf("%w: %v", errToxiproxy, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.close()
			return nil, fmt.Errorf("%w: its API at %s did not answer within 10s: %v", errToxiproxy, t.api, err)
		}
	}
}

// call makes one API request with a JSON body (nil for none) and decodes the answer into
// out (nil to discard it).
func (t *toxiproxy) call(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, t.api+path, rd)
	if err != nil {
		return err
	}
	resp, err := t.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("toxiproxy %s %s: %s: %s", method, path, resp.Status, clip(strings.TrimSpace(string(data)), 300))
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(data, out)
}

// toxiToxic is a toxic as toxiproxy's API takes it.
type toxiToxic struct {
	Name       string         `json:"name"`
	Type       string         `json:"type"`
	Stream     string         `json:"stream"`
	Toxicity   float64        `json:"toxicity"`
	Attributes map[string]any `json:"attributes"`
}

// proxy creates a proxy on 127.0.0.1:0 to upstream with toxics and returns its address and
// a function removing it.
func (t *toxiproxy) proxy(ctx context.Context, name, upstream string, toxics ...toxiToxic) (string, func(), error) {
	var created struct {
		Listen string `json:"listen"`
	}
	in := map[string]any{"name": name, "listen": "127.0.0.1:0", "upstream": upstream, "enabled": true}
	if err := t.call(ctx, http.MethodPost, "/proxies", in, &created); err != nil {
		return "", nil, err
	}
	remove := func() {
		rctx, cancel := context.WithTimeout(context.Background(), closeBudget)
		defer cancel()
		_ = t.call(rctx, http.MethodDelete, "/proxies/"+name, nil, nil)
	}
	for _, tx := range toxics {
		if err := t.call(ctx, http.MethodPost, "/proxies/"+name+"/toxics", tx, nil); err != nil {
			remove()
			return "", nil, err
		}
	}
	if created.Listen == "" || strings.HasSuffix(created.Listen, ":0") {
		remove()
		return "", nil, fmt.Errorf("toxiproxy created proxy %s without saying where it listens (%q)", name, created.Listen)
	}
	return created.Listen, remove, nil
}

// close stops the server (SIGKILL: it keeps no state worth a graceful stop) and reaps it.
func (t *toxiproxy) close() {
	_ = t.cmd.Process.Kill()
	<-t.exited
}
