package codec_test

import (
	"bytes"
	"encoding/binary"
	"reflect"
	"strings"
	"testing"

	"github.com/longlink/longlink/codec"
)

// TestAppendFrameMatchesWire encodes every valid frame with AppendFrame
// and with BeginFrame/AppendMeta/EndFrame and compares with the hand-made
// (and documented) bytes.
func TestAppendFrameMatchesWire(t *testing.T) {
	for _, vf := range validFrames(t) {
		t.Run(vf.name, func(t *testing.T) {
			meta := rawMeta(vf.meta...)
			h := vf.header
			h.MetaLen, h.BodyLen = 0xBEEF, 0xDEADBEEF // AppendFrame sets both

			if got := codec.AppendFrame(nil, h, meta, vf.body); !bytes.Equal(got, vf.raw) {
				t.Fatalf("AppendFrame:\n got %x\nwant %x", got, vf.raw)
			}
			prefix := []byte("previous frame bytes")
			got := codec.AppendFrame(bytes.Clone(prefix), h, meta, vf.body)
			if !bytes.Equal(got[:len(prefix)], prefix) || !bytes.Equal(got[len(prefix):], vf.raw) {
				t.Fatalf("AppendFrame after a prefix:\n got %x", got)
			}

			// BeginFrame / AppendMeta / body / EndFrame, after a prefix,
			// and with the string variant.
			for _, str := range []bool{false, true} {
				b, start := codec.BeginFrame(bytes.Clone(prefix))
				if start != len(prefix) || len(b) != len(prefix)+codec.HeaderSize {
					t.Fatalf("BeginFrame: start %d, len %d", start, len(b))
				}
				for _, e := range vf.meta {
					if str {
						b = codec.AppendMetaString(b, e.k, e.v)
					} else {
						b = codec.AppendMeta(b, e.k, []byte(e.v))
					}
				}
				metaLen := len(b) - start - codec.HeaderSize
				b = append(b, vf.body...)
				codec.EndFrame(b, start, h, metaLen)
				if !bytes.Equal(b[:start], prefix) || !bytes.Equal(b[start:], vf.raw) {
					t.Fatalf("BeginFrame/EndFrame (string %v):\n got %x\nwant %x", str, b[start:], vf.raw)
				}
			}
		})
	}
}

// TestPutHeaderClearsReserved: the encoder always writes version 1 and a
// zero reserved byte, whatever was in the buffer.
func TestPutHeaderClearsReserved(t *testing.T) {
	b := bytes.Repeat([]byte{0xAA}, codec.HeaderSize)
	codec.PutHeader(b, &codec.Header{Op: codec.OpPush, Flags: codec.FlagAckRequired, Biz: 0x0102, Status: 0x0304, MetaLen: 0x0506, Seq: 0x0708090A, BodyLen: 0x0B0C0D0E})
	want := []byte{'L', 'K', 1, 7, 1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14}
	if !bytes.Equal(b, want) {
		t.Fatalf("PutHeader = %x, want %x", b, want)
	}
	h, err := codec.ParseHeader(b, 1<<30)
	if err != nil || h != (codec.Header{Op: codec.OpPush, Flags: 1, Biz: 0x0102, Status: 0x0304, MetaLen: 0x0506, Seq: 0x0708090A, BodyLen: 0x0B0C0D0E}) {
		t.Fatalf("ParseHeader(PutHeader) = %+v, %v", h, err)
	}
}

// TestSetSeq patches the seq of an encoded frame and nothing else.
func TestSetSeq(t *testing.T) {
	for _, vf := range validFrames(t) {
		for _, seq := range []uint32{0, 1, 0x01020304, 0xFFFFFFFF} {
			b := bytes.Clone(vf.raw)
			codec.SetSeq(b, seq)
			for i := range b {
				if (i < codec.OffsetSeq || i >= codec.OffsetSeq+4) && b[i] != vf.raw[i] {
					t.Fatalf("%s: SetSeq(%d) changed byte %d", vf.name, seq, i)
				}
			}
			if got := binary.BigEndian.Uint32(b[12:]); got != seq {
				t.Fatalf("%s: seq bytes = %d, want %d", vf.name, got, seq)
			}
			f, n, err := codec.Decode(b, codec.DefaultMaxFrame)
			want := vf.header
			want.Seq = seq
			if err != nil || n != len(b) || f.Header != want {
				t.Fatalf("%s: after SetSeq(%d): %+v, %d, %v", vf.name, seq, f.Header, n, err)
			}
		}
	}
	// Only the frame at the start of b is touched.
	two := append(bytes.Clone(validFrames(t)[3].raw), validFrames(t)[4].raw...)
	codec.SetSeq(two, 99)
	if !bytes.Equal(two[codec.HeaderSize:], validFrames(t)[4].raw) {
		t.Fatal("SetSeq touched the second frame")
	}
}

func TestMetaRepeatedKeyLastWins(t *testing.T) {
	m := codec.Meta(rawMeta(
		entry{"id", "first"}, entry{"x", "1"}, entry{"id", "second"}, entry{"ID", "upper"}, entry{"id", "third"}, entry{"y", ""},
	))
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	if v, ok := m.Get("id"); !ok || string(v) != "third" {
		t.Fatalf("Get(id) = %q, %v; want the last one", v, ok)
	}
	if v, ok := m.Get("ID"); !ok || string(v) != "upper" {
		t.Fatalf("Get(ID) = %q, %v; keys are case-sensitive", v, ok)
	}
	if v, ok := m.Get("y"); !ok || len(v) != 0 {
		t.Fatalf("Get(y) = %q, %v; want present and empty", v, ok)
	}
	if _, ok := m.Get("i"); ok {
		t.Fatal("Get matched a key prefix")
	}
	if _, ok := m.Get(""); ok {
		t.Fatal("Get(\"\") found something")
	}
	// Range gives every entry, duplicates included, in wire order.
	want := []entry{{"id", "first"}, {"x", "1"}, {"id", "second"}, {"ID", "upper"}, {"id", "third"}, {"y", ""}}
	if got := metaEntries(m); !reflect.DeepEqual(got, want) {
		t.Fatalf("Range = %q, want %q", got, want)
	}
	// Range stops when fn returns false.
	var seen []string
	m.Range(func(k, _ []byte) bool {
		seen = append(seen, string(k))
		return len(seen) < 2
	})
	if !reflect.DeepEqual(seen, []string{"id", "x"}) {
		t.Fatalf("Range did not stop: %q", seen)
	}
	// An empty section.
	for _, e := range []codec.Meta{nil, {}} {
		if err := e.Validate(); err != nil {
			t.Fatal(err)
		}
		if _, ok := e.Get("id"); ok {
			t.Fatal("Get on empty meta")
		}
		e.Range(func(_, _ []byte) bool { t.Fatal("Range on empty meta"); return true })
	}
}

// TestMetaValuesAreCapped: a value from Get or Range cannot be appended
// to over the following entry.
func TestMetaValuesAreCapped(t *testing.T) {
	raw := rawMeta(entry{"a", "1"}, entry{"b", "2"})
	m := codec.Meta(bytes.Clone(raw))
	v, _ := m.Get("a")
	_ = append(v, 'X', 'X', 'X')
	m.Range(func(_, v []byte) bool { _ = append(v, 'Y', 'Y', 'Y'); return true })
	if !bytes.Equal(m, raw) {
		t.Fatalf("append to a value overwrote the meta: %q", m)
	}
}

func TestAppendMetaRoundTrip(t *testing.T) {
	key255 := strings.Repeat("K", 255)
	val65535 := strings.Repeat("v", 0xFFFF)
	bin := make([]byte, 256)
	for i := range bin {
		bin[i] = byte(i)
	}
	cases := []entry{
		{"k", ""},
		{"token", docToken},
		{key255, "short"},
		{"big", val65535},
		{key255, val65535},
		{"bin", string(bin)},
	}
	var m1, m2 []byte
	for _, e := range cases {
		m1 = codec.AppendMeta(m1, e.k, []byte(e.v))
		m2 = codec.AppendMetaString(m2, e.k, e.v)
	}
	if !bytes.Equal(m1, m2) {
		t.Fatal("AppendMeta and AppendMetaString differ")
	}
	if !bytes.Equal(m1, rawMeta(cases...)) {
		t.Fatal("AppendMeta differs from the wire encoding")
	}
	m := codec.Meta(m1)
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := metaEntries(m); !reflect.DeepEqual(got, cases) {
		t.Fatal("Range does not give back what was appended")
	}
	if v, ok := m.Get(key255); !ok || string(v) != val65535 {
		t.Fatal("Get(255-byte key) does not give the last value")
	}

	// Longer keys and values are cut to fit, never mis-encoded.
	m3 := codec.Meta(codec.AppendMetaString(nil, key255+"XYZ", val65535+"tail"))
	m4 := codec.Meta(codec.AppendMeta(nil, key255+"XYZ", []byte(val65535+"tail")))
	for _, mm := range []codec.Meta{m3, m4} {
		if err := mm.Validate(); err != nil {
			t.Fatal(err)
		}
		if got := metaEntries(mm); len(got) != 1 || got[0].k != key255 || got[0].v != val65535 {
			t.Fatal("over-long key or value not cut to 255 / 65535 bytes")
		}
	}
}

func TestEncodeDoesNotAllocate(t *testing.T) {
	body := bytes.Repeat([]byte("x"), 512)
	meta := rawMeta(entry{"id", "m-1"}, entry{"group", "g"})
	buf := make([]byte, 0, 4096)
	allocs := testing.AllocsPerRun(200, func() {
		buf = codec.AppendFrame(buf[:0], codec.Header{Op: codec.OpPush, Seq: 1}, meta, body)
		b, start := codec.BeginFrame(buf)
		b = codec.AppendMetaString(b, "id", "m-1")
		b = codec.AppendMeta(b, "group", []byte("g"))
		b = append(b, body...)
		codec.EndFrame(b, start, codec.Header{Op: codec.OpPush}, len(meta))
		codec.SetSeq(b[start:], 7)
		buf = b
	})
	if allocs != 0 {
		t.Fatalf("encoding into a grown buffer allocates %v times", allocs)
	}
}
