package conn

import (
	"testing"

	"github.com/longlink/longlink/codec"
)

// TestFrameRate: every frame takes a token of the connection's frame
// bucket. Past the bucket PING is answered PONG OVERLOADED, REQUEST
// RESPONSE OVERLOADED and PUSH_ACK is ignored; a further burst over, the
// connection is kicked with OVERLOADED. The rate is low enough that the
// bucket does not refill while the test runs.
func TestFrameRate(t *testing.T) {
	const burst = 10
	fh := newFuzzHub(t, func(o *Options) { o.FrameRate, o.FrameBurst = 0.01, burst })
	input := loginFrame(t, "dev-rate")
	// The LOGIN takes a token: 9 frames are served, the next 10 are over,
	// the 20th over is kicked; the rest are never read.
	for i := range 30 {
		h := codec.Header{Op: codec.OpPing, Seq: uint32(i)}
		if i%3 == 1 {
			h = codec.Header{Op: codec.OpRequest, Biz: 1, Seq: uint32(i)}
		}
		if i%3 == 2 {
			h = codec.Header{Op: codec.OpPushAck, Seq: uint32(i)}
		}
		input = codec.AppendFrame(input, h, nil, nil)
	}
	frames := fh.run(t, input, len(input), expected{selfClose: true})
	if len(frames) == 0 || frames[0].Op != codec.OpLoginAck || frames[0].Status != codec.StatusOK {
		t.Fatalf("first frame %+v, want LOGIN_ACK OK", frames)
	}
	answers := map[uint32]codec.Status{}
	for _, f := range frames[1 : len(frames)-1] {
		if f.Op != codec.OpPong && f.Op != codec.OpResponse {
			t.Fatalf("unexpected %v", f.Op)
		}
		answers[f.Seq] = f.Status
	}
	for i := range 30 {
		st, answered := answers[uint32(i)]
		served, over := i < burst-1, i >= burst-1 && i < 2*burst-1
		switch {
		case i%3 == 2 && answered:
			t.Errorf("PUSH_ACK %d answered", i)
		case i%3 == 2:
		case served && (!answered || st != codec.StatusOK):
			t.Errorf("frame %d within the bucket: answered %v status %v, want OK", i, answered, st)
		case over && (!answered || st != codec.StatusOverloaded):
			t.Errorf("frame %d over the bucket: answered %v status %v, want OVERLOADED", i, answered, st)
		case !served && !over && answered:
			t.Errorf("frame %d after the kick answered %v", i, st)
		}
	}
	last := frames[len(frames)-1]
	if last.Op != codec.OpKick || last.Status != codec.StatusOverloaded {
		t.Fatalf("last frame %v %v, want KICK OVERLOADED", last.Op, last.Status)
	}
	if reason, _ := last.Meta.Get("reason"); string(reason) != "frame rate exceeded" {
		t.Fatalf("kick reason %q", reason)
	}
	if n := fh.h.Counters().Throttled; n != burst+1 {
		t.Fatalf("throttled %d, want %d", n, burst+1)
	}
}

// TestLoginFrameLimit: before login a frame may be at most MaxLoginFrame
// bytes, whatever MaxFrame allows after login; the header alone decides.
func TestLoginFrameLimit(t *testing.T) {
	fh := newFuzzHub(t, func(o *Options) { o.MaxFrame = 1 << 20 })
	var h [codec.HeaderSize]byte
	codec.PutHeader(h[:], &codec.Header{Op: codec.OpLogin, MetaLen: 100, BodyLen: codec.MaxLoginFrame - codec.HeaderSize - 100 + 1})
	frames := fh.run(t, h[:], len(h), expected{selfClose: true})
	if len(frames) != 1 || frames[0].Op != codec.OpKick || frames[0].Status != codec.StatusFrameTooLarge {
		t.Fatalf("got %+v, want KICK FRAME_TOO_LARGE", frames)
	}
	// After login the same declaration is within -max-frame: the session
	// waits for its body.
	input := append(loginFrame(t, "dev-big"), h[:]...)
	input[len(input)-codec.HeaderSize+3] = byte(codec.OpRequest)
	frames = fh.run(t, input, len(input), expected{})
	if len(frames) != 2 || frames[0].Op != codec.OpLoginAck || frames[1].Status != codec.StatusShuttingDown {
		t.Fatalf("after login: %+v, want LOGIN_ACK then the test's closing KICK", frames)
	}
}
