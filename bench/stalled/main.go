// Command stalled measures what readers that stop reading cost the
// gateway. It logs in -conns devices whose sockets have a small receive
// buffer, stops reading them, and broadcasts -pushes pushes of -size
// bytes, more than the kernel buffers hold, so that every one of those
// sockets refuses bytes. Once they all do and the pushes are queued (or
// after 5s), for -window (keep it under the gateway's write timeout,
// 10s), it reads the gateway's /v1/stats at both ends and prints the CPU
// the gateway used and the write system calls it made while the sockets
// stayed full. It also prints how much the kernel's
// TCP memory (/proc/net/sockstat, the whole machine's) grew from before
// the first dial to the start of the window: what the stalled sockets'
// buffers hold, which the gateway's -sndbuf bounds.
//
//	go run . &                  # the gateway on its development defaults
//	go run ./bench/stalled -conns 2000
//
// It is a measurement for docs/BENCHMARKS.md, not part of the gateway.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/longlink/longlink/auth"
	"github.com/longlink/longlink/codec"
	"github.com/longlink/longlink/config"
)

func main() {
	addr := flag.String("addr", config.DefaultListen, "gateway TCP address")
	api := flag.String("api", "http://"+config.DefaultAPIListen, "gateway HTTP API")
	apiKey := flag.String("api-key", config.DevAPIKey, "API key")
	secret := flag.String("jwt-secret", config.DevJWTSecret, "JWT secret, to mint the devices' tokens")
	conns := flag.Int("conns", 1000, "stalled connections")
	pushes := flag.Int("pushes", 8, "broadcast pushes")
	size := flag.Int("size", 16<<10, "bytes per push")
	window := flag.Duration("window", 5*time.Second, "how long to measure while the sockets stay full")
	flag.Parse()
	if err := run(*addr, *api, *apiKey, []byte(*secret), *conns, *pushes, *size, *window); err != nil {
		fmt.Fprintln(os.Stderr, "stalled:", err)
		os.Exit(1)
	}
}

func run(addr, api, apiKey string, secret []byte, conns, pushes, size int, window time.Duration) error {
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		return errors.Join(err, serr)
	}}
	kernelBefore, err := tcpMemory()
	if err != nil {
		return err
	}
	ncs := make([]net.Conn, 0, conns)
	defer func() {
		for _, nc := range ncs {
			nc.Close()
		}
	}()
	for i := range conns {
		nc, err := d.Dial("tcp", addr)
		if err != nil {
			return fmt.Errorf("dial %d: %w", i, err)
		}
		ncs = append(ncs, nc)
		if err := login(nc, secret, fmt.Sprintf("stalled-%d", i)); err != nil {
			return fmt.Errorf("device %d: %w", i, err)
		}
	}
	body, _ := json.Marshal(map[string]any{"biz": 1, "data": strings.Repeat("x", size)})
	for i := range pushes {
		if err := call(http.MethodPost, api+"/v1/broadcast", apiKey, body, nil); err != nil {
			return fmt.Errorf("broadcast %d: %w", i, err)
		}
	}
	// The workers write what the sockets take until every socket is full,
	// and may still be queueing the last pushes in the outboxes then (with
	// a small -sndbuf the sockets fill early). The window starts once every
	// socket is full and no task is queued, plus half a second for the
	// task in hand (or after 5s, which the report shows).
	var a, b stats
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if err := call(http.MethodGet, api+"/v1/stats", apiKey, nil, &a); err != nil {
			return err
		}
		if a.blocked() >= int64(conns) && a.queue("downstream_tasks") == 0 || time.Now().After(deadline) {
			break
		}
	}
	time.Sleep(500 * time.Millisecond)
	if err := call(http.MethodGet, api+"/v1/stats", apiKey, nil, &a); err != nil {
		return err
	}
	kernel, err := tcpMemory()
	if err != nil {
		return err
	}
	start := time.Now()
	time.Sleep(window)
	if err := call(http.MethodGet, api+"/v1/stats", apiKey, nil, &b); err != nil {
		return err
	}
	secs := time.Since(start).Seconds()
	cpu := b.CPUSeconds - a.CPUSeconds
	fmt.Printf("%d stalled connections (%d sockets full at the start, %d at the end) for %.1fs: gateway CPU %.3fs (%.2f%% of a core), %d write calls (%.0f/s), %d kicks\n",
		conns, a.blocked(), b.blocked(), secs, cpu, 100*cpu/secs, b.Writes-a.Writes, float64(b.Writes-a.Writes)/secs, b.kicks()-a.kicks())
	grown := kernel - kernelBefore
	fmt.Printf("kernel TCP memory at the start of the window: +%.1f MiB (%.0f KiB per stalled connection, both ends)\n",
		float64(grown)/(1<<20), float64(grown)/1024/float64(conns))
	return nil
}

// tcpMemory is the memory the kernel holds for TCP sockets, machine-wide:
// the "mem" pages of the TCP line of /proc/net/sockstat.
func tcpMemory() (int64, error) {
	b, err := os.ReadFile("/proc/net/sockstat")
	if err != nil {
		return 0, fmt.Errorf("kernel TCP memory: %w", err)
	}
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "TCP:" {
			continue
		}
		for i := 1; i+1 < len(f); i++ {
			if f[i] == "mem" {
				pages, err := strconv.ParseInt(f[i+1], 10, 64)
				if err != nil {
					return 0, fmt.Errorf("kernel TCP memory: %q: %w", line, err)
				}
				return pages * int64(os.Getpagesize()), nil
			}
		}
	}
	return 0, errors.New("kernel TCP memory: no TCP mem in /proc/net/sockstat")
}

// login sends LOGIN with a freshly minted token and reads LOGIN_ACK.
func login(nc net.Conn, secret []byte, device string) error {
	tok, err := auth.Mint(secret, auth.Claims{Device: device, Expires: time.Now().Add(time.Hour)})
	if err != nil {
		return err
	}
	meta := codec.AppendMetaString(nil, "token", tok)
	if _, err := nc.Write(codec.AppendFrame(nil, codec.Header{Op: codec.OpLogin, Seq: 1}, meta, nil)); err != nil {
		return err
	}
	buf := make([]byte, 0, 512)
	for {
		f, n, err := codec.Decode(buf, 1<<16)
		if err != nil {
			return err
		}
		if n > 0 {
			if f.Op != codec.OpLoginAck || f.Status != codec.StatusOK {
				return fmt.Errorf("login answered %v %v", f.Op, f.Status)
			}
			return nil
		}
		k, err := nc.Read(buf[len(buf):cap(buf)])
		if err != nil {
			return fmt.Errorf("read LOGIN_ACK: %w", err)
		}
		buf = buf[:len(buf)+k]
	}
}

type stats struct {
	CPUSeconds float64           `json:"cpu_seconds"`
	Writes     uint64            `json:"writes"`
	Kicks      map[string]uint64 `json:"kicks"`
	Queues     []struct {
		Name string `json:"name"`
		Len  int64  `json:"len"`
	} `json:"queues"`
}

// blocked is how many connections have bytes their socket refused.
func (s *stats) blocked() int64 { return s.queue("downstream_blocked_conns") }

// queue is the length of the named queue, -1 when there is none.
func (s *stats) queue(name string) int64 {
	for _, q := range s.Queues {
		if q.Name == name {
			return q.Len
		}
	}
	return -1
}

func (s *stats) kicks() (n uint64) {
	for _, k := range s.Kicks {
		n += k
	}
	return n
}

func call(method, url, apiKey string, body []byte, out any) error {
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+apiKey)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", method, url, res.Status, b)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}
