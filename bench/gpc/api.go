package main

import (
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/longlink/longlink/codec"
)

// maxBody bounds an API request body.
const maxBody = 8 << 20

// routes is the HTTP API: the subset of the gateway's API that the load
// generator calls, with the same paths and JSON shapes.
func (s *server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/push", s.handlePush)
	mux.HandleFunc("POST /v1/groups/{group}/push", s.handleGroupPush)
	mux.HandleFunc("GET /v1/groups/{group}", s.handleGroup)
	mux.HandleFunc("PUT /v1/groups/{group}/members", s.handleJoin)
	mux.HandleFunc("POST /v1/tokens", s.handleToken)
	mux.HandleFunc("GET /v1/stats", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, s.snapshot()) })
	want := []byte("Bearer " + s.apiKey)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			writeError(w, http.StatusUnauthorized, errors.New("missing or wrong API key"))
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// message is the body of the push calls (devices only for POST /v1/push).
type message struct {
	Devices    []string `json:"devices"`
	Biz        int      `json:"biz"`
	Data       *string  `json:"data"`
	DataBase64 *string  `json:"data_base64"`
	ID         string   `json:"id"`
	Ack        bool     `json:"ack"`
}

// frame returns the PUSH header (seq set per connection), meta and body
// of m; group, when not empty, goes into the meta.
func (m *message) frame(group string) (h codec.Header, meta, body []byte, err error) {
	if m.Biz < 0 || m.Biz > 0xFFFF {
		return h, nil, nil, fmt.Errorf("biz must be from 0 to 65535, got %d", m.Biz)
	}
	switch {
	case m.Data != nil && m.DataBase64 != nil:
		return h, nil, nil, errors.New("send data or data_base64, not both")
	case m.Data != nil:
		body = []byte(*m.Data)
	case m.DataBase64 != nil:
		if body, err = base64.StdEncoding.DecodeString(*m.DataBase64); err != nil {
			return h, nil, nil, fmt.Errorf("data_base64: %w", err)
		}
	}
	if m.ID != "" {
		meta = codec.AppendMetaString(meta, "id", m.ID)
	}
	if group != "" {
		meta = codec.AppendMetaString(meta, "group", group)
	}
	if codec.HeaderSize+len(meta)+len(body) > maxFrame {
		return h, nil, nil, fmt.Errorf("the push would be a frame over %d bytes", maxFrame)
	}
	h = codec.Header{Op: codec.OpPush, Biz: uint16(m.Biz)}
	if m.Ack {
		h.Flags = codec.FlagAckRequired
	}
	return h, meta, body, nil
}

// handlePush is POST /v1/push: each device's connection is written to in
// turn, from this goroutine.
func (s *server) handlePush(w http.ResponseWriter, r *http.Request) {
	var m message
	if !decode(w, r, &m) {
		return
	}
	if len(m.Devices) == 0 {
		writeError(w, http.StatusBadRequest, errors.New("devices must list at least one device"))
		return
	}
	h, meta, body, err := m.frame("")
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	targets := make([]*conn, 0, len(m.Devices))
	offline := []string{}
	s.mu.RLock()
	for _, d := range m.Devices {
		if c := s.devices[d]; c != nil {
			targets = append(targets, c)
		} else {
			offline = append(offline, d)
		}
	}
	s.mu.RUnlock()
	delivered := s.pushTo(targets, h, meta, body)
	s.offline.Add(uint64(len(offline)))
	writeJSON(w, http.StatusOK, struct {
		Delivered int      `json:"delivered"`
		Offline   []string `json:"offline"`
	}{delivered, offline})
}

// handleGroupPush is POST /v1/groups/{group}/push: every member's
// connection is written to in turn, from this goroutine.
func (s *server) handleGroupPush(w http.ResponseWriter, r *http.Request) {
	group := r.PathValue("group")
	var m message
	if !decode(w, r, &m) {
		return
	}
	h, meta, body, err := m.frame(group)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	s.mu.RLock()
	targets := make([]*conn, 0, len(s.groups[group]))
	for c := range s.groups[group] {
		targets = append(targets, c)
	}
	s.mu.RUnlock()
	delivered := s.pushTo(targets, h, meta, body)
	writeJSON(w, http.StatusOK, struct {
		Delivered int `json:"delivered"`
		Members   int `json:"members"`
	}{delivered, len(targets)})
}

// pushTo writes the push to each connection and returns how many took it.
func (s *server) pushTo(targets []*conn, h codec.Header, meta, body []byte) int {
	s.pushCalls.Add(1)
	delivered := 0
	for _, c := range targets {
		if c.push(h, meta, body) {
			delivered++
		}
	}
	s.deliveries.Add(uint64(delivered))
	return delivered
}

type groupBody struct {
	Group   string `json:"group"`
	Members int    `json:"members"`
}

// handleGroup is GET /v1/groups/{group}.
func (s *server) handleGroup(w http.ResponseWriter, r *http.Request) {
	group := r.PathValue("group")
	s.mu.RLock()
	n := len(s.groups[group])
	s.mu.RUnlock()
	writeJSON(w, http.StatusOK, groupBody{group, n})
}

// handleJoin is PUT /v1/groups/{group}/members. Only connected devices can
// join here: membership lives on connections.
func (s *server) handleJoin(w http.ResponseWriter, r *http.Request) {
	group := r.PathValue("group")
	var b struct {
		Devices []string `json:"devices"`
	}
	if !decode(w, r, &b) {
		return
	}
	if group == "" || len(group) > maxNameLen {
		writeError(w, http.StatusBadRequest, errors.New("group must be 1..128 bytes"))
		return
	}
	s.mu.Lock()
	for _, d := range b.Devices {
		if c := s.devices[d]; c != nil {
			s.joinLocked(group, c)
		}
	}
	n := len(s.groups[group])
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, groupBody{group, n})
}

// handleToken is POST /v1/tokens: mint a login token, as the control layer
// does.
func (s *server) handleToken(w http.ResponseWriter, r *http.Request) {
	var b struct {
		Device     string   `json:"device"`
		App        string   `json:"app"`
		TTLSeconds int64    `json:"ttl_seconds"`
		Groups     []string `json:"groups"`
	}
	if !decode(w, r, &b) {
		return
	}
	if b.Device == "" || len(b.Device) > maxNameLen || b.TTLSeconds <= 0 || len(b.Groups) > maxGroups {
		writeError(w, http.StatusBadRequest, errors.New("want device of 1..128 bytes, ttl_seconds > 0, at most 64 groups"))
		return
	}
	exp := time.Now().Add(time.Duration(b.TTLSeconds) * time.Second)
	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, tokenClaims{
		App:    b.App,
		Groups: b.Groups,
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   b.Device,
			IssuedAt:  jwt.NewNumericDate(time.Now()),
			ExpiresAt: jwt.NewNumericDate(exp),
		},
	}).SignedString(s.secret)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Token     string `json:"token"`
		ExpiresAt int64  `json:"expires_at"`
	}{token, exp.Unix()})
}

// decode reads r's JSON body into v, answering 400 when it cannot.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody)).Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("malformed JSON: %w", err))
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, struct {
		Error string `json:"error"`
	}{err.Error()})
}
