// Command clusterbench measures pushes through a cluster of Longlink nodes
// sharing one Redis: connections spread round-robin over the nodes'
// TCP addresses, pushes made through one node's API, every delivery
// counted on the connections, and the Redis commands they cost read from
// INFO commandstats before and after. docs/cluster.md gives the commands
// and the figures.
//
//	go run ./cluster/clusterbench -nodes 127.0.0.1:17000,127.0.0.1:17100 \
//	    -api http://127.0.0.1:17080 -redis 127.0.0.1:16379 -mode broadcast -conns 2000 -pushes 200
//
// Modes: broadcast (POST /v1/broadcast), group (POST /v1/groups/{g}/push,
// every connection a member by its token) and unicast (POST /v1/push, one
// device per call, each connection in turn). It checks that every
// connection received every push exactly once (unicast: its own pushes),
// and that the API's delivered counts add up to the deliveries.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/longlink/longlink/auth"
	"github.com/longlink/longlink/codec"
	"github.com/redis/go-redis/v9"
)

type config struct {
	nodes       []string
	api         string
	apiKey      string
	secret      string
	redis       string
	mode        string
	conns       int
	pushes      int
	concurrency int
	size        int
	ack         bool
	prefix      string
}

func main() {
	var c config
	var nodes string
	flag.StringVar(&nodes, "nodes", "127.0.0.1:7000", "comma-separated TCP addresses of the nodes; connections are spread over them")
	flag.StringVar(&c.api, "api", "http://127.0.0.1:7080", "API base URL of the node the pushes go through")
	flag.StringVar(&c.apiKey, "api-key", "longlink-dev-api-key", "API key")
	flag.StringVar(&c.secret, "jwt-secret", "longlink-dev-jwt-secret-do-not-use-in-production", "HS256 secret to mint login tokens")
	flag.StringVar(&c.redis, "redis", "", "Redis host:port, or the masters of a Redis Cluster comma-separated, to count the commands the pushes cost (INFO commandstats, summed); empty: not counted")
	flag.StringVar(&c.mode, "mode", "broadcast", "broadcast, group or unicast")
	flag.IntVar(&c.conns, "conns", 1000, "connections")
	flag.IntVar(&c.pushes, "pushes", 100, "pushes (API calls)")
	flag.IntVar(&c.concurrency, "concurrency", 16, "API calls in flight")
	flag.IntVar(&c.size, "size", 64, "push data bytes")
	flag.BoolVar(&c.ack, "ack", false, "push with ack:true (durable with -redis); each connection answers every push with PUSH_ACK")
	flag.StringVar(&c.prefix, "device-prefix", "cb"+strconv.Itoa(os.Getpid())+"-", "device id prefix")
	flag.Parse()
	c.nodes = strings.Split(nodes, ",")
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "clusterbench:", err)
		os.Exit(1)
	}
}

// conn is one logged-in connection and what it received.
type conn struct {
	nc       net.Conn
	device   string
	node     string
	received atomic.Int64
	dups     atomic.Int64
	seen     []atomic.Bool // by push index
}

func run(c config) error {
	group := c.prefix + "room"
	cs := make([]*conn, c.conns)
	var wg sync.WaitGroup
	errs := make(chan error, c.conns)
	sem := make(chan struct{}, 200)
	start := time.Now()
	for i := range cs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			cn, err := login(c, i, group)
			if err != nil {
				errs <- err
				return
			}
			cs[i] = cn
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	perNode := map[string]int{}
	for _, cn := range cs {
		perNode[cn.node]++
	}
	fmt.Printf("connections  %d logged in in %v: %v\n", c.conns, time.Since(start).Round(time.Millisecond), perNode)

	var last atomic.Int64 // unix nanos of the last delivery
	for _, cn := range cs {
		go cn.read(&last)
	}
	var rdb []*redis.Client
	var before map[string]int64
	if c.redis != "" {
		for _, addr := range strings.Split(c.redis, ",") {
			cl := redis.NewClient(&redis.Options{Addr: addr})
			defer cl.Close()
			rdb = append(rdb, cl)
		}
		var err error
		if before, err = commandStats(rdb); err != nil {
			return err
		}
	}

	expected := int64(c.conns) * int64(c.pushes)
	if c.mode == "unicast" {
		expected = int64(c.pushes)
	}
	var apiDelivered, apiErrors atomic.Int64
	var next atomic.Int64
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: c.concurrency}}
	first := time.Now()
	var callers sync.WaitGroup
	for range c.concurrency {
		callers.Add(1)
		go func() {
			defer callers.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= c.pushes {
					return
				}
				n, err := push(hc, c, group, cs, i)
				if err != nil {
					apiErrors.Add(1)
					fmt.Fprintln(os.Stderr, "push:", err)
					continue
				}
				apiDelivered.Add(int64(n))
			}
		}()
	}
	callers.Wait()
	apiDone := time.Since(first)
	deadline := time.Now().Add(30 * time.Second)
	for total(cs) < expected && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	got := total(cs)
	span := time.Duration(last.Load() - first.UnixNano())
	var dups int64
	for _, cn := range cs {
		dups += cn.dups.Load()
	}
	fmt.Printf("mode         %s through %s, %d pushes of %d bytes, %d in flight\n", c.mode, c.api, c.pushes, c.size, c.concurrency)
	fmt.Printf("api          %d calls in %v: %.0f calls/s; delivered (sum of answers) %d, errors %d\n",
		c.pushes, apiDone.Round(time.Millisecond), float64(c.pushes)/apiDone.Seconds(), apiDelivered.Load(), apiErrors.Load())
	fmt.Printf("deliveries   %d of %d expected, %d duplicates, first call to last delivery %v: %.0f deliveries/s\n",
		got, expected, dups, span.Round(time.Millisecond), float64(got)/span.Seconds())
	if rdb != nil {
		after, err := commandStats(rdb)
		if err != nil {
			return err
		}
		printCommands(before, after, c.pushes)
	}
	if got != expected || dups != 0 || apiDelivered.Load() != expected {
		return fmt.Errorf("deliveries %d, answers %d, duplicates %d; want %d, %d, 0", got, apiDelivered.Load(), dups, expected, expected)
	}
	return nil
}

func total(cs []*conn) (n int64) {
	for _, cn := range cs {
		n += cn.received.Load()
	}
	return n
}

// login dials the i-th connection's node and logs it in.
func login(c config, i int, group string) (*conn, error) {
	node := c.nodes[i%len(c.nodes)]
	device := c.prefix + strconv.Itoa(i)
	claims := auth.Claims{Device: device, Expires: time.Now().Add(time.Hour)}
	if c.mode == "group" {
		claims.Groups = []string{group}
	}
	tok, err := auth.Mint([]byte(c.secret), claims)
	if err != nil {
		return nil, err
	}
	nc, err := net.DialTimeout("tcp", node, 10*time.Second)
	if err != nil {
		return nil, err
	}
	meta := codec.AppendMetaString(nil, "token", tok)
	if _, err := nc.Write(codec.AppendFrame(nil, codec.Header{Op: codec.OpLogin, Seq: 1}, meta, nil)); err != nil {
		return nil, err
	}
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	var hdr [codec.HeaderSize]byte
	if _, err := io.ReadFull(nc, hdr[:]); err != nil {
		return nil, fmt.Errorf("login %s: %w", device, err)
	}
	h, err := codec.ParseHeader(hdr[:], 1<<20)
	if err != nil {
		return nil, err
	}
	if _, err := io.CopyN(io.Discard, nc, int64(h.MetaLen)+int64(h.BodyLen)); err != nil {
		return nil, err
	}
	if h.Op != codec.OpLoginAck || h.Status != codec.StatusOK {
		return nil, fmt.Errorf("login %s: %v %v", device, h.Op, h.Status)
	}
	_ = nc.SetReadDeadline(time.Time{})
	return &conn{nc: nc, device: device, node: node, seen: make([]atomic.Bool, c.pushes)}, nil
}

// read counts the connection's pushes; the body starts with the push
// index.
func (cn *conn) read(last *atomic.Int64) {
	r := bufio.NewReaderSize(cn.nc, 64<<10)
	var hdr [codec.HeaderSize]byte
	body := make([]byte, 0, 1024)
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return
		}
		h, err := codec.ParseHeader(hdr[:], 1<<20)
		if err != nil {
			return
		}
		n := int(h.MetaLen) + int(h.BodyLen)
		if cap(body) < n {
			body = make([]byte, n)
		}
		body = body[:n]
		if _, err := io.ReadFull(r, body); err != nil {
			return
		}
		if h.Op != codec.OpPush {
			continue
		}
		if h.Flags&codec.FlagAckRequired != 0 {
			ack := codec.AppendFrame(hdr[:0:0], codec.Header{Op: codec.OpPushAck, Seq: h.Seq}, nil, nil)
			if _, err := cn.nc.Write(ack); err != nil {
				return
			}
		}
		data := body[h.MetaLen:]
		idx, _, _ := bytes.Cut(data, []byte{' '})
		i, err := strconv.Atoi(string(idx))
		if err != nil || i < 0 || i >= len(cn.seen) {
			continue
		}
		if cn.seen[i].Swap(true) {
			cn.dups.Add(1)
			continue
		}
		cn.received.Add(1)
		last.Store(time.Now().UnixNano())
	}
}

// push makes API call i and returns its delivered count.
func push(hc *http.Client, c config, group string, cs []*conn, i int) (int, error) {
	data := strconv.Itoa(i) + " "
	if pad := c.size - len(data); pad > 0 {
		data += strings.Repeat("x", pad)
	}
	body := map[string]any{"biz": 1, "data": data}
	if c.ack {
		body["ack"] = true
	}
	path := "/v1/broadcast"
	switch c.mode {
	case "group":
		path = "/v1/groups/" + group + "/push"
	case "unicast":
		path = "/v1/push"
		body["devices"] = []string{cs[i%len(cs)].device}
	}
	b, _ := json.Marshal(body)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", c.api+path, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+c.apiKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var res struct {
		Delivered int    `json:"delivered"`
		Error     string `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		return 0, err
	}
	if resp.StatusCode != 200 {
		return 0, fmt.Errorf("%s: %d %s", path, resp.StatusCode, res.Error)
	}
	return res.Delivered, nil
}

// commandStats reads the calls of every command from INFO commandstats
// of each server, summed.
func commandStats(rdbs []*redis.Client) (map[string]int64, error) {
	m := map[string]int64{}
	for _, rdb := range rdbs {
		if err := addCommandStats(rdb, m); err != nil {
			return nil, err
		}
	}
	if len(m) == 0 {
		return nil, errors.New("INFO commandstats: nothing parsed")
	}
	return m, nil
}

// addCommandStats adds one server's INFO commandstats calls to m.
func addCommandStats(rdb *redis.Client, m map[string]int64) error {
	info, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		return err
	}
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		for _, kv := range strings.Split(rest, ",") {
			if v, ok := strings.CutPrefix(kv, "calls="); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				m[strings.TrimPrefix(name, "cmdstat_")] += n
			}
		}
	}
	return nil
}

func printCommands(before, after map[string]int64, pushes int) {
	var names []string
	var sum int64
	for name, n := range after {
		d := n - before[name]
		if name == "info" {
			d-- // ours
		}
		if d > 0 {
			names = append(names, fmt.Sprintf("%s %d", name, d))
			sum += d
		}
	}
	sort.Strings(names)
	fmt.Printf("redis        %d commands during the run (%.2f per push): %s\n", sum, float64(sum)/float64(pushes), strings.Join(names, ", "))
}
