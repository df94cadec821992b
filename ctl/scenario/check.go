package scenario

import (
	"bytes"
	"fmt"
	"strconv"
	"time"
)

// shown is how many bytes of data a mismatch message quotes.
const shown = 64

func check(expect *Resolved, o Outcome) []string {
	failed := o.Reason != "" || o.Err != ""
	var e Resolved
	if expect != nil {
		e = *expect
	}
	var msgs []string
	if e.Has("error") {
		want := e.String("error")
		switch {
		case !failed:
			msgs = append(msgs, fmt.Sprintf("error: want %s, got success", want))
		case o.Reason != want:
			msgs = append(msgs, "error: want "+want+", got "+failure(o))
		}
	} else if failed {
		return []string{"failed: " + failure(o)}
	}
	seen := 0 // keys of e met so far: once all are, the rest of ExpectKeys is not given
	for _, key := range ExpectKeys {
		if seen == len(e.Args) {
			break
		}
		if !e.Has(key) {
			continue
		}
		if seen++; key == "error" {
			continue
		}
		if failed && key != "within" {
			continue // a failed action has no data to compare
		}
		if fig, _ := IsFigure(key); fig && (key != "bytes" || o.Figures != nil) {
			if m := checkFigure(e, key, o); m != "" {
				msgs = append(msgs, m)
			}
			continue
		}
		if m := checkKey(e, key, o); m != "" {
			msgs = append(msgs, m)
		}
	}
	return msgs
}

// failure describes a failed outcome: "REASON: message".
func failure(o Outcome) string {
	switch {
	case o.Reason == "":
		return o.Err
	case o.Err == "":
		return o.Reason
	}
	return o.Reason + ": " + o.Err
}

// checkKey compares one expectation with the outcome; "" means it holds.
func checkKey(e Resolved, key string, o Outcome) string {
	raw := e.String(key)
	switch key {
	case "data":
		if string(o.Data) != raw { // compared without a copy: a recv step checks this each time
			return key + ": " + diff([]byte(raw), o.Data)
		}
	case "data_hex", "data_base64":
		want, err := decodeData(key, raw)
		if err != nil {
			return e.bad(key, "%v", err).Error()
		}
		if !bytes.Equal(want, o.Data) {
			return key + ": " + diff(want, o.Data)
		}
	case "contains":
		if !bytes.Contains(o.Data, []byte(raw)) {
			return fmt.Sprintf("contains: want data containing %s, got %s", quote(raw), quote(string(o.Data)))
		}
	case "bytes":
		n, err := parseUint(raw)
		if err != nil {
			return e.bad(key, "%v", err).Error()
		}
		if o.Bytes != n {
			return fmt.Sprintf("bytes: want %d, got %d", n, o.Bytes)
		}
	case "eof":
		want, err := parseBool(raw)
		if err != nil {
			return e.bad(key, "%v", err).Error()
		}
		if o.EOF != want {
			return fmt.Sprintf("eof: want %t, got %t", want, o.EOF)
		}
	case "from":
		if o.From != raw {
			return fmt.Sprintf("from: want %q, got %q", raw, o.From)
		}
	case "within":
		d, err := parseDuration(raw)
		if err != nil {
			return e.bad(key, "%v", err).Error()
		}
		if o.Duration > d {
			return fmt.Sprintf("within: took %s, want <= %s", roundDuration(o.Duration), d)
		}
	}
	return ""
}

// diff shows two payloads that differ: both quoted, and when either is long, cut to `shown`
// bytes with their lengths and where they first differ.
func diff(want, got []byte) string {
	if len(want) <= shown && len(got) <= shown {
		return fmt.Sprintf("want %s, got %s", quote(string(want)), quote(string(got)))
	}
	at := 0
	for at < len(want) && at < len(got) && want[at] == got[at] {
		at++
	}
	return fmt.Sprintf("want %s (%d bytes), got %s (%d bytes); they differ from byte %d",
		quote(string(want)), len(want), quote(string(got)), len(got), at)
}

// quote quotes s, cut to `shown` bytes ("..." marks the cut).
func quote(s string) string {
	if len(s) <= shown {
		return strconv.Quote(s)
	}
	return strconv.Quote(s[:shown]) + "..."
}

func roundDuration(d time.Duration) time.Duration {
	if d >= time.Millisecond {
		return d.Round(time.Millisecond)
	}
	return d.Round(time.Microsecond)
}
