package gateway

import (
	"context"
	"fmt"
	"time"

	"github.com/longlink/longlink/api"
	"github.com/longlink/longlink/codec"
	"github.com/longlink/longlink/dispatch/downstream"
)

// encodePush encodes msg once as a PUSH with seq 0; every delivery copies
// it and stamps the device's seq.
func encodePush(msg api.Message, group string) *downstream.Push {
	size := codec.HeaderSize + len(msg.Data) + 2*(1+2+5) + len(msg.ID) + len(group)
	b, start := codec.BeginFrame(make([]byte, 0, size))
	if msg.ID != "" {
		b = codec.AppendMetaString(b, "id", msg.ID)
	}
	if group != "" {
		b = codec.AppendMetaString(b, "group", group)
	}
	metaLen := len(b) - start - codec.HeaderSize
	b = append(b, msg.Data...)
	h := codec.Header{Op: codec.OpPush, Biz: msg.Biz}
	if msg.Ack {
		h.Flags = codec.FlagAckRequired
	}
	codec.EndFrame(b, start, h, metaLen)
	return &downstream.Push{Frame: b}
}

// checkSize refuses a push whose frame would exceed -max-frame: a client
// is entitled to refuse such a frame, so it is never sent.
func (g *Gateway) checkSize(p *downstream.Push) error {
	if len(p.Frame) > g.cfg.MaxFrame {
		return fmt.Errorf("%w: the push frame is %d bytes, over the -max-frame limit of %d", api.ErrInvalid, len(p.Frame), g.cfg.MaxFrame)
	}
	return nil
}

// Push implements api.Gateway: unicast and batch unicast.
func (g *Gateway) Push(_ context.Context, devices []string, msg api.Message) (api.PushResult, error) {
	p := encodePush(msg, "")
	if err := g.checkSize(p); err != nil {
		return api.PushResult{}, err
	}
	g.pushRequests.Add(1)
	res := api.PushResult{Offline: []string{}}
	now := time.Now()
	seen := make(map[string]struct{}, len(devices))
	for _, d := range devices {
		if _, dup := seen[d]; dup {
			continue
		}
		seen[d] = struct{}{}
		if c := g.hub.Lookup(d); c != nil {
			g.down.Push(c, p)
			res.Delivered++
			continue
		}
		// Not connected here: kept for resume if the device left
		// recently, and reported offline either way.
		g.rec.Offline(d, p.Frame, now)
		res.Offline = append(res.Offline, d)
	}
	g.offline.Add(uint64(len(res.Offline)))
	return res, nil
}

// PushGroup implements api.Gateway.
func (g *Gateway) PushGroup(_ context.Context, group string, msg api.Message) (int, error) {
	p := encodePush(msg, group)
	if err := g.checkSize(p); err != nil {
		return 0, err
	}
	g.pushRequests.Add(1)
	cs := g.hub.Members(group, nil)
	if len(cs) == 0 {
		return 0, nil
	}
	g.down.PushMany(cs, p)
	return len(cs), nil
}

// Broadcast implements api.Gateway.
func (g *Gateway) Broadcast(_ context.Context, msg api.Message) (int, error) {
	p := encodePush(msg, "")
	if err := g.checkSize(p); err != nil {
		return 0, err
	}
	g.pushRequests.Add(1)
	cs := g.hub.All(nil)
	if len(cs) == 0 {
		return 0, nil
	}
	g.down.PushMany(cs, p)
	return len(cs), nil
}
