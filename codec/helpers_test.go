package codec_test

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/longlink/longlink/codec"
)

// The helpers here encode frames by hand, byte by byte, so that the tests
// do not check the codec against itself.

// entry is one meta entry, in wire order.
type entry struct{ k, v string }

// rawMeta encodes entries as a meta section.
func rawMeta(es ...entry) []byte {
	var b []byte
	for _, e := range es {
		b = append(b, byte(len(e.k)))
		b = append(b, e.k...)
		b = binary.BigEndian.AppendUint16(b, uint16(len(e.v)))
		b = append(b, e.v...)
	}
	return b
}

// rawHeader is a header with every byte under the test's control,
// including the ones the codec refuses or ignores.
type rawHeader struct {
	magic    [2]byte // zero means "LK"
	version  byte    // zero means 1 unless badVersion
	op       byte
	flags    byte
	reserved byte
	biz      uint16
	status   uint16
	metaLen  uint16
	seq      uint32
	bodyLen  uint32

	badVersion bool // use version as is, even 0
}

func (h rawHeader) bytes() []byte {
	b := make([]byte, 0, codec.HeaderSize)
	if h.magic == [2]byte{} {
		h.magic = [2]byte{'L', 'K'}
	}
	if h.version == 0 && !h.badVersion {
		h.version = 1
	}
	b = append(b, h.magic[0], h.magic[1], h.version, h.op, h.flags, h.reserved)
	b = binary.BigEndian.AppendUint16(b, h.biz)
	b = binary.BigEndian.AppendUint16(b, h.status)
	b = binary.BigEndian.AppendUint16(b, h.metaLen)
	b = binary.BigEndian.AppendUint32(b, h.seq)
	b = binary.BigEndian.AppendUint32(b, h.bodyLen)
	return b
}

// rawFrame encodes a whole, consistent frame by hand.
func rawFrame(h rawHeader, meta, body []byte) []byte {
	h.metaLen = uint16(len(meta))
	h.bodyLen = uint32(len(body))
	b := h.bytes()
	b = append(b, meta...)
	return append(b, body...)
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// decoded is a frame copied out of the decoder's buffer.
type decoded struct {
	Header codec.Header
	Meta   []byte
	Body   []byte
	Raw    []byte // the bytes the frame consumed
}

// streamDecoder is the smallest reader loop over codec.Decode: it
// accumulates bytes, decodes every complete frame and keeps the rest, the
// way a connection's read path does.
type streamDecoder struct {
	max int
	buf []byte
	err error
}

// feed appends p and decodes every frame now complete. After an error
// the decoder is dead, as the connection would be.
func (d *streamDecoder) feed(p []byte) (frames []decoded, err error) {
	if d.err != nil {
		return nil, d.err
	}
	d.buf = append(d.buf, p...)
	for {
		f, n, err := codec.Decode(d.buf, d.max)
		if err != nil {
			d.err = err
			return frames, err
		}
		if n == 0 {
			return frames, nil
		}
		frames = append(frames, decoded{
			Header: f.Header,
			Meta:   bytes.Clone(f.Meta),
			Body:   bytes.Clone(f.Body),
			Raw:    bytes.Clone(d.buf[:n]),
		})
		d.buf = d.buf[n:]
	}
}

// codecError unwraps err as a *codec.Error, failing the test if it is not.
func codecError(t testing.TB, err error) *codec.Error {
	t.Helper()
	var ce *codec.Error
	if !errors.As(err, &ce) {
		t.Fatalf("error %v (%T) is not a *codec.Error", err, err)
	}
	return ce
}

// metaEntries lists m's entries in order through Range.
func metaEntries(m codec.Meta) []entry {
	var es []entry
	m.Range(func(k, v []byte) bool {
		es = append(es, entry{string(k), string(v)})
		return true
	})
	return es
}
