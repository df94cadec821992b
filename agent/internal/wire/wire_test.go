package wire

import (
	"bytes"
	"reflect"
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
	if err != nil || h.Type != SourceStart || !reflect.DeepEqual(got, st) {
		t.Fatalf("start %+v %+v %v", h, got, err)
	}
	// With the source's cookie, and the Cookie datagram that carries it.
	cookie := [CookieSize]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	st.Cookie = cookie[:]
	sb = AppendStart(nil, 11, st)
	if len(sb) != StartSize+CookieSize {
		t.Fatalf("start with a cookie is %d bytes, want %d", len(sb), StartSize+CookieSize)
	}
	_, body, _ = ParseHeader(sb)
	if got, err := ParseStart(body); err != nil || !bytes.Equal(got.Cookie, cookie[:]) || got.Bytes != 5 {
		t.Fatalf("start with a cookie: %+v %v", got, err)
	}
	cb := AppendCookie(nil, 11, cookie)
	if len(cb) != HeaderSize+CookieSize || len(cb) >= StartSize {
		t.Fatalf("cookie datagram is %d bytes, want %d, less than a SourceStart's %d", len(cb), HeaderSize+CookieSize, StartSize)
	}
	h, body, _ = ParseHeader(cb)
	if c, err := ParseCookie(body); err != nil || h.Type != Cookie || h.Test != 11 || c != cookie {
		t.Fatalf("cookie %+v %x %v", h, c, err)
	}
	if _, err := ParseCookie(body[:3]); err == nil {
		t.Fatal("short cookie accepted")
	}
	if _, _, err := ParseHeader([]byte("hello, this is not a header!")); err != ErrNotMeasurement {
		t.Fatalf("plain bytes: %v", err)
	}
	if _, err := ParseStart(body[:5]); err == nil {
		t.Fatal("short start accepted")
	}
}

// No answer is larger than what it answers: a ReportRequest is as large as a Report and as a
// Cookie, and a Cookie is smaller than a SourceStart.
func TestAnswersNoLargerThanRequests(t *testing.T) {
	cookie := [CookieSize]byte{9: 1}
	for _, tc := range []struct {
		name             string
		request, answers []byte
	}{
		{"report request -> report", AppendReportRequest(nil, 1, nil), AppendReport(nil, 1, ReportBody{1, 2})},
		{"report request -> cookie", AppendReportRequest(nil, 1, nil), AppendCookie(nil, 1, cookie)},
		{"source start -> cookie", AppendStart(nil, 1, StartBody{}), AppendCookie(nil, 1, cookie)},
	} {
		if len(tc.answers) > len(tc.request) {
			t.Errorf("%s: %d bytes answer %d", tc.name, len(tc.answers), len(tc.request))
		}
	}
	rr := AppendReportRequest(nil, 5, &cookie)
	h, body, err := ParseHeader(rr)
	c, err2 := ParseReportRequest(body)
	if err != nil || err2 != nil || len(rr) != ReportRequestSize || h.Type != ReportRequest || h.Test != 5 || c != cookie {
		t.Fatalf("report request %d bytes %+v %x %v %v", len(rr), h, c, err, err2)
	}
	if _, err := ParseReportRequest(body[:CookieSize-1]); err == nil {
		t.Fatal("a short report request accepted")
	}
}
