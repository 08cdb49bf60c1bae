package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"regexp"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/longlink/longlink/auth"
	"github.com/longlink/longlink/codec"
)

// The devices role: n raw-protocol devices in this process. Device i
// logs in on addrs[(first+i) % len(addrs)] from a source address of its
// own, a member of group by its token. When its connection dies it waits
// a full-jitter backoff, asks the APIs for the endpoints (the next one
// when one does not answer), dials one of the TCP ones at random (the
// first is the least loaded as of a second ago: every device taking it
// would overflow it) and logs in with resume. It acks what asks for an
// ack and counts what it receives by the data's first byte: b
// (broadcast), g (group), d<id> (durable, recorded by id). The
// orchestrator talks to it on stdin and stdout: it prints "ready N" once
// every device has logged in (or failed, counted), then answers "report"
// with one JSON line, and exits on "stop" or at -deadline.

type devicesConfig struct {
	addrs   []string
	apis    []string
	first   int
	n       int
	prefix  string
	group   string
	secret  string
	apiKey  string
	backoff time.Duration
	maxWait time.Duration
	profile string // a CPU profile of the first 15 s after a device of this process lost its connection
}

// stormProfile writes a CPU profile of the storm to path, once: from the
// first lost connection, for 15 s.
var stormProfile sync.Once

func profileStorm(path string) {
	stormProfile.Do(func() {
		f, err := os.Create(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, "profile:", err)
			return
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "profile:", err)
			return
		}
		time.AfterFunc(15*time.Second, func() { pprof.StopCPUProfile(); f.Close() })
	})
}

type device struct {
	id    string
	src   net.IP // its own loopback source address, as each phone has its own
	cfg   *devicesConfig
	bcast atomic.Int64
	group atomic.Int64

	mu       sync.Mutex
	last     uint32         // highest seq received: the resume
	durable  map[string]int // durable push id → times received
	lostAt   time.Time      // when the connection died (zero: never)
	backAt   time.Time      // when it logged in again
	tries    int            // attempts until then
	logins   []time.Duration
	failures int
}

// report is what a devices process answers to "report".
type report struct {
	Devices   int                       `json:"devices"`
	Connected int                       `json:"connected"`
	Broadcast int64                     `json:"broadcast"` // deliveries
	Group     int64                     `json:"group"`
	Moved     []moved                   `json:"moved"`   // devices that lost their connection
	Durable   map[string]map[string]int `json:"durable"` // device → id → times
	LoginsMS  []float64                 `json:"logins_ms"`
	Failures  int                       `json:"failures"` // failed attempts
	FailWhy   map[string]int            `json:"fail_why"` // failed attempts by error, the local address left out
}

type moved struct {
	Device  string  `json:"device"`
	Back    bool    `json:"back"`
	AfterMS float64 `json:"after_ms"` // from the connection's death to LOGIN_ACK
	Tries   int     `json:"tries"`
}

var connected atomic.Int64

func runDevices(cfg *devicesConfig, deadline time.Duration) error {
	devs := make([]*device, cfg.n)
	var ready sync.WaitGroup
	var failed atomic.Int64
	sem := make(chan struct{}, 200)
	for i := range devs {
		d := &device{id: cfg.prefix + strconv.Itoa(cfg.first+i), src: sourceIP(cfg.first + i), cfg: cfg, durable: map[string]int{}}
		devs[i] = d
		addr := cfg.addrs[(cfg.first+i)%len(cfg.addrs)]
		ready.Add(1)
		go func() {
			sem <- struct{}{}
			nc, r, err := d.login(addr)
			<-sem
			ready.Done()
			if err != nil {
				failed.Add(1)
				fmt.Fprintln(os.Stderr, "login:", d.id, err)
				return
			}
			d.serve(nc, r)
		}()
	}
	ready.Wait()
	fmt.Printf("ready %d %d\n", cfg.n-int(failed.Load()), failed.Load())
	stop := time.After(deadline)
	lines := make(chan string)
	go func() {
		s := bufio.NewScanner(os.Stdin)
		for s.Scan() {
			lines <- s.Text()
		}
		close(lines)
	}()
	for {
		select {
		case <-stop:
			return nil
		case l, ok := <-lines:
			if !ok || l == "stop" {
				return nil
			}
			b, _ := json.Marshal(collect(devs))
			fmt.Println(string(b))
		}
	}
}

func collect(devs []*device) report {
	r := report{Devices: len(devs), Connected: int(connected.Load()), Durable: map[string]map[string]int{}}
	failures.Lock()
	r.FailWhy = maps.Clone(failures.why)
	failures.Unlock()
	for _, d := range devs {
		r.Broadcast += d.bcast.Load()
		r.Group += d.group.Load()
		d.mu.Lock()
		if !d.lostAt.IsZero() {
			m := moved{Device: d.id, Back: !d.backAt.IsZero(), Tries: d.tries}
			if m.Back {
				m.AfterMS = float64(d.backAt.Sub(d.lostAt).Microseconds()) / 1000
			}
			r.Moved = append(r.Moved, m)
		}
		if len(d.durable) > 0 {
			r.Durable[d.id] = maps.Clone(d.durable)
		}
		for _, l := range d.logins {
			r.LoginsMS = append(r.LoginsMS, float64(l.Microseconds())/1000)
		}
		r.Failures += d.failures
		d.mu.Unlock()
	}
	return r
}

// login dials addr and logs the device in, resuming from its last seq.
func (d *device) login(addr string) (net.Conn, *bufio.Reader, error) {
	tok, err := auth.Mint([]byte(d.cfg.secret), auth.Claims{Device: d.id, Groups: []string{d.cfg.group}, Expires: time.Now().Add(time.Hour)})
	if err != nil {
		return nil, nil, err
	}
	dialer := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: d.src}}
	nc, err := dialer.Dial("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	d.mu.Lock()
	meta := codec.AppendMetaString(nil, "token", tok)
	if d.last > 0 {
		meta = codec.AppendMetaString(meta, "resume", strconv.FormatUint(uint64(d.last), 10))
	}
	d.mu.Unlock()
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := nc.Write(codec.AppendFrame(nil, codec.Header{Op: codec.OpLogin, Seq: 1}, meta, nil)); err != nil {
		nc.Close()
		return nil, nil, err
	}
	r := bufio.NewReaderSize(nc, 4096)
	h, _, err := readFrame(r)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("login: %w", err)
	}
	if h.Op != codec.OpLoginAck || h.Status != codec.StatusOK {
		nc.Close()
		return nil, nil, fmt.Errorf("login: %v %v", h.Op, h.Status)
	}
	_ = nc.SetDeadline(time.Time{})
	connected.Add(1)
	return nc, r, nil
}

// serve reads the device's frames until its connection dies, then logs
// in again elsewhere, and so on.
func (d *device) serve(nc net.Conn, r *bufio.Reader) {
	for {
		d.read(nc, r)
		connected.Add(-1)
		d.mu.Lock()
		d.lostAt, d.backAt, d.tries = time.Now(), time.Time{}, 0
		if d.cfg.profile != "" {
			go profileStorm(d.cfg.profile)
		}
		d.mu.Unlock()
		nc, r = d.reconnect()
	}
}

// reconnect tries until it is logged in again.
func (d *device) reconnect() (net.Conn, *bufio.Reader) {
	for attempt := 0; ; attempt++ {
		ceiling := min(d.cfg.maxWait, d.cfg.backoff<<min(attempt, 10))
		time.Sleep(rand.N(ceiling) + time.Millisecond) // the backoff itself: time as input
		addr, err := d.endpoint()
		if err == nil {
			start := time.Now()
			var nc net.Conn
			var r *bufio.Reader
			nc, r, err = d.login(addr)
			if err == nil {
				d.mu.Lock()
				d.logins = append(d.logins, time.Since(start))
				d.backAt, d.tries = time.Now(), attempt+1
				d.mu.Unlock()
				return nc, r
			}
		}
		d.mu.Lock()
		d.failures++
		d.mu.Unlock()
		failWhy(err)
	}
}

// failures counts failed attempts by their error, local address left out, so
// that the report says what made devices try again.
var failures struct {
	sync.Mutex
	why map[string]int
}

// localAddr matches a connection's own address in an error.
var localAddr = regexp.MustCompile(`[0-9.]+:[0-9]+->`)

func failWhy(err error) {
	k := localAddr.ReplaceAllString(err.Error(), "")
	failures.Lock()
	if failures.why == nil {
		failures.why = map[string]int{}
	}
	failures.why[k]++
	failures.Unlock()
}

// sourceIP is device i's source address: 127.1.0.1 onwards, 250 per /24,
// so that the gateway's per-source limits (-max-unauth-per-ip and the
// rest) see many devices, not one address, as they would in the field.
func sourceIP(i int) net.IP {
	return net.IPv4(127, byte(1+i/62500), byte(i/250%250), byte(1+i%250))
}

// endpoint asks the APIs for the endpoints, in a random order, each for
// at most a second, and picks a TCP endpoint of the first answer at
// random: a device (or its app's backend) tries the next address when one
// does not answer, as the SDK does.
func (d *device) endpoint() (string, error) {
	var err error
	for _, i := range rand.Perm(len(d.cfg.apis)) {
		var addr string
		if addr, err = d.endpointFrom(d.cfg.apis[i]); err == nil {
			return addr, nil
		}
	}
	return "", err
}

func (d *device) endpointFrom(api string) (string, error) {
	req, _ := http.NewRequest("GET", api+"/v1/endpoints", nil)
	req.Header.Set("Authorization", "Bearer "+d.cfg.apiKey)
	resp, err := httpClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var eps struct {
		Endpoints []struct{ Proto, Addr string } `json:"endpoints"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&eps); err != nil {
		return "", err
	}
	var tcp []string
	for _, e := range eps.Endpoints {
		if e.Proto == "tcp" {
			tcp = append(tcp, e.Addr)
		}
	}
	if len(tcp) == 0 {
		return "", fmt.Errorf("no tcp endpoint from %s", api)
	}
	return tcp[rand.N(len(tcp))], nil
}

// httpClient asks for endpoints through at most 64 connections per API,
// as an app's backend that looks them up for its devices would: 18,000
// devices each opening their own would take the API's -api-max-conns
// from the businesses.
var httpClient = &http.Client{Timeout: time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64}}

// read handles frames until the connection fails: pushes counted and
// acked, a PING every 20 s of silence.
func (d *device) read(nc net.Conn, r *bufio.Reader) {
	defer nc.Close()
	for {
		_ = nc.SetReadDeadline(time.Now().Add(20 * time.Second))
		h, body, err := readFrame(r)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			if _, err := nc.Write(codec.AppendFrame(nil, codec.Header{Op: codec.OpPing, Seq: 9}, nil, nil)); err != nil {
				return
			}
			continue
		}
		if err != nil {
			return
		}
		if h.Op != codec.OpPush {
			continue
		}
		data := body[h.MetaLen:]
		d.mu.Lock()
		if h.Seq > d.last {
			d.last = h.Seq
		}
		switch {
		case len(data) > 0 && data[0] == 'b':
			d.bcast.Add(1)
		case len(data) > 0 && data[0] == 'g':
			d.group.Add(1)
		case len(data) > 0 && data[0] == 'd':
			id, _, _ := strings.Cut(string(data[1:]), " ")
			d.durable[id]++
		}
		d.mu.Unlock()
		if h.Flags&codec.FlagAckRequired != 0 {
			if _, err := nc.Write(codec.AppendFrame(nil, codec.Header{Op: codec.OpPushAck, Seq: h.Seq}, nil, nil)); err != nil {
				return
			}
		}
	}
}

func readFrame(r *bufio.Reader) (codec.Header, []byte, error) {
	var hdr [codec.HeaderSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return codec.Header{}, nil, err
	}
	h, err := codec.ParseHeader(hdr[:], 1<<20)
	if err != nil {
		return h, nil, err
	}
	body := make([]byte, int(h.MetaLen)+int(h.BodyLen))
	if _, err := io.ReadFull(r, body); err != nil {
		return h, nil, err
	}
	return h, body, nil
}

// percentile of sorted xs, p in 0..100.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	i := int(float64(len(xs)-1) * p / 100)
	return xs[i]
}
