package e2e

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/longlink/longlink/codec"
)

// upgrade is a valid upgrade request's lines, with extra header lines.
func upgrade(extra ...string) []string {
	return append([]string{"GET / HTTP/1.1", "Host: x", "Upgrade: websocket", "Connection: Upgrade",
		"Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: " + wsKey()}, extra...)
}

// TestWebSocketOrigins checks -ws-origins: a browser handshake from
// another origin gets 403 and is closed; a listed origin (in any case)
// and a handshake without Origin (a native app) are upgraded. Without the
// flag every origin is.
func TestWebSocketOrigins(t *testing.T) {
	s := startWSServer(t, "-ws-origins", "https://app.example.com, http://localhost:8080")
	for name, tc := range map[string]struct {
		lines []string
		want  int
	}{
		"listed":            {upgrade("Origin: https://app.example.com"), 101},
		"listed, any case":  {upgrade("Origin: HTTPS://App.Example.COM"), 101},
		"listed with port":  {upgrade("Origin: http://localhost:8080"), 101},
		"no Origin":         {upgrade(), 101},
		"other site":        {upgrade("Origin: https://evil.example"), 403},
		"other port":        {upgrade("Origin: http://localhost:8081"), 403},
		"other scheme":      {upgrade("Origin: http://app.example.com"), 403},
		"sandboxed page":    {upgrade("Origin: null"), 403},
		"suffix":            {upgrade("Origin: https://app.example.com.evil.example"), 403},
		"two Origin fields": {upgrade("Origin: https://app.example.com", "Origin: https://evil.example"), 400},
	} {
		t.Run(name, func(t *testing.T) {
			r := dialRaw(t, s.WS)
			if got := r.handshake(tc.lines...); got != tc.want {
				t.Fatalf("status %d, want %d", got, tc.want)
			}
			if tc.want != 101 {
				if _, err := r.br.ReadByte(); err == nil {
					t.Fatal("connection still open after a refused handshake")
				}
				return
			}
			r.frame(true, 2, codec.AppendFrame(nil, codec.Header{Op: codec.OpLogin, Seq: 1}, meta("token", token(t, "dev-origin", time.Hour)), nil))
			if f := r.nextFrame(); f.Op != codec.OpLoginAck || f.Status != codec.StatusOK {
				t.Fatalf("login after the upgrade: %v %v", f.Op, f.Status)
			}
		})
	}

	open := startWSServer(t)
	if got := dialRaw(t, open.WS).handshake(upgrade("Origin: https://evil.example")...); got != 101 {
		t.Errorf("without -ws-origins: status %d, want 101", got)
	}
}

// TestWebSocketCloseInvalidUTF8 checks that a close frame whose reason is
// not UTF-8 is answered with 1007 (RFC 6455 section 7.4.1), and one with
// a valid reason with the client's code.
func TestWebSocketCloseInvalidUTF8(t *testing.T) {
	s := startWSServer(t)
	for name, tc := range map[string]struct {
		payload []byte
		want    uint16
	}{
		"invalid UTF-8 reason": {append(binary.BigEndian.AppendUint16(nil, 1000), "bye \xff"...), 1007},
		"truncated rune":       {append(binary.BigEndian.AppendUint16(nil, 4000), "caf\xc3"...), 1007},
		"valid reason":         {append(binary.BigEndian.AppendUint16(nil, 4000), "café"...), 4000},
		"invalid code first":   {append(binary.BigEndian.AppendUint16(nil, 1005), "\xff"...), 1002},
	} {
		t.Run(name, func(t *testing.T) {
			r := dialRaw(t, s.WS)
			if code := r.handshake(); code != 101 {
				t.Fatalf("handshake %d", code)
			}
			r.frame(true, 8, tc.payload)
			op, p := r.next()
			if op != 8 || len(p) < 2 || binary.BigEndian.Uint16(p) != tc.want {
				t.Fatalf("close answer op %d payload %v, want code %d", op, p, tc.want)
			}
			if _, err := r.br.ReadByte(); err == nil {
				t.Fatal("connection still open after the close")
			}
		})
	}
}
