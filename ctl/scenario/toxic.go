package scenario

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/sockagent/sockagent/ctl/internal/yamlwalk"
)

// Toxics: the impairments of a proxy (serve behaviour proxy), written the same way on
// sockctl's command line and in scenario files.
//
// A toxic is a kind with its value, the kind's own parameters, and the parameters every toxic
// takes (toxicity, name, direction). sockctl writes one as comma-separated KEY[=VALUE] tokens
// with the direction after an @: "latency=50ms,jitter=5ms@upstream"; a scenario as a map:
// {latency: 50ms, jitter: 5ms, direction: upstream}. The direction is downstream (from the
// upstream back to the proxy's clients) unless given, as toxiproxy's is.
//
// Bandwidth is a rate with an optional SI prefix (k, M, G, T: 1k = 1000; Ki, Mi, Gi, Ti: 1Ki
// = 1024) and a unit: bit, bit/s, bps or b for bits per second, B, B/s or Bps for bytes per
// second. Without a unit it is bits per second, as sockctl throughput --rate is: 100M,
// 100Mbit and 12.5MB are the same rate. Byte counts (slicer, variation, limit_data,
// reset_peer's bytes) take the binary suffixes of ParseBytes.

// Toxic kinds, as written.
const (
	ToxicLatency   = "latency"
	ToxicBandwidth = "bandwidth"
	ToxicSlicer    = "slicer"
	ToxicResetPeer = "reset_peer"
	ToxicTimeout   = "timeout"
	ToxicLimitData = "limit_data"
	ToxicLoss      = "loss"
	ToxicDuplicate = "duplicate"
	ToxicReorder   = "reorder"
)

// Toxic directions, as written.
const (
	DirectionUpstream   = "upstream"
	DirectionDownstream = "downstream"
)

// Limits of toxic values, as the API documents them (proto/sockagent/v1/proxy.proto); the
// agent checks them again.
const (
	maxToxicLatency = time.Minute
	maxSlicerDelay  = time.Second
	maxReorderDepth = 64
	maxReorderDelay = 10 * time.Second
)

// Toxic is one toxic of a proxy, as sockctl and scenario files write it.
type Toxic struct {
	Kind      string // one of the Toxic* kinds
	Name      string // "" lets the agent name it <kind>_<direction>
	Direction string // DirectionUpstream or DirectionDownstream
	// Toxicity is the probability the toxic applies, from 0 to 1; HasToxicity says it was
	// given (the agent's default is 1).
	Toxicity    float64
	HasToxicity bool

	Latency, Jitter time.Duration // latency
	BytesPerSecond  uint64        // bandwidth
	AverageSize     uint32        // slicer
	SizeVariation   uint32        // slicer
	Delay           time.Duration // slicer: between pieces; reorder: longest hold
	After           time.Duration // reset_peer after a time
	AfterBytes      uint64        // reset_peer after bytes
	CloseAfter      time.Duration // timeout
	Bytes           uint64        // limit_data
	Depth           uint32        // reorder
}

// ToxicPair is one KEY[=VALUE] of a toxic; an empty Value means the key was given alone.
type ToxicPair struct {
	Key, Value string
}

// toxicKind is what a kind of toxic takes.
type toxicKind struct {
	value    string   // what its own value is, for messages
	optional bool     // the value may be left out
	params   []string // its own parameters
	example  []ToxicPair
	set      func(t *Toxic, v string) error // reads the kind's value ("" when left out)
}

// commonParams are the parameters of every toxic.
var commonParams = []string{"toxicity", "name", "direction"}

// toxicKinds are the kinds, by name.
var toxicKinds = map[string]toxicKind{
	ToxicLatency: {value: "a delay such as 50ms (at most 1m)", params: []string{"jitter"},
		example: []ToxicPair{{ToxicLatency, "50ms"}, {"jitter", "5ms"}}, set: setLatency},
	ToxicBandwidth: {value: "a rate such as 100Mbit, 12.5MB or 100M (no unit: bit/s)",
		example: []ToxicPair{{ToxicBandwidth, "100Mbit"}}, set: setBandwidth},
	ToxicSlicer: {value: "the mean piece size in bytes such as 64", params: []string{"variation", "delay"},
		example: []ToxicPair{{ToxicSlicer, "64"}, {"variation", "16"}, {"delay", "1ms"}}, set: setSlicer},
	ToxicResetPeer: {value: "after:DURATION or bytes:N (none: at once)", optional: true,
		example: []ToxicPair{{ToxicResetPeer, "after:2s"}}, set: setResetPeer},
	ToxicTimeout: {value: "the time after which both connections close (none: never)", optional: true,
		example: []ToxicPair{{ToxicTimeout, "5s"}}, set: setTimeout},
	ToxicLimitData: {value: "a byte count such as 1000 or 64K",
		example: []ToxicPair{{ToxicLimitData, "1000"}}, set: setLimitData},
	ToxicLoss: {value: "the fraction of datagrams dropped such as 0.1 or 10% (none: all)", optional: true,
		example: []ToxicPair{{ToxicLoss, "0.1"}}, set: setRate},
	ToxicDuplicate: {value: "the fraction of datagrams sent twice such as 0.05 (none: all)", optional: true,
		example: []ToxicPair{{ToxicDuplicate, "0.05"}}, set: setRate},
	ToxicReorder: {value: "depth:N, how many later datagrams overtake a held one (none: 1)", optional: true, params: []string{"delay"},
		example: []ToxicPair{{ToxicReorder, "depth:3"}}, set: setReorder},
}

// ToxicKinds are the kinds of toxic, in the order messages list them.
var ToxicKinds = []string{ToxicLatency, ToxicBandwidth, ToxicSlicer, ToxicResetPeer, ToxicTimeout, ToxicLimitData,
	ToxicLoss, ToxicDuplicate, ToxicReorder}

// ToxicForm is how a toxic is written where an error message shows an example: on sockctl's
// command line or in a scenario file.
type ToxicForm int

const (
	// FormSpec is sockctl's: latency=50ms,jitter=5ms@downstream.
	FormSpec ToxicForm = iota
	// FormYAML is a scenario file's: {latency: 50ms, jitter: 5ms, direction: downstream}.
	FormYAML
)

// pair writes one key and value in form f: "latency=5ms" or "latency: 5ms".
func (f ToxicForm) pair(k, v string) string {
	if f == FormYAML {
		return k + ": " + v
	}
	return k + "=" + v
}

// example writes pairs in form f.
func (f ToxicForm) example(pairs []ToxicPair) string {
	parts := make([]string, len(pairs))
	for i, p := range pairs {
		parts[i] = f.pair(p.Key, p.Value)
	}
	if f == FormYAML {
		return "{" + strings.Join(parts, ", ") + "}"
	}
	return strings.Join(parts, ",")
}

// ParseToxic reads sockctl's form of a toxic: KIND[=VALUE][,KEY=VALUE...][@DIRECTION], such
// as "latency=50ms,jitter=5ms@upstream", "bandwidth=100Mbit", "reset_peer=after:2s" or
// "timeout". An error names the token that is wrong, what is allowed there, and an example.
func ParseToxic(spec string) (Toxic, error) {
	body, dir, hasDir := strings.Cut(spec, "@")
	var pairs []ToxicPair
	for tok := range strings.SplitSeq(body, ",") {
		k, v, _ := strings.Cut(tok, "=")
		pairs = append(pairs, ToxicPair{Key: strings.TrimSpace(k), Value: strings.TrimSpace(v)})
	}
	if hasDir {
		pairs = append(pairs, ToxicPair{Key: "direction", Value: strings.TrimSpace(dir)})
	}
	return ToxicOf(pairs, FormSpec)
}

// ToxicOf reads a toxic from its keys and values, in any order: exactly one kind, its value
// and parameters, and toxicity, name and direction. form says how examples in errors are
// written.
func ToxicOf(pairs []ToxicPair, form ToxicForm) (Toxic, error) {
	t := Toxic{Direction: DirectionDownstream}
	var kind *ToxicPair
	seen := map[string]bool{}
	for i, p := range pairs {
		switch {
		case p.Key == "":
			return Toxic{}, fmt.Errorf("empty key: a toxic is KIND[=VALUE] and KEY=VALUE pairs such as %s", form.example(toxicKinds[ToxicLatency].example))
		case seen[p.Key]:
			return Toxic{}, fmt.Errorf("%s given twice; give each key once", p.Key)
		}
		seen[p.Key] = true
		if _, ok := toxicKinds[p.Key]; !ok {
			continue
		}
		if kind != nil {
			return Toxic{}, fmt.Errorf("%s and %s are two toxics; give each its own, such as %s and %s", kind.Key, p.Key,
				form.example(toxicKinds[kind.Key].example), form.example(toxicKinds[p.Key].example))
		}
		kind = &pairs[i]
	}
	if kind == nil {
		return Toxic{}, fmt.Errorf("no kind of toxic in %q: give one of %s, such as %s", form.example(pairs), strings.Join(ToxicKinds, ", "),
			form.example(toxicKinds[ToxicLatency].example))
	}
	k := toxicKinds[kind.Key]
	t.Kind = kind.Key
	if kind.Value == "" && !k.optional {
		return Toxic{}, fmt.Errorf("%s needs a value: %s, such as %s", kind.Key, k.value, form.example(k.example))
	}
	if err := k.set(&t, kind.Value); err != nil {
		return Toxic{}, fmt.Errorf("%s: %v; %s takes %s, such as %s", form.pair(kind.Key, kind.Value), err, kind.Key, k.value, form.example(k.example))
	}
	for _, p := range pairs {
		if p.Key == kind.Key {
			continue
		}
		if err := t.param(k, p, form); err != nil {
			return Toxic{}, err
		}
	}
	return t, t.check(k, form)
}

// param reads one parameter of a toxic of kind k.
func (t *Toxic) param(k toxicKind, p ToxicPair, form ToxicForm) error {
	if !slices.Contains(k.params, p.Key) && !slices.Contains(commonParams, p.Key) {
		return t.unknownParam(k, p.Key, form)
	}
	if p.Value == "" {
		return fmt.Errorf("%s needs a value, such as %s", p.Key, form.example(paramExample(t.Kind, p.Key)))
	}
	var err error
	switch p.Key {
	case "jitter":
		t.Jitter, err = parseDuration(p.Value)
	case "variation":
		t.SizeVariation, err = toxicSize(p.Value)
	case "delay":
		t.Delay, err = parseDuration(p.Value)
	case "toxicity":
		if t.Kind == ToxicLoss || t.Kind == ToxicDuplicate {
			if t.HasToxicity {
				return fmt.Errorf("%s and toxicity both give the rate of %s; give one, such as %s", t.Kind, t.Kind, form.example(toxicKinds[t.Kind].example))
			}
		}
		t.Toxicity, err = parseFraction(p.Value)
		t.HasToxicity = true
	case "name":
		if strings.ContainsAny(p.Value, ",@=") {
			err = fmt.Errorf("want a name without ',', '@' or '=' such as slow_replies, got %q", p.Value)
		}
		t.Name = p.Value
	case "direction":
		if p.Value != DirectionUpstream && p.Value != DirectionDownstream {
			err = fmt.Errorf("want %s or %s, got %q", DirectionUpstream, DirectionDownstream, p.Value)
		}
		t.Direction = p.Value
	}
	if err != nil {
		return fmt.Errorf("%s: %v; such as %s", form.pair(p.Key, p.Value), err, form.example(paramExample(t.Kind, p.Key)))
	}
	return nil
}

// unknownParam is the error of a key that kind k does not take.
func (t *Toxic) unknownParam(k toxicKind, key string, form ToxicForm) error {
	allowed := slices.Concat(k.params, commonParams)
	for _, other := range ToxicKinds {
		if slices.Contains(toxicKinds[other].params, key) {
			return fmt.Errorf("%s applies to %s, not to %s (%s takes %s)", key, kindsTaking(key), t.Kind, t.Kind, strings.Join(allowed, ", "))
		}
	}
	msg := fmt.Sprintf("unknown key %q", key)
	if s := suggest(key, slices.Concat(allowed, ToxicKinds)); s != "" {
		msg += fmt.Sprintf("; did you mean %q?", s)
	}
	return fmt.Errorf("%s (%s takes %s), such as %s", msg, t.Kind, strings.Join(allowed, ", "), form.example(k.example))
}

// kindsTaking lists the kinds that take parameter key.
func kindsTaking(key string) string {
	var out []string
	for _, k := range ToxicKinds {
		if slices.Contains(toxicKinds[k].params, key) {
			out = append(out, k)
		}
	}
	return orList(out)
}

// paramExample is an example of kind's toxic with parameter key.
func paramExample(kind, key string) []ToxicPair {
	for _, p := range toxicKinds[kind].example {
		if p.Key == key {
			return toxicKinds[kind].example
		}
	}
	ex := slices.Clone(toxicKinds[kind].example[:1])
	v := map[string]string{"toxicity": "0.5", "name": "slow_replies", "direction": DirectionUpstream, "delay": "100ms"}[key]
	return append(ex, ToxicPair{key, v})
}

// check checks what holds between a toxic's values.
func (t *Toxic) check(k toxicKind, form ToxicForm) error {
	switch {
	case t.Kind == ToxicLatency && t.Jitter > t.Latency:
		return fmt.Errorf("jitter=%s is more than latency=%s; the jitter is at most the latency, such as %s", t.Jitter, t.Latency, form.example(k.example))
	case t.Kind == ToxicSlicer && t.SizeVariation >= t.AverageSize:
		return fmt.Errorf("variation=%d is not less than slicer=%d; the variation is less than the mean size, such as %s", t.SizeVariation, t.AverageSize, form.example(k.example))
	case t.Kind == ToxicSlicer && t.Delay > maxSlicerDelay:
		return fmt.Errorf("delay=%s: at most %s between pieces, such as %s", t.Delay, maxSlicerDelay, form.example(k.example))
	case t.Kind == ToxicReorder && t.Delay > maxReorderDelay:
		return fmt.Errorf("delay=%s: a datagram is held at most %s, such as %s", t.Delay, maxReorderDelay, form.example(paramExample(ToxicReorder, "delay")))
	}
	return nil
}

func setLatency(t *Toxic, v string) error {
	d, err := parseDuration(v)
	if err != nil {
		return err
	}
	if d > maxToxicLatency {
		return fmt.Errorf("more than %s", maxToxicLatency)
	}
	t.Latency = d
	return nil
}

func setBandwidth(t *Toxic, v string) error {
	n, err := ParseBandwidth(v)
	t.BytesPerSecond = n
	return err
}

func setSlicer(t *Toxic, v string) error {
	n, err := toxicSize(v)
	if err == nil && n == 0 {
		err = fmt.Errorf("a piece has at least 1 byte")
	}
	t.AverageSize = n
	return err
}

func setResetPeer(t *Toxic, v string) error {
	if v == "" {
		return nil
	}
	what, n, ok := strings.Cut(v, ":")
	var err error
	switch {
	case !ok:
		err = fmt.Errorf("no after: or bytes:")
	case what == "after":
		t.After, err = parseDuration(n)
	case what == "bytes":
		t.AfterBytes, err = ParseBytes(n)
	default:
		err = fmt.Errorf("%q is neither after nor bytes", what)
	}
	return err
}

func setTimeout(t *Toxic, v string) error {
	if v == "" {
		return nil
	}
	d, err := parseDuration(v)
	t.CloseAfter = d
	return err
}

func setLimitData(t *Toxic, v string) error {
	n, err := ParseBytes(v)
	if err == nil && n == 0 {
		err = fmt.Errorf("at least 1 byte")
	}
	t.Bytes = n
	return err
}

// setRate reads the value of loss and duplicate, which is their toxicity.
func setRate(t *Toxic, v string) error {
	if v == "" {
		return nil
	}
	f, err := parseFraction(v)
	t.Toxicity, t.HasToxicity = f, err == nil
	return err
}

func setReorder(t *Toxic, v string) error {
	if v == "" {
		return nil
	}
	n, ok := strings.CutPrefix(v, "depth:")
	if !ok {
		return fmt.Errorf("no depth:")
	}
	d, err := strconv.ParseUint(n, 10, 32)
	if err != nil || d > maxReorderDepth {
		return fmt.Errorf("depth %q is not a whole number from 1 to %d", n, maxReorderDepth)
	}
	t.Depth = uint32(d)
	return nil
}

// toxicSize reads a byte count that fits the API's 32 bits.
func toxicSize(v string) (uint32, error) {
	n, err := ParseBytes(v)
	if err != nil {
		return 0, err
	}
	if n > math.MaxUint32 {
		return 0, fmt.Errorf("%q is more than 4G", v)
	}
	return uint32(n), nil
}

// rateUnits are the units of ParseBandwidth, with the bits each stands for.
var rateUnits = map[string]float64{
	"": 1, "b": 1, "bit": 1, "bit/s": 1, "bits/s": 1, "bps": 1,
	"B": 8, "B/s": 8, "Bps": 8,
}

// ratePrefixes are the multipliers of ParseBandwidth.
var ratePrefixes = map[string]float64{
	"": 1, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
	"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40,
}

// ParseBandwidth reads a bandwidth (see the units above) as whole bytes per second, at
// least 1: "100Mbit", "100M" and "12.5MB" are all 12500000.
func ParseBandwidth(s string) (uint64, error) {
	const want = "want a rate such as 100Mbit, 12.5MB or 100M (bit/s without a unit; k = 1000, Ki = 1024)"
	v, unit, ok := splitNumber(strings.TrimSpace(s))
	if !ok {
		return 0, fmt.Errorf("%s, got %q", want, s)
	}
	for p, mult := range ratePrefixes {
		rest, ok := strings.CutPrefix(unit, p)
		bits, known := rateUnits[rest]
		if !ok || !known {
			continue
		}
		bytes := v * mult * bits / 8
		switch {
		case bytes >= math.MaxUint64/2:
			return 0, fmt.Errorf("%q is too large", s)
		case bytes < 1:
			return 0, fmt.Errorf("%q is less than 1 byte (8 bits) per second", s)
		}
		return uint64(bytes), nil
	}
	return 0, fmt.Errorf("unknown unit %q in %q: %s", unit, s, want)
}

// FormatBandwidth writes bytes per second as ParseBandwidth reads it, exactly, in bits per
// second with the largest SI prefix that divides it: 12500000 is "100Mbit".
func FormatBandwidth(bytesPerSecond uint64) string {
	if bytesPerSecond > math.MaxUint64/8 {
		return strconv.FormatUint(bytesPerSecond, 10) + "B"
	}
	bits := bytesPerSecond * 8
	for _, p := range []struct {
		prefix string
		n      uint64
	}{{"T", 1e12}, {"G", 1e9}, {"M", 1e6}, {"k", 1e3}} {
		if bits >= p.n && bits%p.n == 0 {
			return strconv.FormatUint(bits/p.n, 10) + p.prefix + "bit"
		}
	}
	return strconv.FormatUint(bits, 10) + "bit"
}

// String writes the toxic in sockctl's form, which ParseToxic reads back: the kind and its
// value, its parameters, toxicity and name when given, and the direction.
func (t Toxic) String() string {
	pairs := []string{t.Kind}
	add := func(k, v string) { pairs = append(pairs, k+"="+v) }
	switch t.Kind {
	case ToxicLatency:
		pairs[0] += "=" + t.Latency.String()
		if t.Jitter > 0 {
			add("jitter", t.Jitter.String())
		}
	case ToxicBandwidth:
		pairs[0] += "=" + FormatBandwidth(t.BytesPerSecond)
	case ToxicSlicer:
		pairs[0] += "=" + strconv.FormatUint(uint64(t.AverageSize), 10)
		if t.SizeVariation > 0 {
			add("variation", strconv.FormatUint(uint64(t.SizeVariation), 10))
		}
		if t.Delay > 0 {
			add("delay", t.Delay.String())
		}
	case ToxicResetPeer:
		if t.AfterBytes > 0 {
			pairs[0] += "=bytes:" + strconv.FormatUint(t.AfterBytes, 10)
		} else if t.After > 0 {
			pairs[0] += "=after:" + t.After.String()
		}
	case ToxicTimeout:
		if t.CloseAfter > 0 {
			pairs[0] += "=" + t.CloseAfter.String()
		}
	case ToxicLimitData:
		pairs[0] += "=" + strconv.FormatUint(t.Bytes, 10)
	case ToxicReorder:
		if t.Depth > 0 {
			pairs[0] += "=depth:" + strconv.FormatUint(uint64(t.Depth), 10)
		}
		if t.Delay > 0 {
			add("delay", t.Delay.String())
		}
	}
	if t.HasToxicity {
		add("toxicity", strconv.FormatFloat(t.Toxicity, 'g', -1, 64))
	}
	if t.Name != "" && t.Name != t.Kind+"_"+t.Direction {
		add("name", t.Name)
	}
	return strings.Join(pairs, ",") + "@" + t.Direction
}

// ToxicsPrefix starts the keys of a serve or toxics step's toxics in Args: "toxics.0" marks
// the first toxic (where its map is), "toxics.0.latency" is one of its keys.
const ToxicsPrefix = "toxics."

// toxicKeys are the keys a toxic's map may have.
var toxicKeys = func() []string {
	keys := slices.Clone(ToxicKinds)
	for _, k := range ToxicKinds {
		for _, p := range toxicKinds[k].params {
			if !slices.Contains(keys, p) {
				keys = append(keys, p)
			}
		}
	}
	return append(keys, commonParams...)
}()

// toxics reads a list of toxic maps, [{latency: 50ms, jitter: 5ms}, {timeout}]; an empty list
// (the toxics action's "remove every toxic") is allowed.
func (p *parser) toxics(e entry, args Args) {
	n := p.Node(e.Value)
	if n == nil {
		return
	}
	if n.Kind != yaml.SequenceNode {
		p.add(yamlwalk.Pos(n), "toxics must be a list such as [%s], not %s", FormYAML.example(toxicKinds[ToxicLatency].example), yamlwalk.Kind(n))
		return
	}
	args["toxics"] = Scalar{Pos: yamlwalk.Pos(n)}
	for i, it := range n.Content {
		p.toxic(it, ToxicsPrefix+strconv.Itoa(i), args)
	}
}

// toxic reads one toxic's map into prefix.KEY keys, and checks it when no value holds ${...}.
func (p *parser) toxic(n *yaml.Node, prefix string, args Args) {
	entries, ok := p.Mapping(n, "a toxic", FormYAML.example(toxicKinds[ToxicLatency].example))
	if !ok {
		return
	}
	at := yamlwalk.Pos(p.Node(n))
	args[prefix] = Scalar{Pos: at}
	var pairs []ToxicPair
	literal := true
	for _, te := range entries {
		if !slices.Contains(toxicKeys, te.Key) {
			p.unknown(te, "a toxic", toxicKeys, "a kind ("+strings.Join(ToxicKinds, ", ")+") and its parameters, toxicity, name, direction")
			return
		}
		v := p.Node(te.Value)
		if v == nil {
			return
		}
		s := Scalar{Pos: yamlwalk.Pos(v)}
		if v.Kind != yaml.ScalarNode || v.Tag != "!!null" || v.Style != 0 {
			if s, ok = p.scalarOf("toxic "+te.Key, te.Key, v); !ok {
				return
			}
		}
		args[prefix+"."+te.Key] = s
		literal = literal && !strings.Contains(s.Raw, "${")
		pairs = append(pairs, ToxicPair{Key: te.Key, Value: strings.ReplaceAll(s.Raw, "$$", "$")})
	}
	if !literal {
		return
	}
	if _, err := ToxicOf(pairs, FormYAML); err != nil {
		p.add(at, "toxic: %v", err)
	}
}

// serveArgs checks what a serve step's arguments say together: a proxy needs an upstream,
// and only a proxy takes upstream, upstream_timeout and toxics.
func (p *parser) serveArgs(a entry, args Args) {
	b, ok := args["behaviour"]
	if !ok || strings.Contains(b.Raw, "${") {
		return
	}
	if b.Raw == "proxy" {
		if _, ok := args["upstream"]; !ok {
			p.add(yamlwalk.Pos(a.KeyNode), "serve with behaviour proxy needs upstream, the address it forwards to, such as upstream: \"127.0.0.1:${echo.local_port}\"")
		}
		return
	}
	for _, k := range []string{"upstream", "upstream_timeout", "toxics"} {
		if s, ok := args[k]; ok {
			p.add(s.Pos, "%s applies to behaviour proxy, not to %s", k, b.Raw)
		}
	}
}

// Toxics returns the step's toxics, in the order the file lists them; none when it gives
// none (an empty list removes every toxic).
func (r Resolved) Toxics() ([]Toxic, error) {
	var out []Toxic
	for i := 0; ; i++ {
		prefix := ToxicsPrefix + strconv.Itoa(i)
		if !r.Has(prefix) {
			return out, nil
		}
		var pairs []ToxicPair
		for _, k := range toxicKeys {
			if v, ok := r.Args[prefix+"."+k]; ok {
				pairs = append(pairs, ToxicPair{Key: k, Value: v.Raw})
			}
		}
		t, err := ToxicOf(pairs, FormYAML)
		if err != nil {
			return nil, r.bad(prefix, "%v", err)
		}
		out = append(out, t)
	}
}
