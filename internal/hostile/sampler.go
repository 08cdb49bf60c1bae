package hostile

import (
	"sync"
	"time"
)

// Sampler samples the gateway's resident memory at a steady interval,
// from an idle level read when it starts, and keeps the highest sample.
type Sampler struct {
	read  func() (int64, error)
	every time.Duration
	limit int64

	mu  sync.Mutex
	mem Memory

	over     chan struct{} // closed once a sample is more than limit over idle
	overOnce sync.Once
	stop     chan struct{}
	done     chan struct{}
}

// Memory is what a Sampler saw.
type Memory struct {
	Idle, Max   int64         // bytes: the level at the start, the highest sample
	Samples     int           // samples taken after the idle one
	MaxInterval time.Duration // the longest time between two samples
	Err         error         // the read error that ended the sampling (the process exited)
}

// Growth is how far the highest sample was over the idle level.
func (m Memory) Growth() int64 { return m.Max - m.Idle }

// StartSampler reads the idle level with read (the gateway's RSS) and
// then samples it every interval until Stop. Over closes the first time a
// sample is more than limit above the idle level (never when limit is 0).
func StartSampler(read func() (int64, error), every time.Duration, limit int64) (*Sampler, error) {
	idle, err := read()
	if err != nil {
		return nil, err
	}
	s := &Sampler{read: read, every: every, limit: limit, over: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	s.mem.Idle, s.mem.Max = idle, idle
	go s.run()
	return s, nil
}

func (s *Sampler) run() {
	defer close(s.done)
	t := time.NewTicker(s.every)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		v, err := s.read()
		now := time.Now()
		s.mu.Lock()
		if err != nil {
			s.mem.Err = err
			s.mu.Unlock()
			return
		}
		s.mem.Samples++
		s.mem.Max = max(s.mem.Max, v)
		s.mem.MaxInterval = max(s.mem.MaxInterval, now.Sub(last))
		exceeded := s.limit > 0 && v-s.mem.Idle > s.limit
		s.mu.Unlock()
		last = now
		if exceeded {
			s.overOnce.Do(func() { close(s.over) })
		}
	}
}

// Over is closed once the memory is more than the limit over idle: a
// flood can stop there, its bound is broken.
func (s *Sampler) Over() <-chan struct{} { return s.over }

// Now is what the sampler has seen so far.
func (s *Sampler) Now() Memory {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mem
}

// Stop takes one last sample, ends the sampling and returns what it saw.
func (s *Sampler) Stop() Memory {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mem.Err == nil {
		if v, err := s.read(); err == nil {
			s.mem.Max = max(s.mem.Max, v)
		}
	}
	return s.mem
}
