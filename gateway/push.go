package gateway

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/longlink/longlink/api"
	"github.com/longlink/longlink/codec"
	"github.com/longlink/longlink/conn"
	"github.com/longlink/longlink/dispatch/downstream"
)

// encodePush encodes msg once as a PUSH with seq 0; every delivery copies
// it and stamps the device's seq.
func encodePush(msg api.Message, group string) *downstream.Push {
	p := codec.Push{Biz: msg.Biz, Ack: msg.Ack, ID: msg.ID, Group: group, Body: msg.Data}
	return &downstream.Push{Frame: codec.AppendPush(make([]byte, 0, codec.PushSize(&p)), &p)}
}

// checkSize refuses a push whose frame would exceed -max-frame: a client
// is entitled to refuse such a frame, so it is never sent.
func (g *Gateway) checkSize(p *downstream.Push) error {
	if len(p.Frame) > g.cfg.MaxFrame {
		return fmt.Errorf("%w: the push frame is %d bytes, over the -max-frame limit of %d", api.ErrInvalid, len(p.Frame), g.cfg.MaxFrame)
	}
	return nil
}

// Push implements api.Gateway: unicast and batch unicast. Devices
// connected here are served at once; the others go to the peers (with
// -redis they are looked up in one round trip and sent to their nodes,
// one message per node), and those no node holds are kept for resume here
// and reported offline.
func (g *Gateway) Push(ctx context.Context, devices []string, msg api.Message) (api.PushResult, error) {
	p := encodePush(msg, "")
	if err := g.checkSize(p); err != nil {
		return api.PushResult{}, err
	}
	g.pushRequests.Add(1)
	g.makeDurable(p)
	res := api.PushResult{}
	now := time.Now()
	order := make(map[string]int, len(devices)) // each device's place in the request
	var away, closing []string
	for _, d := range devices {
		if _, dup := order[d]; dup {
			continue
		}
		order[d] = len(order)
		if c := g.hub.Lookup(d); c != nil {
			g.deliver(c, p)
			if c.State() < conn.StateClosing {
				res.Delivered++
			} else {
				// Closing (a slow consumer waiting for its KICK to be
				// read): the push is handed back for resume.
				closing = append(closing, d)
			}
			continue
		}
		away = append(away, d)
	}
	var nowhere []string
	if len(away) > 0 {
		nowhere = g.peers.PushElsewhere(ctx, away, p.Frame, &res)
	}
	// Not connected anywhere: kept for resume if the device left
	// recently, and reported offline either way.
	for _, d := range nowhere {
		g.rec.Offline(d, p.Frame, now)
	}
	res.Offline = append(inRequestOrder(closing, nowhere, order), res.Offline...)
	g.offline.Add(uint64(len(res.Offline)))
	g.awaitJournal(ctx, p)
	return res, nil
}

// journalTimeout bounds how long a durable push's API call waits for its
// journal writes: past it the call answers all the same (the push is
// delivered, and kept on its node).
const journalTimeout = 2 * time.Second

// makeDurable marks p durable when it asks for an ack and the recovery
// store journals (-redis): each delivery here is then written to Redis
// before the call answers, so the push outlives the node.
func (g *Gateway) makeDurable(p *downstream.Push) {
	if g.rec.Durable() && ackRequired(p.Frame) {
		p.Durable = new(sync.WaitGroup)
	}
}

// ackRequired reports whether an encoded PUSH asks for PUSH_ACK.
func ackRequired(frame []byte) bool {
	return len(frame) > 4 && frame[4]&codec.FlagAckRequired != 0
}

// deliver hands p to c, counting the delivery of a durable push.
func (g *Gateway) deliver(c *conn.Conn, p *downstream.Push) {
	if p.Durable != nil {
		p.Durable.Add(1)
	}
	g.down.Push(c, p)
}

// awaitJournal waits, at most journalTimeout or ctx, until every delivery
// of a durable p is journaled.
func (g *Gateway) awaitJournal(ctx context.Context, p *downstream.Push) {
	if p.Durable == nil {
		return
	}
	done := make(chan struct{})
	go func() { p.Durable.Wait(); close(done) }()
	t := time.NewTimer(journalTimeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		g.log.Warn("gateway: durable pushes not journaled in time; they are kept on their node only", "timeout", journalTimeout)
	case <-ctx.Done():
	}
}

// inRequestOrder merges a and b, each in request order, into one list in
// request order (order holds each device's place): docs/api.md promises
// offline devices in request order.
func inRequestOrder(a, b []string, order map[string]int) []string {
	out := make([]string, 0, len(a)+len(b))
	for len(a) > 0 && len(b) > 0 {
		if order[a[0]] < order[b[0]] {
			out, a = append(out, a[0]), a[1:]
		} else {
			out, b = append(out, b[0]), b[1:]
		}
	}
	return append(append(out, a...), b...)
}

// deliverMany hands p to every connection of ts.
func (g *Gateway) deliverMany(ts []downstream.Target, p *downstream.Push) int {
	if len(ts) > 0 {
		g.down.PushMany(ts, p)
	}
	return len(ts)
}

// fanned adds remote, the other nodes' deliveries, to local, this node's.
// When they could not be reached the error says how far the push went,
// and wraps api.ErrPeersUnavailable (the API answers 503).
func (g *Gateway) fanned(local, remote int, err error) (int, error) {
	if err != nil {
		return 0, fmt.Errorf("%w: delivered to the %d connections of node %s only; the other nodes could not be reached: %w",
			api.ErrPeersUnavailable, local, g.cfg.Node, err)
	}
	return local + remote, nil
}

// PushGroup implements api.Gateway. With -redis the push also goes, in
// one message, to every other node, which delivers it to its own members.
func (g *Gateway) PushGroup(ctx context.Context, group string, msg api.Message) (int, error) {
	p := encodePush(msg, group)
	if err := g.checkSize(p); err != nil {
		return 0, err
	}
	g.pushRequests.Add(1)
	n := g.deliverMany(g.hub.Members(group), p)
	remote, err := g.peers.FanoutGroup(ctx, group, p.Frame)
	return g.fanned(n, remote, err)
}

// Broadcast implements api.Gateway. With -redis the push also goes, in
// one message, to every other node.
func (g *Gateway) Broadcast(ctx context.Context, msg api.Message) (int, error) {
	p := encodePush(msg, "")
	if err := g.checkSize(p); err != nil {
		return 0, err
	}
	g.pushRequests.Add(1)
	n := g.deliverMany(g.hub.All(nil), p)
	remote, err := g.peers.FanoutAll(ctx, p.Frame)
	return g.fanned(n, remote, err)
}
