package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/longlink/longlink/api"
	"github.com/longlink/longlink/metrics"
)

// apiClient calls the gateway's HTTP API (docs/api.md). Every
// method is safe for concurrent use.
type apiClient struct {
	base string // e.g. http://127.0.0.1:7080, no trailing slash
	auth string // "Bearer <key>"
	hc   *http.Client
}

// apiTimeout bounds every API call.
const apiTimeout = 30 * time.Second

func newAPIClient(base, key string, concurrency int) *apiClient {
	tr := &http.Transport{
		Proxy:               nil, // the gateway is local or known; never a proxy
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        concurrency * 2,
		MaxIdleConnsPerHost: concurrency * 2,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return &apiClient{base: base, auth: "Bearer " + key, hc: &http.Client{Transport: tr, Timeout: apiTimeout}}
}

// apiError is a non-2xx answer.
type apiError struct {
	Method, Path string
	Status       int
	Body         string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("%s %s: HTTP %d: %s", e.Method, e.Path, e.Status, e.Body)
}

// do sends body (JSON, may be nil) and decodes a 2xx answer into out
// (may be nil).
func (a *apiClient) do(ctx context.Context, method, path string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", a.auth)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		if len(data) > 200 {
			data = data[:200]
		}
		return &apiError{Method: method, Path: path, Status: resp.StatusCode, Body: string(bytes.TrimSpace(data))}
	}
	if out == nil || len(data) == 0 {
		return nil
	}
	return json.Unmarshal(data, out)
}

// Stats is GET /v1/stats.
func (a *apiClient) Stats(ctx context.Context) (*metrics.Snapshot, error) {
	var s metrics.Snapshot
	if err := a.do(ctx, http.MethodGet, "/v1/stats", nil, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

type tokenRequest struct {
	Device     string   `json:"device"`
	App        string   `json:"app,omitempty"`
	TTLSeconds int64    `json:"ttl_seconds"`
	Groups     []string `json:"groups,omitempty"`
}

type tokenResponse struct {
	Token string `json:"token"`
}

// Token is POST /v1/tokens: the control layer mints the login token.
func (a *apiClient) Token(ctx context.Context, device, app string, ttl time.Duration, groups []string) (string, error) {
	body, _ := json.Marshal(tokenRequest{Device: device, App: app, TTLSeconds: int64(ttl / time.Second), Groups: groups})
	var tr tokenResponse
	if err := a.do(ctx, http.MethodPost, "/v1/tokens", body, &tr); err != nil {
		return "", err
	}
	if tr.Token == "" {
		return "", fmt.Errorf("POST /v1/tokens: empty token")
	}
	return tr.Token, nil
}

// pushBody is the body of POST /v1/push and of a group push (no devices).
type pushBody struct {
	Devices    []string `json:"devices,omitempty"`
	Biz        int      `json:"biz"`
	DataBase64 []byte   `json:"data_base64"` // encoding/json writes []byte as base64
	ID         string   `json:"id,omitempty"`
	Ack        bool     `json:"ack,omitempty"`
}

// Push is POST /v1/push (unicast or batch unicast).
func (a *apiClient) Push(ctx context.Context, b *pushBody) (api.PushResult, error) {
	body, err := json.Marshal(b)
	if err != nil {
		return api.PushResult{}, err
	}
	var res api.PushResult
	err = a.do(ctx, http.MethodPost, "/v1/push", body, &res)
	return res, err
}

type deliveredResponse struct {
	Delivered int `json:"delivered"`
}

// GroupPush is POST /v1/groups/{group}/push.
func (a *apiClient) GroupPush(ctx context.Context, group string, b *pushBody) (int, error) {
	body, err := json.Marshal(b)
	if err != nil {
		return 0, err
	}
	var res deliveredResponse
	err = a.do(ctx, http.MethodPost, "/v1/groups/"+url.PathEscape(group)+"/push", body, &res)
	return res.Delivered, err
}

type devicesBody struct {
	Devices []string `json:"devices"`
}

// Join is PUT /v1/groups/{group}/members.
func (a *apiClient) Join(ctx context.Context, group string, devices []string) error {
	body, _ := json.Marshal(devicesBody{Devices: devices})
	return a.do(ctx, http.MethodPut, "/v1/groups/"+url.PathEscape(group)+"/members", body, nil)
}

type groupResponse struct {
	Group   string `json:"group"`
	Members int    `json:"members"`
}

// GroupSize is GET /v1/groups/{group}.
func (a *apiClient) GroupSize(ctx context.Context, group string) (int, error) {
	var res groupResponse
	err := a.do(ctx, http.MethodGet, "/v1/groups/"+url.PathEscape(group), nil, &res)
	return res.Members, err
}

// Close releases idle API connections.
func (a *apiClient) Close() { a.hc.CloseIdleConnections() }
