package client

import (
	"testing"
	"time"
)

func TestAckBatcherCount(t *testing.T) {
	a := newAckBatcher(4, time.Hour)
	t0 := time.Unix(1000, 0)
	if !a.add(1, t0) {
		t.Fatal("first push of a batch must wake the writer (to arm the timer)")
	}
	if _, send, at := a.poll(t0); send || !at.Equal(t0.Add(time.Hour)) {
		t.Fatalf("poll after 1: send=%v at=%v, want a timer at +1h", send, at)
	}
	if a.add(2, t0) || a.add(3, t0) {
		t.Fatal("pushes inside a batch must not wake the writer")
	}
	if !a.add(4, t0) {
		t.Fatal("a full batch must wake the writer")
	}
	seq, send, _ := a.poll(t0)
	if !send || seq != 4 {
		t.Fatalf("poll on a full batch = %d,%v, want 4,true", seq, send)
	}
	if _, send, at := a.poll(t0); send || !at.IsZero() {
		t.Fatal("nothing pending after an ack")
	}
}

func TestAckBatcherDelay(t *testing.T) {
	a := newAckBatcher(32, 20*time.Millisecond)
	t0 := time.Unix(1000, 0)
	a.add(7, t0)
	a.add(9, t0.Add(5*time.Millisecond))
	a.add(8, t0.Add(6*time.Millisecond)) // out of order: the ack stays at the highest
	if _, send, at := a.poll(t0.Add(19 * time.Millisecond)); send || !at.Equal(t0.Add(20*time.Millisecond)) {
		t.Fatalf("before the delay: send=%v at=%v", send, at)
	}
	seq, send, _ := a.poll(t0.Add(20 * time.Millisecond))
	if !send || seq != 9 {
		t.Fatalf("after the delay: %d,%v, want 9,true", seq, send)
	}
	// The next batch's delay counts from its own first push.
	t1 := t0.Add(time.Second)
	if !a.add(10, t1) {
		t.Fatal("new batch must wake the writer")
	}
	if _, send, at := a.poll(t1.Add(time.Millisecond)); send || !at.Equal(t1.Add(20*time.Millisecond)) {
		t.Fatalf("second batch: send=%v at=%v", send, at)
	}
}

// TestAckBatching counts PUSH_ACK frames for a burst of pushes: far fewer
// than one per push, the last one cumulative.
func TestAckBatching(t *testing.T) {
	a := newAckBatcher(32, 20*time.Millisecond)
	now := time.Unix(1000, 0)
	var acks []uint32
	for seq := uint32(1); seq <= 100; seq++ {
		if a.add(seq, now) {
			if s, send, _ := a.poll(now); send {
				acks = append(acks, s)
			}
		}
	}
	if s, send, _ := a.poll(now.Add(time.Second)); send {
		acks = append(acks, s)
	}
	if len(acks) != 4 || acks[len(acks)-1] != 100 {
		t.Fatalf("acks = %v, want 4 cumulative acks ending at 100", acks)
	}
}
