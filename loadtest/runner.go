package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/longlink/longlink/codec"
	"github.com/longlink/longlink/metrics"
)

// runner is one run of the generator: the slots (devices), the counters and
// histograms, and the phases connect → (group membership) → load → drain →
// teardown, each bounded in time.
type runner struct {
	cfg    *Config
	ws     bool // WebSocket framing (cfg.transport == "ws")
	api    *apiClient
	secret []byte // HS256 secret; nil = tokens from the API
	runID  uint32 // random id stamped into this run's pushes
	t0     time.Time
	stderr io.Writer

	slots []*slot

	c        counters
	lat      [numKinds]*latencyRecorder
	reqs     *reqTable
	reqBody  []byte
	bufs     sync.Pool    // *[]byte frame buffers for REQUESTs
	serverHB atomic.Int64 // heartbeat interval from the first LOGIN_ACK, nanos
	srcNext  atomic.Uint64
	readers  sync.WaitGroup
	stopping atomic.Bool // teardown: disconnects and kicks are expected
	prog     *progress   // nil with -quiet

	lastLogin atomic.Int64 // runner-relative nanos of the latest successful login

	// -sdk (sdk.go): requests are client.Request calls, one goroutine each,
	// under reqCtx, which teardown cancels; pendingCuts counts churned
	// clients that have not logged in again yet.
	reqCtx      context.Context
	reqCancel   context.CancelFunc
	reqWG       sync.WaitGroup
	pendingCuts atomic.Int64
	sdkStats    *SDKStats // summed over the clients after teardown

	tlsInfo atomic.Pointer[TLSInfo] // what the first TLS handshake negotiated

	errMu     sync.Mutex
	errSample []string // the first few error messages, for the report

	mu     sync.Mutex // guards the fields below
	phase  string
	series []Point
	prev   sample // counters at the previous sampler tick

	// Filled by run, read by summary (same goroutine).
	before, connected, after *metrics.Snapshot
	statsErr                 string
	connectDur               time.Duration // first dial to last successful login
	connectedUp              int64         // logged-in connections when the connect phase ended
	afterUp                  int64         // logged-in connections when the after snapshot was taken
	unattempted              int64         // slots the connect phase ran out of time (or was interrupted) before dialing
	members                  int64         // group scenario: members the pushes go to
	loadStart, loadEnd       time.Time
	drainDur                 time.Duration
	gen                      GeneratorStats
}

func newRunner(cfg *Config, stderr io.Writer) *runner {
	r := &runner{cfg: cfg, ws: cfg.transport == "ws", stderr: stderr, phase: "start"}
	r.api = newAPIClient(cfg.API, cfg.APIKey, cfg.APIConcurrency)
	if cfg.JWTSecret != "" {
		r.secret = []byte(cfg.JWTSecret)
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	r.runID = binary.BigEndian.Uint32(b[:]) | 1
	for k := range r.lat {
		r.lat[k] = newLatencyRecorder()
	}
	r.slots = make([]*slot, cfg.Conns)
	for i := range r.slots {
		r.slots[i] = &slot{idx: i, device: cfg.DevicePrefix + strconv.Itoa(i)}
		if cfg.SDK {
			r.slots[i].sdk = newSDKDevice(r, r.slots[i])
		}
	}
	r.reqCtx, r.reqCancel = context.WithCancel(context.Background())
	if (cfg.Scenario == "request" || cfg.Scenario == "mixed") && !cfg.SDK {
		// Room for 10 s of requests in flight before the ring wraps.
		r.reqs = newReqTable(int(cfg.Rate * 10))
	} else {
		r.reqs = newReqTable(0)
	}
	r.reqBody = make([]byte, cfg.Size)
	for i := range r.reqBody {
		r.reqBody[i] = byte('a' + i%26)
	}
	r.bufs.New = func() any { b := make([]byte, 0, cfg.Pipeline*(codec.HeaderSize+cfg.Size)); return &b }
	return r
}

// mono is the time since the start of the run, in nanoseconds.
func (r *runner) mono() int64 { return int64(time.Since(r.t0)) }

// hb is the heartbeat interval the connections use.
func (r *runner) hb() time.Duration {
	if r.cfg.HB > 0 {
		return r.cfg.HB
	}
	if v := r.serverHB.Load(); v > 0 {
		return time.Duration(v)
	}
	return fallbackHB
}

// mainKind is the latency the scenario is about.
func (r *runner) mainKind() kind {
	switch r.cfg.Scenario {
	case "request", "mixed":
		return kindRequest
	case "push", "group":
		return kindDelivery
	}
	return kindPing
}

// maxErrSample is how many error messages the report quotes.
const maxErrSample = 10

// noteError keeps the first error messages for the report.
func (r *runner) noteError(msg string) {
	r.errMu.Lock()
	if len(r.errSample) < maxErrSample {
		r.errSample = append(r.errSample, msg)
	}
	r.errMu.Unlock()
}

// setPhase moves to phase p; the progress bar first shows the final state
// of the phase that ends.
func (r *runner) setPhase(p string) {
	if r.prog != nil {
		r.prog.update()
	}
	r.mu.Lock()
	r.phase = p
	r.mu.Unlock()
}

func (r *runner) getPhase() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.phase
}

// groups is the groups claim of every token.
func (r *runner) groups() []string {
	if r.cfg.Scenario == "group" {
		return []string{r.cfg.Group}
	}
	return nil
}

// token returns the login token of s: the one prepared before the connect
// phase (used once), or a fresh one.
func (r *runner) token(ctx context.Context, s *slot) (string, error) {
	if t := s.token; t != "" {
		s.token = ""
		return t, nil
	}
	if r.secret != nil {
		return mintToken(r.secret, s.device, r.cfg.App, r.groups(), r.cfg.TokenTTL, time.Now())
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.DialTimeout)
	defer cancel()
	return r.api.Token(ctx, s.device, r.cfg.App, r.cfg.TokenTTL, r.groups())
}

// prepareTokens gets every slot's token before the connect phase, so the
// measured logins per second are connect + LOGIN + LOGIN_ACK, not the
// business backend's token minting. A failure leaves the slot to try again
// when it connects.
func (r *runner) prepareTokens(ctx context.Context) {
	workers := runtime.GOMAXPROCS(0)
	if r.secret == nil {
		workers = r.cfg.APIConcurrency
	}
	parallel(workers, len(r.slots), func(i int) bool {
		if ctx.Err() != nil {
			return false
		}
		s := r.slots[i]
		if t, err := r.token(ctx, s); err == nil {
			s.token = t
		}
		return true
	})
}

// parallel calls fn for each index in [0, n) from workers goroutines,
// each taking the next index, until the indexes run out; a goroutine
// whose fn returns false takes no more.
func parallel(workers, n int, fn func(i int) bool) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || !fn(i) {
					return
				}
			}
		})
	}
	wg.Wait()
}

// storeMax raises a to v if v is larger.
func storeMax(a *atomic.Int64, v int64) {
	for {
		old := a.Load()
		if v <= old || a.CompareAndSwap(old, v) {
			return
		}
	}
}

// sleepCtx sleeps for d or until ctx is done; it reports whether the whole
// d elapsed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// stats reads /v1/stats, remembering the first failure for the report.
func (r *runner) stats(ctx context.Context) *metrics.Snapshot {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s, err := r.api.Stats(ctx)
	if err != nil && r.statsErr == "" {
		r.statsErr = err.Error()
	}
	return s
}

// run executes the scenario and returns its summary. It returns an error
// only when the run could not start (the API a scenario needs is down).
func (r *runner) run(ctx context.Context) (*Summary, error) {
	cfg := r.cfg
	r.t0 = time.Now()
	defer r.api.Close()
	defer r.reqCancel()

	// Before any connection of ours: the server's baseline.
	r.before = r.stats(ctx)
	if r.before == nil && (cfg.Scenario == "push" || cfg.Scenario == "group" || (cfg.Scenario == "mixed" && cfg.PushRate > 0)) {
		return nil, fmt.Errorf("scenario %s needs the API at %s: %s", cfg.Scenario, cfg.API, r.statsErr)
	}

	bg, stopBG := context.WithCancel(context.Background())
	var bgWG sync.WaitGroup
	bgWG.Add(1)
	go func() { defer bgWG.Done(); r.sampler(bg) }()
	if !cfg.SDK { // an SDK client sends its own PINGs
		bgWG.Add(1)
		go func() { defer bgWG.Done(); r.heartbeats(bg) }()
	}
	if !cfg.Quiet {
		r.prog = newProgress(r, r.stderr)
		bgWG.Add(1)
		go func() { defer bgWG.Done(); r.prog.loop(bg) }()
	}

	r.setPhase("tokens")
	r.prepareTokens(ctx)
	r.setPhase("connect")
	cpu0 := selfCPU()
	r.connectAll(ctx)
	r.connectedUp = r.c.up.Load()
	connectCPU := selfCPU() - cpu0

	if cfg.Scenario == "group" && r.connectedUp > 0 {
		r.ensureGroup(ctx)
	}
	r.connected = r.stats(ctx)

	r.setPhase("load")
	r.loadStart = time.Now()
	if r.connectedUp > 0 || cfg.Conns == 0 {
		r.load(ctx)
	}
	r.loadEnd = time.Now()

	r.setPhase("drain")
	r.drain(ctx)
	r.drainDur = time.Since(r.loadEnd)

	// After the hold, with the connections still up.
	r.after = r.stats(context.Background())
	r.afterUp = r.c.up.Load()
	r.gen = generatorStats()
	r.gen.CPUSecondsConnect = connectCPU

	r.setPhase("done")
	r.teardown()
	stopBG()
	bgWG.Wait()
	if r.prog != nil {
		r.prog.finish()
	}
	r.collectFinal()
	return r.summary(), nil
}

// connectAll dials and logs in every slot, -dial-concurrency at a time,
// spread over -ramp, and bounded by -ramp + -connect-timeout.
func (r *runner) connectAll(ctx context.Context) {
	cfg := r.cfg
	n := len(r.slots)
	if n == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Ramp+cfg.ConnectTimeout)
	defer cancel()
	workers := min(cfg.DialConcurrency, n)
	start := time.Now()
	startMono := r.mono()
	parallel(workers, n, func(i int) bool {
		if cfg.Ramp > 0 {
			due := start.Add(time.Duration(int64(cfg.Ramp) * int64(i) / int64(n)))
			if !sleepCtx(ctx, time.Until(due)) {
				return false
			}
		}
		if ctx.Err() != nil {
			return false
		}
		var err error
		if cfg.SDK {
			err = r.connectSDK(ctx, r.slots[i])
		} else {
			_, err = r.connect(ctx, r.slots[i], false)
		}
		if err != nil {
			r.noteError(err.Error())
			return true
		}
		storeMax(&r.lastLogin, r.mono())
		return true
	})
	c := &r.c
	r.unattempted = max(0, int64(n)-c.logins.Load()-c.dialErrors.Load()-c.loginErrors.Load())
	if last := r.lastLogin.Load(); last > startMono {
		r.connectDur = time.Duration(last - startMono)
	}
}

// groupSetupTimeout bounds ensureGroup.
const groupSetupTimeout = 30 * time.Second

// groupJoinBatch is how many devices one PUT /v1/groups/{g}/members names.
const groupJoinBatch = 1000

// ensureGroup makes sure every logged-in device is in the group: the tokens
// name it (groups claim), and devices the server did not put there are
// added through the API. It sets r.members.
func (r *runner) ensureGroup(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, groupSetupTimeout)
	defer cancel()
	// The members the pushes count on are our logged-in devices; the group
	// may hold others (their deliveries are not ours to count).
	up := r.c.up.Load()
	r.members = up
	size, err := r.api.GroupSize(ctx, r.cfg.Group)
	if err == nil && int64(size) >= up {
		return
	}
	var batch []string
	flush := func() {
		if len(batch) == 0 {
			return
		}
		if err := r.api.Join(ctx, r.cfg.Group, batch); err != nil {
			r.c.pushErrors.Add(1)
			r.noteError("join group: " + err.Error())
		}
		batch = batch[:0]
	}
	for _, s := range r.slots {
		if s.isUp() {
			batch = append(batch, s.device)
			if len(batch) == groupJoinBatch {
				flush()
			}
		}
	}
	flush()
	if size, err := r.api.GroupSize(ctx, r.cfg.Group); err == nil {
		r.members = min(int64(size), up)
	}
}

// heartbeats sends each connection a PING once per heartbeat interval,
// spread evenly: every tick it pings one 1/(hb/tick) of the slots. One
// goroutine for all connections, no timer each.
func (r *runner) heartbeats(ctx context.Context) {
	const tick = 100 * time.Millisecond
	t := time.NewTicker(tick)
	defer t.Stop()
	for k := 0; ; k++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if r.stopping.Load() {
			return
		}
		parts := int(r.hb() / tick)
		if parts < 1 {
			parts = 1
		}
		for i := k % parts; i < len(r.slots); i += parts {
			if c := r.slots[i].cur.Load(); c != nil && !c.closing.Load() && !c.kicked.Load() {
				c.ping()
			}
		}
	}
}

// load runs the scenario's load phase.
func (r *runner) load(ctx context.Context) {
	cfg := r.cfg
	end := time.Now().Add(cfg.Duration)
	parent := ctx // API calls started before the end run to completion
	ctx, cancel := context.WithDeadline(ctx, end)
	defer cancel()
	switch cfg.Scenario {
	case "hold":
		sleepCtx(ctx, cfg.Duration)
	case "request":
		openLoop(ctx, cfg.Rate/float64(cfg.Pipeline), 0, requestLanes(cfg.Rate), end, r.fireRequest)
	case "push":
		openLoop(ctx, cfg.Rate, 0, cfg.APIConcurrency, end, func(i int64, t time.Time) { r.firePush(parent, i, t) })
	case "group":
		openLoop(ctx, cfg.Rate, int64(cfg.Pushes), cfg.APIConcurrency, end, func(i int64, t time.Time) { r.fireGroupPush(parent, i, t) })
	case "mixed":
		var wg sync.WaitGroup
		run := func(rate float64, lanes int, fire func(int64, time.Time)) {
			if rate <= 0 {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); openLoop(ctx, rate, 0, lanes, end, fire) }()
		}
		run(cfg.Rate/float64(cfg.Pipeline), requestLanes(cfg.Rate), r.fireRequest)
		run(cfg.PushRate, min(cfg.APIConcurrency, 8), func(i int64, t time.Time) {
			r.firePush(parent, spread(i, len(r.slots)), t)
		})
		run(cfg.Churn, 4, func(i int64, _ time.Time) { r.churn(parent, spread(i, len(r.slots))) })
		wg.Wait()
	}
}

// requestLanes is the number of sending goroutines for a request rate.
func requestLanes(rate float64) int {
	return max(2, min(16, int(rate/5000)))
}

// spread maps event i to a slot index that jumps around the slots, so
// mixed's pushes and reconnects do not march in step with its requests.
func spread(i int64, n int) int64 {
	if n == 0 {
		return 0
	}
	return (i * 7919) % int64(n)
}

// fireRequest sends burst i of -pipeline requests on slot i % conns (or
// the next usable one).
func (r *runner) fireRequest(i int64, intended time.Time) {
	n := len(r.slots)
	if n == 0 {
		return
	}
	if r.cfg.SDK {
		r.fireRequestSDK(i, intended)
		return
	}
	at := int64(intended.Sub(r.t0))
	if at <= 0 {
		at = 1
	}
	for try := range 8 {
		c := r.slots[(int(i)+try*101)%n].cur.Load()
		if c.usable() {
			if c.sendRequests(at, r.cfg.Pipeline) {
				return
			}
		}
	}
	r.c.unsent.Add(int64(r.cfg.Pipeline))
}

// pushData is -size bytes stamped with intended.
func (r *runner) pushData(i int64, intended time.Time) []byte {
	data := make([]byte, max(r.cfg.Size, minPushSize))
	putStamp(data, r.runID, intended.UnixNano(), uint32(i))
	return data
}

// notePushStart remembers when the first push went out (for the delivery
// rate).
func (r *runner) notePushStart(intended time.Time) {
	r.c.firstPush.CompareAndSwap(0, intended.UnixNano())
}

// firePush makes unicast push i to -batch devices from slot i*batch on.
func (r *runner) firePush(ctx context.Context, i int64, intended time.Time) {
	n := len(r.slots)
	if n == 0 {
		return
	}
	b := &pushBody{Biz: r.cfg.Biz, DataBase64: r.pushData(i, intended), Ack: r.cfg.Ack}
	for k := range r.cfg.Batch {
		b.Devices = append(b.Devices, r.slots[(int(i)*r.cfg.Batch+k)%n].device)
	}
	r.notePushStart(intended)
	r.c.pushCalls.Add(1)
	res, err := r.api.Push(ctx, b)
	if err != nil {
		if ctx.Err() == nil {
			r.c.pushErrors.Add(1)
			r.noteError("push: " + err.Error())
		}
		return
	}
	r.c.pushDelivered.Add(int64(res.Delivered))
	r.c.expected.Add(int64(res.Delivered))
	if len(res.Offline) > 0 {
		r.c.pushOffline.Add(int64(len(res.Offline)))
		if r.cfg.Scenario != "mixed" {
			r.noteError(fmt.Sprintf("push: offline %v", res.Offline))
		}
	}
}

// fireGroupPush makes group push i.
func (r *runner) fireGroupPush(ctx context.Context, i int64, intended time.Time) {
	b := &pushBody{Biz: r.cfg.Biz, DataBase64: r.pushData(i, intended), Ack: r.cfg.Ack}
	r.notePushStart(intended)
	r.c.pushCalls.Add(1)
	delivered, err := r.api.GroupPush(ctx, r.cfg.Group, b)
	if err != nil {
		if ctx.Err() == nil {
			r.c.pushErrors.Add(1)
			r.noteError("group push: " + err.Error())
		}
		return
	}
	r.c.pushDelivered.Add(int64(delivered))
	r.c.expected.Add(r.members)
}

// awaitAnswers waits, up to churnWait, until a draining connection has no
// requests in flight.
func awaitAnswers(inflight *atomic.Int32) {
	deadline := time.Now().Add(churnWait)
	for inflight.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
}

// churnWait bounds how long a reconnect waits for the connection's
// in-flight requests and for its reader to stop.
const churnWait = time.Second

// churn closes slot i's connection on purpose and logs the device in
// again with resume, as a phone switching networks would.
func (r *runner) churn(ctx context.Context, i int64) {
	s := r.slots[i]
	if s.sdk != nil {
		r.churnSDK(ctx, s.sdk)
		return
	}
	c := s.cur.Load()
	if !c.usable() {
		return
	}
	c.draining.Store(true)
	awaitAnswers(&c.inflight)
	c.close()
	select {
	case <-c.done:
	case <-time.After(churnWait):
	}
	if ctx.Err() != nil {
		return
	}
	r.c.reconnects.Add(1)
	if _, err := r.connect(ctx, s, true); err != nil {
		r.noteError("reconnect: " + err.Error())
	}
}

// outstanding is what the drain waits for: requests not answered and
// deliveries not received.
func (r *runner) outstanding() (lost, missing int64) {
	lost = r.c.requests.Load() - r.c.responses.Load() - r.c.respErrorTotal() - r.c.reqFailed.Load()
	missing = r.c.expected.Load() - r.c.deliveries.Load()
	return max(lost, 0), max(missing, 0)
}

// drain waits up to -drain for the answers to what the load phase sent
// (and, with -sdk, for churned clients to be logged in again).
func (r *runner) drain(ctx context.Context) {
	deadline := time.Now().Add(r.cfg.Drain)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		lost, missing := r.outstanding()
		if lost == 0 && missing == 0 && r.pendingCuts.Load() == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// teardown closes every connection (with a reset, so that back-to-back
// runs do not leave thousands of ports in TIME_WAIT; TLS and WebSocket
// connections too, without close_notify or close frame) and waits for the
// readers.
func (r *runner) teardown() {
	r.stopping.Store(true)
	if r.cfg.SDK {
		r.teardownSDK()
		return
	}
	for _, s := range r.slots {
		if c := s.cur.Load(); c != nil {
			c.closing.Store(true)
			c.abort()
		}
	}
	done := make(chan struct{})
	go func() { r.readers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
	}
}

// sample is the counters the sampler turns into per-second rates.
type sample struct {
	t                                                      time.Duration
	logins, requests, responses, deliveries, pongs, errors int64
}

func (r *runner) takeSample() sample {
	return sample{
		t:          time.Since(r.t0),
		logins:     r.c.logins.Load(),
		requests:   r.c.requests.Load(),
		responses:  r.c.responses.Load() + r.c.respErrorTotal(),
		deliveries: r.c.deliveries.Load(),
		pongs:      r.c.pongs.Load(),
		errors:     r.liveErrors(),
	}
}

// sampler appends a Point every second.
func (r *runner) sampler(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.addPoint()
		}
	}
}

// addPoint records the interval since the previous point.
func (r *runner) addPoint() {
	var lat map[string]Percentiles
	for k := range numKinds {
		if iv := r.lat[k].collect(); iv.TotalCount() > 0 {
			if lat == nil {
				lat = make(map[string]Percentiles)
			}
			lat[k.String()] = percentiles(iv)
		}
	}
	now := r.takeSample()
	r.mu.Lock()
	defer r.mu.Unlock()
	dt := (now.t - r.prev.t).Seconds()
	if dt <= 0 || (dt <= 0.05 && len(r.series) > 0) { // a sliver at the end: fold it into nothing
		return
	}
	rate := func(a, b int64) int64 { return int64(float64(a-b)/dt + 0.5) }
	r.series = append(r.series, Point{
		T:          now.t.Seconds(),
		Phase:      r.phase,
		Conns:      r.c.up.Load(),
		Logins:     rate(now.logins, r.prev.logins),
		Requests:   rate(now.requests, r.prev.requests),
		Responses:  rate(now.responses, r.prev.responses),
		Deliveries: rate(now.deliveries, r.prev.deliveries),
		Pongs:      rate(now.pongs, r.prev.pongs),
		Errors:     rate(now.errors, r.prev.errors),
		Latency:    lat,
	})
	r.prev = now
}

// lastPoint returns the latest Point (zero before the first second).
func (r *runner) lastPoint() Point {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.series) == 0 {
		return Point{}
	}
	return r.series[len(r.series)-1]
}

// collectFinal folds what was recorded since the last tick into the
// totals (and a last, partial point).
func (r *runner) collectFinal() { r.addPoint() }

// liveErrors is the error count known while the run goes on (lost
// responses and missing deliveries are only known at the end).
func (r *runner) liveErrors() int64 {
	c := &r.c
	n := c.dialErrors.Load() + c.loginErrors.Load() + c.disconnects.Load() + c.kickTotal() +
		c.protoErrors.Load() + c.writeErrors.Load() + c.respErrorTotal() + c.unmatched.Load() +
		c.unsent.Load() + c.pushErrors.Load() + c.reqFailed.Load()
	if r.cfg.Scenario != "mixed" {
		n += c.pushOffline.Load()
	}
	return n
}
