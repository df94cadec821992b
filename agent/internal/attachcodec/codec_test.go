package attachcodec

import (
	"bytes"
	"slices"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// countingPool is a buffer pool that counts the buffers given back to it.
type countingPool struct{ put atomic.Int64 }

// pooled counts the buffers of bs that go back to their pool when freed: gRPC does not pool
// small ones.
func pooled(bs mem.BufferSlice) int64 {
	n := int64(0)
	for _, b := range bs {
		if !mem.IsBelowBufferPoolingThreshold(b.Len()) {
			n++
		}
	}
	return n
}

func (p *countingPool) Get(n int) *[]byte { b := make([]byte, n); return &b }
func (p *countingPool) Put(*[]byte)       { p.put.Add(1) }

// split cuts b into buffers of countingPool at the offsets cuts (ascending, inside b).
func split(b []byte, pool *countingPool, cuts ...int) mem.BufferSlice {
	var bs mem.BufferSlice
	prev := 0
	for _, c := range append(cuts, len(b)) {
		p := pool.Get(c - prev)
		copy(*p, b[prev:c])
		bs = append(bs, mem.NewBuffer(p, pool))
		prev = c
	}
	return bs
}

// joined is the frame's data, all pieces.
func joined(f *Frame) []byte {
	if f.Data == nil && len(f.More) == 0 {
		return nil
	}
	return slices.Concat(append([][]byte{f.Data}, f.More...)...)
}

// decodeLikeGRPC runs the codec as gRPC does: Unmarshal, then the slice freed.
func decodeLikeGRPC(t *testing.T, f *Frame, bs mem.BufferSlice) error {
	t.Helper()
	err := New().Unmarshal(bs, f)
	bs.Free()
	return err
}

func mustMarshal(t *testing.T, m *sockagentv1.AttachRequest) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCodecAttachFrame: an AttachRequest decodes into an Frame exactly as proto decodes
// it, however gRPC cut it into buffers; the data points into gRPC's buffers (in pieces when
// the data field comes last, as a relay's does) and the frame gives every buffer back once
// released.
func TestCodecAttachFrame(t *testing.T) {
	payload := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	for _, tc := range []struct {
		name string
		msg  *sockagentv1.AttachRequest
	}{
		{"data alone", &sockagentv1.AttachRequest{Data: payload}},
		{"first request", &sockagentv1.AttachRequest{SocketId: "s1", ReadSize: 4096, Data: payload}},
		{"no data", &sockagentv1.AttachRequest{SocketId: "s1", CloseWrite: true}},
		{"data and address", &sockagentv1.AttachRequest{Data: payload[:100], Address: "127.0.0.1:9"}},
		{"empty", &sockagentv1.AttachRequest{}},
	} {
		b := mustMarshal(t, tc.msg)
		cutsets := [][]int{nil, {len(b) / 2}, {1}, {16384, 32768, 49152}}
		for _, cuts := range cutsets {
			cuts = slices.DeleteFunc(slices.Clone(cuts), func(c int) bool { return c <= 0 || c >= len(b) })
			pool := &countingPool{}
			bs := split(b, pool, cuts...)
			back := pooled(bs)
			var f Frame
			if err := decodeLikeGRPC(t, &f, bs); err != nil {
				t.Fatalf("%s cut at %v: %v", tc.name, cuts, err)
			}
			got := proto.Clone(f.AttachRequest).(*sockagentv1.AttachRequest)
			got.Data = joined(&f)
			if !proto.Equal(got, tc.msg) {
				t.Errorf("%s cut at %v: decoded %v, want %v", tc.name, cuts, got, tc.msg)
			}
			if len(tc.msg.GetData()) > 0 && len(f.bufs) == 0 {
				t.Errorf("%s cut at %v: the data was copied out of gRPC's buffers", tc.name, cuts)
			}
			f.Release()
			if got, want := pool.put.Load(), back; got != want {
				t.Errorf("%s cut at %v: %d buffers back in the pool, want %d", tc.name, cuts, got, want)
			}
			if f.Data != nil || len(f.More) != 0 || len(f.bufs) != 0 {
				t.Errorf("%s cut at %v: released frame still has data %d more %d bufs %d", tc.name, cuts, len(f.Data), len(f.More), len(f.bufs))
			}
		}
	}
}

// TestCodecAttachPieces: a relay's message over several buffers is lent in pieces, no byte
// gathered, up to maxPieces buffers; past that, and when a field follows the data, it is
// gathered into one buffer.
func TestCodecAttachPieces(t *testing.T) {
	payload := bytes.Repeat([]byte("x"), 4*maxPieces)
	b := mustMarshal(t, &sockagentv1.AttachRequest{Data: payload})
	head := len(b) - len(payload)  // tag and length
	cutsFor := func(n int) []int { // n buffers: the head with the first byte, then equal parts
		var cuts []int
		for i := 1; i < n; i++ {
			cuts = append(cuts, head+(i*len(payload))/n)
		}
		return cuts
	}
	for _, tc := range []struct {
		bufs, pieces int // pieces: Data and more; 1 means gathered
	}{{2, 2}, {maxPieces, maxPieces}, {maxPieces + 1, 1}} {
		pool := &countingPool{}
		bs := split(b, pool, cutsFor(tc.bufs)...)
		back := pooled(bs)
		var f Frame
		if err := decodeLikeGRPC(t, &f, bs); err != nil {
			t.Fatal(err)
		}
		if got := 1 + len(f.More); got != tc.pieces || !bytes.Equal(joined(&f), payload) {
			t.Errorf("%d buffers: %d pieces (data ok %v), want %d", tc.bufs, got, bytes.Equal(joined(&f), payload), tc.pieces)
		}
		if tc.pieces > 1 && &f.Data[0] != &bs[0].ReadOnlyData()[head] {
			t.Errorf("%d buffers: Data does not point into the first buffer", tc.bufs)
		}
		f.Release()
		if got := pool.put.Load(); got != back {
			t.Errorf("%d buffers: %d given back", tc.bufs, got)
		}
	}
	// A field after the data: gathered, still the data and the field.
	withAddr := append(slices.Clone(b), mustMarshal(t, &sockagentv1.AttachRequest{Address: "a"})...)
	var f Frame
	if err := decodeLikeGRPC(t, &f, split(withAddr, &countingPool{}, head+10)); err != nil {
		t.Fatal(err)
	}
	if len(f.More) != 0 || !bytes.Equal(f.Data, payload) || f.GetAddress() != "a" {
		t.Errorf("data then address: %d more, data ok %v, address %q", len(f.More), bytes.Equal(f.Data, payload), f.GetAddress())
	}
	f.Release()
}

// TestCodecAttachErrors: what proto refuses, the codec refuses, and it holds no buffer after.
func TestCodecAttachErrors(t *testing.T) {
	badUTF8 := protowire.AppendTag(nil, 1, protowire.BytesType)
	badUTF8 = protowire.AppendBytes(badUTF8, []byte{0xff, 0xfe})
	truncated := protowire.AppendVarint(protowire.AppendTag(nil, attachDataField, protowire.BytesType), 100)
	truncated = append(truncated, "short"...)
	badTag := []byte{0x80}
	data := protowire.AppendBytes(protowire.AppendTag(nil, attachDataField, protowire.BytesType), []byte("payload"))
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"socket_id not UTF-8", badUTF8},
		{"socket_id not UTF-8 before data", append(slices.Clone(badUTF8), data...)},
		{"data longer than the message", truncated},
		{"bad tag", badTag},
	} {
		if proto.Unmarshal(tc.b, &sockagentv1.AttachRequest{}) == nil {
			t.Fatalf("%s: proto accepts it", tc.name)
		}
		for _, cuts := range [][]int{nil, {len(tc.b) - 1}} {
			pool := &countingPool{}
			bs := split(tc.b, pool, slices.DeleteFunc(cuts, func(c int) bool { return c <= 0 })...)
			back := pooled(bs)
			var f Frame
			if err := decodeLikeGRPC(t, &f, bs); err == nil {
				t.Errorf("%s cut at %v: decoded, want an error", tc.name, cuts)
			}
			if len(f.bufs) != 0 || pool.put.Load() != back {
				t.Errorf("%s cut at %v: holds %d buffers, %d of %d given back", tc.name, cuts, len(f.bufs), pool.put.Load(), back)
			}
		}
	}
}

// TestSplitData: where the data field is, and what is left for proto.
func TestSplitData(t *testing.T) {
	id := mustMarshal(t, &sockagentv1.AttachRequest{SocketId: "s"})
	addr := mustMarshal(t, &sockagentv1.AttachRequest{Address: "a"})
	d1 := mustMarshal(t, &sockagentv1.AttachRequest{Data: []byte("one")})
	d2 := mustMarshal(t, &sockagentv1.AttachRequest{Data: []byte("two")})
	for _, tc := range []struct {
		name          string
		b             []byte
		rest, payload []byte
	}{
		{"no data", slices.Concat(id, addr), slices.Concat(id, addr), nil},
		{"data alone", d1, nil, []byte("one")},
		{"between fields", slices.Concat(id, d1, addr), slices.Concat(id, addr), []byte("one")},
		{"twice: the last wins", slices.Concat(d1, id, d2), id, []byte("two")},
		{"empty message", nil, nil, nil},
	} {
		rest, payload, ok := splitData(tc.b)
		if !ok || !bytes.Equal(rest, tc.rest) || !bytes.Equal(payload, tc.payload) {
			t.Errorf("%s: rest %q payload %q ok %v; want %q %q", tc.name, rest, payload, ok, tc.rest, tc.payload)
		}
	}
	if _, _, ok := splitData([]byte{0x80}); ok {
		t.Error("a bad tag split")
	}
}

// TestCodecAttachDataOfAnotherType: a data field of the wrong wire type is an unknown field to
// proto, and to the codec.
func TestCodecAttachDataOfAnotherType(t *testing.T) {
	b := protowire.AppendVarint(protowire.AppendTag(nil, attachDataField, protowire.VarintType), 7)
	b = append(b, mustMarshal(t, &sockagentv1.AttachRequest{SocketId: "s"})...)
	want := &sockagentv1.AttachRequest{}
	if err := proto.Unmarshal(b, want); err != nil {
		t.Fatal(err)
	}
	for _, cuts := range [][]int{nil, {1}} {
		var f Frame
		if err := decodeLikeGRPC(t, &f, split(b, &countingPool{}, cuts...)); err != nil {
			t.Fatalf("cut at %v: %v", cuts, err)
		}
		if !proto.Equal(f.AttachRequest, want) || len(f.bufs) != 0 {
			t.Errorf("cut at %v: %v (holding %d buffers), want %v", cuts, f.AttachRequest, len(f.bufs), want)
		}
	}
}

// TestCodecAttachNoBuffers: an empty message may come as no buffer at all; it decodes to an
// empty request holding nothing.
func TestCodecAttachNoBuffers(t *testing.T) {
	var f Frame
	if err := New().Unmarshal(nil, &f); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(f.AttachRequest, &sockagentv1.AttachRequest{}) || f.Data != nil || len(f.More) != 0 || len(f.bufs) != 0 {
		t.Errorf("decoded %v, data %q, %d more, %d buffers; want an empty request", f.AttachRequest, f.Data, len(f.More), len(f.bufs))
	}
}
