package codec

import (
	"bytes"
	"testing"
)

func decodeOne(t *testing.T, b []byte) Frame {
	t.Helper()
	f, n, err := Decode(b, 1<<20)
	if err != nil || n != len(b) {
		t.Fatalf("Decode: n %d of %d, err %v", n, len(b), err)
	}
	return f
}

func metaIs(t *testing.T, f Frame, key, want string) {
	t.Helper()
	v, ok := f.Meta.Get(key)
	if want == "" {
		if ok {
			t.Errorf("meta %q = %q, want none", key, v)
		}
		return
	}
	if !ok || string(v) != want {
		t.Errorf("meta %q = %q (present %v), want %q", key, v, ok, want)
	}
}

func TestServerFrames(t *testing.T) {
	for _, r := range []struct {
		resumed Resumed
		want    string
	}{{ResumedNone, ""}, {ResumedIncomplete, "0"}, {ResumedComplete, "1"}} {
		f := decodeOne(t, AppendLoginAck(nil, &LoginAck{Seq: 7, Conn: 12345678901, Node: "gw-1", Heartbeat: 60, Resumed: r.resumed}))
		if f.Op != OpLoginAck || f.Seq != 7 || f.Status != StatusOK || len(f.Body) != 0 {
			t.Fatalf("LOGIN_ACK header %+v", f.Header)
		}
		metaIs(t, f, "conn", "12345678901")
		metaIs(t, f, "node", "gw-1")
		metaIs(t, f, "hb", "60")
		metaIs(t, f, "resumed", r.want)
		metaIs(t, f, "hb_min", "")
		metaIs(t, f, "hb_max", "")
	}
	f := decodeOne(t, AppendLoginAck(nil, &LoginAck{Seq: 1, Heartbeat: 240, HeartbeatMin: 30, HeartbeatMax: 600}))
	metaIs(t, f, "hb", "240")
	metaIs(t, f, "hb_min", "30")
	metaIs(t, f, "hb_max", "600")

	f = decodeOne(t, AppendRefreshAck(nil, 9, 1767225600))
	if f.Op != OpRefreshAck || f.Seq != 9 || f.Status != StatusOK || len(f.Body) != 0 {
		t.Fatalf("REFRESH_ACK header %+v", f.Header)
	}
	metaIs(t, f, "exp", "1767225600")
	f = decodeOne(t, AppendRefreshRefusal(nil, 10, StatusUnauthorized, "token is for another device"))
	if f.Op != OpRefreshAck || f.Seq != 10 || f.Status != StatusUnauthorized {
		t.Fatalf("REFRESH_ACK refusal header %+v", f.Header)
	}
	metaIs(t, f, "reason", "token is for another device")

	f = decodeOne(t, AppendLoginRefusal(nil, 3, StatusUnauthorized, "token expired"))
	if f.Op != OpLoginAck || f.Seq != 3 || f.Status != StatusUnauthorized {
		t.Fatalf("refusal header %+v", f.Header)
	}
	metaIs(t, f, "reason", "token expired")

	f = decodeOne(t, AppendKick(nil, StatusShuttingDown, "draining", "127.0.0.1:7001"))
	if f.Op != OpKick || f.Status != StatusShuttingDown {
		t.Fatalf("KICK header %+v", f.Header)
	}
	metaIs(t, f, "reason", "draining")
	metaIs(t, f, "redirect", "127.0.0.1:7001")
	metaIs(t, decodeOne(t, AppendKick(nil, StatusIdleTimeout, "idle", "")), "redirect", "")

	p := &Push{Biz: 9, Ack: true, ID: "m-1", Group: "room", Body: []byte("hello")}
	b := AppendPush(nil, p)
	if len(b) != PushSize(p) {
		t.Fatalf("PUSH is %d bytes, PushSize says %d", len(b), PushSize(p))
	}
	f = decodeOne(t, b)
	if f.Op != OpPush || f.Biz != 9 || f.Flags != FlagAckRequired || f.Seq != 0 || string(f.Body) != "hello" {
		t.Fatalf("PUSH %+v body %q", f.Header, f.Body)
	}
	metaIs(t, f, "id", "m-1")
	metaIs(t, f, "group", "room")
	bare := &Push{Biz: 1, Body: []byte("x")}
	if b := AppendPush(nil, bare); len(b) != PushSize(bare) || decodeOne(t, b).Flags != 0 || len(decodeOne(t, b).Meta) != 0 {
		t.Fatalf("bare PUSH %x", b)
	}

	f = decodeOne(t, AppendPong(nil, 42, StatusOverloaded))
	if f.Op != OpPong || f.Seq != 42 || f.Status != StatusOverloaded || len(f.Meta) != 0 || len(f.Body) != 0 {
		t.Fatalf("PONG %+v", f.Header)
	}

	meta := AppendMetaString(nil, "k", "v")
	f = decodeOne(t, AppendResponse([]byte("prefix"), 5, 6, StatusBizError, meta, []byte("oops"))[len("prefix"):])
	if f.Op != OpResponse || f.Biz != 5 || f.Seq != 6 || f.Status != StatusBizError || string(f.Body) != "oops" || !bytes.Equal(f.Meta, meta) {
		t.Fatalf("RESPONSE %+v", f.Header)
	}
}

// The server's encoders allocate nothing into a buffer with room: they
// run once per answer and per push.
func BenchmarkServerFrames(b *testing.B) {
	buf := make([]byte, 0, 4096)
	body := bytes.Repeat([]byte("x"), 64)
	ack := &LoginAck{Seq: 1, Conn: 123456, Node: "gw-1", Heartbeat: 60, Resumed: ResumedComplete}
	push := &Push{Biz: 1, Ack: true, ID: "msg-1", Group: "room-1", Body: body}
	b.Run("LoginAck", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			buf = AppendLoginAck(buf[:0], ack)
		}
	})
	b.Run("Kick", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			buf = AppendKick(buf[:0], StatusShuttingDown, "node is shutting down", "127.0.0.1:7000")
		}
	})
	b.Run("Push", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			buf = AppendPush(buf[:0], push)
		}
	})
	b.Run("Pong", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			buf = AppendPong(buf[:0], 7, StatusOK)
		}
	})
	b.Run("Response", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			buf = AppendResponse(buf[:0], 1, 7, StatusOK, nil, body)
		}
	})
}
