package scenario

import (
	"errors"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// at is the position of the first occurrence of text on 1-based line of src: an oracle for
// positions that does not depend on the YAML parser.
func at(t *testing.T, src string, line int, text string) Pos {
	t.Helper()
	lines := strings.Split(src, "\n")
	if line > len(lines) {
		t.Fatalf("no line %d", line)
	}
	i := strings.Index(lines[line-1], text)
	if i < 0 {
		t.Fatalf("line %d %q has no %q", line, lines[line-1], text)
	}
	return Pos{Line: line, Col: i + 1}
}

func mustParse(t *testing.T, path string) (*File, string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := Parse(path, data)
	if err != nil {
		t.Fatalf("Parse(%s): %v", path, err)
	}
	return f, string(data)
}

func TestParseBlockStyle(t *testing.T) {
	t.Parallel()
	path := "testdata/valid/block.yaml"
	got, src := mustParse(t, path)
	sc := func(line int, raw, text string) Scalar { return Scalar{Raw: raw, Pos: at(t, src, line, text)} }
	want := &File{
		Path: path,
		Name: "both styles",
		Agents: []Agent{
			{Name: "server", Address: "local", Pos: at(t, src, 3, "server")},
			{Name: "client", Address: "10.0.0.1:7700", Pos: at(t, src, 4, "client")},
		},
		Vars: map[string]string{"greeting": "Hello, World!", "port": "10000"},
		Steps: []*Step{
			{Pos: at(t, src, 9, "on"), On: "server", Action: "listen", As: "lis", Args: Args{
				"network": sc(11, "tcp", "tcp"),
				"address": sc(12, "0.0.0.0:${vars.port}", "0.0.0.0"),
			}},
			{Pos: at(t, src, 14, "name"), Name: "connect", Parallel: []*Step{
				{Pos: at(t, src, 16, "on"), On: "server", Action: "accept", As: "conn", Args: Args{
					"socket":  sc(18, "lis", "lis"),
					"timeout": sc(19, "5s", "5s"),
				}},
				{Pos: at(t, src, 21, "on"), On: "client", Action: "dial", As: "cli", Args: Args{
					"network": sc(23, "tcp", "tcp"),
					"address": sc(24, "${server.host}:${lis.local_port}", "${"),
				}},
			}},
			{Pos: at(t, src, 26, "on"), On: "client", Action: "send", Args: Args{
				"socket": sc(28, "cli", "cli"),
				"data":   sc(29, "${vars.greeting}", "${"),
			}, Expect: Args{"bytes": sc(31, "13", "13")}},
			{Pos: at(t, src, 32, "on"), On: "server", Action: "recv", Args: Args{
				"socket":    sc(33, "conn", "conn"),
				"max_bytes": sc(33, "13", "13"),
				"timeout":   sc(33, "2s", "2s"),
			}, Expect: Args{
				"data":   sc(35, "${vars.greeting}", "${"),
				"eof":    sc(36, "false", "false"),
				"within": sc(37, "1s", "1s"),
			}},
			{Pos: at(t, src, 38, "repeat"), Repeat: &Repeat{Count: 2, Steps: []*Step{
				{Pos: at(t, src, 41, "on"), On: "client", Action: "dial", As: "c${i}", Args: Args{
					"network": sc(43, "tcp", "tcp"),
					"address": sc(44, "${server.host}:${lis.local_port}", "${"),
				}},
				{Pos: at(t, src, 46, "on"), On: "client", Action: "close", Args: Args{
					"socket": sc(48, "c${i}", "c$"),
				}},
			}}},
			{Pos: at(t, src, 49, "on"), On: "client", Action: "sleep", Args: Args{
				"duration": sc(51, "10ms", "10ms"),
			}},
		},
	}
	compareFiles(t, got, want)
}

func compareFiles(t *testing.T, got, want *File) {
	t.Helper()
	if got.Path != want.Path || got.Name != want.Name || !reflect.DeepEqual(got.Agents, want.Agents) || !reflect.DeepEqual(got.Vars, want.Vars) {
		t.Errorf("file header:\ngot  %q %q %+v %v\nwant %q %q %+v %v", got.Path, got.Name, got.Agents, got.Vars, want.Path, want.Name, want.Agents, want.Vars)
	}
	compareSteps(t, "steps", got.Steps, want.Steps)
}

func compareSteps(t *testing.T, where string, got, want []*Step) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: got %d steps, want %d", where, len(got), len(want))
		return
	}
	for i := range got {
		g, w := *got[i], *want[i]
		at := where + "[" + strconv.Itoa(i) + "]"
		compareSteps(t, at+".parallel", g.Parallel, w.Parallel)
		if (g.Repeat == nil) != (w.Repeat == nil) {
			t.Errorf("%s: repeat %v, want %v", at, g.Repeat, w.Repeat)
		} else if g.Repeat != nil {
			if g.Repeat.Count != w.Repeat.Count {
				t.Errorf("%s: repeat count %d, want %d", at, g.Repeat.Count, w.Repeat.Count)
			}
			compareSteps(t, at+".repeat", g.Repeat.Steps, w.Repeat.Steps)
		}
		g.Parallel, w.Parallel, g.Repeat, w.Repeat = nil, nil, nil, nil
		if !reflect.DeepEqual(g, w) {
			t.Errorf("%s:\ngot  %+v\nwant %+v", at, g, w)
		}
	}
}

// clearPos zeroes every position of steps, to compare files written in different styles.
func clearPos(steps []*Step) {
	for _, s := range steps {
		s.Pos = Pos{}
		for k, v := range s.Args {
			v.Pos = Pos{}
			s.Args[k] = v
		}
		for k, v := range s.Expect {
			v.Pos = Pos{}
			s.Expect[k] = v
		}
		clearPos(s.Parallel)
		if s.Repeat != nil {
			clearPos(s.Repeat.Steps)
		}
	}
}

// TestParseFlowStyle checks that the same scenario written in flow style parses to the same
// structure, and that positions point into the flow text.
func TestParseFlowStyle(t *testing.T) {
	t.Parallel()
	block, _ := mustParse(t, "testdata/valid/block.yaml")
	flow, src := mustParse(t, "testdata/valid/flow.yaml")
	if got, want := flow.Steps[0].Pos, at(t, src, 4, "{on"); got != want {
		t.Errorf("flow step 1 at %v, want %v", got, want)
	}
	if got, want := flow.Steps[1].Parallel[1].Args["address"].Pos, at(t, src, 7, `"${server`); got != want {
		t.Errorf("flow dial address at %v, want %v", got, want)
	}
	if got, want := flow.Agents[1].Pos, at(t, src, 1, "client"); got != want {
		t.Errorf("flow agent client at %v, want %v", got, want)
	}
	for _, f := range []*File{block, flow} {
		clearPos(f.Steps)
		for i := range f.Agents {
			f.Agents[i].Pos = Pos{}
		}
		f.Path = ""
	}
	compareFiles(t, flow, block)
}

// TestParseOnIsString: under YAML 1.1, on/yes/off are booleans; here keys and values stay
// as written.
func TestParseOnIsString(t *testing.T) {
	t.Parallel()
	src := `agents: {on: local, off: local}
steps:
  - on: on
    send: {socket: yes, data: on}
    as: x
  - {on: off, listen: {network: tcp, address: "127.0.0.1:0"}, as: yes}
  - on: off
    send: {socket: yes, data: off}
`
	// "socket: yes" in the first send names an alias created later: expect exactly that
	// problem, which also proves the value is the string "yes".
	_, err := Parse("on.yaml", []byte(src))
	var errs *Errors
	if !errors.As(err, &errs) {
		t.Fatalf("Parse: %v, want *Errors", err)
	}
	want := []string{
		`on.yaml:4:20: socket: alias "yes" is created by a later step (line 6); a step can only use a socket created before it`,
		`on.yaml:5:5: as names the socket a step creates (listen, bind, dial, accept) or the results of probe and throughput; send has neither`,
	}
	if got := strings.Split(err.Error(), "\n"); !reflect.DeepEqual(got, want) {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	src = strings.Replace(src, "    send: {socket: yes, data: on}\n    as: x\n", "    sleep: {duration: 1s}\n", 1)
	f, err := Parse("on.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if f.Agents[0].Name != "on" || f.Agents[1].Name != "off" {
		t.Errorf("agents %+v, want on and off", f.Agents)
	}
	s := f.Steps
	if s[0].On != "on" || s[1].On != "off" || s[1].As != "yes" || s[2].Args["socket"].Raw != "yes" || s[2].Args["data"].Raw != "off" {
		t.Errorf("steps: %+v %+v %+v", s[0], s[1], s[2])
	}
}

func TestParseDefaults(t *testing.T) {
	t.Parallel()
	// No name: the file's base name. No vars: nil. No expect: nil; empty expect: empty.
	f, err := Parse("dir/quick.yaml", []byte("agents: {a: local}\nsteps:\n- {on: a, bind: {network: udp, address: ':0'}, expect: {}}\n- {on: a, bind: {network: udp, address: ':0'}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if f.Name != "quick" || f.Vars != nil || f.Steps[0].Expect == nil || len(f.Steps[0].Expect) != 0 || f.Steps[1].Expect != nil {
		t.Errorf("got name %q vars %v expects %v %v", f.Name, f.Vars, f.Steps[0].Expect, f.Steps[1].Expect)
	}
	if !f.Agents[0].Local() {
		t.Errorf("agent a: Local() = false")
	}
}

// TestParseScalarsRaw: numbers, bools and quoted strings keep the text as written.
func TestParseScalarsRaw(t *testing.T) {
	t.Parallel()
	f, err := Parse("raw.yaml", []byte(`agents: {a: local}
vars: {n: 0x10, b: True, q: '007', e: "", d: $$HOME}
steps:
- {on: a, listen: {network: tcp, address: "[::1]:0"}, as: l}
- {on: a, accept: {socket: l, timeout: 1.5s}, as: c}
- {on: a, recv: {socket: c, max_bytes: 013, exact_bytes: 1e3}, expect: {eof: true, bytes: 0}}
`))
	if err == nil {
		t.Fatal("exact_bytes 1e3 accepted")
	}
	if want := "raw.yaml:6:58: exact_bytes: want a whole number such as 1024, got \"1e3\""; err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
	f, err = Parse("raw.yaml", []byte(`agents: {a: local}
vars: {n: 0x10, b: True, q: '007', e: "", d: $$HOME}
steps:
- {on: a, listen: {network: tcp, address: "[::1]:0"}, as: l}
- {on: a, accept: {socket: l, timeout: 1.5s}, as: c}
- {on: a, recv: {socket: c, max_bytes: 013}, expect: {eof: true, bytes: 0}}
`))
	if err != nil {
		t.Fatal(err)
	}
	wantVars := map[string]string{"n": "0x10", "b": "True", "q": "007", "e": "", "d": "$HOME"}
	if !reflect.DeepEqual(f.Vars, wantVars) {
		t.Errorf("vars %v, want %v", f.Vars, wantVars)
	}
	if got := f.Steps[2].Args["max_bytes"].Raw; got != "013" {
		t.Errorf("max_bytes %q, want 013", got)
	}
	if got := f.Steps[2].Expect["eof"].Raw; got != "true" {
		t.Errorf("eof %q, want true", got)
	}
}
