package websocket_test

import (
	"fmt"
	"testing"

	ws "github.com/longlink/longlink/websocket"
)

// sink keeps results alive so the compiler cannot drop the calls.
var sink int

func BenchmarkParseHeader(b *testing.B) {
	for _, size := range []int{16, 1000, 70000} {
		frame := clientFrame(true, ws.OpBinary, testMask, payloadOf(size))
		b.Run(fmt.Sprintf("len=%d", size), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				h, n, err := ws.ParseHeader(frame, testMax)
				if err != nil || n == 0 {
					b.Fatal(n, err)
				}
				sink += h.Len
			}
		})
	}
	b.Run("incomplete", func(b *testing.B) {
		frame := clientFrame(true, ws.OpBinary, testMask, payloadOf(70000))[:9]
		b.ReportAllocs()
		for b.Loop() {
			_, n, err := ws.ParseHeader(frame, testMax)
			if err != nil || n != 0 {
				b.Fatal(n, err)
			}
		}
	})
	b.Run("too big", func(b *testing.B) {
		frame := rawHeader(0x82, 127, 1<<40, 8, testMask)
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := ws.ParseHeader(frame, testMax); err != ws.ErrTooBig {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkUnmask(b *testing.B) {
	for _, size := range []int{64, 4096} {
		p := payloadOf(size)
		b.Run(fmt.Sprintf("size=%s", sizeName(size)), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(size))
			for b.Loop() {
				ws.Unmask(p, testMask)
			}
		})
	}
}

func BenchmarkParseServerHeader(b *testing.B) {
	for _, size := range []int{16, 1000, 70000} {
		frame := append(ws.AppendHeader(nil, ws.OpBinary, size), payloadOf(size)...)
		b.Run(fmt.Sprintf("len=%d", size), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				h, n, err := ws.ParseServerHeader(frame, testMax)
				if err != nil || n == 0 {
					b.Fatal(n, err)
				}
				sink += h.Len
			}
		})
	}
}

// BenchmarkAppendClientFrame is the generator's cost of one message:
// the header, the copy and the mask, into a reused buffer.
func BenchmarkAppendClientFrame(b *testing.B) {
	for _, size := range []int{64, 4096} {
		p := payloadOf(size)
		buf := make([]byte, 0, ws.MaxHeader+size)
		b.Run(fmt.Sprintf("size=%s", sizeName(size)), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(size))
			for b.Loop() {
				buf = ws.AppendClientFrame(buf[:0], ws.OpBinary, p, testMask)
			}
			sink += len(buf)
		})
	}
}

func BenchmarkParseAccept(b *testing.B) {
	ans := ws.AppendAccept(nil, ws.Handshake{Key: []byte(rfcKey), Subprotocol: true})
	b.ReportAllocs()
	b.SetBytes(int64(len(ans)))
	for b.Loop() {
		if n, err := ws.ParseAccept(ans, rfcKey); err != nil || n != len(ans) {
			b.Fatal(n, err)
		}
	}
}

func BenchmarkParseHandshake(b *testing.B) {
	reqs := []struct {
		name string
		req  []byte
	}{
		{"minimal", request("GET / HTTP/1.1", validHeaders()...)},
		{"browser", request("GET /gw HTTP/1.1",
			"Host: gw.example.com",
			"Connection: Upgrade",
			"Pragma: no-cache",
			"Cache-Control: no-cache",
			"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
			"Upgrade: websocket",
			"Origin: https://app.example.com",
			"Sec-WebSocket-Version: 13",
			"Accept-Encoding: gzip, deflate, br, zstd",
			"Accept-Language: en-US,en;q=0.9",
			"Sec-WebSocket-Key: "+rfcKey,
			"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
			"Sec-WebSocket-Protocol: longlink.v1")},
	}
	for _, r := range reqs {
		b.Run(r.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(r.req)))
			for b.Loop() {
				_, n, err := ws.ParseHandshake(r.req)
				if err != nil || n != len(r.req) {
					b.Fatal(n, err)
				}
			}
		})
	}
	// A reactor that calls again after every read of an incomplete
	// request pays this each time.
	b.Run("incomplete", func(b *testing.B) {
		req := reqs[1].req[:len(reqs[1].req)-1]
		b.ReportAllocs()
		b.SetBytes(int64(len(req)))
		for b.Loop() {
			if _, n, err := ws.ParseHandshake(req); err != nil || n != 0 {
				b.Fatal(n, err)
			}
		}
	})
}

func BenchmarkAppendAccept(b *testing.B) {
	h, _, err := ws.ParseHandshake(request("GET / HTTP/1.1", append(validHeaders(), "Sec-WebSocket-Protocol: longlink.v1")...))
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = ws.AppendAccept(buf[:0], h)
	}
	sink += len(buf)
}

func sizeName(n int) string {
	if n >= 1024 && n%1024 == 0 {
		return fmt.Sprintf("%dKiB", n/1024)
	}
	return fmt.Sprintf("%dB", n)
}
