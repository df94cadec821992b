package scenario

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestCheckQuoteBounds: payloads of exactly `shown` bytes are quoted whole, one byte more is
// cut; a long payload that is a prefix of the other is reported as differing where the shorter
// one ends.
func TestCheckQuoteBounds(t *testing.T) {
	t.Parallel()
	at64 := strings.Repeat("a", shown)
	at65 := at64 + "b"
	long := strings.Repeat("x", 80)
	for _, tt := range []struct {
		name   string
		expect []string
		out    Outcome
		want   []string
	}{
		{"want of 64 bytes", []string{"data", at64}, Outcome{Data: []byte("short")},
			[]string{`data: want "` + at64 + `", got "short"`}},
		{"got of 64 bytes", []string{"data", "short"}, Outcome{Data: []byte(at64)},
			[]string{`data: want "short", got "` + at64 + `"`}},
		{"got of 65 bytes", []string{"data", "short"}, Outcome{Data: []byte(at65)},
			[]string{`data: want "short" (5 bytes), got "` + at64 + `"... (65 bytes); they differ from byte 0`}},
		{"want a long prefix of got", []string{"data", long}, Outcome{Data: []byte(long + "yy")},
			[]string{`data: want "` + long[:64] + `"... (80 bytes), got "` + long[:64] + `"... (82 bytes); they differ from byte 80`}},
		{"got a long prefix of want", []string{"data", long + "yy"}, Outcome{Data: []byte(long)},
			[]string{`data: want "` + long[:64] + `"... (82 bytes), got "` + long[:64] + `"... (80 bytes); they differ from byte 80`}},
		{"contains, got of 64 bytes", []string{"contains", "b"}, Outcome{Data: []byte(at64)},
			[]string{`contains: want data containing "b", got "` + at64 + `"`}},
		{"within of exactly 1ms", []string{"within", "500us"}, Outcome{Duration: time.Millisecond},
			[]string{"within: took 1ms, want <= 500µs"}},
		{"within under 1ms", []string{"within", "500us"}, Outcome{Duration: 987654 * time.Nanosecond},
			[]string{"within: took 988µs, want <= 500µs"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := resolved(tt.expect...)
			if got := Check(&r, tt.out); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Check = %q\nwant    %q", got, tt.want)
			}
		})
	}
}
