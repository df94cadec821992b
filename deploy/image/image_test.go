// Package image_test builds the sockagent container image with deploy/image/build and checks
// what it holds: the user, the entrypoint, the labels, no shell, its size, and that the
// binary taken out of it answers GetInfo when run the way the image runs it.
package image_test

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sockagent/sockagent/deploy/internal/testenv"
	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// maxImageBytes bounds the image's layers, uncompressed: one static binary fits well under it.
const maxImageBytes = 20 << 20

// imageUser is the image's numeric user; the Kubernetes manifests run as the same.
const (
	imageUID = 65532
	imageGID = 65532
)

// archive is an OCI image archive read into memory: its config and its files.
type archive struct {
	config ocispec.Image
	files  map[string]*tar.Header // by absolute path
	bodies map[string][]byte      // regular files' contents
	size   int64                  // layers, uncompressed
}

func TestImage(t *testing.T) {
	_, err := exec.LookPath("buildah")
	testenv.Require(t, err == nil, "buildah not found: apt-get install buildah")
	testenv.Require(t, os.Geteuid() == 0, "not root: the binary is run as the image's user, which needs root to switch to")
	root := testenv.Root(t)

	out := filepath.Join(t.TempDir(), "sockagent-image.tar")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(root, "deploy", "image", "build"), out)
	cmd.Dir = root
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("deploy/image/build: %v\n%s", err, b)
	}
	img := readArchive(t, out)
	t.Logf("image: %d files, %.1f MiB of layers uncompressed", len(img.files), float64(img.size)/(1<<20))

	cfg := img.config.Config
	if cfg.User != fmt.Sprintf("%d:%d", imageUID, imageGID) {
		t.Errorf("user %q, want %d:%d: a numeric user other than root", cfg.User, imageUID, imageGID)
	}
	if strings.Join(cfg.Entrypoint, " ") != "/sockagent" || len(cfg.Cmd) != 0 {
		t.Errorf("entrypoint %q cmd %q, want [/sockagent] and no cmd", cfg.Entrypoint, cfg.Cmd)
	}
	if !slices.Contains(cfg.Env, "XDG_RUNTIME_DIR=/run") {
		t.Errorf("env %q: want XDG_RUNTIME_DIR=/run, where the default control socket goes", cfg.Env)
	}
	if img.config.OS != "linux" || img.config.Architecture == "" {
		t.Errorf("platform %s/%s, want linux/GOARCH", img.config.OS, img.config.Architecture)
	}
	if img.size >= maxImageBytes {
		t.Errorf("layers %d bytes uncompressed, want under %d", img.size, maxImageBytes)
	}
	checkFiles(t, img)

	bin := extract(t, img)
	version := checkVersion(t, bin)
	checkLabels(t, root, cfg.Labels, version)
	checkServes(t, bin, version)
}

// checkFiles wants /sockagent, executable and no one's to write, and nothing else but
// directories: no shell, no package manager, no other program.
func checkFiles(t *testing.T, img archive) {
	t.Helper()
	for name, h := range img.files {
		switch {
		case name == "/sockagent":
			if h.Typeflag != tar.TypeReg || h.FileInfo().Mode().Perm() != 0o555 || h.Uid != 0 {
				t.Errorf("/sockagent: type %c mode %#o uid %d, want a regular file, mode 0555, of root", h.Typeflag, h.FileInfo().Mode().Perm(), h.Uid)
			}
		case h.Typeflag == tar.TypeDir:
		default:
			t.Errorf("%s: the image holds a file besides /sockagent", name)
		}
	}
	if _, ok := img.files["/sockagent"]; !ok {
		t.Fatalf("no /sockagent in the image; files: %v", names(img))
	}
	for _, sh := range []string{"/bin/sh", "/bin/bash", "/bin/busybox", "/usr/bin/apt", "/sbin/apk"} {
		if _, ok := img.files[sh]; ok {
			t.Errorf("the image holds %s", sh)
		}
	}
}

// checkVersion runs the binary's --version and returns the version it names.
func checkVersion(t *testing.T, bin string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--version")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("sockagent --version: %v", err)
	}
	m := regexp.MustCompile(`^sockagent (\S+) \(.*go1\.\d+\S* linux/\w+\)\n$`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("sockagent --version printed %q, want \"sockagent VERSION (..., GOVERSION linux/ARCH)\"", b)
	}
	return string(m[1])
}

// checkLabels wants the OCI labels, the version the binary reports and the commit the
// repository is at.
func checkLabels(t *testing.T, root string, labels map[string]string, version string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	head, err := exec.CommandContext(ctx, "git", "-C", root, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatalf("git rev-parse HEAD: %v", err)
	}
	want := map[string]string{
		ocispec.AnnotationTitle:    "sockagent",
		ocispec.AnnotationVersion:  version,
		ocispec.AnnotationRevision: strings.TrimSpace(string(head)),
		ocispec.AnnotationSource:   "https://github.com/sockagent/sockagent",
	}
	for k, v := range want {
		if labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, labels[k], v)
		}
	}
	for _, k := range []string{ocispec.AnnotationDescription, ocispec.AnnotationDocumentation} {
		if labels[k] == "" {
			t.Errorf("label %s missing", k)
		}
	}
	if _, err := time.Parse(time.RFC3339, labels[ocispec.AnnotationCreated]); err != nil {
		t.Errorf("label %s = %q: %v", ocispec.AnnotationCreated, labels[ocispec.AnnotationCreated], err)
	}
}

// checkServes runs the binary as the image runs it: as the image's user, without
// capabilities, with nothing but XDG_RUNTIME_DIR in its environment (the image's /run, here a
// directory of that user). Without flags it must answer GetInfo on its default control
// socket; with --listen on loopback, there.
func checkServes(t *testing.T, bin, version string) {
	t.Helper()
	run := privateDir(t)
	sock := filepath.Join(run, "sockagent", "sockagent.sock")
	info := serveAndAsk(t, bin, run, nil, func(string) string { return "unix://" + sock })
	if want := filepath.Join(run, "sockagent", "sockets"); info.GetSocketDir() != want || info.GetVersion() != version {
		t.Errorf("GetInfo on the default socket: socket dir %q version %q, want %q and %q", info.GetSocketDir(), info.GetVersion(), want, version)
	}
	info = serveAndAsk(t, bin, privateDir(t), []string{"--listen=127.0.0.1:0", "--log-format=json"}, loggedAddr)
	if info.GetVersion() != version {
		t.Errorf("GetInfo on loopback: version %q, want %q", info.GetVersion(), version)
	}
}

// loggedAddr is the address of sockagent's JSON "serving" log line, or "" before it.
func loggedAddr(log string) string {
	for _, line := range strings.Split(log, "\n") {
		var l struct{ Msg, Addr string }
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "serving" && l.Addr != "" {
			return l.Addr
		}
	}
	return ""
}

// serveAndAsk starts the binary as the image's user with args, waits until target (from its
// log so far) names where it serves and a connection is accepted there, calls GetInfo, and
// stops it with SIGTERM, which must end it with status 0.
func serveAndAsk(t *testing.T, bin, run string, args []string, target func(log string) string) *sockagentv1.GetInfoResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = []string{"XDG_RUNTIME_DIR=" + run}
	stderr := &lockedBuilder{}
	cmd.Stderr = stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Pdeathsig:  syscall.SIGKILL,
		Credential: &syscall.Credential{Uid: imageUID, Gid: imageGID, Groups: []uint32{}},
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("sockagent %q after SIGTERM: %v, want exit 0\n%s", args, err, stderr.String())
			}
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			t.Errorf("sockagent %q did not stop within 20s of SIGTERM", args)
		}
	}()

	addr := waitFor(t, stderr, exited, target)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	info, err := sockagentv1.NewAgentServiceClient(conn).GetInfo(ctx, &sockagentv1.GetInfoRequest{})
	if err != nil {
		t.Fatalf("GetInfo at %s: %v\n%s", addr, err, stderr.String())
	}
	if info.GetOs() != "linux" || info.GetPid() != int64(cmd.Process.Pid) {
		t.Errorf("GetInfo at %s: os %q pid %d, want linux and %d", addr, info.GetOs(), info.GetPid(), cmd.Process.Pid)
	}
	return info
}

// lockedBuilder is a strings.Builder the child's stderr copier writes while the test reads.
type lockedBuilder struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuilder) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuilder) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// waitFor polls until target names an address that accepts a connection, the agent
// exits, or 30 s pass, and returns the address as a gRPC target.
func waitFor(t *testing.T, stderr *lockedBuilder, exited <-chan error, target func(string) string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if addr := target(stderr.String()); addr != "" {
			network, a := "tcp", addr
			if p, ok := strings.CutPrefix(addr, "unix://"); ok {
				network, a = "unix", p
			}
			if c, err := net.DialTimeout(network, a, time.Second); err == nil {
				c.Close()
				return addr
			}
		}
		select {
		case err := <-exited:
			t.Fatalf("sockagent exited before serving: %v\n%s", err, stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("sockagent not serving after 30s\n%s", stderr.String())
		}
	}
}

// privateDir is an empty directory of the image's user, mode 0700, which that user can reach:
// the image's /run.
func privateDir(t *testing.T) string {
	t.Helper()
	parent, err := os.MkdirTemp("", "sockagent-image-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(parent) })
	if err := os.Chmod(parent, 0o711); err != nil {
		t.Fatal(err)
	}
	run := filepath.Join(parent, "run")
	if err := os.Mkdir(run, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(run, imageUID, imageGID); err != nil {
		t.Fatal(err)
	}
	return run
}

// extract writes the image's /sockagent to a file the image's user may run.
func extract(t *testing.T, img archive) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sockagent-bin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "sockagent")
	if err := os.WriteFile(bin, img.bodies["/sockagent"], 0o555); err != nil {
		t.Fatal(err)
	}
	return bin
}

// readArchive reads an OCI image archive of one image: index, manifest, config, layers.
func readArchive(t *testing.T, file string) archive {
	t.Helper()
	blobs := map[string][]byte{}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(io.LimitReader(tr, 64<<20))
			if err != nil {
				t.Fatal(err)
			}
			blobs[h.Name] = b
		}
	}
	var index ocispec.Index
	decode(t, blobs["index.json"], &index)
	if len(index.Manifests) != 1 {
		t.Fatalf("index.json: %d manifests, want 1", len(index.Manifests))
	}
	var manifest ocispec.Manifest
	decode(t, blob(t, blobs, index.Manifests[0].Digest), &manifest)
	img := archive{files: map[string]*tar.Header{}, bodies: map[string][]byte{}}
	decode(t, blob(t, blobs, manifest.Config.Digest), &img.config)
	for _, l := range manifest.Layers {
		readLayer(t, &img, l, blob(t, blobs, l.Digest))
	}
	return img
}

// readLayer adds a layer's files to img; a layer is a tar, gzip-compressed or not.
func readLayer(t *testing.T, img *archive, desc ocispec.Descriptor, b []byte) {
	t.Helper()
	var r io.Reader = strings.NewReader(string(b))
	if strings.HasSuffix(desc.MediaType, "+gzip") {
		z, err := gzip.NewReader(r)
		if err != nil {
			t.Fatalf("layer %s: %v", desc.Digest, err)
		}
		r = z
	}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatalf("layer %s: %v", desc.Digest, err)
		}
		name := path.Clean("/" + h.Name)
		img.files[name] = h
		img.size += h.Size
		if h.Typeflag == tar.TypeReg {
			body, err := io.ReadAll(io.LimitReader(tr, maxImageBytes))
			if err != nil {
				t.Fatal(err)
			}
			img.bodies[name] = body
		}
	}
}

// blob is the archive's blob of digest d, checked against d.
func blob(t *testing.T, blobs map[string][]byte, d digest.Digest) []byte {
	t.Helper()
	b, ok := blobs[path.Join("blobs", d.Algorithm().String(), d.Encoded())]
	if !ok {
		t.Fatalf("no blob %s in the archive", d)
	}
	if got := d.Algorithm().FromBytes(b); got != d {
		t.Fatalf("blob %s has digest %s", d, got)
	}
	return b
}

func decode(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decode %T: %v", v, err)
	}
}

func names(img archive) []string {
	var n []string
	for name := range img.files {
		n = append(n, name)
	}
	return n
}
