package codec_test

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/longlink/longlink/codec"
)

// validFrame is one well-formed frame and what decoding it must give.
type validFrame struct {
	name   string
	raw    []byte
	header codec.Header // MetaLen and BodyLen included
	meta   []entry      // in wire order
	body   []byte
}

const docToken = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJkMSIsImV4cCI6MTkwMDAwMDAwMH0.sqh7PUT2Ykys5w65UltBPPR4Ats5ZLXDJrvJFpjDuvE"

// validFrames has a frame of every op: the byte-level examples of
// docs/protocol.md, and hand-encoded frames with binary bodies and more
// meta.
func validFrames(t testing.TB) []validFrame {
	binBody := make([]byte, 300)
	for i := range binBody {
		binBody[i] = byte(i) // every byte value, "LK\x01" included
	}
	copy(binBody[100:], "LK\x01\x05")
	pushBody := bytes.Repeat([]byte("push-payload "), 80)

	loginMeta := []entry{{"token", docToken}, {"resume", "41"}}
	reqMeta := []entry{{"trace", "t-1"}, {"content-type", "application/octet-stream"}, {"empty", ""}}
	pushMeta := []entry{{"id", "msg-0001"}, {"group", "room:42"}}
	kickMeta := []entry{{"reason", "node draining"}, {"redirect", "10.0.0.2:7000"}}
	ackMeta := []entry{{"conn", "18446744073709551615"}, {"node", "gw-eu-1"}, {"hb", "30"}, {"resumed", "1"}}

	return []validFrame{
		// docs/protocol.md examples.
		{
			name:   "doc/LOGIN",
			raw:    mustHex(t, "4c4b01010000000000000080000000010000000005746f6b656e007865794a68624763694f694a49557a49314e694973496e523563434936496b705856434a392e65794a7a645749694f694a6b4d534973496d5634634349364d546b774d4441774d4441774d48302e7371683750555432596b797335773635556c744250505234417473355a4c58444a72764a46706a44757645"),
			header: codec.Header{Op: codec.OpLogin, Seq: 1, MetaLen: 128},
			meta:   []entry{{"token", docToken}},
		},
		{
			name:   "doc/LOGIN_ACK",
			raw:    mustHex(t, "4c4b01020000000000000019000000010000000004636f6e6e00023137046e6f646500026e3102686200023330"),
			header: codec.Header{Op: codec.OpLoginAck, Seq: 1, MetaLen: 25},
			meta:   []entry{{"conn", "17"}, {"node", "n1"}, {"hb", "30"}},
		},
		{
			name:   "doc/LOGIN_ACK-unauthorized",
			raw:    mustHex(t, "4c4b01020000000000020016000000010000000006726561736f6e000d746f6b656e2065787069726564"),
			header: codec.Header{Op: codec.OpLoginAck, Seq: 1, Status: codec.StatusUnauthorized, MetaLen: 22},
			meta:   []entry{{"reason", "token expired"}},
		},
		{
			name:   "doc/PING",
			raw:    mustHex(t, "4c4b010300000000000000000000000700000000"),
			header: codec.Header{Op: codec.OpPing, Seq: 7},
		},
		{
			name:   "doc/PONG",
			raw:    mustHex(t, "4c4b010400000000000000000000000700000000"),
			header: codec.Header{Op: codec.OpPong, Seq: 7},
		},
		{
			name:   "doc/REQUEST",
			raw:    mustHex(t, "4c4b0105000000010000000b0000002a0000000205747261636500036162636869"),
			header: codec.Header{Op: codec.OpRequest, Biz: 1, Seq: 42, MetaLen: 11, BodyLen: 2},
			meta:   []entry{{"trace", "abc"}},
			body:   []byte("hi"),
		},
		{
			name:   "doc/RESPONSE",
			raw:    mustHex(t, "4c4b0106000000010000000b0000002a0000000205747261636500036162636869"),
			header: codec.Header{Op: codec.OpResponse, Biz: 1, Seq: 42, MetaLen: 11, BodyLen: 2},
			meta:   []entry{{"trace", "abc"}},
			body:   []byte("hi"),
		},
		{
			name:   "doc/PUSH",
			raw:    mustHex(t, "4c4b01070100000100000007000000010000000502696400026d3168656c6c6f"),
			header: codec.Header{Op: codec.OpPush, Flags: codec.FlagAckRequired, Biz: 1, Seq: 1, MetaLen: 7, BodyLen: 5},
			meta:   []entry{{"id", "m1"}},
			body:   []byte("hello"),
		},
		{
			name:   "doc/PUSH_ACK",
			raw:    mustHex(t, "4c4b010800000000000000000000000100000000"),
			header: codec.Header{Op: codec.OpPushAck, Seq: 1},
		},
		{
			name:   "doc/KICK",
			raw:    mustHex(t, "4c4b01090000000000090018000000000000000006726561736f6e000f6475706c6963617465206c6f67696e"),
			header: codec.Header{Op: codec.OpKick, Status: codec.StatusDuplicateLogin, MetaLen: 24},
			meta:   []entry{{"reason", "duplicate login"}},
		},

		// Hand-encoded frames.
		{
			name:   "LOGIN-token-resume",
			raw:    rawFrame(rawHeader{op: 0x01, seq: 1}, rawMeta(loginMeta...), nil),
			header: codec.Header{Op: codec.OpLogin, Seq: 1, MetaLen: uint16(len(rawMeta(loginMeta...)))},
			meta:   loginMeta,
		},
		{
			name:   "LOGIN_ACK-conn-node-hb-resumed",
			raw:    rawFrame(rawHeader{op: 0x02, seq: 9}, rawMeta(ackMeta...), nil),
			header: codec.Header{Op: codec.OpLoginAck, Seq: 9, MetaLen: 27 + 14 + 7 + 11},
			meta:   ackMeta,
		},
		{
			name:   "PING-max-seq",
			raw:    rawFrame(rawHeader{op: 0x03, seq: math.MaxUint32}, nil, nil),
			header: codec.Header{Op: codec.OpPing, Seq: math.MaxUint32},
		},
		{
			name:   "PONG-seq-0",
			raw:    rawFrame(rawHeader{op: 0x04}, nil, nil),
			header: codec.Header{Op: codec.OpPong},
		},
		{
			name:   "REQUEST-meta-binary-body",
			raw:    rawFrame(rawHeader{op: 0x05, biz: 0xFFFF, seq: 0x01020304}, rawMeta(reqMeta...), binBody),
			header: codec.Header{Op: codec.OpRequest, Biz: 0xFFFF, Seq: 0x01020304, MetaLen: uint16(len(rawMeta(reqMeta...))), BodyLen: uint32(len(binBody))},
			meta:   reqMeta,
			body:   binBody,
		},
		{
			name:   "RESPONSE-biz-error-body-only",
			raw:    rawFrame(rawHeader{op: 0x06, biz: 3, status: 12, seq: 77}, nil, []byte("backend said no")),
			header: codec.Header{Op: codec.OpResponse, Biz: 3, Status: codec.StatusBizError, Seq: 77, BodyLen: 15},
			body:   []byte("backend said no"),
		},
		{
			name:   "PUSH-ack-required-id-group",
			raw:    rawFrame(rawHeader{op: 0x07, flags: codec.FlagAckRequired, biz: 2, seq: 123456}, rawMeta(pushMeta...), pushBody),
			header: codec.Header{Op: codec.OpPush, Flags: codec.FlagAckRequired, Biz: 2, Seq: 123456, MetaLen: uint16(len(rawMeta(pushMeta...))), BodyLen: uint32(len(pushBody))},
			meta:   pushMeta,
			body:   pushBody,
		},
		{
			name:   "PUSH_ACK",
			raw:    rawFrame(rawHeader{op: 0x08, seq: 123456}, nil, nil),
			header: codec.Header{Op: codec.OpPushAck, Seq: 123456},
		},
		{
			name:   "KICK-shutting-down-redirect",
			raw:    rawFrame(rawHeader{op: 0x09, status: 10}, rawMeta(kickMeta...), nil),
			header: codec.Header{Op: codec.OpKick, Status: codec.StatusShuttingDown, MetaLen: uint16(len(rawMeta(kickMeta...)))},
			meta:   kickMeta,
		},
		{
			name:   "KICK-slow-consumer",
			raw:    rawFrame(rawHeader{op: 0x09, status: 14}, rawMeta(entry{"reason", "outbound queue overflowed"}), nil),
			header: codec.Header{Op: codec.OpKick, Status: codec.StatusSlowConsumer, MetaLen: 1 + 6 + 2 + 25},
			meta:   []entry{{"reason", "outbound queue overflowed"}},
		},
		{
			name:   "doc/PING-rtt",
			raw:    mustHex(t, "4c4b0103000000000000001200000008000000000372747400023837036e6574000463656c6c"),
			header: codec.Header{Op: codec.OpPing, Seq: 8, MetaLen: 18},
			meta:   []entry{{"rtt", "87"}, {"net", "cell"}},
		},
	}
}

// checkDecoded compares a decoded frame with what it must be, reading the
// meta both through Range and through Get.
func checkDecoded(t *testing.T, f codec.Frame, n int, vf validFrame) {
	t.Helper()
	if n != len(vf.raw) {
		t.Fatalf("n = %d, want %d", n, len(vf.raw))
	}
	if f.Header != vf.header {
		t.Fatalf("header = %+v, want %+v", f.Header, vf.header)
	}
	if f.Size() != len(vf.raw) {
		t.Fatalf("Size() = %d, want %d", f.Size(), len(vf.raw))
	}
	if got := metaEntries(f.Meta); !reflect.DeepEqual(got, vf.meta) {
		t.Fatalf("meta entries = %q, want %q", got, vf.meta)
	}
	for _, e := range vf.meta {
		v, ok := f.Meta.Get(e.k)
		if !ok || string(v) != e.v {
			t.Fatalf("Meta.Get(%q) = %q, %v; want %q, true", e.k, v, ok, e.v)
		}
	}
	if v, ok := f.Meta.Get("no-such-key"); ok || v != nil {
		t.Fatalf("Meta.Get(missing) = %q, %v", v, ok)
	}
	if !bytes.Equal(f.Body, vf.body) {
		t.Fatalf("body = %q, want %q", f.Body, vf.body)
	}
	if len(vf.body) == 0 && len(f.Body) != 0 {
		t.Fatalf("body = %q, want empty", f.Body)
	}
}

// chunkings are the ways a frame is cut into reads.
func chunkings(raw []byte) map[string][][]byte {
	out := map[string][][]byte{"whole": {raw}}
	var bytewise [][]byte
	for i := range raw {
		bytewise = append(bytewise, raw[i:i+1])
	}
	out["byte-at-a-time"] = bytewise
	for seed := uint64(1); seed <= 4; seed++ {
		r := rand.New(rand.NewPCG(seed, 0x10c0de))
		var cs [][]byte
		for rest := raw; len(rest) > 0; {
			k := 1 + r.IntN(min(len(rest), 1+r.IntN(64)))
			cs = append(cs, rest[:k])
			rest = rest[k:]
		}
		out[fmt.Sprintf("random-chunks/seed=%d", seed)] = cs
	}
	return out
}

// TestDecodeValidFrames feeds every valid frame whole, one byte at a time
// and in random chunks, and checks the decoder's state after each read:
// nothing (n == 0, nil error, zero Frame) until the last byte, then exactly
// the frame.
func TestDecodeValidFrames(t *testing.T) {
	for _, vf := range validFrames(t) {
		t.Run(vf.name, func(t *testing.T) {
			// Whole, through Decode directly, with a trailing byte that
			// belongs to the next frame.
			f, n, err := codec.Decode(append(bytes.Clone(vf.raw), 'L'), codec.DefaultMaxFrame)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			checkDecoded(t, f, n, vf)

			for mode, chunks := range chunkings(vf.raw) {
				t.Run(mode, func(t *testing.T) {
					var acc []byte
					for i, c := range chunks {
						acc = append(acc, c...)
						f, n, err := codec.Decode(acc, codec.DefaultMaxFrame)
						if err != nil {
							t.Fatalf("read %d (%d of %d bytes): %v", i, len(acc), len(vf.raw), err)
						}
						if len(acc) < len(vf.raw) {
							if n != 0 || !reflect.DeepEqual(f, codec.Frame{}) {
								t.Fatalf("read %d (%d of %d bytes): n = %d, frame = %+v; want nothing yet", i, len(acc), len(vf.raw), n, f)
							}
							continue
						}
						checkDecoded(t, f, n, vf)
					}

					// The same through the reader loop.
					d := streamDecoder{max: codec.DefaultMaxFrame}
					fed := 0
					for i, c := range chunks {
						fs, err := d.feed(c)
						fed += len(c)
						if err != nil {
							t.Fatalf("loop read %d: %v", i, err)
						}
						want := 0
						if fed == len(vf.raw) {
							want = 1
						}
						if len(fs) != want {
							t.Fatalf("loop read %d (%d of %d bytes): %d frames, want %d", i, fed, len(vf.raw), len(fs), want)
						}
						if want == 1 && !bytes.Equal(fs[0].Raw, vf.raw) {
							t.Fatalf("loop: consumed %x, want %x", fs[0].Raw, vf.raw)
						}
					}
					if len(d.buf) != 0 {
						t.Fatalf("loop: %d bytes left over", len(d.buf))
					}
				})
			}
		})
	}
}

// TestDecodeStream decodes every valid frame back to back, cut into random
// reads that straddle frame boundaries: after each read, exactly the frames
// that have all their bytes are out, in order.
func TestDecodeStream(t *testing.T) {
	vfs := validFrames(t)
	var stream []byte
	var ends []int
	for _, vf := range vfs {
		stream = append(stream, vf.raw...)
		ends = append(ends, len(stream))
	}
	for mode, chunks := range chunkings(stream) {
		t.Run(mode, func(t *testing.T) {
			d := streamDecoder{max: codec.DefaultMaxFrame}
			fed, got := 0, 0
			for _, c := range chunks {
				fs, err := d.feed(c)
				if err != nil {
					t.Fatal(err)
				}
				fed += len(c)
				for _, f := range fs {
					vf := vfs[got]
					if f.Header != vf.header || !bytes.Equal(f.Raw, vf.raw) || !bytes.Equal(f.Body, vf.body) {
						t.Fatalf("frame %d (%s): got %+v", got, vf.name, f.Header)
					}
					got++
				}
				want := 0
				for _, e := range ends {
					if e <= fed {
						want++
					}
				}
				if got != want {
					t.Fatalf("after %d bytes: %d frames out, want %d", fed, got, want)
				}
			}
			if got != len(vfs) {
				t.Fatalf("%d frames, want %d", got, len(vfs))
			}
		})
	}
}

// TestDecodeAliasesInput checks that Decode neither copies nor lets an
// append to Meta or Body clobber the bytes after the frame.
func TestDecodeAliasesInput(t *testing.T) {
	a := rawFrame(rawHeader{op: 0x05, seq: 1}, rawMeta(entry{"k", "v"}), []byte("body-a"))
	b := rawFrame(rawHeader{op: 0x05, seq: 2}, nil, []byte("body-b"))
	buf := append(bytes.Clone(a), b...)
	f, n, err := codec.Decode(buf, codec.DefaultMaxFrame)
	if err != nil || n != len(a) {
		t.Fatalf("Decode = %d, %v", n, err)
	}
	if &f.Body[0] != &buf[n-len("body-a")] {
		t.Fatal("Body does not alias the input")
	}
	_ = append(f.Body, "XXXX"...)
	_ = append(f.Meta, "XXXX"...)
	if !bytes.Equal(buf[n:], b) {
		t.Fatalf("append to Body or Meta overwrote the next frame: %q", buf[n:])
	}
}

func TestDecodeDoesNotAllocate(t *testing.T) {
	var stream []byte
	for _, vf := range validFrames(t) {
		stream = append(stream, vf.raw...)
	}
	allocs := testing.AllocsPerRun(100, func() {
		for b := stream; len(b) > 0; {
			f, n, err := codec.Decode(b, codec.DefaultMaxFrame)
			if err != nil || n == 0 {
				panic("bad stream")
			}
			f.Meta.Get("token")
			b = b[n:]
		}
	})
	if allocs != 0 {
		t.Fatalf("Decode allocates: %v allocs per stream", allocs)
	}
}

// TestDecodeIgnoresReservedAndUnknownFlags records a decision of
// docs/protocol.md (decision (a)): the reserved byte and undefined flag
// bits are not checked. The flags byte is passed up as sent.
func TestDecodeIgnoresReservedAndUnknownFlags(t *testing.T) {
	for _, tc := range []struct {
		op, flags, reserved byte
	}{
		{0x07, 0xFF, 0xFF},
		{0x07, 0xFE, 0x00},
		{0x03, 0x80, 0x01},
		{0x05, 0x01, 0x7F}, // ACK_REQUIRED on a non-PUSH op
	} {
		raw := rawFrame(rawHeader{op: tc.op, flags: tc.flags, reserved: tc.reserved, seq: 5}, rawMeta(entry{"a", "b"}), []byte("x"))
		f, n, err := codec.Decode(raw, codec.DefaultMaxFrame)
		if err != nil || n != len(raw) {
			t.Fatalf("op %#x flags %#x reserved %#x: Decode = %d, %v", tc.op, tc.flags, tc.reserved, n, err)
		}
		if f.Op != codec.Op(tc.op) || f.Flags != tc.flags || f.Seq != 5 || string(f.Body) != "x" {
			t.Fatalf("decoded %+v", f.Header)
		}
	}
}

// badFrame is input that must fail with status once at bytes have arrived
// (earlier, the decoder must simply wait).
type badFrame struct {
	name   string
	raw    []byte
	max    int
	at     int // bytes needed before the error shows
	status codec.Status
}

func badFrames() []badFrame {
	const max = codec.DefaultMaxFrame
	body := []byte("0123456789abcdef") // body bytes a meta overrun could wrongly read
	hdr := codec.HeaderSize
	metaFrame := func(meta []byte) []byte {
		return rawFrame(rawHeader{op: 0x05, seq: 1}, meta, body)
	}
	tooBig := func(metaLen uint16, bodyLen uint32) []byte {
		return rawHeader{op: 0x05, metaLen: metaLen, bodyLen: bodyLen}.bytes()
	}
	bf := []badFrame{
		{"magic/first", rawFrame(rawHeader{magic: [2]byte{'X', 'K'}, op: 0x03}, nil, nil), max, hdr, codec.StatusBadFrame},
		{"magic/second", rawFrame(rawHeader{magic: [2]byte{'L', 'X'}, op: 0x03}, nil, nil), max, hdr, codec.StatusBadFrame},
		{"magic/swapped", rawFrame(rawHeader{magic: [2]byte{'K', 'L'}, op: 0x03}, nil, nil), max, hdr, codec.StatusBadFrame},
		{"version/0", rawFrame(rawHeader{badVersion: true, version: 0, op: 0x03}, nil, nil), max, hdr, codec.StatusBadFrame},
		{"version/2", rawFrame(rawHeader{version: 2, op: 0x03}, nil, nil), max, hdr, codec.StatusBadFrame},
		{"version/255", rawFrame(rawHeader{version: 255, op: 0x03}, nil, nil), max, hdr, codec.StatusBadFrame},
		{"op/0x00", rawFrame(rawHeader{op: 0x00}, nil, nil), max, hdr, codec.StatusBadFrame},
		{"op/0x0C", rawFrame(rawHeader{op: 0x0C}, nil, nil), max, hdr, codec.StatusBadFrame},
		{"op/0xFF", rawFrame(rawHeader{op: 0xFF}, nil, nil), max, hdr, codec.StatusBadFrame},
		// A bad header wins over a huge declared size: no waiting for a body.
		{"op/0x0C-huge", rawHeader{op: 0x0C, bodyLen: 1 << 30}.bytes(), max, hdr, codec.StatusBadFrame},

		// Too large, judged from the header alone: no body is ever sent.
		{"size/max+1-body", tooBig(0, uint32(max-hdr+1)), max, hdr, codec.StatusFrameTooLarge},
		{"size/max+1-meta+body", tooBig(100, uint32(max-hdr-100+1)), max, hdr, codec.StatusFrameTooLarge},
		{"size/metaLen-0xFFFF", tooBig(0xFFFF, 0), max, hdr, codec.StatusFrameTooLarge},
		{"size/bodyLen-2^32-1", tooBig(0, math.MaxUint32), max, hdr, codec.StatusFrameTooLarge},
		// 20 + (2^32-20) is 2^32: zero if the sum were taken in 32 bits.
		{"size/bodyLen-wraps-u32", tooBig(0, uint32(math.MaxUint32-hdr+1)), max, hdr, codec.StatusFrameTooLarge},
		{"size/both-max", tooBig(0xFFFF, math.MaxUint32), max, hdr, codec.StatusFrameTooLarge},
		// With a limit of 2^32-1, a 2^32+19 byte frame is still too large.
		{"size/over-u32-limit", tooBig(0, math.MaxUint32), math.MaxUint32, hdr, codec.StatusFrameTooLarge},
		{"size/small-limit", rawFrame(rawHeader{op: 0x03}, nil, []byte("x")), hdr, hdr, codec.StatusFrameTooLarge},

		// Meta faults need the whole frame.
		{"meta/klen-0", metaFrame([]byte{0, 0, 0}), max, 0, codec.StatusBadFrame},
		{"meta/klen-0-after-entry", metaFrame(append(rawMeta(entry{"a", "b"}), 0, 0, 1, 'x')), max, 0, codec.StatusBadFrame},
		{"meta/key-past-metaLen", metaFrame([]byte{5, 'a', 'b', 'c'}), max, 0, codec.StatusBadFrame},
		{"meta/klen-only", metaFrame([]byte{1}), max, 0, codec.StatusBadFrame},
		{"meta/vlen-missing", metaFrame([]byte{1, 'a'}), max, 0, codec.StatusBadFrame},
		{"meta/vlen-half", metaFrame([]byte{1, 'a', 0}), max, 0, codec.StatusBadFrame},
		{"meta/value-past-metaLen", metaFrame([]byte{1, 'a', 0, 5, 'x', 'y'}), max, 0, codec.StatusBadFrame},
		{"meta/value-0xFFFF", metaFrame([]byte{1, 'a', 0xFF, 0xFF, 'x'}), max, 0, codec.StatusBadFrame},
		{"meta/second-entry-key", metaFrame(append(rawMeta(entry{"a", "b"}), 3, 'k')), max, 0, codec.StatusBadFrame},
		{"meta/second-entry-value", metaFrame(append(rawMeta(entry{"a", "b"}), 1, 'k', 0, 2, 'v')), max, 0, codec.StatusBadFrame},
		{"meta/no-body-value-past", rawFrame(rawHeader{op: 0x01}, []byte{5, 't', 'o', 'k', 'e', 'n', 0, 10, 'a'}, nil), max, 0, codec.StatusBadFrame},
	}
	for i := range bf {
		if bf[i].at == 0 {
			bf[i].at = len(bf[i].raw)
		}
	}
	return bf
}

// TestDecodeErrors feeds every bad frame one byte at a time: the decoder
// waits (n == 0, nil error) until the fault is visible, then returns a
// *codec.Error with the status docs/protocol.md prescribes. Header faults and
// over-size frames show after the 20 header bytes, whatever the body.
func TestDecodeErrors(t *testing.T) {
	for _, bf := range badFrames() {
		t.Run(bf.name, func(t *testing.T) {
			for i := 0; i <= len(bf.raw); i++ {
				f, n, err := codec.Decode(bf.raw[:i], bf.max)
				if i < bf.at {
					if err != nil || n != 0 || !reflect.DeepEqual(f, codec.Frame{}) {
						t.Fatalf("after %d bytes: n = %d, err = %v; want to wait", i, n, err)
					}
					continue
				}
				if err == nil {
					t.Fatalf("after %d bytes: no error (n = %d, header %+v)", i, n, f.Header)
				}
				if n != 0 {
					t.Fatalf("n = %d with an error", n)
				}
				ce := codecError(t, err)
				if ce.Status != bf.status {
					t.Fatalf("status = %v (%v), want %v", ce.Status, err, bf.status)
				}
				if ce.Reason == "" || !strings.Contains(ce.Error(), bf.status.String()) {
					t.Fatalf("error text %q", ce.Error())
				}
			}
			// Header faults come from ParseHeader too.
			if bf.at == codec.HeaderSize {
				_, err := codec.ParseHeader(bf.raw, bf.max)
				if ce := codecError(t, err); ce.Status != bf.status {
					t.Fatalf("ParseHeader status = %v, want %v", ce.Status, bf.status)
				}
			}
		})
	}
}

// TestDecodeSizeLimit checks the limit's edge: a frame of exactly maxFrame
// bytes is accepted; and a limit larger than any frame never overflows.
func TestDecodeSizeLimit(t *testing.T) {
	for _, max := range []int{codec.HeaderSize, codec.HeaderSize + 1, 1000, codec.DefaultMaxFrame} {
		body := make([]byte, max-codec.HeaderSize)
		raw := rawFrame(rawHeader{op: 0x07}, nil, body)
		for i := codec.HeaderSize; i < len(raw); i += 97 {
			if _, n, err := codec.Decode(raw[:i], max); n != 0 || err != nil {
				t.Fatalf("max %d, %d bytes: n = %d, err = %v; want to wait", max, i, n, err)
			}
		}
		if _, n, err := codec.Decode(raw, max); n != len(raw) || err != nil {
			t.Fatalf("max %d: frame of exactly max bytes: n = %d, err = %v", max, n, err)
		}
	}
	// A frame with a full meta section (metaLen 0xFFFF) under a bigger limit.
	key := strings.Repeat("k", 255)
	val := strings.Repeat("v", codec.MaxMetaLen-1-255-2)
	raw := rawFrame(rawHeader{op: 0x05}, rawMeta(entry{key, val}), []byte("b"))
	f, n, err := codec.Decode(raw, 1<<17)
	if err != nil || n != len(raw) || f.MetaLen != codec.MaxMetaLen {
		t.Fatalf("full meta: n = %d, err = %v, metaLen %d", n, err, f.MetaLen)
	}
	if v, ok := f.Meta.Get(key); !ok || string(v) != val {
		t.Fatal("full meta: Get lost the value")
	}
	// The largest declared size under the largest limit: just wait.
	hdr := rawHeader{op: 0x05, metaLen: 0xFFFF, bodyLen: math.MaxUint32}.bytes()
	for _, max := range []int{math.MaxInt, math.MaxInt64 - 1, 1<<32 + 0xFFFF + codec.HeaderSize} {
		if _, n, err := codec.Decode(hdr, max); n != 0 || err != nil {
			t.Fatalf("max %d: n = %d, err = %v; want to wait", max, n, err)
		}
		h, err := codec.ParseHeader(hdr, max)
		if err != nil || h.Size() != codec.HeaderSize+0xFFFF+math.MaxUint32 {
			t.Fatalf("max %d: ParseHeader = %+v (size %d), %v", max, h, h.Size(), err)
		}
	}
}

func TestOpAndStatusNames(t *testing.T) {
	names := map[codec.Op]string{
		codec.OpLogin: "LOGIN", codec.OpLoginAck: "LOGIN_ACK", codec.OpPing: "PING", codec.OpPong: "PONG",
		codec.OpRequest: "REQUEST", codec.OpResponse: "RESPONSE", codec.OpPush: "PUSH",
		codec.OpPushAck: "PUSH_ACK", codec.OpKick: "KICK", codec.OpRefresh: "REFRESH", codec.OpRefreshAck: "REFRESH_ACK",
	}
	for op := 0; op < 256; op++ {
		want, valid := names[codec.Op(op)]
		if codec.Op(op).Valid() != valid {
			t.Fatalf("Op(%#x).Valid() = %v", op, !valid)
		}
		if !valid {
			want = fmt.Sprintf("OP(%d)", op)
		}
		if got := codec.Op(op).String(); got != want {
			t.Fatalf("Op(%#x).String() = %q, want %q", op, got, want)
		}
	}
	if codec.StatusSlowConsumer.String() != "SLOW_CONSUMER" || codec.Status(codec.NumStatus).String() != "STATUS(15)" {
		t.Fatal("status names")
	}
}
