package e2e

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/longlink/longlink/codec"
)

func TestLoginAckMeta(t *testing.T) {
	s := startServer(t, "-hb", "30s")
	_, ack := loggedIn(t, s, "dev-login")
	if ack.Seq != 1 {
		t.Errorf("LOGIN_ACK seq = %d, want 1 (copied)", ack.Seq)
	}
	if _, err := strconv.ParseUint(metaString(ack, "conn"), 10, 64); err != nil {
		t.Errorf("conn meta %q is not decimal", metaString(ack, "conn"))
	}
	if got := metaString(ack, "node"); got != s.Node {
		t.Errorf("node meta = %q, want %q", got, s.Node)
	}
	if got := metaString(ack, "hb"); got != "30" {
		t.Errorf("hb meta = %q, want 30", got)
	}
	if _, ok := ack.Meta.Get("resumed"); ok {
		t.Error("resumed meta present without resume")
	}
}

func TestPingPong(t *testing.T) {
	s := startServer(t)
	c, _ := loggedIn(t, s, "dev-ping")
	for _, seq := range []uint32{7, 8, 0xFFFFFFFF} {
		c.send(codec.Header{Op: codec.OpPing, Seq: seq}, nil, nil)
		f := c.read(5 * time.Second)
		if f.Op != codec.OpPong || f.Seq != seq {
			t.Fatalf("PING %d answered with %v seq %d", seq, f.Op, f.Seq)
		}
	}
}

func TestPipelinedRequests(t *testing.T) {
	s := startServer(t, "-rate", "0")
	c, _ := loggedIn(t, s, "dev-req")
	const n = 200
	var out []byte
	for i := 0; i < n; i++ {
		body := []byte("payload-" + itoa(i))
		out = codec.AppendFrame(out, codec.Header{Op: codec.OpRequest, Biz: 1, Seq: uint32(1000 + i)}, meta("k", itoa(i)), body)
	}
	c.write(out) // all at once, before reading any answer
	seen := make(map[uint32]bool)
	for len(seen) < n {
		f := c.read(10 * time.Second)
		if f.Op != codec.OpResponse || f.Status != codec.StatusOK || f.Biz != 1 {
			t.Fatalf("got %v status %v biz %d", f.Op, f.Status, f.Biz)
		}
		i := int(f.Seq) - 1000
		if i < 0 || i >= n || seen[f.Seq] {
			t.Fatalf("unexpected or repeated seq %d", f.Seq)
		}
		seen[f.Seq] = true
		if want := "payload-" + itoa(i); string(f.Body) != want {
			t.Fatalf("seq %d body %q, want %q", f.Seq, f.Body, want)
		}
		if got := metaString(f, "k"); got != itoa(i) {
			t.Fatalf("seq %d meta k=%q, want %q", f.Seq, got, itoa(i))
		}
	}
}

func TestUnknownBiz(t *testing.T) {
	s := startServer(t)
	c, _ := loggedIn(t, s, "dev-unknown")
	c.send(codec.Header{Op: codec.OpRequest, Biz: 999, Seq: 5}, nil, []byte("x"))
	f := c.read(5 * time.Second)
	if f.Op != codec.OpResponse || f.Status != codec.StatusUnknownBiz || f.Seq != 5 || f.Biz != 999 {
		t.Fatalf("got %v status %v seq %d biz %d", f.Op, f.Status, f.Seq, f.Biz)
	}
}

func TestUnicastPush(t *testing.T) {
	s := startServer(t)
	c, _ := loggedIn(t, s, "dev-push")
	binaryBody := []byte{0, 1, 2, 0xFF, 0xFE, 'L', 'K', 0}
	pushes := []map[string]any{
		{"devices": []string{"dev-push", "nobody-here"}, "biz": 3, "data": "hello", "id": "m-1"},
		{"devices": []string{"dev-push"}, "biz": 3, "data_base64": base64.StdEncoding.EncodeToString(binaryBody), "id": "m-2", "ack": true},
	}
	var res struct {
		Delivered int      `json:"delivered"`
		Offline   []string `json:"offline"`
	}
	if code := s.api("POST", "/v1/push", pushes[0], &res); code != 200 {
		t.Fatalf("push: %d", code)
	}
	if res.Delivered != 1 || len(res.Offline) != 1 || res.Offline[0] != "nobody-here" {
		t.Fatalf("push result %+v", res)
	}
	f := c.read(5 * time.Second)
	if f.Op != codec.OpPush || f.Seq != 1 || f.Biz != 3 || string(f.Body) != "hello" || metaString(f, "id") != "m-1" {
		t.Fatalf("first push: %v seq %d biz %d body %q id %q", f.Op, f.Seq, f.Biz, f.Body, metaString(f, "id"))
	}
	if f.Flags&codec.FlagAckRequired != 0 {
		t.Error("ACK_REQUIRED set without ack")
	}
	if s.api("POST", "/v1/push", pushes[1], &res); res.Delivered != 1 || len(res.Offline) != 0 {
		t.Fatalf("second push result %+v", res)
	}
	f = c.read(5 * time.Second)
	if f.Seq != 2 || !bytes.Equal(f.Body, binaryBody) || metaString(f, "id") != "m-2" {
		t.Fatalf("second push: seq %d body %x id %q", f.Seq, f.Body, metaString(f, "id"))
	}
	if f.Flags&codec.FlagAckRequired == 0 {
		t.Error("ACK_REQUIRED not set with ack")
	}
	c.send(codec.Header{Op: codec.OpPushAck, Seq: 2}, nil, nil)
	checkFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if acks := s.stats()["push"].(map[string]any)["acks"].(float64); acks != 1 {
			return fmt.Errorf("acks = %v", acks)
		}
		return nil
	})
}

func TestGroups(t *testing.T) {
	s := startServer(t)
	byAPI, _ := loggedIn(t, s, "dev-g-api")
	byToken, _ := loggedIn(t, s, "dev-g-token", "room-1")
	outsider, _ := loggedIn(t, s, "dev-g-out")

	var members struct {
		Group   string `json:"group"`
		Members int    `json:"members"`
	}
	if code := s.api("PUT", "/v1/groups/room-1/members", map[string]any{"devices": []string{"dev-g-api", "dev-g-offline"}}, &members); code != 200 {
		t.Fatalf("put members: %d", code)
	}
	if members.Members != 3 {
		t.Fatalf("members after PUT = %d, want 3 (api, token, offline)", members.Members)
	}
	if s.api("GET", "/v1/groups/room-1", nil, &members); members.Members != 3 || members.Group != "room-1" {
		t.Fatalf("GET group = %+v", members)
	}
	var res struct{ Delivered, Members int }
	if s.api("POST", "/v1/groups/room-1/push", map[string]any{"biz": 1, "data": "to-room"}, &res); res.Delivered != 2 || res.Members != 3 {
		t.Fatalf("group push delivered %d of %d members, want 2 of 3 (one is offline)", res.Delivered, res.Members)
	}
	for _, c := range []*client{byAPI, byToken} {
		f := c.read(5 * time.Second)
		if f.Op != codec.OpPush || string(f.Body) != "to-room" || metaString(f, "group") != "room-1" {
			t.Fatalf("member got %v %q group %q", f.Op, f.Body, metaString(f, "group"))
		}
	}
	// The outsider gets nothing: its next frame is the PONG it asks for.
	outsider.send(codec.Header{Op: codec.OpPing, Seq: 9}, nil, nil)
	if f := outsider.read(5 * time.Second); f.Op != codec.OpPong {
		t.Fatalf("outsider got %v before its PONG", f.Op)
	}
	if s.api("DELETE", "/v1/groups/room-1/members", map[string]any{"devices": []string{"dev-g-api"}}, &members); members.Members != 2 {
		t.Fatalf("members after DELETE = %d, want 2", members.Members)
	}
	if s.api("POST", "/v1/groups/room-1/push", map[string]any{"biz": 1, "data": "again"}, &res); res.Delivered != 1 {
		t.Fatalf("group push after leave delivered %d, want 1", res.Delivered)
	}
	if f := byToken.read(5 * time.Second); string(f.Body) != "again" {
		t.Fatalf("token member got %q", f.Body)
	}
	// An offline member that comes online later is in the group.
	late, _ := loggedIn(t, s, "dev-g-offline")
	if s.api("POST", "/v1/groups/room-1/push", map[string]any{"biz": 1, "data": "late"}, &res); res.Delivered != 2 {
		t.Fatalf("group push with late member delivered %d, want 2", res.Delivered)
	}
	if f := late.read(5 * time.Second); string(f.Body) != "late" {
		t.Fatalf("late member got %q", f.Body)
	}
}

func TestBroadcast(t *testing.T) {
	s := startServer(t)
	var cs []*client
	for i := 0; i < 5; i++ {
		c, _ := loggedIn(t, s, "dev-b-"+itoa(i))
		cs = append(cs, c)
	}
	unlogged := dial(t, s.TCP) // connected but not logged in: not a recipient
	var res struct{ Delivered int }
	if s.api("POST", "/v1/broadcast", map[string]any{"biz": 2, "data": "all"}, &res); res.Delivered != 5 {
		t.Fatalf("broadcast delivered %d, want 5", res.Delivered)
	}
	for _, c := range cs {
		if f := c.read(5 * time.Second); f.Op != codec.OpPush || string(f.Body) != "all" || f.Seq != 1 {
			t.Fatalf("got %v %q seq %d", f.Op, f.Body, f.Seq)
		}
	}
	_ = unlogged
}

func TestDeviceLookupAndKick(t *testing.T) {
	s := startServer(t)
	c, ack := loggedIn(t, s, "dev-look")
	var info struct {
		Online bool   `json:"online"`
		Node   string `json:"node"`
		Conn   string `json:"conn"`
	}
	if s.api("GET", "/v1/devices/dev-look", nil, &info); !info.Online || info.Node != s.Node || info.Conn != metaString(ack, "conn") {
		t.Fatalf("device info %+v, ack conn %s", info, metaString(ack, "conn"))
	}
	if s.api("GET", "/v1/devices/dev-none", nil, &info); info.Online {
		t.Fatalf("unknown device online: %+v", info)
	}
	var kicked struct{ Kicked bool }
	if s.api("DELETE", "/v1/devices/dev-look", nil, &kicked); !kicked.Kicked {
		t.Fatal("kick reported false")
	}
	if f := c.read(5 * time.Second); f.Op != codec.OpKick {
		t.Fatalf("got %v, want KICK", f.Op)
	}
	c.expectClosed(5 * time.Second)
	checkFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if s.api("GET", "/v1/devices/dev-look", nil, &info); info.Online {
			return fmt.Errorf("still online after kick")
		}
		return nil
	})
}

func TestDuplicateLogin(t *testing.T) {
	s := startServer(t)
	older, _ := loggedIn(t, s, "dev-dup")
	newer, ack := loggedIn(t, s, "dev-dup")
	f := older.read(5 * time.Second)
	if f.Op != codec.OpKick || f.Status != codec.StatusDuplicateLogin {
		t.Fatalf("older got %v status %v, want KICK DUPLICATE_LOGIN", f.Op, f.Status)
	}
	older.expectClosed(5 * time.Second)
	newer.send(codec.Header{Op: codec.OpPing, Seq: 3}, nil, nil)
	if f := newer.read(5 * time.Second); f.Op != codec.OpPong {
		t.Fatalf("newer got %v", f.Op)
	}
	var info struct{ Conn string }
	if s.api("GET", "/v1/devices/dev-dup", nil, &info); info.Conn != metaString(ack, "conn") {
		t.Fatalf("device points at conn %s, want the newer %s", info.Conn, metaString(ack, "conn"))
	}
}

// TestHostileInput sends every kind of bad input on its own connection
// while a well-behaved connection keeps working.
func TestHostileInput(t *testing.T) {
	s := startServer(t)
	good, _ := loggedIn(t, s, "dev-good")
	ping := func() {
		t.Helper()
		good.send(codec.Header{Op: codec.OpPing, Seq: 77}, nil, nil)
		if f := good.read(5 * time.Second); f.Op != codec.OpPong || f.Seq != 77 {
			t.Fatalf("well-behaved connection got %v seq %d", f.Op, f.Seq)
		}
	}
	kicked := func(t *testing.T, c *client, want codec.Status) {
		t.Helper()
		f := c.read(5 * time.Second)
		if f.Op != codec.OpKick || f.Status != want {
			t.Fatalf("got %v status %v, want KICK %v", f.Op, f.Status, want)
		}
		if metaString(f, "reason") == "" {
			t.Error("KICK without a reason")
		}
		c.expectClosed(5 * time.Second)
	}
	loginRefused := func(t *testing.T, tok string) {
		t.Helper()
		c := dial(t, s.TCP)
		ack := c.login(tok)
		if ack.Status != codec.StatusUnauthorized || metaString(ack, "reason") == "" {
			t.Fatalf("LOGIN_ACK status %v reason %q, want UNAUTHORIZED with a reason", ack.Status, metaString(ack, "reason"))
		}
		c.expectClosed(5 * time.Second)
	}
	t.Run("expired token", func(t *testing.T) { loginRefused(t, token(t, "dev-x", -time.Minute)) })
	t.Run("bad signature", func(t *testing.T) {
		tok := []byte(token(t, "dev-x", time.Hour))
		tok[len(tok)-2] = otherBase64(tok[len(tok)-2])
		loginRefused(t, string(tok))
	})
	t.Run("not a token", func(t *testing.T) { loginRefused(t, "hello") })
	t.Run("frame before login", func(t *testing.T) {
		c := dial(t, s.TCP)
		c.send(codec.Header{Op: codec.OpRequest, Biz: 1, Seq: 1}, nil, []byte("x"))
		kicked(t, c, codec.StatusNotLoggedIn)
	})
	t.Run("garbage", func(t *testing.T) {
		c := dial(t, s.TCP)
		c.write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		kicked(t, c, codec.StatusBadFrame)
	})
	t.Run("oversized header", func(t *testing.T) {
		c := dial(t, s.TCP)
		var h [codec.HeaderSize]byte
		codec.PutHeader(h[:], &codec.Header{Op: codec.OpLogin, BodyLen: 1 << 30})
		c.write(h[:]) // no body follows: the header alone must be refused
		kicked(t, c, codec.StatusFrameTooLarge)
	})
	t.Run("malformed meta", func(t *testing.T) {
		c := dial(t, s.TCP)
		c.send(codec.Header{Op: codec.OpLogin, Seq: 1}, []byte{0, 0, 1, 'x'}, nil) // klen 0
		kicked(t, c, codec.StatusBadFrame)
		c = dial(t, s.TCP)
		c.send(codec.Header{Op: codec.OpLogin, Seq: 1}, []byte{3, 'a', 'b', 'c', 0, 9, 'x'}, nil) // value past metaLen
		kicked(t, c, codec.StatusBadFrame)
	})
	t.Run("unknown op", func(t *testing.T) {
		c := dial(t, s.TCP)
		b := codec.AppendFrame(nil, codec.Header{Op: codec.OpPing}, nil, nil)
		b[3] = 0x42
		c.write(b)
		kicked(t, c, codec.StatusBadFrame)
	})
	t.Run("bad version", func(t *testing.T) {
		c := dial(t, s.TCP)
		b := codec.AppendFrame(nil, codec.Header{Op: codec.OpPing}, nil, nil)
		b[2] = 2
		c.write(b)
		kicked(t, c, codec.StatusBadFrame)
	})
	t.Run("server op from client", func(t *testing.T) {
		c, _ := loggedIn(t, s, "dev-srvop")
		c.send(codec.Header{Op: codec.OpPush, Seq: 1}, nil, nil)
		kicked(t, c, codec.StatusBadFrame)
	})
	t.Run("split frames", func(t *testing.T) {
		c := dial(t, s.TCP)
		b := codec.AppendFrame(nil, codec.Header{Op: codec.OpLogin, Seq: 4}, meta("token", token(t, "dev-split", time.Hour)), nil)
		b = codec.AppendFrame(b, codec.Header{Op: codec.OpPing, Seq: 5}, nil, nil)
		for i := range b { // one byte at a time
			c.write(b[i : i+1])
		}
		if f := c.read(5 * time.Second); f.Op != codec.OpLoginAck || f.Status != codec.StatusOK {
			t.Fatalf("got %v %v", f.Op, f.Status)
		}
		if f := c.read(5 * time.Second); f.Op != codec.OpPong || f.Seq != 5 {
			t.Fatalf("got %v seq %d", f.Op, f.Seq)
		}
	})
	t.Run("api without key", func(t *testing.T) {
		var e struct{ Error string }
		if code := s.apiKey("", "POST", "/v1/push", map[string]any{"devices": []string{"x"}}, &e); code != 401 || e.Error == "" {
			t.Fatalf("status %d error %q", code, e.Error)
		}
		if code := s.apiKey("wrong", "GET", "/v1/stats", nil, &e); code != 401 {
			t.Fatalf("wrong key: status %d", code)
		}
	})
	t.Run("api bad json", func(t *testing.T) {
		var e struct{ Error string }
		if code := s.api("POST", "/v1/push", `{"devices": [`, &e); code != 400 || e.Error == "" {
			t.Fatalf("status %d error %q", code, e.Error)
		}
	})
	ping()
}

func TestLoginTimeout(t *testing.T) {
	s := startServer(t, "-login-timeout", "300ms")
	c := dial(t, s.TCP)
	// A header that never completes must not extend the login window.
	var h [codec.HeaderSize]byte
	codec.PutHeader(h[:], &codec.Header{Op: codec.OpLogin, BodyLen: 100})
	c.write(h[:10])
	start := time.Now()
	f := c.read(5 * time.Second)
	if f.Op != codec.OpKick || f.Status != codec.StatusNotLoggedIn {
		t.Fatalf("got %v %v, want KICK NOT_LOGGED_IN", f.Op, f.Status)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("login timeout took %v", el)
	}
	c.expectClosed(5 * time.Second)
}

func TestIdleTimeout(t *testing.T) {
	s := startServer(t, "-hb", "1s", "-idle-timeout", "1500ms")
	idle, _ := loggedIn(t, s, "dev-idle")
	busy, _ := loggedIn(t, s, "dev-busy")
	// Time is the input: busy talks every 100 ms for 2.5 s, past idle's
	// 1.5 s timeout, so a PONG instead of a KICK shows that traffic counts.
	stop := time.Now().Add(2500 * time.Millisecond)
	for time.Now().Before(stop) {
		busy.send(codec.Header{Op: codec.OpPing, Seq: 1}, nil, nil)
		if f := busy.read(5 * time.Second); f.Op != codec.OpPong {
			t.Fatalf("busy got %v", f.Op)
		}
		time.Sleep(100 * time.Millisecond)
	}
	f := idle.read(5 * time.Second)
	if f.Op != codec.OpKick || f.Status != codec.StatusIdleTimeout {
		t.Fatalf("idle got %v %v, want KICK IDLE_TIMEOUT", f.Op, f.Status)
	}
	idle.expectClosed(5 * time.Second)
	busy.send(codec.Header{Op: codec.OpPing, Seq: 2}, nil, nil)
	if f := busy.read(5 * time.Second); f.Op != codec.OpPong {
		t.Fatalf("busy connection was affected: %v %v", f.Op, f.Status)
	}
}

func TestResume(t *testing.T) {
	s := startServer(t)
	c, _ := loggedIn(t, s, "dev-resume")
	push := func(data string) {
		var res struct{ Delivered int }
		s.api("POST", "/v1/push", map[string]any{"devices": []string{"dev-resume"}, "biz": 1, "data": data}, &res)
	}
	push("one")
	if f := c.read(5 * time.Second); f.Seq != 1 {
		t.Fatalf("seq %d", f.Seq)
	}
	c.nc.Close()
	checkFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		var info struct{ Online bool }
		if s.api("GET", "/v1/devices/dev-resume", nil, &info); info.Online {
			return fmt.Errorf("still online")
		}
		return nil
	})
	push("two")
	push("three")
	c2 := dial(t, s.TCP)
	ack := c2.login(token(t, "dev-resume", time.Hour), "resume", "1")
	if ack.Status != codec.StatusOK || metaString(ack, "resumed") != "1" {
		t.Fatalf("ack %v resumed %q", ack.Status, metaString(ack, "resumed"))
	}
	for i, want := range []string{"two", "three"} {
		f := c2.read(5 * time.Second)
		if f.Op != codec.OpPush || f.Seq != uint32(i+2) || string(f.Body) != want {
			t.Fatalf("resumed push %d: %v seq %d %q", i, f.Op, f.Seq, f.Body)
		}
	}
	push("four")
	if f := c2.read(5 * time.Second); f.Seq != 4 || string(f.Body) != "four" {
		t.Fatalf("new push after resume: seq %d %q", f.Seq, f.Body)
	}
	// Resuming from a seq the gateway no longer has is reported as a gap.
	c3 := dial(t, s.TCP)
	if ack := c3.login(token(t, "dev-never-pushed", time.Hour), "resume", "5"); metaString(ack, "resumed") != "0" {
		t.Fatalf("resume without state: resumed=%q, want 0", metaString(ack, "resumed"))
	}
}

func TestMaxConns(t *testing.T) {
	s := startServer(t, "-max-conns", "2")
	a, _ := loggedIn(t, s, "dev-mc-1")
	loggedIn(t, s, "dev-mc-2")
	c := dial(t, s.TCP)
	f := c.read(5 * time.Second)
	if f.Op != codec.OpKick || f.Status != codec.StatusOverloaded {
		t.Fatalf("third connection got %v %v, want KICK OVERLOADED", f.Op, f.Status)
	}
	c.expectClosed(5 * time.Second)
	a.send(codec.Header{Op: codec.OpPing, Seq: 1}, nil, nil)
	if f := a.read(5 * time.Second); f.Op != codec.OpPong {
		t.Fatalf("admitted connection got %v", f.Op)
	}
	if refused := s.stats()["refused"].(float64); refused != 1 {
		t.Fatalf("refused = %v, want 1", refused)
	}
}

func TestRateLimit(t *testing.T) {
	s := startServer(t, "-rate", "5", "-rate-burst", "5")
	c, _ := loggedIn(t, s, "dev-rate")
	var out []byte
	for i := 0; i < 20; i++ {
		out = codec.AppendFrame(out, codec.Header{Op: codec.OpRequest, Biz: 1, Seq: uint32(i)}, nil, []byte("x"))
	}
	c.write(out)
	ok, over := 0, 0
	for i := 0; i < 20; i++ {
		f := c.read(5 * time.Second)
		switch f.Status {
		case codec.StatusOK:
			ok++
		case codec.StatusOverloaded:
			over++
		default:
			t.Fatalf("status %v", f.Status)
		}
	}
	if ok < 5 || ok > 7 || over != 20-ok {
		t.Fatalf("ok %d overloaded %d; want about 5 allowed by the burst", ok, over)
	}
	if got := s.stats()["rate_limited"].(float64); int(got) != over {
		t.Fatalf("stats rate_limited = %v, want %d", got, over)
	}
}

func TestShutdownKicks(t *testing.T) {
	s := startServer(t)
	c, _ := loggedIn(t, s, "dev-sd")
	_ = s.Cmd.Process.Signal(syscall.SIGTERM)
	f := c.read(10 * time.Second)
	if f.Op != codec.OpKick || f.Status != codec.StatusShuttingDown {
		t.Fatalf("got %v %v, want KICK SHUTTING_DOWN", f.Op, f.Status)
	}
	c.expectClosed(10 * time.Second)
	select {
	case err := <-s.Exited():
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, s.Logs())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("gateway did not exit after SIGTERM")
	}
}

// TestTokens mints tokens through the control API and logs in with them;
// a token the gateway could not accept at LOGIN is refused at minting.
func TestTokens(t *testing.T) {
	s := startServer(t)
	var tok struct {
		Token     string `json:"token"`
		ExpiresAt int64  `json:"expires_at"`
		Endpoints []struct {
			Proto, Addr string
		} `json:"endpoints"`
	}
	if code := s.api("POST", "/v1/tokens", map[string]any{"device": "dev-tok", "ttl_seconds": 60, "groups": []string{"tok-room"}}, &tok); code != 200 {
		t.Fatalf("tokens: %d", code)
	}
	if len(tok.Endpoints) == 0 || tok.Endpoints[0].Addr != s.TCP || tok.ExpiresAt < time.Now().Unix() {
		t.Fatalf("token answer %+v", tok)
	}
	c := dial(t, tok.Endpoints[0].Addr)
	if ack := c.login(tok.Token); ack.Status != codec.StatusOK {
		t.Fatalf("login with a minted token: %v", ack.Status)
	}
	var room struct{ Members int }
	if s.api("GET", "/v1/groups/tok-room", nil, &room); room.Members != 1 {
		t.Fatalf("token groups not joined: %d members", room.Members)
	}
	long := make([]string, 64)
	for i := range long {
		long[i] = fmt.Sprintf("%0128d", i)
	}
	var e struct{ Error string }
	if code := s.api("POST", "/v1/tokens", map[string]any{"device": "d", "ttl_seconds": 60, "groups": long}, &e); code != 400 || e.Error == "" {
		t.Fatalf("a token too long for LOGIN: %d %q", code, e.Error)
	}
	if code := s.api("POST", "/v1/tokens", map[string]any{"device": "d", "ttl_seconds": 60, "groups": append(long, "x")}, &e); code != 400 {
		t.Fatalf("65 groups: %d %q", code, e.Error)
	}
}

// otherBase64 returns a base64url character other than c, so a token
// changed with it is still well encoded but no longer correctly signed.
func otherBase64(c byte) byte {
	if c == 'A' {
		return 'B'
	}
	return 'A'
}

// TestNodesAlone: without -redis, /v1/nodes lists this node alone, with
// its live connection counts and endpoints.
func TestNodesAlone(t *testing.T) {
	s := startServer(t, "-node", "solo")
	s.Node = "solo"
	loggedIn(t, s, "alone-1")
	var body struct{ Nodes []map[string]any }
	if code := s.api("GET", "/v1/nodes", nil, &body); code != 200 || len(body.Nodes) != 1 {
		t.Fatalf("GET /v1/nodes: %d %v", code, body.Nodes)
	}
	n := body.Nodes[0]
	if n["node"] != "solo" || n["self"] != true || n["connections"] != 1.0 || n["logged_in"] != 1.0 || n["draining"] != false || len(n["endpoints"].([]any)) == 0 {
		t.Fatalf("the node lists itself as %v", n)
	}
}

// TestNetworkQualityReports: PING meta rtt and net land in the node's
// longlink_client_rtt_seconds{net} histogram (an unknown net in "other"),
// a malformed rtt is dropped and counted, and every PING gets its PONG.
func TestNetworkQualityReports(t *testing.T) {
	s := startServer(t)
	c, _ := loggedIn(t, s, "rtt-dev")
	for i, r := range []struct{ rtt, net string }{{"120", "wifi"}, {"40", "cell"}, {"3000", "satellite"}, {"soon", "wifi"}} {
		meta := codec.AppendMetaString(codec.AppendMetaString(nil, "rtt", r.rtt), "net", r.net)
		c.send(codec.Header{Op: codec.OpPing, Seq: uint32(10 + i)}, meta, nil)
		if f := c.read(5 * time.Second); f.Op != codec.OpPong || f.Seq != uint32(10+i) || f.Status != codec.StatusOK {
			t.Fatalf("PING with rtt %q: %v seq %d %v, want PONG OK", r.rtt, f.Op, f.Seq, f.Status)
		}
	}
	code, body := mustGet(t, s, "/metrics", "")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	for _, want := range []string{
		`longlink_client_rtt_seconds_bucket{net="wifi",le="0.1"} 0`,
		`longlink_client_rtt_seconds_bucket{net="wifi",le="0.25"} 1`,
		`longlink_client_rtt_seconds_count{net="wifi"} 1`,
		`longlink_client_rtt_seconds_bucket{net="cell",le="0.05"} 1`,
		`longlink_client_rtt_seconds_sum{net="other"} 3`,
		`longlink_client_rtt_dropped_total 1`,
		`longlink_heartbeat_interval_seconds_count 1`, // the one login's grant
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
