package client

import "container/list"

// dedup decides which pushes reach the handlers. A push is a duplicate if
// its seq is not above the last one accepted, or if its id is among the
// window most recently seen. Not safe for concurrent use: the client holds
// it under pushMu.
type dedup struct {
	last uint32 // seq of the last push received, sent as resume
	// restartOK is set by a login that reported a gap (resumed=0): the
	// gateway may have lost the device's state (a restart, or the
	// recovery TTL passed) and restarted its seq counter at 1. The first
	// push after such a login settles it: a seq not above last means the
	// counter restarted, so it is accepted and becomes the new base.
	restartOK bool
	ids       *lru
}

func newDedup(window int) *dedup { return &dedup{ids: newLRU(window)} }

// accept reports whether the push (seq, id) is new, and records it. A
// push whose seq is new but whose id was seen still advances last, so the
// next resume does not ask for it again.
func (d *dedup) accept(seq uint32, id string) bool {
	if d.restartOK {
		d.restartOK = false
		if seq <= d.last {
			d.last = seq - 1
		}
	}
	if seq <= d.last {
		return false
	}
	d.last = seq
	if id == "" {
		return true
	}
	return d.ids.add(id)
}

// gap records a login with resumed=0.
func (d *dedup) gap() { d.restartOK = true }

// lru is a bounded set of strings that forgets the least recently seen.
type lru struct {
	max   int
	order *list.List // front: most recent; values are strings
	index map[string]*list.Element
}

func newLRU(max int) *lru {
	return &lru{max: max, order: list.New(), index: make(map[string]*list.Element, max)}
}

// add records key as most recently seen and reports whether it was absent.
func (l *lru) add(key string) bool {
	if e, ok := l.index[key]; ok {
		l.order.MoveToFront(e)
		return false
	}
	l.index[key] = l.order.PushFront(key)
	if l.order.Len() > l.max {
		old := l.order.Back()
		l.order.Remove(old)
		delete(l.index, old.Value.(string))
	}
	return true
}

func (l *lru) len() int { return l.order.Len() }
