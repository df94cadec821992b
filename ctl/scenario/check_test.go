package scenario

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestCheck(t *testing.T) {
	t.Parallel()
	hello := Outcome{Data: []byte("Hello, World!"), Bytes: 13, Duration: 20 * time.Millisecond}
	refused := Outcome{Reason: "CONNECTION_REFUSED", Err: "dial tcp 127.0.0.1:1: connection refused", Duration: time.Millisecond}
	long := strings.Repeat("a", 100)
	tests := []struct {
		name   string
		expect []string // key, value pairs; nil: no expect
		out    Outcome
		want   []string
	}{
		{name: "nil expect, success", out: hello},
		{name: "nil expect, failure", out: refused, want: []string{"failed: CONNECTION_REFUSED: dial tcp 127.0.0.1:1: connection refused"}},
		{name: "nil expect, failure without reason", out: Outcome{Err: "boom"}, want: []string{"failed: boom"}},
		{name: "empty expect, failure", expect: []string{}, out: refused, want: []string{"failed: CONNECTION_REFUSED: dial tcp 127.0.0.1:1: connection refused"}},

		{name: "data equal", expect: []string{"data", "Hello, World!"}, out: hello},
		{name: "data differs", expect: []string{"data", "Hello"}, out: Outcome{Data: []byte("Hel")}, want: []string{`data: want "Hello", got "Hel"`}},
		{name: "data empty", expect: []string{"data", ""}, out: Outcome{}},
		{name: "data longer than expected", expect: []string{"data", "Hello"}, out: hello, want: []string{`data: want "Hello", got "Hello, World!"`}},
		{name: "data longer than empty", expect: []string{"data", ""}, out: hello, want: []string{`data: want "", got "Hello, World!"`}},
		{name: "data quoted", expect: []string{"data", "a\n"}, out: Outcome{Data: []byte{0, 'a'}}, want: []string{`data: want "a\n", got "\x00a"`}},
		{name: "data long", expect: []string{"data", long}, out: Outcome{Data: []byte(long[:70] + "b")},
			want: []string{`data: want "` + long[:64] + `"... (100 bytes), got "` + long[:64] + `"... (71 bytes); they differ from byte 70`}},
		{name: "data on failure", expect: []string{"data", "x"}, out: refused, want: []string{"failed: CONNECTION_REFUSED: dial tcp 127.0.0.1:1: connection refused"}},
		{name: "data_hex equal", expect: []string{"data_hex", "48 65 6c 6c 6f"}, out: Outcome{Data: []byte("Hello")}},
		{name: "data_hex differs", expect: []string{"data_hex", "00ff"}, out: Outcome{Data: []byte{0, 0xfe}}, want: []string{`data_hex: want "\x00\xff", got "\x00\xfe"`}},
		{name: "data_hex invalid", expect: []string{"data_hex", "zz"}, out: Outcome{}, want: []string{`r.yaml:7:10: data_hex: want hex digits such as "48 65 6c 6c 6f" (white space ignored): encoding/hex: invalid byte: U+007A 'z'`}},
		{name: "data_base64 equal", expect: []string{"data_base64", "SGVsbG8="}, out: Outcome{Data: []byte("Hello")}},
		{name: "data_base64 differs", expect: []string{"data_base64", "SGVsbG8="}, out: Outcome{Data: []byte("Help")}, want: []string{`data_base64: want "Hello", got "Help"`}},

		{name: "contains", expect: []string{"contains", "World"}, out: hello},
		{name: "contains missing", expect: []string{"contains", "world"}, out: hello, want: []string{`contains: want data containing "world", got "Hello, World!"`}},
		{name: "contains long", expect: []string{"contains", "b"}, out: Outcome{Data: []byte(long)}, want: []string{`contains: want data containing "b", got "` + long[:64] + `"...`}},

		{name: "bytes", expect: []string{"bytes", "13"}, out: hello},
		{name: "bytes differ", expect: []string{"bytes", "14"}, out: hello, want: []string{"bytes: want 14, got 13"}},
		{name: "bytes invalid", expect: []string{"bytes", "x"}, out: hello, want: []string{`r.yaml:7:10: bytes: want a whole number such as 1024, got "x"`}},

		{name: "eof true", expect: []string{"eof", "true"}, out: Outcome{EOF: true}},
		{name: "eof false", expect: []string{"eof", "false"}, out: hello},
		{name: "eof missing", expect: []string{"eof", "true"}, out: hello, want: []string{"eof: want true, got false"}},
		{name: "eof unexpected", expect: []string{"eof", "false"}, out: Outcome{EOF: true}, want: []string{"eof: want false, got true"}},

		{name: "from", expect: []string{"from", "10.0.0.1:5000"}, out: Outcome{From: "10.0.0.1:5000"}},
		{name: "from differs", expect: []string{"from", "10.0.0.1:5000"}, out: Outcome{From: "10.0.0.1:5001"}, want: []string{`from: want "10.0.0.1:5000", got "10.0.0.1:5001"`}},

		{name: "error matches", expect: []string{"error", "CONNECTION_REFUSED"}, out: refused},
		{name: "error but success", expect: []string{"error", "CONNECTION_REFUSED"}, out: hello, want: []string{"error: want CONNECTION_REFUSED, got success"}},
		{name: "error other", expect: []string{"error", "TIMEOUT"}, out: refused, want: []string{"error: want TIMEOUT, got CONNECTION_REFUSED: dial tcp 127.0.0.1:1: connection refused"}},
		{name: "error and within", expect: []string{"error", "CONNECTION_REFUSED", "within", "100us"}, out: refused, want: []string{"within: took 1ms, want <= 100µs"}},

		{name: "within", expect: []string{"within", "1s"}, out: hello},
		{name: "within exact", expect: []string{"within", "20ms"}, out: hello},
		{name: "within too slow", expect: []string{"within", "1s"}, out: Outcome{Duration: 2300*time.Millisecond + 400*time.Microsecond}, want: []string{"within: took 2.3s, want <= 1s"}},
		{name: "within on failure", expect: []string{"within", "1s"}, out: Outcome{Reason: "TIMEOUT", Duration: 2 * time.Second}, want: []string{"failed: TIMEOUT"}},

		{name: "several mismatches in key order", expect: []string{"within", "1ms", "eof", "true", "data", "x", "bytes", "1"}, out: hello, want: []string{
			`data: want "x", got "Hello, World!"`, "bytes: want 1, got 13", "eof: want true, got false", "within: took 20ms, want <= 1ms"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var e *Resolved
			if tt.expect != nil {
				r := resolved(tt.expect...)
				e = &r
			}
			if got := Check(e, tt.out); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Check = %q\nwant    %q", got, tt.want)
			}
		})
	}
}

func TestLabel(t *testing.T) {
	t.Parallel()
	a := func(kv ...string) Args {
		args := Args{}
		for i := 0; i+1 < len(kv); i += 2 {
			args[kv[i]] = Scalar{Raw: kv[i+1]}
		}
		return args
	}
	tests := []struct {
		step *Step
		want string
	}{
		{&Step{Name: "server listens", Action: "listen", Args: a("network", "tcp")}, "server listens"},
		{&Step{Action: "listen", Args: a("address", "0.0.0.0:0", "network", "tcp")}, "listen tcp 0.0.0.0:0"},
		{&Step{Action: "dial", Args: a("network", "tcp", "address", "${server.host}:${lis.local_port}", "timeout", "1s")}, "dial tcp ${server.host}:${lis.local_port}"},
		{&Step{Action: "recv", Args: a("socket", "conn", "max_bytes", "10")}, "recv conn"},
		{&Step{Action: "sendto", Args: a("socket", "u", "address", "10.0.0.1:9", "data", "x")}, "sendto u 10.0.0.1:9"},
		{&Step{Action: "shutdown", Args: a("socket", "c", "direction", "write")}, "shutdown c write"},
		{&Step{Action: "sleep", Args: a("duration", "1s")}, "sleep 1s"},
		{&Step{Parallel: []*Step{{}, {}, {}}}, "parallel (3 steps)"},
		{&Step{Parallel: []*Step{{}}}, "parallel (1 step)"},
		{&Step{Repeat: &Repeat{Count: 5, Steps: []*Step{{}, {}}}}, "repeat 5x (2 steps)"},
		{&Step{Name: "fan in", Repeat: &Repeat{Count: 5, Steps: []*Step{{}}}}, "fan in"},
	}
	for _, tt := range tests {
		if got := tt.step.Label(); got != tt.want {
			t.Errorf("Label() = %q, want %q", got, tt.want)
		}
	}
}
