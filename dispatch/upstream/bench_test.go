package upstream

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/longlink/longlink/codec"
)

// signal is a Replier that only reports each answer's status, so a
// benchmark measures the dispatcher and not its Replier.
type signal chan codec.Status

func (s signal) Reply(_ *Request, res Result) { s <- res.Status }

func benchDispatcher(b *testing.B, bizs []Business) (*Dispatcher, signal) {
	b.Helper()
	s := make(signal, 1)
	d, err := New(bizs, Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = d.Close(context.Background()) })
	return d, s
}

// roundTrip submits one pooled request and waits for its answer.
func roundTrip(b *testing.B, d *Dispatcher, s signal, biz uint16, meta, body []byte) {
	req := Get()
	req.Biz, req.Seq, req.Conn, req.Device, req.App = biz, 1, 1234567, "device-0001", "app"
	req.Meta = append(req.Meta[:0], meta...)
	req.Body = append(req.Body[:0], body...)
	req.Reply = s
	if st := d.Submit(req); st != codec.StatusOK {
		b.Fatalf("Submit = %v", st)
	}
	if st := <-s; st != codec.StatusOK {
		b.Fatalf("answer %v", st)
	}
}

// BenchmarkEchoRoundTrip is Submit to Reply through the echo business,
// answered inside Submit: it must not allocate.
func BenchmarkEchoRoundTrip(b *testing.B) {
	d, s := benchDispatcher(b, []Business{{ID: 1, Echo: true}})
	meta := encodeMeta("trace", "0123456789")
	body := make([]byte, 256)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		roundTrip(b, d, s, 1, meta, body)
	}
}

// BenchmarkSubmitCircuitOpen is the rejection of a request to a business
// whose circuit is open: one atomic load, no queueing, no allocation.
func BenchmarkSubmitCircuitOpen(b *testing.B) {
	s := make(signal, 1)
	d, err := New([]Business{{ID: 1, URL: "http://127.0.0.1:1/"}}, Options{FailureThreshold: 1, OpenTimeout: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = d.Close(context.Background()) })
	req := Get()
	req.Biz, req.Reply = 1, s
	if st := d.Submit(req); st != codec.StatusOK {
		b.Fatalf("Submit = %v", st)
	}
	if st := <-s; st != codec.StatusBizUnavailable {
		b.Fatalf("answer %v, want BIZ_UNAVAILABLE", st)
	}
	req = Get()
	req.Biz, req.Reply = 1, s
	b.ReportAllocs()
	for b.Loop() {
		if st := d.Submit(req); st != codec.StatusBizUnavailable {
			b.Fatalf("Submit = %v", st)
		}
	}
}

// BenchmarkHTTPRoundTrip forwards to a real backend on 127.0.0.1. Its
// allocations include net/http's, on both the client and the server side.
func BenchmarkHTTPRoundTrip(b *testing.B) {
	for _, size := range []int{0, 1 << 10, 16 << 10} {
		b.Run(fmt.Sprintf("size=%dB", size), func(b *testing.B) {
			srv := backend(b, func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				w.Header().Set("X-Longlink-Meta-Trace", "abc")
				_, _ = w.Write(body)
			})
			d, s := benchDispatcher(b, []Business{{ID: 1, URL: srv.URL, Workers: 1}})
			meta := encodeMeta("trace", "0123456789", "lang", "en")
			body := make([]byte, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				roundTrip(b, d, s, 1, meta, body)
			}
		})
	}
}
