package hostile

import (
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/longlink/longlink/codec"
)

// Monitor is a well-behaved, logged-in connection that pings at a steady
// interval and measures its PONGs: the round trips, and the longest time
// without one (the gap), which is what a client's heartbeat would see.
type Monitor struct {
	nc    net.Conn
	r     *Reader
	every time.Duration

	mu      sync.Mutex
	sentAt  []time.Time // by seq-1
	rtts    []time.Duration
	start   time.Time
	last    time.Time // the last PONG, or start
	maxGap  time.Duration
	err     error
	stopped bool

	stop    chan struct{}
	written chan struct{} // the writer has stopped
	read    chan struct{} // the reader has stopped
}

// MonitorResult is what a Monitor measured.
type MonitorResult struct {
	Sent, Pongs int
	RTTs        []time.Duration // sorted
	MaxGap      time.Duration   // the longest time without a PONG, from the first PING to the last PONG
	Err         error           // the first thing that went wrong: a write or read error, a frame other than the PONG expected, a PONG not OK
}

// Pct is the p-quantile (0..1) of the round trips.
func (m MonitorResult) Pct(p float64) time.Duration {
	if len(m.RTTs) == 0 {
		return 0
	}
	return m.RTTs[int(float64(len(m.RTTs)-1)*p)]
}

// Max is the slowest round trip.
func (m MonitorResult) Max() time.Duration {
	if len(m.RTTs) == 0 {
		return 0
	}
	return m.RTTs[len(m.RTTs)-1]
}

func (m MonitorResult) String() string {
	return fmt.Sprintf("%d PINGs, %d PONGs, p50 %v p99 %v max %v, longest gap %v", m.Sent, m.Pongs,
		m.Pct(0.5).Round(time.Microsecond), m.Pct(0.99).Round(time.Microsecond), m.Max().Round(time.Microsecond), m.MaxGap.Round(time.Millisecond))
}

// StartMonitor dials addr with d, logs in with token and pings every
// interval until Stop.
func StartMonitor(d *net.Dialer, addr, token string, every time.Duration) (*Monitor, error) {
	nc, r, err := Dial(d, addr, token)
	if err != nil {
		return nil, fmt.Errorf("monitor: %w", err)
	}
	m := &Monitor{nc: nc, r: r, every: every, stop: make(chan struct{}), written: make(chan struct{}), read: make(chan struct{})}
	m.start = time.Now()
	m.last = m.start
	go m.write()
	go m.readLoop()
	return m, nil
}

func (m *Monitor) fail(err error) {
	m.mu.Lock()
	if m.err == nil {
		m.err = err
	}
	m.mu.Unlock()
}

func (m *Monitor) write() {
	defer close(m.written)
	t := time.NewTicker(m.every)
	defer t.Stop()
	var b [codec.HeaderSize]byte
	for {
		select {
		case <-m.stop:
			return
		case <-m.read:
			return // the reader failed
		case <-t.C:
		}
		m.mu.Lock()
		seq := uint32(len(m.sentAt) + 1)
		m.sentAt = append(m.sentAt, time.Now())
		m.mu.Unlock()
		codec.PutHeader(b[:], &codec.Header{Op: codec.OpPing, Seq: seq})
		_ = m.nc.SetWriteDeadline(time.Now().Add(time.Second))
		if _, err := m.nc.Write(b[:]); err != nil {
			m.fail(fmt.Errorf("monitor: write PING %d: %w", seq, err))
			return
		}
	}
}

func (m *Monitor) readLoop() {
	defer close(m.read)
	next := uint32(1)
	for {
		f, err := m.r.Next(time.Now().Add(200 * time.Millisecond))
		now := time.Now()
		m.mu.Lock()
		sent, stopped := len(m.sentAt), m.stopped
		m.mu.Unlock()
		if err != nil {
			if IsTimeout(err) {
				if stopped && int(next) > sent {
					return // every PING answered
				}
				if stopped && now.Sub(m.last) > 5*time.Second {
					m.fail(fmt.Errorf("monitor: no PONG for PING %d of %d", next, sent))
					return
				}
				continue
			}
			m.fail(fmt.Errorf("monitor: read: %w", err))
			return
		}
		if f.Op != codec.OpPong || f.Seq != next || f.Status != codec.StatusOK {
			m.fail(fmt.Errorf("monitor: got %v seq %d status %v (%s), want PONG seq %d OK", f.Op, f.Seq, f.Status, Reason(f), next))
			return
		}
		m.mu.Lock()
		m.rtts = append(m.rtts, now.Sub(m.sentAt[next-1]))
		m.maxGap = max(m.maxGap, now.Sub(m.last))
		m.last = now
		m.mu.Unlock()
		next++
		if stopped && int(next) > sent {
			return
		}
	}
}

// AwaitNext waits, up to timeout, for the PONG of a PING sent from now
// on, and reports whether it came: the node answers after whatever came
// before.
func (m *Monitor) AwaitNext(timeout time.Duration) bool {
	m.mu.Lock()
	want := len(m.sentAt) + 1
	m.mu.Unlock()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		m.mu.Lock()
		got, failed := len(m.rtts), m.err != nil
		m.mu.Unlock()
		if got >= want {
			return true
		}
		if failed {
			return false
		}
		select {
		case <-m.read:
			return false
		case <-time.After(10 * time.Millisecond):
		}
	}
	return false
}

// Stop stops pinging, waits for the last PONGs (5s at most) and closes the
// connection.
func (m *Monitor) Stop() MonitorResult {
	select {
	case <-m.stop:
	default:
		close(m.stop)
	}
	<-m.written
	m.mu.Lock()
	m.stopped = true
	m.mu.Unlock()
	<-m.read
	m.nc.Close()
	m.mu.Lock()
	defer m.mu.Unlock()
	res := MonitorResult{Sent: len(m.sentAt), Pongs: len(m.rtts), RTTs: slices.Clone(m.rtts), MaxGap: m.maxGap, Err: m.err}
	if res.Pongs < res.Sent {
		// The PONGs that never came: the gap runs to the end.
		res.MaxGap = max(res.MaxGap, time.Since(m.last))
	}
	slices.Sort(res.RTTs)
	return res
}
