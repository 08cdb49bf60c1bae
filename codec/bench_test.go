package codec_test

import (
	"bytes"
	"testing"

	"github.com/longlink/longlink/codec"
)

var (
	sinkFrame codec.Frame
	sinkN     int
	sinkBytes []byte
)

func benchPush(bodyLen int) []byte {
	return rawFrame(rawHeader{op: 0x07, flags: codec.FlagAckRequired, biz: 1, seq: 42},
		rawMeta(entry{"id", "msg-000001"}, entry{"group", "room:42"}), bytes.Repeat([]byte{'x'}, bodyLen))
}

func BenchmarkDecode(b *testing.B) {
	for _, bc := range []struct {
		name string
		body int
	}{{"body=0B", 0}, {"body=64B", 64}, {"body=1KiB", 1024}} {
		b.Run(bc.name, func(b *testing.B) {
			raw := benchPush(bc.body)
			b.ReportAllocs()
			b.SetBytes(int64(len(raw)))
			for b.Loop() {
				f, n, err := codec.Decode(raw, codec.DefaultMaxFrame)
				if err != nil || n != len(raw) {
					b.Fatal(n, err)
				}
				sinkFrame, sinkN = f, n
			}
		})
	}
}

func BenchmarkMetaGet(b *testing.B) {
	m := codec.Meta(rawMeta(
		entry{"token", docToken}, entry{"resume", "41"}, entry{"trace", "abc"}, entry{"id", "msg-000001"},
	))
	b.ReportAllocs()
	b.SetBytes(int64(len(m)))
	for b.Loop() {
		v, ok := m.Get("id")
		if !ok {
			b.Fatal("missing")
		}
		sinkBytes = v
	}
}

func BenchmarkAppendFrame(b *testing.B) {
	meta := rawMeta(entry{"id", "msg-000001"})
	body := bytes.Repeat([]byte{'x'}, 256)
	h := codec.Header{Op: codec.OpPush, Biz: 1, Seq: 1}
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	b.SetBytes(int64(codec.HeaderSize + len(meta) + len(body)))
	for b.Loop() {
		buf = codec.AppendFrame(buf[:0], h, meta, body)
	}
	sinkBytes = buf
}

func BenchmarkBeginEndFrame(b *testing.B) {
	body := bytes.Repeat([]byte{'x'}, 256)
	h := codec.Header{Op: codec.OpPush, Biz: 1, Flags: codec.FlagAckRequired}
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	b.SetBytes(int64(codec.HeaderSize + 3 + 2 + 10 + 3 + 5 + 7 + len(body)))
	for b.Loop() {
		bb, start := codec.BeginFrame(buf[:0])
		bb = codec.AppendMetaString(bb, "id", "msg-000001")
		bb = codec.AppendMetaString(bb, "group", "room:42")
		metaLen := len(bb) - start - codec.HeaderSize
		bb = append(bb, body...)
		codec.EndFrame(bb, start, h, metaLen)
		buf = bb
	}
	sinkBytes = buf
}
