// Package wire is the datagram format the agent's measurements speak over UDP: Probe's echo
// requests, Throughput's data, and the small control messages between a Throughput test and a
// served discard or source (SocketService.Serve). Every such datagram starts with a 24-byte
// header:
//
//	0  magic   uint32  "SAM1"
//	4  type    uint8   Data, ReportRequest, Report, SourceStart, SourceStop, Cookie
//	5  flags   uint8   0
//	6  _       uint16  0
//	8  test    uint64  the test's id, chosen by the one that starts it
//	16 seq     uint64  sequence number (Data: from 0, one per datagram)
//
// then a body by type:
//
//	Data           payload (any bytes, up to the datagram's size)
//	ReportRequest  cookie [16]byte, zeros before the answerer sent one: "how many Data
//	               datagrams of this test have you received (discard) or sent (source)?"
//	Report         datagrams uint64, bytes uint64 (Data payload bytes incl. headers)
//	SourceStart    rate_bits_per_second uint64, size uint32, duration_ns uint64, bytes uint64,
//	               then cookie [16]byte once the source sent one:
//	               "send me Data datagrams of size bytes at this rate until duration or bytes";
//	               the receiver repeats it at least every KeepAlive while it wants more
//	SourceStop     none: "stop sending this test"
//	Cookie         cookie [16]byte: the source's answer to a SourceStart without the right
//	               cookie, "repeat it with this". A source sends Data only to an address that
//	               proved it receives there, so a SourceStart with a forged source address
//	               gets its victim one Cookie, smaller than the SourceStart, and no Data.
//	               A ReportRequest without the right cookie gets a Cookie too, and a Report
//	               only once it carries it.
//
// A served socket never answers with more bytes than the datagram it answers: a
// ReportRequest is as large as a Report (ReportRequestSize), and a shorter one gets nothing;
// so a request with a forged sender address gets its victim no more bytes than it cost.
//
// All integers are big-endian. A datagram without the magic is not a measurement datagram.
package wire

import (
	"encoding/binary"
	"errors"
	"time"
)

// HeaderSize is the size of the header every measurement datagram starts with.
const HeaderSize = 24

// Magic marks a measurement datagram ("SAM1").
const Magic uint32 = 0x53414d31

// KeepAlive is how often a receiver repeats SourceStart; a source stops sending a test it has
// not heard of for 3*KeepAlive, so it never floods a peer that went away.
const KeepAlive = time.Second

// Type is a datagram's type.
type Type uint8

// Types of measurement datagrams.
const (
	Data          Type = 1
	ReportRequest Type = 2
	Report        Type = 3
	SourceStart   Type = 4
	SourceStop    Type = 5
	Cookie        Type = 6
)

// CookieSize is the size of a source's cookie.
const CookieSize = 16

// Header is the start of every measurement datagram.
type Header struct {
	Type Type
	Test uint64
	Seq  uint64
}

// ErrNotMeasurement says a datagram does not start with a measurement header.
var ErrNotMeasurement = errors.New("not a measurement datagram")

// PutHeader writes h into b[:HeaderSize]; b must be at least HeaderSize long.
func PutHeader(b []byte, h Header) {
	_ = b[HeaderSize-1]
	binary.BigEndian.PutUint32(b[0:], Magic)
	b[4] = byte(h.Type)
	b[5] = 0
	binary.BigEndian.PutUint16(b[6:], 0)
	binary.BigEndian.PutUint64(b[8:], h.Test)
	binary.BigEndian.PutUint64(b[16:], h.Seq)
}

// ParseHeader reads the header of b and returns it with the body after it.
func ParseHeader(b []byte) (Header, []byte, error) {
	if len(b) < HeaderSize || binary.BigEndian.Uint32(b) != Magic {
		return Header{}, nil, ErrNotMeasurement
	}
	h := Header{Type: Type(b[4]), Test: binary.BigEndian.Uint64(b[8:]), Seq: binary.BigEndian.Uint64(b[16:])}
	return h, b[HeaderSize:], nil
}

// ReportBody is the body of a Report.
type ReportBody struct {
	Datagrams, Bytes uint64
}

// ReportSize is the size of a Report datagram.
const ReportSize = HeaderSize + 16

// AppendReport appends a Report datagram for test to b.
func AppendReport(b []byte, test uint64, r ReportBody) []byte {
	var h [HeaderSize]byte
	PutHeader(h[:], Header{Type: Report, Test: test})
	b = append(b, h[:]...)
	b = binary.BigEndian.AppendUint64(b, r.Datagrams)
	return binary.BigEndian.AppendUint64(b, r.Bytes)
}

// ParseReport reads a Report's body.
func ParseReport(body []byte) (ReportBody, error) {
	if len(body) < 16 {
		return ReportBody{}, errors.New("short report")
	}
	return ReportBody{Datagrams: binary.BigEndian.Uint64(body), Bytes: binary.BigEndian.Uint64(body[8:])}, nil
}

// ReportRequestSize is the size of a ReportRequest: as large as the Report it asks for, so
// the answer to a forged one is no larger than the forgery.
const ReportRequestSize = HeaderSize + CookieSize

// AppendReportRequest appends a ReportRequest for test to b, carrying cookie (nil before the
// answerer sent one: then zeros).
func AppendReportRequest(b []byte, test uint64, cookie *[CookieSize]byte) []byte {
	var h [HeaderSize]byte
	PutHeader(h[:], Header{Type: ReportRequest, Test: test})
	b = append(b, h[:]...)
	if cookie == nil {
		return append(b, make([]byte, CookieSize)...)
	}
	return append(b, cookie[:]...)
}

// ParseReportRequest reads a ReportRequest's body: the cookie it carries.
func ParseReportRequest(body []byte) ([CookieSize]byte, error) {
	var c [CookieSize]byte
	if len(body) < CookieSize {
		return c, errors.New("short report request: it must be as large as a Report")
	}
	copy(c[:], body)
	return c, nil
}

// StartBody is the body of a SourceStart.
type StartBody struct {
	RateBitsPerSecond uint64
	Size              uint32
	Duration          time.Duration
	Bytes             uint64
	Cookie            []byte // the source's cookie (CookieSize bytes), or nil before it sent one
}

// StartSize is the size of a SourceStart datagram without a cookie.
const StartSize = HeaderSize + 28

// AppendStart appends a SourceStart datagram for test to b.
func AppendStart(b []byte, test uint64, s StartBody) []byte {
	var h [HeaderSize]byte
	PutHeader(h[:], Header{Type: SourceStart, Test: test})
	b = append(b, h[:]...)
	b = binary.BigEndian.AppendUint64(b, s.RateBitsPerSecond)
	b = binary.BigEndian.AppendUint32(b, s.Size)
	b = binary.BigEndian.AppendUint64(b, uint64(s.Duration))
	b = binary.BigEndian.AppendUint64(b, s.Bytes)
	if len(s.Cookie) == CookieSize {
		b = append(b, s.Cookie...)
	}
	return b
}

// ParseStart reads a SourceStart's body.
func ParseStart(body []byte) (StartBody, error) {
	if len(body) < 28 {
		return StartBody{}, errors.New("short source start")
	}
	st := StartBody{
		RateBitsPerSecond: binary.BigEndian.Uint64(body),
		Size:              binary.BigEndian.Uint32(body[8:]),
		Duration:          time.Duration(binary.BigEndian.Uint64(body[12:])),
		Bytes:             binary.BigEndian.Uint64(body[20:]),
	}
	if len(body) >= 28+CookieSize {
		st.Cookie = body[28 : 28+CookieSize]
	}
	return st, nil
}

// AppendCookie appends a Cookie datagram for test to b.
func AppendCookie(b []byte, test uint64, cookie [CookieSize]byte) []byte {
	var h [HeaderSize]byte
	PutHeader(h[:], Header{Type: Cookie, Test: test})
	b = append(b, h[:]...)
	return append(b, cookie[:]...)
}

// ParseCookie reads a Cookie's body.
func ParseCookie(body []byte) ([CookieSize]byte, error) {
	var c [CookieSize]byte
	if len(body) < CookieSize {
		return c, errors.New("short cookie")
	}
	copy(c[:], body)
	return c, nil
}

// AppendControl appends a body-less datagram (SourceStop) to b.
func AppendControl(b []byte, t Type, test uint64) []byte {
	var h [HeaderSize]byte
	PutHeader(h[:], Header{Type: t, Test: test})
	return append(b, h[:]...)
}
