package wire

import (
	"testing"
	"time"
)

func TestRoundTrip(t *testing.T) {
	b := make([]byte, 100)
	PutHeader(b, Header{Type: Data, Test: 7, Seq: 42})
	h, body, err := ParseHeader(b)
	if err != nil || h != (Header{Type: Data, Test: 7, Seq: 42}) || len(body) != 100-HeaderSize {
		t.Fatalf("header %+v body %d err %v", h, len(body), err)
	}
	rep := AppendReport(nil, 9, ReportBody{Datagrams: 3, Bytes: 4200})
	if len(rep) != ReportSize {
		t.Fatalf("report is %d bytes, want %d", len(rep), ReportSize)
	}
	h, body, err = ParseHeader(rep)
	r, err2 := ParseReport(body)
	if err != nil || err2 != nil || h.Type != Report || h.Test != 9 || r != (ReportBody{3, 4200}) {
		t.Fatalf("report %+v %+v %v %v", h, r, err, err2)
	}
	st := StartBody{RateBitsPerSecond: 1e9, Size: 1400, Duration: 3 * time.Second, Bytes: 5}
	sb := AppendStart(nil, 11, st)
	if len(sb) != StartSize {
		t.Fatalf("start is %d bytes, want %d", len(sb), StartSize)
	}
	h, body, _ = ParseHeader(sb)
	got, err := ParseStart(body)
	if err != nil || h.Type != SourceStart || got != st {
		t.Fatalf("start %+v %+v %v", h, got, err)
	}
	if _, _, err := ParseHeader([]byte("hello, this is not a header!")); err != ErrNotMeasurement {
		t.Fatalf("plain bytes: %v", err)
	}
	if _, err := ParseStart(body[:5]); err == nil {
		t.Fatal("short start accepted")
	}
}
