package codec_test

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/longlink/longlink/codec"
)

// fuzzMaxFrame is small so that the fuzzer reaches complete frames as well
// as over-size ones.
const fuzzMaxFrame = 1024

// decodeRun is everything a reader loop makes of a byte stream.
type decodeRun struct {
	frames []decoded
	err    error
	rest   int // input bytes not consumed by a frame
}

func runDecoder(max int, reads ...[]byte) decodeRun {
	d := streamDecoder{max: max}
	var r decodeRun
	for _, p := range reads {
		r.rest += len(p)
		if r.err != nil {
			continue // the connection is closed: nothing more is decoded
		}
		fs, err := d.feed(p)
		r.frames = append(r.frames, fs...)
		r.err = err
	}
	for _, fr := range r.frames {
		r.rest -= len(fr.Raw)
	}
	return r
}

// FuzzDecode checks, for any input:
//   - Decode never panics;
//   - decoding the input in one read and in two reads, split at a point
//     derived from the input, gives the same frames, the same error and
//     the same leftover (nats parser_fuzz_test style);
//   - every decoded frame is consistent (n == 20 + metaLen + bodyLen <=
//     max, a valid meta that Range walks and AppendMeta rebuilds), and when
//     its reserved byte is zero, AppendFrame re-encodes it to exactly the
//     bytes it consumed.
func FuzzDecode(f *testing.F) {
	for _, vf := range validFrames(f) {
		f.Add(vf.raw)
	}
	vfs := validFrames(f)
	f.Add(append(bytes.Clone(vfs[3].raw), vfs[7].raw...))     // PING then PUSH
	f.Add(append(bytes.Clone(vfs[5].raw), vfs[5].raw[:9]...)) // a frame and a partial header
	f.Add(vfs[0].raw[:30])                                    // a partial LOGIN
	f.Add([]byte{})
	for _, bf := range badFrames() {
		if bf.max == codec.DefaultMaxFrame {
			f.Add(bf.raw)
		}
	}
	f.Add(append(bytes.Clone(vfs[4].raw), rawHeader{op: 0x0C}.bytes()...)) // good then bad op

	f.Fuzz(func(t *testing.T, data []byte) {
		whole := runDecoder(fuzzMaxFrame, data)

		var sum int
		for _, c := range data {
			sum += int(c)
		}
		split := sum % (len(data) + 1)
		parts := runDecoder(fuzzMaxFrame, bytes.Clone(data[:split]), bytes.Clone(data[split:]))

		if !reflect.DeepEqual(whole.err, parts.err) {
			t.Fatalf("split at %d: error %v, whole: %v", split, parts.err, whole.err)
		}
		if !reflect.DeepEqual(whole.frames, parts.frames) {
			t.Fatalf("split at %d: %d frames, whole: %d; or they differ", split, len(parts.frames), len(whole.frames))
		}
		if whole.rest != parts.rest {
			t.Fatalf("split at %d: %d bytes left, whole: %d", split, parts.rest, whole.rest)
		}

		consumed := 0
		for _, fr := range whole.frames {
			n := len(fr.Raw)
			if n != codec.HeaderSize+len(fr.Meta)+len(fr.Body) || n != fr.Header.Size() || n > fuzzMaxFrame {
				t.Fatalf("frame of %d bytes: header %+v, meta %d, body %d", n, fr.Header, len(fr.Meta), len(fr.Body))
			}
			if !bytes.Equal(fr.Raw, data[consumed:consumed+n]) {
				t.Fatal("frame is not the input's next bytes")
			}
			consumed += n
			if !fr.Header.Op.Valid() {
				t.Fatalf("decoded an invalid op %v", fr.Header.Op)
			}
			m := codec.Meta(fr.Meta)
			if err := m.Validate(); err != nil {
				t.Fatalf("decoded meta does not validate: %v", err)
			}
			var rebuilt []byte
			last := map[string]string{}
			m.Range(func(k, v []byte) bool {
				if len(k) == 0 {
					t.Fatal("empty key")
				}
				rebuilt = codec.AppendMeta(rebuilt, string(k), v)
				last[string(k)] = string(v)
				return true
			})
			if !bytes.Equal(rebuilt, fr.Meta) {
				t.Fatal("Range + AppendMeta does not rebuild the meta")
			}
			for k, v := range last {
				if got, ok := m.Get(k); !ok || string(got) != v {
					t.Fatalf("Get(%q) = %q, %v; want the last value %q", k, got, ok, v)
				}
			}
			if fr.Raw[5] == 0 {
				if re := codec.AppendFrame(nil, fr.Header, fr.Meta, fr.Body); !bytes.Equal(re, fr.Raw) {
					t.Fatalf("re-encoding differs:\n got %x\nwant %x", re, fr.Raw)
				}
			}
		}
		if consumed+whole.rest != len(data) {
			t.Fatalf("consumed %d + left %d != %d", consumed, whole.rest, len(data))
		}

		// What is left after the frames is either a fault or a prefix of a
		// frame the decoder is right to wait for.
		tail := data[consumed:]
		if whole.err != nil {
			codecError(t, whole.err)
		} else if len(tail) >= codec.HeaderSize {
			h, err := codec.ParseHeader(tail, fuzzMaxFrame)
			if err != nil || h.Size() <= len(tail) {
				t.Fatalf("decoder waits on %d bytes, header %+v, %v", len(tail), h, err)
			}
		}
	})
}
