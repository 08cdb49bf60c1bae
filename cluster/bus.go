package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Handler carries out what other nodes ask of this one. Each bus
// subscription and each link calls Deliver, DeliverGroup, DeliverAll and
// Members one at a time, in the order its messages arrived (several of
// them may call at once), so they must not block (handing frames to the
// downstream task group is fine); Kick runs on a goroutine of its own and
// may wait.
type Handler interface {
	// Deliver pushes frame to those of devices connected here, in the
	// order the messages arrived, and calls answer once with the others:
	// at once, or later from another goroutine when the delivery has more
	// to wait for (a durable push's journal write), so that waiting holds
	// up no other message. The others are missing (kept here for resume)
	// or moved (a login of theirs is under way: not kept, the sender routes
	// them anew); with cached (Msg.Cached) all of them are missing and not
	// kept, and the sender routes them anew. A durable push is journaled
	// with mark (Msg.Mark).
	Deliver(devices []string, frame []byte, cached bool, mark string, answer func(missing, moved []string))
	// DeliverGroup pushes frame to the members of group connected here
	// and returns how many.
	DeliverGroup(group string, frame []byte) int
	// DeliverAll pushes frame to every connection here and returns how
	// many.
	DeliverAll(frame []byte) int
	// Members applies a membership change to the devices connected here.
	Members(group string, devices []string, join bool)
	// Kick closes device's connection conn here (any connection of the
	// device when conn is 0) with a KICK of status, and reports whether
	// there was one. With settle it returns only once that connection is
	// gone and the device's recovery state saved, or ctx ends.
	Kick(ctx context.Context, device string, conn uint64, status uint16, reason string, settle bool) bool
}

// Errors of Send and Fanout.
var (
	// ErrNoReceiver: nobody is subscribed to the node's channel (the node
	// is dead, or its subscription is down).
	ErrNoReceiver = errors.New("cluster: the node does not listen")
	// ErrNoReply: the message reached the node, which did not answer in
	// time.
	ErrNoReply = errors.New("cluster: no reply in time")
)

// BusConfig configures a Bus. Zero values take the defaults in the
// comments.
type BusConfig struct {
	Client   redis.UniversalClient // required
	Prefix   string                // starts every channel name; "" means DefaultPrefix
	Node     string                // this node's id; required
	Instance string                // this run of the node; required
	// ReplyTimeout is how long Send and Fanout wait for answers; zero
	// means DefaultReplyTimeout.
	ReplyTimeout time.Duration
	// Resubscribed, when set, is called (on its own goroutine) each time
	// the subscription is made again after it was lost: Redis restarted or
	// the connection broke, and messages of the meantime are gone.
	Resubscribed func()
	Logger       *slog.Logger // nil: slog.Default()
}

// DefaultReplyTimeout is how long a request waits for its answers.
const DefaultReplyTimeout = 500 * time.Millisecond

// Bus carries messages between nodes on Redis pub/sub: each node
// subscribes to its own channel and to one channel for all nodes. On a
// Redis Cluster it uses sharded pub/sub (SPUBLISH, SSUBSCRIBE): a channel
// lives on the shard of its hash tag, so a message crosses no other shard
// and the count of receivers SPUBLISH returns is the whole count (PUBLISH
// there counts only the subscribers of the shard it was sent to).
// Pub/sub delivers at most once: a message published while a node's
// subscription is down is lost to that node, never delivered twice.
// Messages from one node to another arrive in the order they were
// published, and the handler sees them in that order.
type Bus struct {
	rdb      redis.UniversalClient
	prefix   string
	node     string
	instance string
	timeout  time.Duration
	log      *slog.Logger
	handler  Handler
	resub    func()

	sharded bool         // a Redis Cluster: sharded pub/sub
	subsMu  sync.Mutex   // guards subs against a rebuild
	subs    []*sub       // one subscription, or one per channel when sharded
	confirm atomic.Int32 // subscription confirmations seen
	nextID  atomic.Uint64
	mu      sync.Mutex
	pending map[uint64]*call // guarded by mu

	replies    chan outbound // answers waiting to be published
	wg         sync.WaitGroup
	closed     chan struct{}
	subscribed chan struct{} // closed once the first subscription is confirmed

	stats BusStats
}

// BusStats counts a bus's traffic.
type BusStats struct {
	Published, Received, Replies, Dropped, Timeouts atomic.Uint64
}

type outbound struct {
	channel string
	payload []byte
}

// call is a request waiting for answers.
type call struct {
	mu      sync.Mutex
	replies []Reply
	notify  chan struct{} // signalled (capacity 1) on each answer
}

// NewBus returns a bus; Start subscribes it.
func NewBus(cfg BusConfig, h Handler) *Bus {
	b := &Bus{
		rdb:        cfg.Client,
		prefix:     cfg.Prefix,
		node:       cfg.Node,
		instance:   cfg.Instance,
		timeout:    cfg.ReplyTimeout,
		log:        cfg.Logger,
		handler:    h,
		resub:      cfg.Resubscribed,
		pending:    make(map[uint64]*call),
		replies:    make(chan outbound, 4096),
		closed:     make(chan struct{}),
		subscribed: make(chan struct{}),
	}
	if b.prefix == "" {
		b.prefix = DefaultPrefix
	}
	if b.timeout <= 0 {
		b.timeout = DefaultReplyTimeout
	}
	if b.log == nil {
		b.log = slog.Default()
	}
	_, b.sharded = b.rdb.(*redis.ClusterClient)
	return b
}

// The channels carry hash tags, which place a sharded channel.
func (b *Bus) nodeChannel(node string) string { return b.prefix + "c:n:{" + node + "}" }
func (b *Bus) allChannel() string             { return b.prefix + "c:{all}" }

// publish queues or sends one message on channel through p.
func (b *Bus) publish(ctx context.Context, p redis.Cmdable, channel string, payload any) *redis.IntCmd {
	if b.sharded {
		return p.SPublish(ctx, channel, payload)
	}
	return p.Publish(ctx, channel, payload)
}

// Stats returns the bus's counters.
func (b *Bus) Stats() *BusStats { return &b.stats }

// Start subscribes to this node's channel and the all-nodes channel and
// starts handling messages. When Redis is down it returns the error but
// keeps trying in the background: the subscription is made as soon as
// Redis answers.
func (b *Bus) Start(ctx context.Context) error {
	var err error
	if b.sharded {
		// The two channels lie in different slots, which one SSUBSCRIBE
		// cannot name: one subscription each, on its shard.
		b.subs = []*sub{{channels: []string{b.nodeChannel(b.node)}, heard: make(chan struct{}, 1)}, {channels: []string{b.allChannel()}, heard: make(chan struct{}, 1)}}
	} else {
		b.subs = []*sub{{channels: []string{b.nodeChannel(b.node), b.allChannel()}, heard: make(chan struct{}, 1)}}
	}
	for i := range b.subs {
		err = errors.Join(err, b.subscribe(ctx, i))
	}
	b.wg.Add(2)
	go b.sendReplies()
	go b.probeLoop()
	if err != nil {
		return err
	}
	// Return once Redis has confirmed both subscriptions, so that a node
	// never announces itself before it can hear.
	select {
	case <-b.subscribed:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("cluster: subscribing: %w", ctx.Err())
	}
}

// Close unsubscribes and stops the bus's goroutines.
func (b *Bus) Close() error {
	select {
	case <-b.closed:
		return nil
	default:
	}
	close(b.closed)
	var err error
	b.subsMu.Lock()
	for _, s := range b.subs {
		if s.ps != nil {
			err = errors.Join(err, s.ps.Close())
		}
	}
	b.subsMu.Unlock()
	b.wg.Wait()
	return err
}

// sub is one subscription and its probe: every probeEvery the bus
// publishes a probe on the subscription's first channel and expects to
// hear it back on the subscription. go-redis makes a lost subscription
// again by itself, but a resubscription refused (a Redis Cluster still
// coming up answers CLUSTERDOWN, or the slot's owner moved) leaves a
// connection that pings fine and hears nothing; a probe not heard within
// probeTimeout makes the subscription anew.
type sub struct {
	channels []string
	ps       *redis.PubSub // guarded by Bus.subsMu
	probed   atomic.Int64  // unix nanos of the probe not yet heard, 0 when none
	heard    chan struct{} // a probe came back (capacity 1: remake waits on it)
}

const (
	probeEvery   = time.Second
	probeTimeout = 3 * time.Second
	probeByte    = 0xFF // the first byte of a probe: no message Kind
)

// subscribe makes subscription i (again) and starts its receiver.
func (b *Bus) subscribe(ctx context.Context, i int) error {
	s := b.subs[i]
	var ps *redis.PubSub
	var err error
	if b.sharded {
		ps = b.rdb.SSubscribe(ctx)
		err = ps.SSubscribe(ctx, s.channels...)
	} else {
		ps = b.rdb.Subscribe(ctx)
		err = ps.Subscribe(ctx, s.channels...)
	}
	ch := ps.ChannelWithSubscriptions(
		redis.WithChannelSize(4096),
		redis.WithChannelHealthCheckInterval(time.Second),
		redis.WithChannelSendTimeout(10*time.Second),
	)
	b.subsMu.Lock()
	select {
	case <-b.closed: // Close ran meanwhile: this one is not wanted
		b.subsMu.Unlock()
		_ = ps.Close()
		return err
	default:
	}
	old := s.ps
	s.ps = ps
	s.probed.Store(0)
	b.wg.Add(1)
	go b.receive(ch, i, ps)
	b.subsMu.Unlock()
	if old != nil {
		_ = old.Close()
	}
	return err
}

// probeLoop probes every subscription and makes anew one whose probe was
// not heard in time.
func (b *Bus) probeLoop() {
	defer b.wg.Done()
	t := time.NewTicker(probeEvery)
	defer t.Stop()
	for {
		select {
		case <-b.closed:
			return
		case <-t.C:
		}
		now := time.Now().UnixNano()
		for i, s := range b.subs {
			if p := s.probed.Load(); p != 0 && now-p > int64(probeTimeout) {
				b.log.Warn("cluster: a subscription hears nothing; making it again", "channels", s.channels)
				ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
				_ = b.subscribe(ctx, i)
				cancel()
				continue
			}
			if s.probed.Load() != 0 {
				continue // the last probe may still come back
			}
			ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
			_ = b.probe(ctx, i, now)
			cancel()
		}
	}
}

// probe publishes a probe on subscription i's first channel, outstanding
// from now. It is outstanding before it is sent, as it may come back
// before the publish returns; a probe Redis did not take is none.
func (b *Bus) probe(ctx context.Context, i int, now int64) error {
	s := b.subs[i]
	s.probed.Store(now)
	err := b.publish(ctx, b.rdb, s.channels[0], append([]byte{probeByte, byte(i)}, b.instance...)).Err()
	if err != nil {
		s.probed.CompareAndSwap(now, 0)
	}
	return err
}

// remakeTries and remakeWait bound remake: each try reloads the slot map,
// subscribes, and waits that long for a probe to come back.
const (
	remakeTries = 10
	remakeWait  = 300 * time.Millisecond
)

// remake makes subscription i again if ps is still the one it has, until
// a probe comes back on it. Right after a slot moved, the client's slot
// map and even some masters may still name the old owner, where a
// subscription hears nothing: so each try reloads the map first.
func (b *Bus) remake(i int, ps *redis.PubSub) {
	s := b.subs[i]
	b.subsMu.Lock()
	current := s.ps == ps
	b.subsMu.Unlock()
	if !current {
		return
	}
	b.log.Info("cluster: Redis dropped a subscription (its slot moved); making it again", "channels", s.channels)
	for range remakeTries {
		if cc, ok := b.rdb.(*redis.ClusterClient); ok {
			cc.ReloadState(context.Background())
		}
		ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
		err := b.subscribe(ctx, i)
		select {
		case <-s.heard: // drained: only a probe sent from here counts
		default:
		}
		if err == nil {
			err = b.probe(ctx, i, time.Now().UnixNano())
		}
		cancel()
		t := time.NewTimer(remakeWait)
		select {
		case <-s.heard:
			t.Stop()
			return
		case <-b.closed:
			t.Stop()
			return
		case <-t.C:
		}
		if err != nil {
			b.log.Debug("cluster: making a dropped subscription again", "err", err)
		}
	}
	b.log.Warn("cluster: a dropped subscription hears nothing yet; the probe goes on", "channels", s.channels)
}

// probeHeard handles a probe that came on subscription i: ours clears
// it, another node's (on the all-nodes channel) is nothing to this one.
func (b *Bus) probeHeard(payload []byte, i int) {
	if len(payload) < 2 || int(payload[1]) != i || string(payload[2:]) != b.instance {
		return
	}
	b.subs[i].probed.Store(0)
	select {
	case b.subs[i].heard <- struct{}{}:
	default:
	}
}

// receive handles every message of subscription i (made as ps), in order.
func (b *Bus) receive(ch <-chan any, i int, ps *redis.PubSub) {
	defer b.wg.Done()
	for m := range ch {
		switch m := m.(type) {
		case *redis.Subscription:
			if m.Kind == "sunsubscribe" {
				// Redis Cluster moved the channel's slot to another
				// master and dropped the subscription: it is made again
				// at once, on the new owner, not when a probe goes
				// unheard seconds later.
				go b.remake(i, ps)
				continue
			}
			if m.Kind != "subscribe" && m.Kind != "ssubscribe" {
				continue
			}
			// Two confirmations come with the first subscriptions (one
			// per channel); more mean one was made again.
			n := b.confirm.Add(1)
			if n == 2 {
				close(b.subscribed)
			}
			if n > 2 && (m.Channel == b.allChannel() || b.sharded) && b.resub != nil {
				go b.resub()
			}
		case *redis.Message:
			if len(m.Payload) > 0 && m.Payload[0] == probeByte {
				b.probeHeard([]byte(m.Payload), i)
				continue
			}
			b.stats.Received.Add(1)
			b.handle([]byte(m.Payload))
		}
	}
}

// handle carries out one message.
func (b *Bus) handle(payload []byte) {
	e, err := decode(payload)
	if err != nil {
		b.log.Warn("cluster: dropping a malformed message", "bytes", len(payload))
		return
	}
	if e.kind == kindReply {
		if e.to == b.instance {
			b.answer(e.id, e.reply)
		}
		return
	}
	if e.instance == b.instance {
		// Our own message on the all-nodes channel: we did our part
		// before publishing it; it counts as our answer.
		if e.id != 0 {
			b.answer(e.id, Reply{Node: b.node})
		}
		return
	}
	carryOut(b.handler, e, 2*b.timeout, func(r Reply) { b.reply(e, r) })
}

// carryOut does what request e asks of h and answers it through reply,
// at once or (a push waiting for its journal, a kick) later from another
// goroutine. A kick may wait for its connection to go for kickTimeout.
func carryOut(h Handler, e envelope, kickTimeout time.Duration, reply func(Reply)) {
	var r Reply
	switch e.kind {
	case KindPush:
		h.Deliver(e.msg.Devices, e.msg.Frame, e.msg.Cached, e.msg.Mark, func(missing, moved []string) {
			reply(Reply{Missing: missing, Moved: moved})
		})
		return
	case KindGroup:
		r.Count = h.DeliverGroup(e.msg.Group, e.msg.Frame)
	case KindAll:
		r.Count = h.DeliverAll(e.msg.Frame)
	case KindMembers:
		h.Members(e.msg.Group, e.msg.Devices, e.msg.Join)
	case KindKick:
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), kickTimeout)
			defer cancel()
			var r Reply
			if h.Kick(ctx, e.msg.Device, e.msg.Conn, e.msg.Status, e.msg.Reason, e.msg.Settle) {
				r.Count = 1
			}
			reply(r)
		}()
		return
	}
	reply(r)
}

// reply queues the answer to request e, if it wants one.
func (b *Bus) reply(e envelope, r Reply) {
	if e.id == 0 {
		return
	}
	out := envelope{kind: kindReply, id: e.id, node: b.node, instance: b.instance, to: e.instance, reply: r}
	select {
	case b.replies <- outbound{channel: b.nodeChannel(e.node), payload: out.encode()}:
	default:
		b.stats.Dropped.Add(1)
	}
}

// sendReplies publishes queued answers, many per round trip.
func (b *Bus) sendReplies() {
	defer b.wg.Done()
	batch := make([]outbound, 0, 128)
	for {
		select {
		case <-b.closed:
			return
		case o := <-b.replies:
			batch = append(batch[:0], o)
		}
	fill:
		for len(batch) < cap(batch) {
			select {
			case o := <-b.replies:
				batch = append(batch, o)
			default:
				break fill
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
		_, err := b.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, o := range batch {
				b.publish(ctx, p, o.channel, o.payload)
			}
			return nil
		})
		cancel()
		if err != nil {
			b.stats.Dropped.Add(uint64(len(batch)))
			b.log.Debug("cluster: publishing replies failed", "replies", len(batch), "err", err)
		} else {
			b.stats.Replies.Add(uint64(len(batch)))
		}
	}
}

// answer hands a reply to the request waiting for it.
func (b *Bus) answer(id uint64, r Reply) {
	b.mu.Lock()
	c := b.pending[id]
	b.mu.Unlock()
	if c == nil {
		return // too late: the request gave up
	}
	c.mu.Lock()
	c.replies = append(c.replies, r)
	c.mu.Unlock()
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

// Send publishes m to node and waits for its answer. It returns
// ErrNoReceiver when node does not listen (the message was not
// delivered), and ErrNoReply when node received the message but did not
// answer within the reply timeout (or ctx's deadline, if sooner).
func (b *Bus) Send(ctx context.Context, node string, m Msg) (Reply, error) {
	replies, receivers, err := b.request(ctx, b.nodeChannel(node), m, 1)
	if err != nil {
		return Reply{}, err
	}
	if receivers == 0 {
		return Reply{}, ErrNoReceiver
	}
	if len(replies) == 0 {
		return Reply{}, ErrNoReply
	}
	return replies[0], nil
}

// Fanout publishes m once to every node, this one included, and waits for
// the answers of all that received it, at most the reply timeout. This
// node's answer is empty: it does its own part before or after calling
// Fanout. It returns the answers and how many nodes received m; fewer
// answers than receivers means some did not answer in time.
func (b *Bus) Fanout(ctx context.Context, m Msg) (replies []Reply, receivers int, err error) {
	return b.request(ctx, b.allChannel(), m, -1)
}

// request publishes m on channel and collects answers until want of them
// (-1: as many as receivers) have come or the timeout passes.
func (b *Bus) request(ctx context.Context, channel string, m Msg, want int) ([]Reply, int, error) {
	id := b.nextID.Add(1)
	c := &call{notify: make(chan struct{}, 1)}
	b.mu.Lock()
	b.pending[id] = c
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.pending, id)
		b.mu.Unlock()
	}()
	e := envelope{kind: m.Kind, id: id, node: b.node, instance: b.instance, msg: m}
	n, err := b.publish(ctx, b.rdb, channel, e.encode()).Result()
	if err != nil {
		return nil, 0, fmt.Errorf("cluster: publish %s: %w", m.Kind, err)
	}
	b.stats.Published.Add(1)
	receivers := int(n)
	if want < 0 || want > receivers {
		// No more answers can come than nodes received it: a message
		// no node heard is answered at once, not after the timeout.
		want = receivers
	}
	timer := time.NewTimer(b.timeout)
	defer timer.Stop()
	for {
		c.mu.Lock()
		got := len(c.replies)
		c.mu.Unlock()
		if got >= want {
			break
		}
		select {
		case <-c.notify:
			continue
		case <-timer.C:
		case <-ctx.Done():
		}
		b.stats.Timeouts.Add(1)
		break
	}
	c.mu.Lock()
	replies := c.replies
	c.replies = nil
	c.mu.Unlock()
	return replies, receivers, nil
}

// Publish sends m to every other node and waits for no answer.
func (b *Bus) Publish(ctx context.Context, m Msg) error {
	e := envelope{kind: m.Kind, node: b.node, instance: b.instance, msg: m}
	if err := b.publish(ctx, b.rdb, b.allChannel(), e.encode()).Err(); err != nil {
		return fmt.Errorf("cluster: publish %s: %w", m.Kind, err)
	}
	b.stats.Published.Add(1)
	return nil
}
