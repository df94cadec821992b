// Package attachcodec is the agent's gRPC codec. It is gRPC's proto codec for every message
// but one: the requests of an Attach stream, whose data the agent writes to a socket and then
// forgets. gRPC's proto
// codec gathers a received message into one pooled buffer and unmarshals it, and unmarshalling
// copies the data field into a new slice of its own: for a 64 KiB message, an allocation the
// garbage collector later scans and frees, and a copy into memory no cache holds. This codec
// keeps the gathered buffer instead and points the request's data into it; the Attach's
// adapter gives the buffer back to gRPC's pool once the engine has written the data (at its
// next Recv), so the only copies left are gRPC's own, between the connection and its pool.
package attachcodec

import (
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	sockagentv1 "github.com/sockagent/sockagent/gen/sockagent/v1"
)

// attachDataField is AttachRequest.data's field number.
const attachDataField = 2

// Codec is the agent's gRPC codec (grpc.ForceServerCodecV2): proto, with a Frame decoded in
// place.
type Codec struct{ proto encoding.CodecV2 }

// New wraps gRPC's registered proto codec.
func New() Codec { return Codec{proto: encoding.GetCodecV2("proto")} }

// Name is the content subtype the codec serves: the proto codec's, so that clients need not
// know it.
func (Codec) Name() string { return "proto" }

// Marshal is the proto codec's.
func (c Codec) Marshal(v any) (mem.BufferSlice, error) { return c.proto.Marshal(v) }

// Unmarshal decodes a Frame in place, and any other message as the proto codec does.
func (c Codec) Unmarshal(data mem.BufferSlice, v any) error {
	if f, ok := v.(*Frame); ok {
		return f.decode(data)
	}
	return c.proto.Unmarshal(data, v)
}

// maxPieces bounds the pieces a Frame lends to a vectored write: gRPC gives a message in
// one buffer per HTTP/2 data frame (16 KiB each from grpc-go), and a caller sending tiny frames
// gets its message gathered into one buffer instead of a list as long as its bytes.
const maxPieces = 64

// Frame is one AttachRequest, received with a stream's RecvMsg, whose Data (and More, the
// pieces after it) may point into buffers of gRPC's pool that the frame holds until Release
// (or the next RecvMsg into it).
type Frame struct {
	*sockagentv1.AttachRequest
	// More is the rest of the data, after Data, in the pieces gRPC received it in.
	More [][]byte
	bufs []mem.Buffer
}

// decode unmarshals data into f, its data field left in gRPC's buffers; every other field is
// unmarshalled by proto, so it is checked as gRPC's codec checks it (UTF-8 strings, wire
// types, unknown fields kept).
func (f *Frame) decode(data mem.BufferSlice) error {
	f.Release()
	f.AttachRequest = &sockagentv1.AttachRequest{}
	if len(data) > 0 && len(data) <= maxPieces {
		if done, err := f.decodePieces(data); done {
			return err
		}
	}
	var buf mem.Buffer
	if len(data) == 1 { // one buffer: hold it rather than copy it
		buf = data[0]
		buf.Ref()
	} else {
		buf = data.MaterializeToBuffer(mem.DefaultBufferPool())
	}
	b := buf.ReadOnlyData()
	rest, payload, ok := splitData(b)
	if !ok { // not a well-formed message (or data of another wire type): as proto decodes it
		err := proto.Unmarshal(b, f.AttachRequest)
		buf.Free()
		return err
	}
	if err := proto.Unmarshal(rest, f.AttachRequest); err != nil {
		buf.Free()
		return err
	}
	if len(payload) == 0 { // as proto leaves an empty bytes field: nil
		buf.Free()
		return nil
	}
	f.Data, f.bufs = payload, append(f.bufs, buf)
	return nil
}

// decodePieces decodes a message in at most maxPieces buffers whose data field is its last
// field, with every byte before the data itself in the first buffer (a relay's message: the
// data field alone): Data and More then point into the buffers, which f holds. done is false
// for any other message, which decode gathers into one buffer first.
func (f *Frame) decodePieces(data mem.BufferSlice) (done bool, err error) {
	first := data[0].ReadOnlyData()
	total := data.Len()
	for i := 0; i < len(first); {
		num, typ, n := protowire.ConsumeTag(first[i:])
		if protowire.ParseError(n) != nil {
			return false, nil
		}
		if num == attachDataField && typ == protowire.BytesType {
			size, m := protowire.ConsumeVarint(first[i+n:])
			if off := i + n + m; protowire.ParseError(m) == nil && size == uint64(total-off) { // the data runs to the end
				if err := proto.Unmarshal(first[:i], f.AttachRequest); err != nil {
					return true, err
				}
				f.lend(data, off)
				return true, nil
			}
		}
		m := protowire.ConsumeFieldValue(num, typ, first[i+n:])
		if protowire.ParseError(m) != nil { // malformed, or a field that goes on in the next buffer
			return false, nil
		}
		i += n + m
	}
	return false, nil
}

// lend points Data and More at data's bytes from off on, skipping empty pieces, and holds the
// buffers.
func (f *Frame) lend(data mem.BufferSlice, off int) {
	for i, b := range data {
		p := b.ReadOnlyData()
		if i == 0 {
			p = p[off:]
		}
		if len(p) == 0 {
			continue
		}
		b.Ref()
		f.bufs = append(f.bufs, b)
		if f.Data == nil {
			f.Data = p
		} else {
			f.More = append(f.More, p)
		}
	}
}

// Release gives the frame's buffers back to gRPC's pool; Data and More are invalid from then
// on.
func (f *Frame) Release() {
	for _, b := range f.bufs {
		b.Free()
	}
	f.bufs, f.More = f.bufs[:0], f.More[:0]
	if f.AttachRequest != nil {
		f.Data = nil
	}
}

// splitData finds the data field of the AttachRequest encoded in b: payload is its value (the
// last one, as proto keeps the last of a repeated scalar field), and rest is b without the
// data fields, to be unmarshalled by proto: b itself when it has no data field, else a copy
// of the other fields (nil when there are none). ok is false when b is not a sequence of
// well-formed fields, or has a data field of another wire type (which proto keeps as an
// unknown field): proto.Unmarshal of b then decodes it, or says what is wrong.
func splitData(b []byte) (rest, payload []byte, ok bool) {
	var kept []byte // the other fields, once a data field was cut out
	cut, start := false, 0
	for i := 0; i < len(b); {
		num, typ, n := protowire.ConsumeTag(b[i:])
		if protowire.ParseError(n) != nil {
			return nil, nil, false
		}
		m := protowire.ConsumeFieldValue(num, typ, b[i+n:])
		if protowire.ParseError(m) != nil {
			return nil, nil, false
		}
		if num == attachDataField {
			if typ != protowire.BytesType {
				return nil, nil, false
			}
			payload, _ = protowire.ConsumeBytes(b[i+n:])
			kept = append(kept, b[start:i]...)
			cut, start = true, i+n+m
		}
		i += n + m
	}
	if !cut {
		return b, nil, true
	}
	return append(kept, b[start:]...), payload, true
}
