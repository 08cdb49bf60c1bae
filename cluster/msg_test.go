package cluster

import (
	"reflect"
	"testing"
)

func TestEnvelopeRoundTrip(t *testing.T) {
	frame := []byte{'L', 'K', 1, 7, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0xff, 0}
	for _, e := range []envelope{
		{kind: KindPush, id: 1, node: "a", instance: "i1", msg: Msg{Kind: KindPush, Devices: []string{"d1", "d2", ""}, Frame: frame}},
		{kind: KindPush, id: 2, node: "a", instance: "i1", msg: Msg{Kind: KindPush, Devices: []string{"d1"}, Frame: frame, Cached: true, Mark: "i1.2"}},
		{kind: KindGroup, id: 1 << 40, node: "node a", instance: "i", msg: Msg{Kind: KindGroup, Group: "room", Frame: frame}},
		{kind: KindAll, node: "a", instance: "i", msg: Msg{Kind: KindAll, Frame: []byte{}}},
		{kind: KindKick, id: 9, node: "a", instance: "i", msg: Msg{Kind: KindKick, Device: "d", Conn: 1 << 62, Status: 9, Reason: "dup", Settle: true}},
		{kind: KindMembers, node: "a", instance: "i", msg: Msg{Kind: KindMembers, Group: "g", Join: true, Devices: []string{"x"}}},
		{kind: kindReply, id: 3, node: "b", instance: "j", to: "i", reply: Reply{Node: "b", Count: 12, Missing: []string{"d2"}, Moved: []string{"d3", "d4"}}},
	} {
		got, err := decode(e.encode())
		if err != nil {
			t.Fatalf("%v: decode: %v", e.kind, err)
		}
		if e.kind != kindReply {
			e.msg.Kind = e.kind
		}
		if len(e.msg.Frame) == 0 && len(got.msg.Frame) == 0 {
			got.msg.Frame = e.msg.Frame
		}
		if !reflect.DeepEqual(got, e) {
			t.Errorf("round trip of %v:\n got %+v\nwant %+v", e.kind, got, e)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	good := (&envelope{kind: KindPush, id: 1, node: "a", instance: "i", msg: Msg{Devices: []string{"d"}, Frame: []byte("f")}}).encode()
	for i := range len(good) {
		if _, err := decode(good[:i]); err == nil {
			t.Errorf("a message cut at %d bytes decoded", i)
		}
	}
	if _, err := decode(append(good, 0)); err == nil {
		t.Error("trailing bytes accepted")
	}
	if _, err := decode([]byte{99, 0, 0, 0}); err == nil {
		t.Error("unknown kind accepted")
	}
}

func FuzzDecode(f *testing.F) {
	f.Add((&envelope{kind: KindPush, id: 1, node: "a", instance: "i", msg: Msg{Devices: []string{"d"}, Frame: []byte("f")}}).encode())
	f.Add((&envelope{kind: kindReply, id: 1, node: "a", instance: "i", to: "j", reply: Reply{Count: 3}}).encode())
	f.Add((&envelope{kind: KindMembers, node: "a", instance: "i", msg: Msg{Group: "g", Devices: []string{"d", "e"}}}).encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decode(b)
		if err != nil {
			return
		}
		// What decodes encodes to bytes that decode the same.
		again, err := decode(e.encode())
		if err != nil {
			t.Fatalf("re-encoding %x: %v", b, err)
		}
		if !reflect.DeepEqual(normal(again), normal(e)) {
			t.Fatalf("%x decodes to %+v, its re-encoding to %+v", b, e, again)
		}
	})
}

// normal makes empty slices nil, which encoding does not tell apart.
func normal(e envelope) envelope {
	if len(e.msg.Devices) == 0 {
		e.msg.Devices = nil
	}
	if len(e.msg.Frame) == 0 {
		e.msg.Frame = nil
	}
	if len(e.reply.Missing) == 0 {
		e.reply.Missing = nil
	}
	if len(e.reply.Moved) == 0 {
		e.reply.Moved = nil
	}
	return e
}
