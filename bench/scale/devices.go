package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
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
// logs in on addrs[(first+i) % len(addrs)], a member of group by its
// token. When its connection dies it waits a full-jitter backoff, asks a
// random API for the endpoints, dials one of the TCP ones at random (the
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
}

type device struct {
	id    string
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
		d := &device{id: cfg.prefix + strconv.Itoa(cfg.first+i), cfg: cfg, durable: map[string]int{}}
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
			r.Durable[d.id] = maps(d.durable)
		}
		for _, l := range d.logins {
			r.LoginsMS = append(r.LoginsMS, float64(l.Microseconds())/1000)
		}
		r.Failures += d.failures
		d.mu.Unlock()
	}
	return r
}

func maps(m map[string]int) map[string]int {
	c := make(map[string]int, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// login dials addr and logs the device in, resuming from its last seq.
func (d *device) login(addr string) (net.Conn, *bufio.Reader, error) {
	tok, err := auth.Mint([]byte(d.cfg.secret), auth.Claims{Device: d.id, Groups: []string{d.cfg.group}, Expires: time.Now().Add(time.Hour)})
	if err != nil {
		return nil, nil, err
	}
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
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
	}
}

// endpoint asks a random API for the endpoints and picks a TCP one at
// random.
func (d *device) endpoint() (string, error) {
	api := d.cfg.apis[rand.N(len(d.cfg.apis))]
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

var httpClient = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

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
