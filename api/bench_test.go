package api

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/longlink/longlink/metrics"
)

// nopGateway answers every push at once, so that the benchmark measures
// the API's own work: auth, routing, decoding, checking and encoding.
type nopGateway struct{}

func (nopGateway) Push(_ context.Context, devices []string, _ Message) (PushResult, error) {
	return PushResult{Delivered: len(devices)}, nil
}
func (nopGateway) PushGroup(context.Context, string, Message) (int, error) { return 0, nil }
func (nopGateway) Broadcast(context.Context, Message) (int, error)         { return 0, nil }
func (nopGateway) Join(context.Context, string, []string) error            { return nil }
func (nopGateway) Leave(context.Context, string, []string) error           { return nil }
func (nopGateway) GroupSize(context.Context, string) (int, error)          { return 0, nil }
func (nopGateway) Device(context.Context, string) (DeviceInfo, error)      { return DeviceInfo{}, nil }
func (nopGateway) Kick(context.Context, string, string) (bool, error)      { return false, nil }
func (nopGateway) Token(string, string, time.Duration, []string) (string, error) {
	return "", nil
}
func (nopGateway) Endpoints(context.Context) ([]Endpoint, error) { return nil, nil }
func (nopGateway) Nodes(context.Context) ([]Node, error)         { return nil, nil }
func (nopGateway) Stats() metrics.Snapshot                       { return metrics.Snapshot{} }
func (nopGateway) Ready() bool                                   { return true }

// BenchmarkPush runs POST /v1/push through the handler directly.
func BenchmarkPush(b *testing.B) {
	h := New(nopGateway{}, Options{APIKey: testKey, Logger: slog.New(slog.DiscardHandler)})
	for _, bc := range []struct{ devices, size int }{{1, 64}, {100, 1024}} {
		devices := make([]string, bc.devices)
		for i := range devices {
			devices[i] = fmt.Sprintf("%q", fmt.Sprintf("device-%08d", i))
		}
		body := `{"devices":[` + strings.Join(devices, ",") + `],"biz":1,"id":"m-1","ack":true,"data":"` +
			strings.Repeat("x", bc.size) + `"}`
		b.Run(fmt.Sprintf("devices=%d/data=%dB", bc.devices, bc.size), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				req := httptest.NewRequest(http.MethodPost, "/v1/push", strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+testKey)
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatalf("status %d: %s", w.Code, w.Body)
				}
			}
		})
	}
}
