package scenario

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// testLookup resolves a few references and says "unknown REF" for the others.
func testLookup(ref string) (string, error) {
	v, ok := map[string]string{
		"vars.greeting":  "Hello",
		"env.HOME":       "/home/me",
		"lis.local_port": "4242",
		"server.host":    "10.0.0.2",
		"i":              "1",
		"c1.local_port":  "5001",
		"vars.dollar":    "$${x}",
	}[ref]
	if !ok {
		return "", fmt.Errorf("unknown %s", ref)
	}
	return v, nil
}

func TestExpand(t *testing.T) {
	t.Parallel()
	tests := []struct {
		raw, want, err string
	}{
		{raw: "plain", want: "plain"},
		{raw: "", want: ""},
		{raw: "${vars.greeting}, World!", want: "Hello, World!"},
		{raw: "${env.HOME}/x", want: "/home/me/x"},
		{raw: "${server.host}:${lis.local_port}", want: "10.0.0.2:4242"},
		{raw: "c${i}", want: "c1"},
		{raw: "${c${i}.local_port}", want: "5001"},
		{raw: "$$", want: "$"},
		{raw: "$${vars.greeting}", want: "${vars.greeting}"},
		{raw: "$$$${x}", want: "$${x}"},
		{raw: "cost $5 and $", want: "cost $5 and $"},
		{raw: "a}b{c", want: "a}b{c"},
		{raw: "${vars.dollar}", want: "$${x}"}, // values are not expanded again
		{raw: "${vars.greeting", err: `unterminated "${": close it with "}", or write "$$" for a literal "$"`},
		{raw: "x ${c${i}.local_port", err: `unterminated "${": close it with "}", or write "$$" for a literal "$"`},
		{raw: "${vars.nope}", err: "unknown vars.nope"},
		{raw: "ok ${lis.remote_port}", err: "unknown lis.remote_port"},
		{raw: "${}", err: `empty "${}": write ${ALIAS.field}, ${AGENT.host}, ${vars.NAME}, ${env.NAME} or ${i}`},
		{raw: strings.Repeat("${", 9) + "i" + strings.Repeat("}", 9), err: `"${" nested too deeply`},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			t.Parallel()
			got, err := Expand(tt.raw, testLookup)
			switch {
			case tt.err != "" && (err == nil || err.Error() != tt.err):
				t.Errorf("Expand(%q) = %q, %v; want error %q", tt.raw, got, err, tt.err)
			case tt.err == "" && (err != nil || got != tt.want):
				t.Errorf("Expand(%q) = %q, %v; want %q", tt.raw, got, err, tt.want)
			}
		})
	}
}

func TestResolve(t *testing.T) {
	t.Parallel()
	args := Args{
		"address": {Raw: "${server.host}:${lis.local_port}", Pos: Pos{Line: 3, Col: 20}},
		"data":    {Raw: "${vars.greeting} $$", Pos: Pos{Line: 3, Col: 50}},
	}
	r, err := Resolve("s.yaml", args, testLookup)
	if err != nil {
		t.Fatal(err)
	}
	want := Resolved{Path: "s.yaml", Args: Args{
		"address": {Raw: "10.0.0.2:4242", Pos: Pos{Line: 3, Col: 20}},
		"data":    {Raw: "Hello $", Pos: Pos{Line: 3, Col: 50}},
	}}
	if fmt.Sprint(r) != fmt.Sprint(want) {
		t.Errorf("Resolve = %+v, want %+v", r, want)
	}
	if args["data"].Raw != "${vars.greeting} $$" {
		t.Errorf("Resolve changed its input: %v", args)
	}
	if !r.Has("data") || r.Has("socket") || r.String("address") != "10.0.0.2:4242" || r.String("socket") != "" {
		t.Errorf("Has/String wrong on %+v", r)
	}

	// Every bad value is reported, in order of position.
	_, err = Resolve("s.yaml", Args{
		"timeout": {Raw: "${vars.t}", Pos: Pos{Line: 5, Col: 9}},
		"address": {Raw: "${nope.host", Pos: Pos{Line: 4, Col: 2}},
		"data":    {Raw: "ok", Pos: Pos{Line: 4, Col: 1}},
	}, testLookup)
	var errs *Errors
	if !errors.As(err, &errs) {
		t.Fatalf("Resolve error %T %v, want *Errors", err, err)
	}
	wantErr := "s.yaml:4:2: address: unterminated \"${\": close it with \"}\", or write \"$$\" for a literal \"$\"\n" +
		"s.yaml:5:9: timeout: unknown vars.t"
	if err.Error() != wantErr {
		t.Errorf("Resolve error:\n%v\nwant:\n%s", err, wantErr)
	}
}

func resolved(kv ...string) Resolved {
	r := Resolved{Path: "r.yaml", Args: Args{}}
	for i := 0; i+1 < len(kv); i += 2 {
		r.Args[kv[i]] = Scalar{Raw: kv[i+1], Pos: Pos{Line: 7, Col: 10 + i}}
	}
	return r
}

func TestResolvedGetters(t *testing.T) {
	t.Parallel()
	r := resolved("max_bytes", "1024", "timeout", "1m30s", "exact_bytes", "12x", "duration", "5", "big", "18446744073709551616")
	if n, err := r.Uint("max_bytes"); n != 1024 || err != nil {
		t.Errorf("Uint(max_bytes) = %d, %v", n, err)
	}
	if n, err := r.Uint("absent"); n != 0 || err != nil {
		t.Errorf("Uint(absent) = %d, %v", n, err)
	}
	if d, err := r.Duration("timeout"); d != 90*time.Second || err != nil {
		t.Errorf("Duration(timeout) = %v, %v", d, err)
	}
	if d, err := r.Duration("absent"); d != 0 || err != nil {
		t.Errorf("Duration(absent) = %v, %v", d, err)
	}
	for _, tt := range []struct {
		get  func() error
		want string
	}{
		{func() error { _, err := r.Uint("exact_bytes"); return err }, `r.yaml:7:14: exact_bytes: want a whole number such as 1024, got "12x"`},
		{func() error { _, err := r.Uint("big"); return err }, `r.yaml:7:18: big: "18446744073709551616" is too large`},
		{func() error { _, err := r.Duration("duration"); return err }, `r.yaml:7:16: duration: want a duration such as 5s, 250ms or 1m30s, got "5"`},
	} {
		err := tt.get()
		var e Error
		if !errors.As(err, &e) || err.Error() != tt.want {
			t.Errorf("got %v, want Error %s", err, tt.want)
		}
	}
}

func TestResolvedData(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args  []string
		want  []byte
		given bool
		err   string
	}{
		{args: nil, want: nil, given: false},
		{args: []string{"data", "Hello, World!"}, want: []byte("Hello, World!"), given: true},
		{args: []string{"data", ""}, want: []byte{}, given: true},
		{args: []string{"data_hex", "48 65\n6c6C 6f"}, want: []byte("Hello"), given: true},
		{args: []string{"data_hex", "00ff"}, want: []byte{0, 255}, given: true},
		{args: []string{"data_base64", "SGVs\nbG8="}, want: []byte("Hello"), given: true},
		{args: []string{"data_size", "3"}, want: []byte("012"), given: true},
		{args: []string{"data_size", "0"}, want: []byte{}, given: true},
		{args: []string{"data_hex", "4"}, given: true, err: `r.yaml:7:10: data_hex: want hex digits such as "48 65 6c 6c 6f" (white space ignored): encoding/hex: odd length hex string`},
		{args: []string{"data_base64", "SGVsbG8"}, given: true, err: `r.yaml:7:10: data_base64: want standard base64 such as "SGVsbG8=" (white space ignored): illegal base64 data at input byte 4`},
		{args: []string{"data_size", "-1"}, given: true, err: `r.yaml:7:10: data_size: want a whole number such as 1024, got "-1"`},
		{args: []string{"data_size", "1073741825"}, given: true, err: `r.yaml:7:10: data_size: 1073741825 bytes is more than the limit of 1073741824`},
		{args: []string{"data", "x", "data_size", "1"}, given: true, err: `r.yaml:7:12: data_size: give one of data, data_hex, data_base64 or data_size, not both data and data_size`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, "="), func(t *testing.T) {
			t.Parallel()
			got, given, err := resolved(tt.args...).Data()
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Errorf("Data() error %v, want %s", err, tt.err)
				}
				return
			}
			if err != nil || given != tt.given || !bytes.Equal(got, tt.want) || (got == nil) != (tt.want == nil) {
				t.Errorf("Data() = %q, %v, %v; want %q, %v", got, given, err, tt.want, tt.given)
			}
		})
	}
}

func TestGeneratedData(t *testing.T) {
	t.Parallel()
	b := GeneratedData(130)
	want := "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.\n" +
		"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.\n" + "01"
	if string(b) != want {
		t.Fatalf("GeneratedData(130) = %q, want %q", b, want)
	}
	big := GeneratedData(1 << 20)
	if len(big) != 1<<20 {
		t.Fatalf("len %d", len(big))
	}
	for i, c := range big {
		if c != patternLine[i%64] {
			t.Fatalf("byte %d = %q, want %q", i, c, patternLine[i%64])
		}
	}
	// Any prefix is the pattern of its length: a receiver can compare what it got.
	if !bytes.Equal(big[:1000], GeneratedData(1000)) {
		t.Error("prefix differs")
	}
}
