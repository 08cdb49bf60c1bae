// Command hostile measures what the hostile-clients attacks cost a
// gateway: each row of the table (PING, PUSH_ACK, REQUEST and
// WebSocket ping floods, unauthenticated half-LOGINs, silent sockets on
// the TLS port) runs for a fixed time against the gateway while a monitor
// connection pings it every 100ms, and the program prints, per attack,
// the gateway's RSS at idle and at most, the monitor's PONG round trips
// (p50, p99, max) and longest gap, and what the flooders saw (kicked with
// which status after how long, or throttled).
//
// By default it builds the gateway (without the race detector) and
// starts a fresh process for every attack, on free loopback ports with
// TLS and WebSocket listeners; -gateway runs every attack against one
// gateway already running instead (then -api, -ws, -tls and -pid say
// where the rest is):
//
//	go run ./bench/hostile                        # every attack, 5s each
//	go run ./bench/hostile -duration 3s -attacks ping,request
//	go run . & go run ./bench/hostile -gateway 127.0.0.1:7000 -ws 127.0.0.1:7001
//
// Attacks come from 127.0.0.2 up, the monitor from 127.0.0.1 (Linux
// routes all of 127.0.0.0/8 to loopback). Every flood stops by itself: at
// -duration, when its connection is kicked, or when the gateway's RSS is
// -rss-abort over idle (a gateway without the limits would otherwise take
// gigabytes). It is a measurement for docs, not part of the gateway.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/longlink/longlink/codec"
	"github.com/longlink/longlink/config"
	"github.com/longlink/longlink/internal/gatewaytest"
	"github.com/longlink/longlink/internal/hostile"
)

type options struct {
	gateway, api, ws, tls string
	pid                   int
	apiKey, secret        string
	duration              time.Duration
	rssAbort              int64
	race                  bool
	bin                   string
	extra                 []string
}

func main() {
	var o options
	var list, extra string
	var abortMiB int64
	flag.StringVar(&o.gateway, "gateway", "", "TCP `address` of a running gateway; empty builds the gateway and starts one per attack")
	flag.StringVar(&o.api, "api", "http://"+config.DefaultAPIListen, "with -gateway: its HTTP API `URL` (stats, pushes)")
	flag.StringVar(&o.ws, "ws", "", "with -gateway: its WebSocket `address`; empty skips the WebSocket attack")
	flag.StringVar(&o.tls, "tls", "", "with -gateway: its TLS `address`; empty skips the TLS attack")
	flag.IntVar(&o.pid, "pid", 0, "with -gateway: its process id, to read RSS from /proc; 0 reads the API's /v1/stats rss")
	flag.StringVar(&o.apiKey, "api-key", config.DevAPIKey, "API key")
	flag.StringVar(&o.secret, "jwt-secret", config.DevJWTSecret, "JWT secret, to mint the clients' tokens")
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "how long each attack runs at most")
	flag.StringVar(&list, "attacks", "all", "comma-separated attacks to run: "+strings.Join(names(), ", ")+"; or all")
	flag.Int64Var(&abortMiB, "rss-abort", 1024, "stop a flood once the gateway's RSS is this many `MiB` over idle")
	flag.BoolVar(&o.race, "race", false, "build the gateway with the race detector")
	flag.StringVar(&o.bin, "bin", "", "gateway `binary` to start instead of building this tree's (a build before a change, for a run set against it)")
	flag.StringVar(&extra, "flags", "", "extra gateway flags, space-separated, when it is started here")
	flag.Parse()
	o.rssAbort = abortMiB << 20
	o.extra = strings.Fields(extra)
	run, err := pick(list)
	if err == nil {
		err = bench(o, run)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "hostile:", err)
		os.Exit(1)
	}
}

// target is a gateway under attack.
type target struct {
	tcp, ws, tls, api string
	tlsCfg            *tls.Config
	rss               func() (int64, error)
	opts              options
}

// token mints a login token for device.
func (t *target) token(device string) string {
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": device, "exp": time.Now().Add(time.Hour).Unix()}).SignedString([]byte(t.opts.secret))
	if err != nil {
		panic(err)
	}
	return s
}

// row is one line of the table.
type row struct {
	name string
	mem  hostile.Memory
	mon  hostile.MonitorResult
	saw  string
	err  error
}

// attack is one row's attack: it runs on t while the monitor and the
// sampler watch, stopping early when stop closes.
type attack struct {
	name  string
	needs string   // "ws" or "tls" when it needs that listener
	flags []string // gateway flags it needs when started here
	// setup prepares the attackers before the idle RSS is read; run
	// floods and returns what the flooders saw.
	setup func(t *target) (run func(stop <-chan struct{}) string, err error)
}

func attacks() []attack {
	return []attack{
		{name: "ping", setup: floodSetup(4, hostile.Flood{Op: codec.OpPing})},
		{name: "pushack", setup: floodSetup(1, hostile.Flood{Op: codec.OpPushAck})},
		{name: "request", setup: floodSetup(20, hostile.Flood{Op: codec.OpRequest, Biz: 1, Body: []byte("flood")})},
		{name: "request-paced", setup: floodSetup(20, hostile.Flood{Op: codec.OpRequest, Biz: 1, Body: []byte("flood"), Rate: 500})},
		{name: "ws", needs: "ws", setup: wsSetup},
		{name: "unauth", flags: []string{"-login-timeout", "30s"}, setup: unauthSetup},
		{name: "idletls", needs: "tls", flags: []string{"-login-timeout", "30s"}, setup: idleTLSSetup},
	}
}

var titles = map[string]string{
	"ping":          "ping flood (4 TCP)",
	"pushack":       "push-ack flood (1 TCP)",
	"request":       "request flood (20 TCP)",
	"request-paced": "request flood 500/s (20 TCP)",
	"ws":            "websocket ping flood (2 WS)",
	"unauth":        "5000 × 65 KB of a LOGIN",
	"idletls":       "4200 silent TLS sockets + 14 TLS logins",
}

func names() []string {
	var n []string
	for _, a := range attacks() {
		n = append(n, a.name)
	}
	return n
}

func pick(list string) ([]attack, error) {
	all := attacks()
	if list == "all" {
		return all, nil
	}
	var out []attack
	for _, name := range strings.Split(list, ",") {
		i := slices.IndexFunc(all, func(a attack) bool { return a.name == strings.TrimSpace(name) })
		if i < 0 {
			return nil, fmt.Errorf("no attack %q (have %s)", name, strings.Join(names(), ", "))
		}
		out = append(out, all[i])
	}
	return out, nil
}

func bench(o options, run []attack) error {
	var bin, certFile, keyFile string
	var pool *x509.CertPool
	if o.gateway == "" {
		dir, err := os.MkdirTemp("", "longlink-hostile")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		bin = o.bin
		if bin == "" {
			fmt.Fprintln(os.Stderr, "building the gateway...")
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			bin, err = gatewaytest.BuildBinary(ctx, dir, o.race)
			cancel()
			if err != nil {
				return err
			}
		}
		certFile, keyFile, pool, err = gatewaytest.WriteCert(dir, "hostile-bench")
		if err != nil {
			return err
		}
	}
	var rows []row
	for _, a := range run {
		fmt.Fprintf(os.Stderr, "%s...\n", titles[a.name])
		var t *target
		var stop func()
		if o.gateway == "" {
			var err error
			t, stop, err = startGateway(o, bin, certFile, keyFile, pool, a.flags)
			if err != nil {
				return fmt.Errorf("%s: %w", a.name, err)
			}
		} else {
			t = external(o)
			stop = func() {}
		}
		if (a.needs == "ws" && t.ws == "") || (a.needs == "tls" && t.tls == "") {
			rows = append(rows, row{name: titles[a.name], err: fmt.Errorf("skipped: no -%s address", a.needs)})
			stop()
			continue
		}
		r := measure(t, a)
		stop()
		rows = append(rows, r)
	}
	printTable(rows, o.duration)
	return nil
}

func startGateway(o options, bin, certFile, keyFile string, pool *x509.CertPool, flags []string) (*target, func(), error) {
	args := []string{
		"-listen", "127.0.0.1:0", "-ws-listen", "127.0.0.1:0", "-api-listen", "127.0.0.1:0",
		"-tls-listen", "127.0.0.1:0", "-tls-cert", certFile, "-tls-key", keyFile,
		"-node", "hostile-bench", "-api-key", o.apiKey, "-jwt-secret", o.secret, "-biz", "1=echo",
	}
	args = append(append(args, flags...), o.extra...)
	p, err := gatewaytest.Start(bin, args, gatewaytest.Listeners{TCP: true, WS: true, TLS: true, API: true})
	if err != nil {
		return nil, nil, err
	}
	t := &target{tcp: p.TCP, ws: p.WS, tls: p.TLS, api: p.API, rss: p.RSS, opts: o,
		tlsCfg: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}}
	return t, func() {
		if err := p.Stop(15 * time.Second); err != nil && !strings.Contains(err.Error(), "exit status") {
			fmt.Fprintln(os.Stderr, "stopping the gateway:", err)
		}
	}, nil
}

func external(o options) *target {
	t := &target{tcp: o.gateway, ws: o.ws, tls: o.tls, api: o.api, opts: o,
		tlsCfg: &tls.Config{InsecureSkipVerify: true}} // a benchmark against whatever certificate it has
	if o.pid > 0 {
		t.rss = func() (int64, error) { return gatewaytest.VmRSS(o.pid) }
	} else {
		t.rss = t.statsRSS
	}
	return t
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

func (t *target) statsRSS() (int64, error) {
	req, err := http.NewRequest(http.MethodGet, t.api+"/v1/stats", nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+t.opts.apiKey)
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var st struct {
		RSS int64 `json:"rss"`
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("/v1/stats: status %d", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return 0, fmt.Errorf("/v1/stats: %w", err)
	}
	return st.RSS, nil
}

// measure runs one attack with the monitor and the sampler.
func measure(t *target, a attack) row {
	r := row{name: titles[a.name]}
	mon, err := hostile.StartMonitor(hostile.From("127.0.0.1"), t.tcp, t.token(fmt.Sprintf("bench-monitor-%d", time.Now().UnixNano())), 100*time.Millisecond)
	if err != nil {
		r.err = err
		return r
	}
	run, err := a.setup(t)
	if err != nil {
		mon.Stop()
		r.err = err
		return r
	}
	rss, err := hostile.StartSampler(t.rss, 50*time.Millisecond, t.opts.rssAbort)
	if err != nil {
		mon.Stop()
		r.err = err
		return r
	}
	r.saw = run(rss.Over())
	mon.AwaitNext(2 * time.Second)
	r.mem = rss.Stop()
	r.mon = mon.Stop()
	select {
	case <-rss.Over():
		r.saw += fmt.Sprintf(" (stopped: RSS over idle + %d MiB)", t.opts.rssAbort>>20)
	default:
	}
	return r
}

// floodSetup logs n flooders in and floods with f for the duration.
func floodSetup(n int, f hostile.Flood) func(t *target) (func(<-chan struct{}) string, error) {
	return func(t *target) (func(<-chan struct{}) string, error) {
		type conn struct {
			nc net.Conn
			r  *hostile.Reader
		}
		conns := make([]conn, n)
		for i := range conns {
			dev := fmt.Sprintf("bench-flood-%d-%d", i, time.Now().UnixNano())
			nc, r, err := hostile.Dial(hostile.From(fmt.Sprintf("127.0.0.%d", 2+i%8)), t.tcp, t.token(dev))
			if err != nil {
				for _, c := range conns[:i] {
					c.nc.Close()
				}
				return nil, err
			}
			conns[i] = conn{nc, r}
		}
		return func(stop <-chan struct{}) string {
			defer func() {
				for _, c := range conns {
					c.nc.Close()
				}
			}()
			outs := make([]hostile.Outcome, n)
			done := make(chan struct{})
			for i := range conns {
				go func() {
					fl := f
					fl.For, fl.Stop = t.opts.duration, stop
					outs[i] = fl.Run(conns[i].nc, conns[i].r)
					done <- struct{}{}
				}()
			}
			for range conns {
				<-done
			}
			return sawFloods(outs)
		}, nil
	}
}

// sawFloods summarises what the flooders saw: how many were kicked, with
// what, after how long; the answers by status.
func sawFloods(outs []hostile.Outcome) string {
	kicks := map[string][]time.Duration{}
	byStatus := map[codec.Status]int{}
	var notKicked []string
	for _, o := range outs {
		for s, n := range o.ByStatus {
			byStatus[s] += n
		}
		if o.Kick != nil {
			k := fmt.Sprintf("KICK %v %q", o.Kick.Status, o.Kick.Reason)
			kicks[k] = append(kicks[k], o.Kick.After)
		} else {
			notKicked = append(notKicked, fmt.Sprintf("%d sent", o.Sent))
		}
	}
	var parts []string
	for k, ds := range kicks {
		parts = append(parts, fmt.Sprintf("%d/%d %s after %s", len(ds), len(outs), k, span(ds)))
	}
	sort.Strings(parts)
	if len(notKicked) > 0 {
		parts = append(parts, fmt.Sprintf("%d/%d not kicked", len(notKicked), len(outs)))
	}
	var st []string
	for s, n := range byStatus {
		st = append(st, fmt.Sprintf("%v %d", s, n))
	}
	sort.Strings(st)
	if len(st) > 0 {
		parts = append(parts, "answers "+strings.Join(st, ", "))
	} else {
		parts = append(parts, "no answers")
	}
	return strings.Join(parts, "; ")
}

// span is "a" or "a–b" for the shortest and longest of ds.
func span(ds []time.Duration) string {
	slices.Sort(ds)
	lo, hi := ds[0].Round(time.Millisecond), ds[len(ds)-1].Round(time.Millisecond)
	if lo == hi {
		return lo.String()
	}
	return lo.String() + "–" + hi.String()
}

func wsSetup(t *target) (func(<-chan struct{}) string, error) {
	const n = 2
	ws := make([]*hostile.WS, n)
	for i := range ws {
		w, err := hostile.DialWS(hostile.From(fmt.Sprintf("127.0.0.%d", 2+i)), t.ws)
		if err == nil {
			if err = w.Login(t.token(fmt.Sprintf("bench-ws-%d-%d", i, time.Now().UnixNano()))); err != nil {
				w.NC.Close()
			}
		}
		if err != nil {
			for _, w := range ws[:i] {
				w.NC.Close()
			}
			return nil, err
		}
		ws[i] = w
	}
	return func(stop <-chan struct{}) string {
		outs := make([]hostile.WSOutcome, n)
		done := make(chan struct{})
		for i := range ws {
			go func() {
				outs[i] = hostile.WSFlood{For: t.opts.duration, Stop: stop}.Run(ws[i])
				ws[i].NC.Close()
				done <- struct{}{}
			}()
		}
		for range ws {
			<-done
		}
		kicks := map[string][]time.Duration{}
		pongs, kicked := 0, 0
		for _, o := range outs {
			pongs += o.Pongs
			if o.Kick != nil {
				kicked++
				k := fmt.Sprintf("KICK %v %q", o.Kick.Status, o.Kick.Reason)
				kicks[k] = append(kicks[k], o.Kick.After)
			}
		}
		var parts []string
		for k, ds := range kicks {
			parts = append(parts, fmt.Sprintf("%d/%d %s after %s", len(ds), n, k, span(ds)))
		}
		sort.Strings(parts)
		if kicked < n {
			parts = append(parts, fmt.Sprintf("%d/%d not kicked", n-kicked, n))
		}
		return strings.Join(append(parts, fmt.Sprintf("%d pongs", pongs)), "; ")
	}, nil
}

func unauthSetup(t *target) (func(<-chan struct{}) string, error) {
	const n = 5000
	return func(stop <-chan struct{}) string {
		start := time.Now()
		m := hostile.Mass{Dialers: hostile.Attackers(5), Addr: t.tcp, N: n, Payload: hostile.PartialLogin(65536, 65000, ""), Stop: stopAfter(stop, t.opts.duration)}.Open()
		defer hostile.CloseAll(m.Conns)
		heard := hostile.ListenAll(m.Conns, 64, time.Now().Add(max(time.Second, t.opts.duration-time.Since(start))))
		kicks := map[string]int{}
		open := 0
		for i, h := range heard {
			if m.Conns[i] == nil {
				continue
			}
			switch f := h.First(); {
			case len(h.Frames) > 0 && f.Op == codec.OpKick:
				kicks[fmt.Sprintf("KICK %v", f.Status)]++
			case h.Closed:
				kicks["closed without a KICK"]++
			default:
				open++
			}
		}
		parts := []string{fmt.Sprintf("%d of %d opened in %v", m.Opened, n, m.Elapsed.Round(time.Millisecond))}
		for k, c := range kicks {
			parts = append(parts, fmt.Sprintf("%d %s", c, k))
		}
		sort.Strings(parts[1:])
		if open > 0 {
			parts = append(parts, fmt.Sprintf("%d held open", open))
		}
		return strings.Join(parts, "; ")
	}, nil
}

func idleTLSSetup(t *target) (func(<-chan struct{}) string, error) {
	const n, logins = 4200, 14
	return func(stop <-chan struct{}) string {
		start := time.Now()
		m := hostile.Mass{Dialers: hostile.Attackers(5), Addr: t.tls, N: n, Conc: 64, Stop: stop}.Open()
		defer hostile.CloseAll(m.Conns)
		ok := 0
		var slowest time.Duration
		var firstErr error
		t0 := time.Now()
		for i := range logins {
			t1 := time.Now()
			err := tlsLogin(t, i)
			if err == nil {
				ok++
			} else if firstErr == nil {
				firstErr = err
			}
			slowest = max(slowest, time.Since(t1))
		}
		all := time.Since(t0)
		// Hold the sockets for the rest of the duration.
		select {
		case <-stop:
		case <-time.After(t.opts.duration - time.Since(start)):
		}
		s := fmt.Sprintf("%d of %d silent sockets opened; %d/%d TLS logins in %v (slowest %v)", m.Opened, n, ok, logins, all.Round(time.Millisecond), slowest.Round(time.Millisecond))
		if firstErr != nil {
			s += "; first failure: " + firstErr.Error()
		}
		return s
	}, nil
}

func tlsLogin(t *target, i int) error {
	tc, err := hostile.DialTLS(hostile.From("127.0.0.1"), t.tls, t.tlsCfg, 5*time.Second)
	if err != nil {
		return err
	}
	defer tc.Close()
	r := hostile.NewReader(tc)
	if _, err := hostile.Login(tc, r, t.token(fmt.Sprintf("bench-tls-%d-%d", i, time.Now().UnixNano()))); err != nil {
		return err
	}
	return hostile.Echo(tc, r, 1, 1, []byte("over tls"))
}

// stopAfter closes when stop does or after d.
func stopAfter(stop <-chan struct{}, d time.Duration) <-chan struct{} {
	c := make(chan struct{})
	go func() {
		select {
		case <-stop:
		case <-time.After(d):
		}
		close(c)
	}()
	return c
}

func printTable(rows []row, d time.Duration) {
	fmt.Printf("hostile clients, each attack for %v at most; monitor: one TCP connection pinging every 100ms\n\n", d)
	w := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, "attack\tRSS idle → max\tmonitor p50 / p99 / max\tmax gap\tflooders saw")
	for _, r := range rows {
		if r.err != nil {
			fmt.Fprintf(w, "%s\t\t\t\t%v\n", r.name, r.err)
			continue
		}
		fmt.Fprintf(w, "%s\t%d → %d MiB (+%d)\t%v / %v / %v\t%v\t%s\n", r.name,
			r.mem.Idle>>20, r.mem.Max>>20, r.mem.Growth()>>20,
			ms(r.mon.Pct(0.5)), ms(r.mon.Pct(0.99)), ms(r.mon.Max()), ms(r.mon.MaxGap), r.saw)
		if r.mon.Err != nil {
			fmt.Fprintf(w, "\t\tmonitor failed: %v\t\t\n", r.mon.Err)
		}
		if r.mem.Err != nil {
			fmt.Fprintf(w, "\t\tRSS sampling failed: %v\t\t\n", r.mem.Err)
		}
	}
	w.Flush()
}

// ms formats d in milliseconds with a precision that suits it.
func ms(d time.Duration) string {
	switch {
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/1e6)
	case d < time.Second:
		return fmt.Sprintf("%.0f ms", float64(d)/1e6)
	}
	return d.Round(10 * time.Millisecond).String()
}
