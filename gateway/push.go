package gateway

import (
	"context"
	"fmt"
	"time"

	"github.com/longlink/longlink/api"
	"github.com/longlink/longlink/cluster"
	"github.com/longlink/longlink/codec"
	"github.com/longlink/longlink/conn"
	"github.com/longlink/longlink/dispatch/downstream"
	"github.com/longlink/longlink/route"
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
// connected here are served at once; with -redis the others are looked up
// in one round trip and sent to their nodes, one message per node.
func (g *Gateway) Push(ctx context.Context, devices []string, msg api.Message) (api.PushResult, error) {
	p := encodePush(msg, "")
	if err := g.checkSize(p); err != nil {
		return api.PushResult{}, err
	}
	g.pushRequests.Add(1)
	res := api.PushResult{Offline: []string{}}
	now := time.Now()
	seen := make(map[string]struct{}, len(devices))
	var away []string
	for _, d := range devices {
		if _, dup := seen[d]; dup {
			continue
		}
		seen[d] = struct{}{}
		if c := g.hub.Lookup(d); c != nil {
			g.down.Push(c, p)
			if c.State() < conn.StateClosing {
				res.Delivered++
			} else {
				// Closing (a slow consumer waiting for its KICK to be
				// read): the push is handed back for resume.
				res.Offline = append(res.Offline, d)
			}
			continue
		}
		if g.cl != nil {
			away = append(away, d)
			continue
		}
		// Not connected here: kept for resume if the device left
		// recently, and reported offline either way.
		g.rec.Offline(d, p.Frame, now)
		res.Offline = append(res.Offline, d)
	}
	if len(away) > 0 {
		g.cl.push(ctx, away, p.Frame, &res)
	}
	g.offline.Add(uint64(len(res.Offline)))
	return res, nil
}

// deliverMany hands p to every connection of ts.
func (g *Gateway) deliverMany(ts []downstream.Target, p *downstream.Push) int {
	if len(ts) > 0 {
		g.down.PushMany(ts, p)
	}
	return len(ts)
}

// fanout adds the deliveries of the other nodes to local, the count of
// this node's. When they cannot be reached the error says how far the
// push went, and wraps route.ErrUnavailable (the API answers 503).
func (g *Gateway) fanout(ctx context.Context, local int, m cluster.Msg) (int, error) {
	if g.cl == nil {
		return local, nil
	}
	remote, err := g.cl.fanout(ctx, m)
	if err != nil {
		return 0, fmt.Errorf("%w: delivered to the %d connections of node %s only; the other nodes could not be reached: %w",
			route.ErrUnavailable, local, g.cfg.Node, err)
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
	return g.fanout(ctx, n, cluster.Msg{Kind: cluster.KindGroup, Group: group, Frame: p.Frame})
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
	return g.fanout(ctx, n, cluster.Msg{Kind: cluster.KindAll, Frame: p.Frame})
}
