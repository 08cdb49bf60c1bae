package main

import (
	"context"
	"io"
	"os"
	"strconv"
	"testing"
	"time"
)

// TestSDKClientCost measures what one idle, logged-in device costs the
// generator with its own connection code and with -sdk (a client.Client
// of the Go SDK), over TCP against the real gateway. It runs only when
// LONGLINK_SDKCOST is set to the number of devices:
//
//	LONGLINK_SDKCOST=2000 go test -run TestSDKClientCost -v ./loadtest
//
// The runner (slots, histograms) and the tokens are made before the first
// reading; the SDK path's per-device state (sdkDevice) is made inside it.
func TestSDKClientCost(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("LONGLINK_SDKCOST"))
	if n <= 0 {
		t.Skip("set LONGLINK_SDKCOST=<devices> to measure")
	}
	g := startRealGateway(t)
	type cost struct{ heap, stack, goroutines float64 }
	newR := func(prefix string, extra ...string) *runner {
		args := append([]string{"-addr", g.tcp, "-jwt-secret", testSecret, "-api", "http://" + g.api,
			"-api-key", testAPIKey, "-conns", strconv.Itoa(n), "-device-prefix", prefix}, extra...)
		cfg, err := parseFlags(args, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		r := newRunner(cfg, io.Discard)
		r.t0 = time.Now()
		for _, s := range r.slots {
			s.sdk = nil
			tok, err := mintToken([]byte(testSecret), s.device, "cost", nil, time.Hour, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			s.token = tok
		}
		return r
	}
	measure := func(name string, r *runner, connect func(s *slot) error) cost {
		before := memNow()
		for _, s := range r.slots {
			if err := connect(s); err != nil {
				t.Fatal(err)
			}
		}
		after := memNow()
		c := cost{
			heap:       (float64(after.heap) - float64(before.heap)) / float64(n),
			stack:      (float64(after.stack) - float64(before.stack)) / float64(n),
			goroutines: float64(after.goroutines-before.goroutines) / float64(n),
		}
		t.Logf("%-12s %d devices: live heap %6.0f B/device, stacks %6.0f B/device, %.2f goroutines/device",
			name, n, c.heap, c.stack, c.goroutines)
		r.teardown()
		return c
	}
	r := newR("cost-own-")
	own := measure("own code", r, func(s *slot) error {
		_, err := r.connect(context.Background(), s, false)
		return err
	})
	rs := newR("cost-sdk-", "-sdk")
	withSDK := measure("client.Client", rs, func(s *slot) error {
		s.sdk = newSDKDevice(rs, s)
		return rs.connectSDK(context.Background(), s)
	})
	t.Logf("client.Client: %.1fx the heap and stacks of the own code per idle device (+%.0f B), %.0fx the goroutines",
		(withSDK.heap+withSDK.stack)/(own.heap+own.stack), withSDK.heap+withSDK.stack-own.heap-own.stack,
		withSDK.goroutines/own.goroutines)
}
