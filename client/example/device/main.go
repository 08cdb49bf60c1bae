// Command device is a minimal Longlink device built on the client SDK: it
// gets a token and the access points from the gateway's control API
// (POST /v1/tokens, with the development API key by default), logs in,
// and prints every push it receives until interrupted.
//
//	go run ./client/example/device -device phone-1 -groups room-1
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/longlink/longlink/client"
)

func main() {
	api := flag.String("api", "http://127.0.0.1:7080", "gateway HTTP API")
	key := flag.String("api-key", "longlink-dev-api-key", "API key")
	device := flag.String("device", "phone-1", "device id")
	groups := flag.String("groups", "", "comma-separated groups to join at login")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var endpoints []client.Endpoint
	token := func(ctx context.Context) (string, error) {
		tok, eps, err := mint(ctx, *api, *key, *device, *groups)
		if err == nil && len(endpoints) == 0 {
			endpoints = eps
		}
		return tok, err
	}
	if _, err := token(ctx); err != nil {
		log.Fatal(err)
	}
	c, err := client.Dial(ctx, client.Config{
		Endpoints: endpoints,
		Token:     token,
		OnState:   func(s client.State, err error) { log.Printf("state %v %v", s, err) },
		OnGap:     func(last uint32) { log.Printf("missed pushes after seq %d", last) },
		Handlers: map[uint16]func(client.Push){
			1: func(p client.Push) { fmt.Printf("push seq=%d id=%q group=%q: %s\n", p.Seq, p.ID, p.Group, p.Body) },
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	<-ctx.Done()
}

// mint asks the gateway's control API for a token and the access points.
func mint(ctx context.Context, api, key, device, groups string) (string, []client.Endpoint, error) {
	body := map[string]any{"device": device, "ttl_seconds": 3600}
	if groups != "" {
		body["groups"] = strings.Split(groups, ",")
	}
	b, _ := json.Marshal(body)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, api+"/v1/tokens", bytes.NewReader(b))
	if err != nil {
		return "", nil, err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", nil, fmt.Errorf("token: %w", err)
	}
	defer resp.Body.Close()
	var out struct {
		Token     string            `json:"token"`
		Endpoints []client.Endpoint `json:"endpoints"`
		Error     string            `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return "", nil, fmt.Errorf("token: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", nil, fmt.Errorf("token: %d %s", resp.StatusCode, out.Error)
	}
	var tcp []client.Endpoint
	for _, ep := range out.Endpoints {
		if ep.Proto == "tcp" {
			tcp = append(tcp, ep)
		}
	}
	return out.Token, tcp, nil
}
