package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/longlink/longlink/codec"
)

// TestSDKScenariosFakeGateway runs the scenarios with -sdk (every device a
// client.Client) against the fake gateway: every scenario over TCP, hold,
// request and push over WebSocket and TLS too. The fake's resume also
// redelivers the last push the device has, so the SDK's duplicate filter
// has something to drop.
func TestSDKScenariosFakeGateway(t *testing.T) {
	g := startFakeGateway(t, testSecret, testAPIKey)
	g.dupResume.Store(true)
	const conns = 40
	base := []string{"-sdk", "-api", g.http.URL, "-api-key", testAPIKey,
		"-jwt-secret", testSecret, "-conns", "40", "-dial-concurrency", "8", "-duration", "1s", "-drain", "3s",
		"-dial-timeout", "500ms"} // shorter than the run: no deadline of the dial may outlive it
	cases := []struct {
		scenario string
		extra    []string
		check    func(t *testing.T, s *Summary)
	}{
		{"hold", []string{"-hb", "200ms"}, func(t *testing.T, s *Summary) {
			// The SDK's own PINGs, seen through the tap.
			if s.Pings < conns || s.Pongs == 0 || s.LatencyKind != "ping" || s.LatencyMs.Count != s.Pongs {
				t.Errorf("pings %d pongs %d, latency kind %s n=%d", s.Pings, s.Pongs, s.LatencyKind, s.LatencyMs.Count)
			}
			if s.Latencies["login"].Count != conns {
				t.Errorf("login latencies %d", s.Latencies["login"].Count)
			}
		}},
		{"request", []string{"-rate", "400", "-size", "100", "-pipeline", "2"}, func(t *testing.T, s *Summary) {
			if s.Requests < 300 || s.Responses != s.Requests || s.LatencyMs.Count != s.Requests {
				t.Errorf("requests %d responses %d latency samples %d", s.Requests, s.Responses, s.LatencyMs.Count)
			}
			if s.SDK.RequestsSent != uint64(s.Requests) || s.SDK.RequestsFailed != 0 {
				t.Errorf("sdk %+v", *s.SDK)
			}
			if s.ThroughputPerSec < 250 {
				t.Errorf("throughput %.0f/s at 400/s", s.ThroughputPerSec)
			}
		}},
		{"push", []string{"-rate", "200", "-batch", "2", "-ack"}, func(t *testing.T, s *Summary) {
			if s.PushCalls < 150 || s.Deliveries != 2*s.PushCalls || s.MissingDeliveries != 0 {
				t.Errorf("push calls %d deliveries %d missing %d", s.PushCalls, s.Deliveries, s.MissingDeliveries)
			}
			if s.LatencyMs.Count != s.Deliveries || s.SDK.PushesReceived != uint64(s.Deliveries) {
				t.Errorf("latency samples %d, deliveries %d, sdk pushes %d", s.LatencyMs.Count, s.Deliveries, s.SDK.PushesReceived)
			}
			if s.SDK.AcksSent == 0 || g.acks.Load() == 0 {
				t.Errorf("PUSH_ACKs: sdk %d, fake %d", s.SDK.AcksSent, g.acks.Load())
			}
		}},
		{"group", []string{"-pushes", "20", "-size", "64"}, func(t *testing.T, s *Summary) {
			if s.GroupMembers != conns || s.Deliveries != conns*20 || s.ExpectedDeliveries != conns*20 {
				t.Errorf("members %d deliveries %d expected %d", s.GroupMembers, s.Deliveries, s.ExpectedDeliveries)
			}
		}},
		{"mixed", []string{"-rate", "200", "-push-rate", "50", "-churn", "10", "-hb", "500ms"}, func(t *testing.T, s *Summary) {
			st := s.SDK
			if st.ChurnCuts < 5 || s.Requests < 100 || s.PushCalls < 20 {
				t.Errorf("churn cuts %d requests %d push calls %d", st.ChurnCuts, s.Requests, s.PushCalls)
			}
			// Every cut is followed by the SDK's own reconnect, with a
			// complete resume, within the drain.
			if s.Reconnects != st.ChurnCuts || s.Resumed != s.Reconnects || st.Gaps != 0 {
				t.Errorf("cuts %d reconnects %d resumed %d gaps %d", st.ChurnCuts, s.Reconnects, s.Resumed, st.Gaps)
			}
			if s.Connections != conns || s.Logins != conns+s.Reconnects || int64(st.Connects) != s.Logins {
				t.Errorf("connections %d logins %d (sdk %d) reconnects %d", s.Connections, s.Logins, st.Connects, s.Reconnects)
			}
			// The fake redelivers one push too many on resume; the SDK
			// drops it, so the handler sees each push at most once.
			if st.DuplicatesDropped == 0 || s.Deliveries > s.PushCalls {
				t.Errorf("duplicates dropped %d, deliveries %d of %d pushes", st.DuplicatesDropped, s.Deliveries, s.PushCalls)
			}
		}},
	}
	for _, transport := range []string{"tcp", "ws", "tls"} {
		for _, c := range cases {
			if transport != "tcp" && c.scenario != "hold" && c.scenario != "request" && c.scenario != "push" {
				continue
			}
			t.Run(transport+"/"+c.scenario, func(t *testing.T) {
				args := append(append(append([]string{"-scenario", c.scenario}, base...), g.args(transport)...), c.extra...)
				args = append(args, "-device-prefix", "sdk-"+transport+"-"+c.scenario+"-")
				code, s, m, out := runGenerator(t, args...)
				if code != 0 || s.Errors != 0 {
					t.Fatalf("exit %d, errors %d: %v %v", code, s.Errors, s.ErrorDetail, s.ErrorSample)
				}
				if s.Connections != conns || s.LoginsPerSec <= 0 || s.Transport != transport || !s.Config.SDK {
					t.Errorf("connections %d logins/s %.0f transport %s sdk %v", s.Connections, s.LoginsPerSec, s.Transport, s.Config.SDK)
				}
				if s.SDK == nil || s.SDK.Clients != conns || s.SDK.Kicks != 0 || s.SDK.HeartbeatTimeouts != 0 {
					t.Fatalf("sdk %+v", s.SDK)
				}
				if _, ok := m["sdk"].(map[string]any)["duplicates_dropped"]; !ok {
					t.Error("no sdk.duplicates_dropped in the JSON")
				}
				if !strings.Contains(out, "client.Client (-sdk)") || !strings.Contains(out, "  sdk          40 clients") {
					t.Error("the text report does not say -sdk")
				}
				// Each client costs the generator its own goroutines:
				// supervisor, dispatcher, reader and writer.
				if s.Generator.Goroutines < 4*conns {
					t.Errorf("generator goroutines %d with %d SDK clients", s.Generator.Goroutines, conns)
				}
				c.check(t, s)
			})
		}
	}
	g.checkAllClosed(t)
}

// TestSDKErrors: with -sdk, a refused login (wrong secret) and a gateway
// that is not there count as login and dial errors, once per device.
func TestSDKErrors(t *testing.T) {
	g := startFakeGateway(t, testSecret, testAPIKey)
	code, s, _, _ := runGenerator(t, "-sdk", "-addr", g.ln.Addr().String(), "-api", g.http.URL, "-api-key", testAPIKey,
		"-jwt-secret", "wrong", "-conns", "5", "-duration", "100ms")
	if code != exitErrors || s.Errors != 5 || s.ErrorDetail["login"] != 5 || s.Connections != 0 || s.SDK.Clients != 0 {
		t.Fatalf("exit %d errors %d %v connections %d", code, s.Errors, s.ErrorDetail, s.Connections)
	}
	var out, errb bytes.Buffer
	start := time.Now()
	code = realMain([]string{"-sdk", "-addr", "127.0.0.1:1", "-api", "http://127.0.0.1:1", "-conns", "3",
		"-duration", "100ms", "-dial-timeout", "500ms", "-quiet"}, &out, &errb)
	if code != exitErrors || !strings.Contains(out.String(), "dial 3") {
		t.Fatalf("exit %d\n%s\n%s", code, out.String(), errb.String())
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v", d)
	}
}

// TestFrameTap: the tap sees every header whatever the split of the
// stream, and wholeFrames finds the frames a flush completes.
func TestFrameTap(t *testing.T) {
	var stream []byte
	var want []codec.Op
	for i, op := range []codec.Op{codec.OpLoginAck, codec.OpPong, codec.OpPush, codec.OpResponse, codec.OpPong} {
		meta := codec.AppendMetaString(nil, "hb", "30")
		body := bytes.Repeat([]byte{'x'}, i*700)
		stream = codec.AppendFrame(stream, codec.Header{Op: op, Seq: uint32(i + 1)}, meta, body)
		want = append(want, op)
	}
	for _, chunk := range []int{1, 3, 19, 20, 21, 512, len(stream)} {
		var tap frameTap
		var got []codec.Op
		hb := 0
		see := func(h *codec.Header, after []byte) {
			got = append(got, h.Op)
			if h.Op == codec.OpLoginAck && int(h.MetaLen) <= len(after) {
				if v, ok := codec.Meta(after[:h.MetaLen]).Get("hb"); ok && string(v) == "30" {
					hb++
				}
			}
		}
		for b := stream; len(b) > 0; {
			n := min(chunk, len(b))
			tap.feed(b[:n], see)
			b = b[n:]
		}
		if len(got) != len(want) || tap.hn != 0 || tap.skip != 0 {
			t.Fatalf("chunks of %d: saw %v, want %v", chunk, got, want)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("chunks of %d: saw %v, want %v", chunk, got, want)
			}
		}
		if chunk >= 512 && hb != 1 {
			t.Errorf("chunks of %d: hb read %d times", chunk, hb)
		}
	}
	first := codec.HeaderSize + len(codec.AppendMetaString(nil, "hb", "30")) // the LOGIN_ACK
	for _, n := range []int{0, 5, first - 1, first, first + 25, len(stream)} {
		w := wholeFrames(stream[:n])
		if n == len(stream) && w != n || n < first && w != 0 || n >= first && n < len(stream) && w < first {
			t.Errorf("wholeFrames of %d bytes: %d", n, w)
		}
	}
}
