// Command scale runs a Longlink cluster at the size this machine allows
// and puts it through a reconnect storm: a standalone redis-server, -nodes
// gateway nodes, and -gens processes of this command in the devices role
// (at most 20,000 open files per process: ~18,000 devices each), all on
// loopback. It measures, in one run:
//
//   - a broadcast and a group push reaching every device (deliveries/s,
//     from the first API call to the last delivery counted);
//   - the storm: one node is SIGKILLed; its devices reconnect with
//     jittered backoff to endpoints a live node lists and resume. How long
//     until each is logged in again, login round trips during the storm,
//     tries, the most connections any node held against -max-conns;
//   - durable pushes (ack:true) sent during the storm to the killed
//     node's devices through the live nodes: each must arrive once.
//
// It exits 1 when a goal of docs/cluster.md ("The storm") fails.
//
//	go run ./bench/scale -ll /path/to/longlink   # bench/scale/run.sh builds it
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	devAPIKey = "longlink-dev-api-key"
	devSecret = "longlink-dev-jwt-secret-do-not-use-in-production"
)

func main() {
	role := flag.String("role", "orchestrate", "orchestrate, or devices (started by the orchestrator)")
	// devices
	addrs := flag.String("addrs", "", "devices: TCP addresses of the nodes")
	apis := flag.String("apis", "", "devices: API base URLs of the nodes")
	first := flag.Int("first", 0, "devices: index of the first device")
	n := flag.Int("n", 1000, "devices: how many")
	deadline := flag.Duration("deadline", 10*time.Minute, "devices: exit after this long whatever happens")
	profile := flag.String("profile", "", "devices: write a CPU profile of the storm's first 15 s here; orchestrate: a directory for the generators' profiles")
	// orchestrate
	ll := flag.String("ll", "", "the longlink binary (required)")
	nodes := flag.Int("nodes", 6, "gateway nodes")
	devices := flag.Int("devices", 90000, "devices in all")
	gens := flag.Int("gens", 5, "device processes")
	maxConns := flag.Int("max-conns", 19000, "-max-conns of every node")
	pushes := flag.Int("pushes", 5, "broadcasts, and group pushes, each")
	stormCalls := flag.Int("storm-calls", 100, "durable push calls during the storm")
	batch := flag.Int("batch", 50, "devices per durable push call")
	out := flag.String("out", "/tmp/bench-scale", "directory for logs")
	port := flag.Int("port", 18000, "first port: Redis, then 3 per node")
	nodeArgs := flag.String("node-args", "", "more flags for every node, space-separated (e.g. \"-pprof open\")")
	flag.Parse()

	if *role == "devices" {
		cfg := &devicesConfig{
			addrs: strings.Split(*addrs, ","), apis: strings.Split(*apis, ","), first: *first, n: *n,
			prefix: "dev-", group: "everyone", secret: devSecret, apiKey: devAPIKey,
			backoff: 200 * time.Millisecond, maxWait: 2 * time.Second, profile: *profile,
		}
		if err := runDevices(cfg, *deadline); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	if *ll == "" {
		fmt.Fprintln(os.Stderr, "scale: -ll is required")
		os.Exit(2)
	}
	o := &orchestra{how: map[string]string{}, profile: *profile, nodeArgs: strings.Fields(*nodeArgs), ll: *ll, out: *out, port: *port, nodes: *nodes, devices: *devices, gens: *gens, maxConns: *maxConns}
	defer o.cleanup()
	ok, err := o.run(*pushes, *stormCalls, *batch)
	o.cleanup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(1)
	}
	if !ok {
		os.Exit(1)
	}
}

type orchestra struct {
	ll, out                    string
	port, nodes, devices, gens int
	maxConns                   int
	procs                      []*exec.Cmd
	node                       []*exec.Cmd
	tcp, api                   []string
	gen                        []*genProc
	how                        map[string]string // device/id → what the API said
	nodeArgs                   []string          // -node-args
	profile                    string            // -profile
}

type genProc struct {
	cmd *exec.Cmd
	in  io.Writer
	out *bufio.Scanner
}

func (o *orchestra) start(name string, args ...string) (*exec.Cmd, error) {
	cmd := exec.Command(args[0], args[1:]...)
	log, err := os.Create(filepath.Join(o.out, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	o.procs = append(o.procs, cmd)
	return cmd, nil
}

func (o *orchestra) cleanup() {
	for _, p := range o.procs {
		if p.Process != nil {
			_ = p.Process.Kill()
			_, _ = p.Process.Wait()
		}
	}
	o.procs = nil
}

func (o *orchestra) run(pushes, stormCalls, batch int) (bool, error) {
	if err := os.MkdirAll(filepath.Join(o.out, "redis"), 0o755); err != nil {
		return false, err
	}
	redisAddr := "127.0.0.1:" + strconv.Itoa(o.port)
	if _, err := o.start("redis", "redis-server", "--port", strconv.Itoa(o.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", filepath.Join(o.out, "redis"), "--maxclients", "10000"); err != nil {
		return false, fmt.Errorf("redis-server: %w", err)
	}
	if err := waitRedis(redisAddr, 10*time.Second); err != nil {
		return false, err
	}
	for i := range o.nodes {
		p := o.port + 1 + 3*i
		o.tcp = append(o.tcp, "127.0.0.1:"+strconv.Itoa(p))
		o.api = append(o.api, "http://127.0.0.1:"+strconv.Itoa(p+1))
		args := append([]string{o.ll, "-node", fmt.Sprintf("n%d", i), "-redis", redisAddr,
			"-listen", o.tcp[i], "-ws-listen", "", "-api-listen", "127.0.0.1:" + strconv.Itoa(p+1),
			"-link-listen", "127.0.0.1:" + strconv.Itoa(p+2), "-max-conns", strconv.Itoa(o.maxConns),
			"-rate", "0", "-node-ttl", "15s", "-log-level", "info"}, o.nodeArgs...)
		cmd, err := o.start(fmt.Sprintf("node%d", i), args...)
		if err != nil {
			return false, err
		}
		o.node = append(o.node, cmd)
	}
	for _, a := range o.api {
		if err := waitReady(a, 30*time.Second); err != nil {
			return false, err
		}
	}
	// Ready means serving; the cluster forms a moment later: every node
	// lists every node's endpoint once the registry has them all.
	for _, a := range o.api {
		if err := waitEndpoints(a, o.tcp, 30*time.Second); err != nil {
			return false, err
		}
	}
	// The devices: generator g takes devices [g*per, (g+1)*per).
	per := o.devices / o.gens
	self, err := os.Executable()
	if err != nil {
		return false, err
	}
	connectStart := time.Now()
	for g := range o.gens {
		cmd := exec.Command(self, "-role", "devices", "-addrs", strings.Join(o.tcp, ","), "-apis", strings.Join(o.api, ","),
			"-first", strconv.Itoa(g*per), "-n", strconv.Itoa(per))
		if o.profile != "" {
			cmd.Args = append(cmd.Args, "-profile", filepath.Join(o.profile, fmt.Sprintf("gen%d.pprof", g)))
		}
		in, _ := cmd.StdinPipe()
		stdout, _ := cmd.StdoutPipe()
		log, _ := os.Create(filepath.Join(o.out, fmt.Sprintf("gen%d.log", g)))
		cmd.Stderr = log
		if err := cmd.Start(); err != nil {
			return false, err
		}
		o.procs = append(o.procs, cmd)
		s := bufio.NewScanner(stdout)
		s.Buffer(make([]byte, 1<<20), 256<<20)
		o.gen = append(o.gen, &genProc{cmd: cmd, in: in, out: s})
	}
	total := 0
	for g, p := range o.gen {
		if !p.out.Scan() {
			return false, fmt.Errorf("generator %d ended before logging in", g)
		}
		var ok, failed int
		fmt.Sscanf(p.out.Text(), "ready %d %d", &ok, &failed)
		if failed > 0 {
			return false, fmt.Errorf("generator %d: %d logins failed (see %s)", g, failed, o.out)
		}
		total += ok
	}
	connectTime := time.Since(connectStart)
	fmt.Printf("%d nodes, %d devices over %d processes, connected in %v (%.0f logins/s)\n",
		o.nodes, total, o.gens, connectTime.Round(time.Millisecond), float64(total)/connectTime.Seconds())

	// Broadcast and group push, through node 0's API.
	bps, err := o.fanout("broadcast", "/v1/broadcast", pushes, total, func(r report) int64 { return r.Broadcast })
	if err != nil {
		return false, err
	}
	gps, err := o.fanout("group", "/v1/groups/everyone/push", pushes, total, func(r report) int64 { return r.Group })
	if err != nil {
		return false, err
	}

	// The storm: SIGKILL the last node, push durably to its devices
	// through the others meanwhile.
	victim := o.nodes - 1
	var theirs []string
	for i := range per * o.gens {
		if i%o.nodes == victim {
			theirs = append(theirs, "dev-"+strconv.Itoa(i))
		}
	}
	live := o.api[:victim]
	maxConns := make(chan int, 1)
	stopWatch := make(chan struct{})
	go func() { maxConns <- watchConns(live, stopWatch) }()
	_ = o.node[victim].Process.Signal(syscall.SIGKILL)
	st := o.durablePushes(live, theirs, stormCalls, batch)
	// Settle: every device back, bounded.
	var reps []report
	settle := time.Now().Add(60 * time.Second)
	for {
		reps, err = o.reports()
		if err != nil {
			return false, err
		}
		back, moved := 0, 0
		for _, r := range reps {
			for _, m := range r.Moved {
				moved++
				if m.Back {
					back++
				}
			}
		}
		if (moved >= len(theirs) && back == moved && durableDone(reps, st.sent)) || time.Now().After(settle) {
			break
		}
		time.Sleep(500 * time.Millisecond) // poll interval
	}
	close(stopWatch)
	peak := <-maxConns
	if err := waitRedis(redisAddr, 2*time.Second); err != nil {
		fmt.Printf("after the storm: %v (see %s)\n", err, filepath.Join(o.out, "redis.log"))
		return false, nil
	}
	return o.summary(total, bps, gps, theirs, reps, st, peak), nil
}

func waitReady(api string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(api + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond) // poll interval
	}
	return fmt.Errorf("%s not ready within %v", api, within)
}

// waitRedis polls addr with PING until it answers PONG.
func waitRedis(addr string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			_ = c.SetDeadline(time.Now().Add(time.Second))
			buf := make([]byte, 7)
			_, werr := c.Write([]byte("PING\r\n"))
			_, rerr := io.ReadFull(c, buf)
			c.Close()
			if werr == nil && rerr == nil && string(buf) == "+PONG\r\n" {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond) // poll interval
	}
	return fmt.Errorf("redis at %s not answering within %v", addr, within)
}

// waitEndpoints polls api's /v1/endpoints until it lists every address in
// tcp.
func waitEndpoints(api string, tcp []string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequest("GET", api+"/v1/endpoints", nil)
		req.Header.Set("Authorization", "Bearer "+devAPIKey)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			all := true
			for _, a := range tcp {
				all = all && strings.Contains(string(body), `"`+a+`"`)
			}
			if all {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond) // poll interval
	}
	return fmt.Errorf("%s does not list every node within %v", api, within)
}

// reports asks every generator for its report.
func (o *orchestra) reports() ([]report, error) {
	var reps []report
	for g, p := range o.gen {
		if _, err := io.WriteString(p.in, "report\n"); err != nil {
			return nil, fmt.Errorf("generator %d: %w", g, err)
		}
		if !p.out.Scan() {
			return nil, fmt.Errorf("generator %d ended", g)
		}
		var r report
		if err := json.Unmarshal(p.out.Bytes(), &r); err != nil {
			return nil, fmt.Errorf("generator %d: %w", g, err)
		}
		reps = append(reps, r)
	}
	return reps, nil
}

// fanout makes count pushes at path and waits until the generators have
// counted count×devices deliveries of them.
func (o *orchestra) fanout(name, path string, count, devices int, got func(report) int64) (float64, error) {
	start := time.Now()
	delivered := 0
	for i := range count {
		var res struct{ Delivered int }
		if err := apiCall(o.api[0], path, map[string]any{"biz": 1, "data": name[:1] + strconv.Itoa(i)}, &res); err != nil {
			return 0, fmt.Errorf("%s: %w", name, err)
		}
		delivered += res.Delivered
	}
	want := int64(count * devices)
	deadline := time.Now().Add(60 * time.Second)
	for {
		reps, err := o.reports()
		if err != nil {
			return 0, err
		}
		var n int64
		for _, r := range reps {
			n += got(r)
		}
		if n >= want {
			el := time.Since(start)
			rate := float64(n) / el.Seconds()
			fmt.Printf("%s: %d pushes, %d of %d deliveries counted by the devices (API said %d) in %v: %.0f deliveries/s\n",
				name, count, n, want, delivered, el.Round(time.Millisecond), rate)
			return rate, nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("%s: %d of %d deliveries after 60s", name, n, want)
		}
		time.Sleep(100 * time.Millisecond) // poll interval
	}
}

// storm is what the durable pushes sent during the storm came to.
type storm struct {
	sent   map[string][]string // device → ids of the calls the API accepted
	failed int                 // calls the API answered with an error or not at all
	callMS []float64           // each call's round trip, accepted or not
}

// durablePushes sends calls ack:true pushes, each to batch of devices in
// turn, through the live APIs in turn, as fast as they answer. A call that
// fails is counted and not retried: a business would retry it, and the
// goal is that the API never fails during a storm.
func (o *orchestra) durablePushes(apis, devices []string, calls, batch int) storm {
	st := storm{sent: map[string][]string{}}
	for i := range calls {
		ds := make([]string, 0, batch)
		for j := range batch {
			ds = append(ds, devices[(i*batch+j)%len(devices)])
		}
		id := strconv.Itoa(i)
		var res struct {
			Delivered int
			Offline   []string
			Unrouted  []string
		}
		api := apis[i%len(apis)]
		t0 := time.Now()
		err := apiCall(api, "/v1/push", map[string]any{"devices": ds, "biz": 1, "ack": true, "data": "d" + id + " "}, &res)
		st.callMS = append(st.callMS, float64(time.Since(t0).Microseconds())/1000)
		if err != nil {
			st.failed++
			fmt.Printf("durable push %d via %s failed after %v: %v\n", i, api, time.Since(t0).Round(time.Millisecond), err)
			continue
		}
		if len(res.Unrouted) > 0 {
			fmt.Printf("durable push %d: %d unrouted\n", i, len(res.Unrouted))
		}
		for _, d := range ds {
			st.sent[d] = append(st.sent[d], id)
			how := "delivered"
			if slices.Contains(res.Offline, d) {
				how = "offline"
			}
			if slices.Contains(res.Unrouted, d) {
				how = "unrouted"
			}
			o.how[d+"/"+id] = how + " via " + api + " at " + t0.Format("15:04:05.000")
		}
	}
	return st
}

func durableDone(reps []report, sent map[string][]string) bool {
	for d, ids := range sent {
		for _, id := range ids {
			found := false
			for _, r := range reps {
				if r.Durable[d][id] > 0 {
					found = true
				}
			}
			if !found {
				return false
			}
		}
	}
	return true
}

// watchConns polls the live nodes' connection counts until stop and
// returns the highest seen.
func watchConns(apis []string, stop chan struct{}) int {
	peak := 0
	for {
		for _, a := range apis {
			var s struct{ Connections int }
			if apiGet(a, "/v1/stats", &s) == nil && s.Connections > peak {
				peak = s.Connections
			}
		}
		select {
		case <-stop:
			return peak
		case <-time.After(200 * time.Millisecond): // poll interval
		}
	}
}

func apiCall(api, path string, body any, out any) error {
	b, _ := json.Marshal(body)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", api+path, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+devAPIKey)
	req.Header.Set("Content-Type", "application/json")
	return do(req, out)
}

func apiGet(api, path string, out any) error {
	req, _ := http.NewRequest("GET", api+path, nil)
	req.Header.Set("Authorization", "Bearer "+devAPIKey)
	return do(req, out)
}

// apiClient is the business's: a push during a storm may wait for logins
// under way (5 s at most) and its journal (2 s), so it allows more than
// the devices' client does.
var apiClient = &http.Client{Timeout: 30 * time.Second}

func do(req *http.Request, out any) error {
	resp, err := apiClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s %s: %d %s", req.Method, req.URL.Path, resp.StatusCode, b)
	}
	return json.Unmarshal(b, out)
}

// summary prints the table and checks the goals.
func (o *orchestra) summary(total int, bps, gps float64, theirs []string, reps []report, st storm, peak int) bool {
	var after, logins []float64
	tries, maxTries, moved, back := 0, 0, 0, 0
	for _, r := range reps {
		for _, m := range r.Moved {
			moved++
			if m.Back {
				back++
				after = append(after, m.AfterMS)
			}
			tries += m.Tries
			maxTries = max(maxTries, m.Tries)
		}
		logins = append(logins, r.LoginsMS...)
	}
	var pushes, once, missing, dup int
	for d, ids := range st.sent {
		for _, id := range ids {
			pushes++
			n := 0
			for _, r := range reps {
				n += r.Durable[d][id]
			}
			switch {
			case n == 0:
				missing++
				if missing <= 10 {
					fmt.Printf("missing: %s push %s (%s)\n", d, id, o.how[d+"/"+id])
				}
			case n == 1:
				once++
			default:
				dup++
			}
		}
	}
	lastBack := percentile(after, 100)
	ok := true
	check := func(cond bool, what string) string {
		if cond {
			return "ok"
		}
		ok = false
		return "FAILED: " + what
	}
	fmt.Printf("\n| figure | value | goal |\n|---|---|---|\n")
	fmt.Printf("| nodes, devices | %d, %d | ≥ 5, ≥ 90,000: %s |\n", o.nodes, total, check(o.nodes >= 5 && total >= 90000 || o.devices < 90000, "too small"))
	fmt.Printf("| broadcast | %.0f deliveries/s | every device, each push once |\n", bps)
	fmt.Printf("| group push (all devices) | %.0f deliveries/s | every device, each push once |\n", gps)
	fmt.Printf("| devices of the killed node | %d of %d lost their connection, %d back | all back: %s |\n", moved, len(theirs), back, check(moved >= len(theirs) && back == moved, "not all back"))
	fmt.Printf("| disconnect → LOGIN_ACK elsewhere | p50 %.0f ms, p99 %.0f ms, max %.0f ms | max ≤ 10 s: %s |\n",
		percentile(after, 50), percentile(after, 99), lastBack, check(lastBack <= 10000 && back > 0, "slower than 10 s"))
	fmt.Printf("| login round trip during the storm | p50 %.1f ms, p99 %.1f ms (%d logins) | reported |\n", percentile(logins, 50), percentile(logins, 99), len(logins))
	fmt.Printf("| tries per device | mean %.2f, max %d | |\n", float64(tries)/float64(max(moved, 1)), maxTries)
	why := map[string]int{}
	for _, r := range reps {
		for k, n := range r.FailWhy {
			why[k] += n
		}
	}
	keys := slices.Collect(maps.Keys(why))
	slices.SortFunc(keys, func(a, b string) int { return why[b] - why[a] })
	for _, k := range keys[:min(len(keys), 5)] {
		fmt.Printf("| failed tries: %s | %d | |\n", k, why[k])
	}
	fmt.Printf("| most connections on a live node | %d (-max-conns %d) | ≤ -max-conns: %s |\n", peak, o.maxConns, check(peak <= o.maxConns, "over -max-conns"))
	fmt.Printf("| durable push calls during the storm | %d calls, %d failed; round trip p50 %.1f ms, p99 %.1f ms, max %.0f ms | none failed: %s |\n",
		len(st.callMS), st.failed, percentile(st.callMS, 50), percentile(st.callMS, 99), percentile(st.callMS, 100), check(st.failed == 0, "calls failed"))
	fmt.Printf("| durable pushes during the storm | %d accepted, %d once, %d missing, %d twice or more | all once: %s |\n", pushes, once, missing, dup, check(missing == 0 && dup == 0, "lost or repeated"))
	return ok
}
