// Package kubernetes_test renders every variant of deploy/kubernetes with kustomize, decodes
// each object strictly into the Kubernetes API types (an unknown or misspelt field is an
// error), and checks what the agents run with: pod security, probes, resources, the flags
// sockagent's own parser accepts, and that every file a flag names is mounted.
package kubernetes_test

import (
	"flag"
	"fmt"
	"io/fs"
	"net"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/sockagent/sockagent/agent/daemon"
	"github.com/sockagent/sockagent/agent/policy"
	"github.com/sockagent/sockagent/deploy/internal/testenv"
)

// The agent's port, user and image, as deploy/image builds it.
const (
	grpcPort    = 7700
	metricsPort = 9464 // --metrics-listen, and the pods' prometheus.io/port
	imageUser   = 65532
	image       = "localhost/sockagent:dev"
	namespace   = "sockagent"
)

// memoryHeadroom is what the agent needs beside the bytes its policy lets callers buffer.
const memoryHeadroom = 128 << 20

// variants are the directories kubectl apply -k takes.
var variants = []struct {
	dir         string
	hostNetwork bool
	tls         bool
}{
	{".", false, false},
	{"host-network", true, false},
	{"tls", false, true},
}

// rendered is one variant's objects, decoded.
type rendered struct {
	namespaces []*corev1.Namespace
	services   []*corev1.Service
	configMaps map[string]*corev1.ConfigMap
	daemonSets []*appsv1.DaemonSet
	accounts   []*corev1.ServiceAccount
}

func TestVariants(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(testenv.Root(t), "deploy", "kubernetes")
	for _, v := range variants {
		t.Run(v.dir, func(t *testing.T) {
			t.Parallel()
			r := render(t, filepath.Join(dir, v.dir))
			if len(r.daemonSets) != 1 || len(r.services) != 1 || len(r.namespaces) != 1 || len(r.accounts) != 1 {
				t.Fatalf("%d DaemonSets, %d Services, %d Namespaces, %d ServiceAccounts; want one of each",
					len(r.daemonSets), len(r.services), len(r.namespaces), len(r.accounts))
			}
			ds := r.daemonSets[0]
			checkNamespace(t, r.namespaces[0], v.hostNetwork)
			checkPod(t, ds, v.hostNetwork)
			c := ds.Spec.Template.Spec.Containers[0]
			checkContainer(t, c)
			checkProbes(t, c, v.tls)
			cfg := checkArgs(t, c, v.hostNetwork, v.tls)
			checkFiles(t, ds, r, cfg)
			checkService(t, r.services[0], ds)
			if sa := r.accounts[0]; sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
				t.Error("ServiceAccount: automountServiceAccountToken must be false: the agents call no Kubernetes API")
			}
		})
	}
}

// TestSourcesDecodeStrictly decodes every manifest and patch under deploy/kubernetes (all but
// the kustomizations and the policy), so a misspelt field in a patch fails here too, not
// only once kustomize merged it.
func TestSourcesDecodeStrictly(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(testenv.Root(t), "deploy", "kubernetes")
	fsys := filesys.MakeFsOnDisk()
	n := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(p) != ".yaml" || d.Name() == "kustomization.yaml" || d.Name() == "policy.yaml" {
			return err
		}
		b, err := fsys.ReadFile(p)
		if err != nil {
			return err
		}
		for i, doc := range strings.Split(string(b), "\n---\n") {
			if _, err := decode([]byte(doc)); err != nil {
				t.Errorf("%s, document %d: %v", p, i+1, err)
			}
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 7 {
		t.Errorf("decoded %d manifests under %s, want every one (at least 7)", n, dir)
	}
}

func TestStrictDecodingRefusesUnknownFields(t *testing.T) {
	t.Parallel()
	for _, doc := range []string{
		"apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {clusterIp: None}\n",
		"apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: a}\nspec: {template: {spec: {containers: [{name: a, securityContext: {readOnlyRootFileSystem: true}}]}}}\n",
		"apiVersion: batch/v1\nkind: Job\nmetadata: {name: a}\n", // a kind this test does not know
	} {
		if _, err := decode([]byte(doc)); err == nil {
			t.Errorf("decoded without error:\n%s", doc)
		}
	}
}

// decoder decodes the kinds the manifests use, strictly.
var decoder = func() runtime.Decoder {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return serializer.NewCodecFactory(s, serializer.EnableStrict).UniversalDeserializer()
}()

func decode(doc []byte) (runtime.Object, error) {
	obj, _, err := decoder.Decode(doc, nil, nil)
	return obj, err
}

// render runs kustomize on dir, as `kustomize build` does, and decodes its objects.
func render(t *testing.T, dir string) rendered {
	t.Helper()
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	r := rendered{configMaps: map[string]*corev1.ConfigMap{}}
	for _, res := range m.Resources() {
		b, err := res.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		obj, err := decode(b)
		if err != nil {
			t.Fatalf("%s: %v\n%s", res.CurId(), err, b)
		}
		if ns := res.GetNamespace(); res.GetKind() != "Namespace" && ns != namespace {
			t.Errorf("%s in namespace %q, want %s", res.CurId(), ns, namespace)
		}
		switch o := obj.(type) {
		case *corev1.Namespace:
			r.namespaces = append(r.namespaces, o)
		case *corev1.Service:
			r.services = append(r.services, o)
		case *corev1.ConfigMap:
			r.configMaps[o.Name] = o
		case *appsv1.DaemonSet:
			r.daemonSets = append(r.daemonSets, o)
		case *corev1.ServiceAccount:
			r.accounts = append(r.accounts, o)
		default:
			t.Errorf("%s: a %T, which this test does not check", res.CurId(), obj)
		}
	}
	return r
}

func checkNamespace(t *testing.T, ns *corev1.Namespace, hostNetwork bool) {
	t.Helper()
	want := "restricted"
	if hostNetwork {
		want = "privileged" // host networking is outside restricted and baseline
	}
	if got := ns.Labels["pod-security.kubernetes.io/enforce"]; ns.Name != namespace || got != want {
		t.Errorf("namespace %s enforces %q, want %s enforcing %s", ns.Name, got, namespace, want)
	}
}

func checkPod(t *testing.T, ds *appsv1.DaemonSet, hostNetwork bool) {
	t.Helper()
	pod := ds.Spec.Template.Spec
	sc := pod.SecurityContext
	switch {
	case sc == nil:
		t.Fatal("pod: no securityContext")
	case sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot:
		t.Error("pod: runAsNonRoot must be true")
	case sc.RunAsUser == nil || *sc.RunAsUser != imageUser || sc.RunAsGroup == nil || *sc.RunAsGroup != imageUser:
		t.Errorf("pod: runAsUser/runAsGroup must be the image's user %d", imageUser)
	case sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
		t.Error("pod: seccompProfile must be RuntimeDefault")
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Error("pod: automountServiceAccountToken must be false")
	}
	if pod.HostNetwork != hostNetwork || pod.HostPID || pod.HostIPC {
		t.Errorf("pod: hostNetwork %v hostPID %v hostIPC %v, want hostNetwork %v only", pod.HostNetwork, pod.HostPID, pod.HostIPC, hostNetwork)
	}
	if hostNetwork && pod.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		t.Errorf("pod: dnsPolicy %q with host networking, want %s to resolve cluster names", pod.DNSPolicy, corev1.DNSClusterFirstWithHostNet)
	}
	if g := pod.TerminationGracePeriodSeconds; g == nil || *g <= int64(daemon.DefaultConfig().ShutdownTimeout.Seconds()) {
		t.Errorf("pod: terminationGracePeriodSeconds %v must exceed sockagent's --shutdown-timeout", g)
	}
	a := ds.Spec.Template.Annotations
	if a["prometheus.io/scrape"] != "true" || a["prometheus.io/path"] != "/metrics" {
		t.Errorf("pod annotations %v: want prometheus.io/scrape true and path /metrics", a)
	}
	if p, err := strconv.Atoi(a["prometheus.io/port"]); err != nil || p != metricsPort {
		t.Errorf("prometheus.io/port %q: want the metrics port %d", a["prometheus.io/port"], metricsPort)
	}
	if len(pod.Containers) != 1 || len(pod.InitContainers) != 0 {
		t.Fatalf("pod: %d containers, %d init containers; want the agent alone", len(pod.Containers), len(pod.InitContainers))
	}
}

func checkContainer(t *testing.T, c corev1.Container) {
	t.Helper()
	if c.Image != image || len(c.Command) != 0 {
		t.Errorf("container: image %q command %q, want %s and the image's entrypoint", c.Image, c.Command, image)
	}
	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Fatal("container: no securityContext")
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Error("container: readOnlyRootFilesystem must be true")
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Error("container: allowPrivilegeEscalation must be false")
	case sc.Privileged != nil && *sc.Privileged:
		t.Error("container: privileged")
	case sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" || len(sc.Capabilities.Add) != 0:
		t.Errorf("container: capabilities %+v, want drop [ALL] and nothing added", sc.Capabilities)
	}
	req, lim := c.Resources.Requests, c.Resources.Limits
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		q, l := req[r], lim[r]
		if q.IsZero() || l.IsZero() || q.Cmp(l) > 0 {
			t.Errorf("container: %s request %s limit %s, want both, request <= limit", r, q.String(), l.String())
		}
	}
	if len(c.Ports) != 2 || c.Ports[0].Name != "grpc" || c.Ports[0].ContainerPort != grpcPort ||
		c.Ports[1].Name != "metrics" || c.Ports[1].ContainerPort != metricsPort {
		t.Errorf("container: ports %+v, want grpc %d and metrics %d", c.Ports, grpcPort, metricsPort)
	}
}

// checkProbes wants the kubelet's native gRPC probes on the health service, or TCP connects
// where the port speaks TLS, which those probes cannot.
func checkProbes(t *testing.T, c corev1.Container, tls bool) {
	t.Helper()
	for name, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		switch {
		case p == nil:
			t.Errorf("%s probe missing", name)
		case tls && (p.TCPSocket == nil || p.TCPSocket.Port.IntValue() != grpcPort || p.GRPC != nil || p.Exec != nil || p.HTTPGet != nil):
			t.Errorf("%s probe %+v: with TLS, want a TCP connect to %d alone", name, p.ProbeHandler, grpcPort)
		case !tls && (p.GRPC == nil || p.GRPC.Port != grpcPort || (p.GRPC.Service != nil && *p.GRPC.Service != "") || p.TCPSocket != nil || p.Exec != nil || p.HTTPGet != nil):
			t.Errorf("%s probe %+v: want the gRPC health check of the whole server on %d alone", name, p.ProbeHandler, grpcPort)
		case p.TimeoutSeconds < 1 || p.PeriodSeconds < 1 || p.FailureThreshold < 1:
			t.Errorf("%s probe: timeout %ds period %ds threshold %d, want all set", name, p.TimeoutSeconds, p.PeriodSeconds, p.FailureThreshold)
		}
	}
}

// reference is a Kubernetes dependent environment variable reference in an argument.
var reference = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// checkArgs parses the container's arguments with sockagent's own flags, the kubelet's
// $(VAR) references expanded, and returns the settings they make.
func checkArgs(t *testing.T, c corev1.Container, hostNetwork, tls bool) daemon.Config {
	t.Helper()
	// Values the kubelet would give; they are parsed, never dialled.
	values := map[string]string{"status.podIP": "192.0.2.10", "spec.nodeName": "node-a"}
	env := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || values[e.ValueFrom.FieldRef.FieldPath] == "" {
			t.Errorf("env %s: want a downward API field of %v", e.Name, values)
			continue
		}
		env[e.Name] = values[e.ValueFrom.FieldRef.FieldPath]
	}
	args := make([]string, len(c.Args))
	for i, a := range c.Args {
		args[i] = reference.ReplaceAllStringFunc(a, func(ref string) string {
			name := reference.FindStringSubmatch(ref)[1]
			v, ok := env[name]
			if !ok {
				t.Errorf("argument %q: $(%s) is not in the container's env, so the kubelet would pass it as written", a, name)
			}
			return v
		})
	}
	cfg := daemon.DefaultConfig()
	fs := flag.NewFlagSet("sockagent", flag.ContinueOnError)
	cfg.AddFlags(fs)
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 {
		t.Fatalf("sockagent %s: %v (arguments left: %q)", strings.Join(args, " "), err, fs.Args())
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("sockagent %s: %v", strings.Join(args, " "), err)
	}
	mhost, mport, err := net.SplitHostPort(cfg.MetricsListen)
	if err != nil || mport != strconv.Itoa(metricsPort) {
		t.Errorf("--metrics-listen %q: want port %d", cfg.MetricsListen, metricsPort)
	}
	host, port, err := net.SplitHostPort(cfg.Listen)
	if host != mhost {
		t.Errorf("--metrics-listen %q: want the host of --listen %q", cfg.MetricsListen, cfg.Listen)
	}
	if err != nil || port != strconv.Itoa(grpcPort) {
		t.Errorf("--listen %q: want port %d", cfg.Listen, grpcPort)
	}
	wantHost := ""
	if hostNetwork {
		wantHost = values["status.podIP"] // the node's address, not every address of the node
	}
	if host != wantHost {
		t.Errorf("--listen %q: want host %q", cfg.Listen, wantHost)
	}
	// Off loopback sockagent refuses to start without authentication (daemon.Build).
	if cfg.TokenFile == "" && cfg.ClientCA == "" {
		t.Error("no --token-file nor --client-ca: sockagent would refuse to serve on " + cfg.Listen)
	}
	if tls != (cfg.TLSCert != "") || cfg.Insecure || cfg.PolicyFile == "" || cfg.LogFormat != "json" {
		t.Errorf("flags: tls-cert %q insecure %v policy %q log-format %q; want TLS %v, not insecure, a policy, JSON logs",
			cfg.TLSCert, cfg.Insecure, cfg.PolicyFile, cfg.LogFormat, tls)
	}
	return cfg
}

// checkFiles wants every file a flag names to be a key of a mounted Secret or ConfigMap
// that only the agent's user and group may read, the policy to parse and fit in the memory
// limit, and --socket-dir on a writable emptyDir.
func checkFiles(t *testing.T, ds *appsv1.DaemonSet, r rendered, cfg daemon.Config) {
	t.Helper()
	pod := ds.Spec.Template.Spec
	c := pod.Containers[0]
	for flagName, file := range map[string]string{
		"token-file": cfg.TokenFile, "policy": cfg.PolicyFile,
		"tls-cert": cfg.TLSCert, "tls-key": cfg.TLSKey, "client-ca": cfg.ClientCA,
	} {
		if file == "" {
			continue
		}
		vol, key := mounted(t, pod, c, file)
		if vol == nil {
			t.Errorf("--%s %s: no Secret or ConfigMap mounted there", flagName, file)
			continue
		}
		checkVolume(t, flagName, vol, key)
		if flagName == "policy" {
			checkPolicy(t, r.configMaps[vol.ConfigMap.Name], key, c)
		}
	}
	run := filepath.Dir(cfg.SocketDir) // the agent's private directory, which it creates
	for _, m := range c.VolumeMounts {
		if m.MountPath != path.Dir(run) {
			continue
		}
		for _, v := range pod.Volumes {
			if v.Name == m.Name && v.EmptyDir != nil && !m.ReadOnly {
				return
			}
		}
	}
	t.Errorf("--socket-dir %s: its parent's parent %s is not a writable emptyDir", cfg.SocketDir, path.Dir(run))
}

// mounted finds the volume mounted at file's directory and the key file names.
func mounted(t *testing.T, pod corev1.PodSpec, c corev1.Container, file string) (*corev1.Volume, string) {
	t.Helper()
	for _, m := range c.VolumeMounts {
		if path.Dir(file) != m.MountPath {
			continue
		}
		if !m.ReadOnly {
			t.Errorf("%s: mounted writable", m.MountPath)
		}
		for i := range pod.Volumes {
			if v := &pod.Volumes[i]; v.Name == m.Name && (v.Secret != nil || v.ConfigMap != nil) {
				return v, path.Base(file)
			}
		}
	}
	return nil, ""
}

// checkVolume wants the volume to project key, readable by no one but owner and group.
func checkVolume(t *testing.T, flagName string, v *corev1.Volume, key string) {
	t.Helper()
	var items []corev1.KeyToPath
	var mode *int32
	if v.Secret != nil {
		items, mode = v.Secret.Items, v.Secret.DefaultMode
	} else {
		items, mode = v.ConfigMap.Items, v.ConfigMap.DefaultMode
	}
	if mode == nil || *mode&0o007 != 0 {
		t.Errorf("--%s: volume %s defaultMode %v, want no permission for others", flagName, v.Name, fmtMode(mode))
	}
	for _, it := range items {
		if it.Path == key {
			return
		}
	}
	t.Errorf("--%s: volume %s has no item %s", flagName, v.Name, key)
}

func fmtMode(m *int32) string {
	if m == nil {
		return "unset (0644)"
	}
	return fmt.Sprintf("%#o", *m)
}

// checkPolicy parses the policy as sockagent does and wants the bytes it lets callers
// buffer to fit in the container's memory limit beside the agent itself.
func checkPolicy(t *testing.T, cm *corev1.ConfigMap, key string, c corev1.Container) {
	t.Helper()
	if cm == nil {
		t.Fatal("--policy: its ConfigMap is not among the rendered objects")
	}
	p, err := policy.Parse(key, []byte(cm.Data[key]))
	if err != nil {
		t.Fatalf("--policy: %v", err)
	}
	limit := c.Resources.Limits[corev1.ResourceMemory]
	need := resource.NewQuantity(int64(p.MaxBufferedBytes)+memoryHeadroom, resource.BinarySI)
	if limit.Cmp(*need) < 0 {
		t.Errorf("memory limit %s: the policy lets callers buffer %d bytes, which with the agent's own needs %s", limit.String(), p.MaxBufferedBytes, need.String())
	}
}

func checkService(t *testing.T, s *corev1.Service, ds *appsv1.DaemonSet) {
	t.Helper()
	if s.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("service: clusterIP %q, want None (headless: its name resolves to every agent)", s.Spec.ClusterIP)
	}
	labels := ds.Spec.Template.Labels
	if len(s.Spec.Selector) == 0 {
		t.Error("service: no selector")
	}
	for k, v := range s.Spec.Selector {
		if labels[k] != v {
			t.Errorf("service selects %s=%s, which the agents' pods do not carry (%v)", k, v, labels)
		}
	}
	if len(s.Spec.Ports) != 1 || s.Spec.Ports[0].Port != grpcPort || s.Spec.Ports[0].TargetPort.String() != "grpc" || s.Spec.Ports[0].Name != "grpc" {
		t.Errorf("service: ports %+v, want grpc %d to the container's grpc port", s.Spec.Ports, grpcPort)
	}
}
