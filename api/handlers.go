package api

import (
	"context"
	"fmt"
	"github.com/longlink/longlink/auth"
	"net/http"
	"slices"
	"time"
)

type deliveredBody struct {
	Delivered int `json:"delivered"`
}

// groupPushBody answers a group push: a group push reaches the members
// connected at the time, so the answer says how many of how many.
type groupPushBody struct {
	Delivered int `json:"delivered"`
	Members   int `json:"members"`
}

type groupBody struct {
	Group   string `json:"group"`
	Members int    `json:"members"`
}

type membersBody struct {
	Devices []string `json:"devices"`
}

type kickBody struct {
	Reason *string `json:"reason"`
}

type kickedBody struct {
	Kicked bool `json:"kicked"`
}

type tokenBody struct {
	Device     string   `json:"device"`
	App        string   `json:"app"`
	TTLSeconds *int64   `json:"ttl_seconds"`
	Groups     []string `json:"groups"`
}

type tokenAnswer struct {
	Token     string     `json:"token"`
	ExpiresAt int64      `json:"expires_at"` // Unix seconds
	Endpoints []Endpoint `json:"endpoints"`
}

type endpointsBody struct {
	Endpoints []Endpoint `json:"endpoints"`
}

// push is POST /v1/push.
func (s *server) push(w http.ResponseWriter, r *http.Request) (any, error) {
	var b pushBody
	if err := s.decode(w, r, &b, false); err != nil {
		return nil, err
	}
	if err := s.checkDevices(b.Devices); err != nil {
		return nil, err
	}
	msg, err := b.message()
	if err != nil {
		return nil, err
	}
	res, err := s.gw.Push(r.Context(), b.Devices, msg)
	if err != nil {
		return nil, fmt.Errorf("push: %w", err)
	}
	if res.Offline == nil {
		res.Offline = []string{}
	}
	return res, nil
}

// pushGroup is POST /v1/groups/{group}/push.
func (s *server) pushGroup(w http.ResponseWriter, r *http.Request) (any, error) {
	group, err := pathName(r, "group")
	if err != nil {
		return nil, err
	}
	msg, err := s.decodeMessage(w, r)
	if err != nil {
		return nil, err
	}
	n, err := s.gw.PushGroup(r.Context(), group, msg)
	if err != nil {
		return nil, fmt.Errorf("push to group %q: %w", group, err)
	}
	members, err := s.gw.GroupSize(r.Context(), group)
	if err != nil {
		return nil, fmt.Errorf("push to group %q delivered %d, then counting its members: %w", group, n, err)
	}
	return groupPushBody{Delivered: n, Members: members}, nil
}

// decodeMessage reads the body of a group push or a broadcast.
func (s *server) decodeMessage(w http.ResponseWriter, r *http.Request) (Message, error) {
	var b messageBody
	if err := s.decode(w, r, &b, false); err != nil {
		return Message{}, err
	}
	return b.message()
}

// broadcast is POST /v1/broadcast.
func (s *server) broadcast(w http.ResponseWriter, r *http.Request) (any, error) {
	msg, err := s.decodeMessage(w, r)
	if err != nil {
		return nil, err
	}
	n, err := s.gw.Broadcast(r.Context(), msg)
	if err != nil {
		return nil, fmt.Errorf("broadcast: %w", err)
	}
	return deliveredBody{Delivered: n}, nil
}

// join is PUT /v1/groups/{group}/members.
func (s *server) join(w http.ResponseWriter, r *http.Request) (any, error) {
	return s.changeMembers(w, r, "join", s.gw.Join)
}

// leave is DELETE /v1/groups/{group}/members.
func (s *server) leave(w http.ResponseWriter, r *http.Request) (any, error) {
	return s.changeMembers(w, r, "leave", s.gw.Leave)
}

// changeMembers applies change (Join or Leave) and answers with the
// group's size right after it, which concurrent changes may already have
// moved on from.
func (s *server) changeMembers(w http.ResponseWriter, r *http.Request, verb string,
	change func(ctx context.Context, group string, devices []string) error) (any, error) {
	group, err := pathName(r, "group")
	if err != nil {
		return nil, err
	}
	var b membersBody
	if err := s.decode(w, r, &b, false); err != nil {
		return nil, err
	}
	if err := s.checkDevices(b.Devices); err != nil {
		return nil, err
	}
	if err := change(r.Context(), group, b.Devices); err != nil {
		return nil, fmt.Errorf("%s group %q: %w", verb, group, err)
	}
	return s.groupAnswer(r.Context(), group)
}

// group is GET /v1/groups/{group}.
func (s *server) group(_ http.ResponseWriter, r *http.Request) (any, error) {
	group, err := pathName(r, "group")
	if err != nil {
		return nil, err
	}
	return s.groupAnswer(r.Context(), group)
}

// groupAnswer is {"group":...,"members":n} for group as it is now.
func (s *server) groupAnswer(ctx context.Context, group string) (any, error) {
	n, err := s.gw.GroupSize(ctx, group)
	if err != nil {
		return nil, fmt.Errorf("size of group %q: %w", group, err)
	}
	return groupBody{Group: group, Members: n}, nil
}

// device is GET /v1/devices/{device}.
func (s *server) device(_ http.ResponseWriter, r *http.Request) (any, error) {
	device, err := pathDevice(r)
	if err != nil {
		return nil, err
	}
	info, err := s.gw.Device(r.Context(), device)
	if err != nil {
		return nil, fmt.Errorf("looking up device %q: %w", device, err)
	}
	if !info.Online {
		info = DeviceInfo{} // an offline device is nowhere
	}
	return info, nil
}

// kick is DELETE /v1/devices/{device}. The reason comes from the JSON
// body's "reason" when the body has one, else from the query's "reason".
func (s *server) kick(w http.ResponseWriter, r *http.Request) (any, error) {
	device, err := pathDevice(r)
	if err != nil {
		return nil, err
	}
	reason := r.URL.Query().Get("reason")
	var b kickBody
	if err := s.decode(w, r, &b, true); err != nil {
		return nil, err
	}
	if b.Reason != nil {
		reason = *b.Reason
	}
	if p := textProblem(reason, maxReasonLen); p != "" {
		return nil, badRequest("reason %s", p)
	}
	kicked, err := s.gw.Kick(r.Context(), device, reason)
	if err != nil {
		return nil, fmt.Errorf("kicking device %q: %w", device, err)
	}
	return kickedBody{Kicked: kicked}, nil
}

// token is POST /v1/tokens.
func (s *server) token(w http.ResponseWriter, r *http.Request) (any, error) {
	var b tokenBody
	if err := s.decode(w, r, &b, false); err != nil {
		return nil, err
	}
	if err := auth.ValidDevice(b.Device); err != nil {
		return nil, deviceError("device", err)
	}
	if p := textProblem(b.App, maxNameLen); p != "" {
		return nil, badRequest("app %s", p)
	}
	maxSeconds := int64(s.maxTTL / time.Second)
	switch {
	case b.TTLSeconds == nil:
		return nil, badRequest("ttl_seconds is required")
	case *b.TTLSeconds <= 0 || *b.TTLSeconds > maxSeconds:
		return nil, badRequest("ttl_seconds must be from 1 to %d, got %d", maxSeconds, *b.TTLSeconds)
	}
	if len(b.Groups) > maxTokenGroups {
		return nil, badRequest("groups lists %d groups, over the limit of %d", len(b.Groups), maxTokenGroups)
	}
	for i, g := range b.Groups {
		if p := nameProblem(g); p != "" {
			return nil, badRequest("groups[%d] %s", i, p)
		}
	}

	ttl := time.Duration(*b.TTLSeconds) * time.Second
	// Taken before the token is minted, so it is never later than the
	// token's own expiry: a client that renews at expires_at is in time.
	expiresAt := time.Now().Add(ttl).Unix()
	tok, err := s.gw.Token(b.Device, b.App, ttl, b.Groups)
	if err != nil {
		return nil, fmt.Errorf("minting a token: %w", err)
	}
	if len(tok) > auth.MaxTokenLen {
		return nil, badRequest("the token would be %d bytes, over the %d a LOGIN accepts: name fewer or shorter groups", len(tok), auth.MaxTokenLen)
	}
	eps, err := s.gw.Endpoints(r.Context())
	if err != nil {
		return nil, fmt.Errorf("listing endpoints: %w", err)
	}
	return tokenAnswer{Token: tok, ExpiresAt: expiresAt, Endpoints: nonNil(eps)}, nil
}

// endpoints is GET /v1/endpoints.
func (s *server) endpoints(_ http.ResponseWriter, r *http.Request) (any, error) {
	eps, err := s.gw.Endpoints(r.Context())
	if err != nil {
		return nil, fmt.Errorf("listing endpoints: %w", err)
	}
	return endpointsBody{Endpoints: nonNil(eps)}, nil
}

type nodesBody struct {
	Nodes []Node `json:"nodes"`
}

// nodes is GET /v1/nodes.
func (s *server) nodes(_ http.ResponseWriter, r *http.Request) (any, error) {
	ns, err := s.gw.Nodes(r.Context())
	if err != nil {
		return nil, fmt.Errorf("listing nodes: %w", err)
	}
	for i := range ns {
		ns[i].Endpoints = nonNil(ns[i].Endpoints)
	}
	return nodesBody{Nodes: nonNil(ns)}, nil
}

// stats is GET /v1/stats. Empty maps and lists are sent as {} and [], not
// null, so that dashboards need not special-case an idle node. The
// snapshot is copied before that, as the gateway may share its slices.
func (s *server) stats(_ http.ResponseWriter, _ *http.Request) (any, error) {
	snap := s.gw.Stats()
	if snap.Kicks == nil {
		snap.Kicks = map[string]uint64{}
	}
	snap.Businesses = slices.Clone(nonNil(snap.Businesses))
	for i := range snap.Businesses {
		if snap.Businesses[i].Results == nil {
			snap.Businesses[i].Results = map[string]uint64{}
		}
	}
	snap.Queues = nonNil(snap.Queues)
	return snap, nil
}

// nonNil returns s, or an empty slice for nil, which JSON encodes as []
// instead of null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
