package client_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/longlink/longlink/client"
)

// fetchToken asks the gateway's control API for a login token and the
// access points, as an app's backend would (POST /v1/tokens).
func fetchToken(ctx context.Context, device string) (string, []client.Endpoint, error) {
	if gatewayAPI == "" {
		return "", nil, fmt.Errorf("no gateway to run the example against: %v", gatewayBuildErr)
	}
	var out struct {
		Token     string            `json:"token"`
		Endpoints []client.Endpoint `json:"endpoints"`
	}
	err := call(gatewayAPI, "POST", "/v1/tokens", map[string]any{"device": device, "ttl_seconds": 3600}, &out)
	return out.Token, out.Endpoints, err
}

// A complete app: connect with a token provider, handle pushes of
// business 1, make a request, close.
func Example() {
	ctx := context.Background()
	_, endpoints, err := fetchToken(ctx, "device-42")
	if err != nil {
		fmt.Println(err)
		return
	}
	pushes := make(chan client.Push, 16)
	c, err := client.Dial(ctx, client.Config{
		Endpoints: endpoints,
		// Called on every (re)connect, so an expired token is replaced.
		Token: func(ctx context.Context) (string, error) {
			tok, _, err := fetchToken(ctx, "device-42")
			return tok, err
		},
		Handlers: map[uint16]func(client.Push){
			1: func(p client.Push) { pushes <- p }, // business 1; must not block
		},
		OnGap: func(lastSeq uint32) { /* refetch from the app's backend what followed lastSeq */ },
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	resp, err := c.Request(ctx, 1, nil, []byte("hello")) // business 1 is "echo"
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("response: %s\n", resp.Body)

	// A business backend pushes to the device through the gateway's API.
	if _, err := push(gatewayAPI, "device-42", "msg-1", "welcome"); err != nil {
		fmt.Println(err)
		return
	}
	p := <-pushes
	fmt.Printf("push %s: %s\n", p.ID, p.Body)
	// Output:
	// response: hello
	// push msg-1: welcome
}

// Requests fail with typed errors: a *client.StatusError carries the
// gateway's or the business's status.
func ExampleClient_Request() {
	ctx := context.Background()
	tok, endpoints, err := fetchToken(ctx, "device-43")
	if err != nil {
		fmt.Println(err)
		return
	}
	c, err := client.Dial(ctx, client.Config{
		Endpoints: endpoints,
		Token:     func(context.Context) (string, error) { return tok, nil },
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	// Idempotent: if the connection drops, it is sent again after the
	// reconnect rather than failing with ErrDisconnected.
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := c.Request(rctx, 1, map[string]string{"trace": "t1"}, []byte("get-config"), client.Idempotent())
	fmt.Printf("%s %v\n", resp.Body, err)

	_, err = c.Request(rctx, 9, nil, []byte("?")) // no business 9
	var se *client.StatusError
	if errors.As(err, &se) {
		fmt.Println("status:", se.Status)
	}
	// Output:
	// get-config <nil>
	// status: UNKNOWN_BIZ
}

// OnState follows the connection; a business that kicks the device
// (DELETE /v1/devices/{device}) sends KICK(UNAUTHORIZED), which stops the
// client for good.
func ExampleConfig_onState() {
	ctx := context.Background()
	tok, endpoints, err := fetchToken(ctx, "device-44")
	if err != nil {
		fmt.Println(err)
		return
	}
	c, err := client.Dial(ctx, client.Config{
		Endpoints: endpoints,
		Token:     func(context.Context) (string, error) { return tok, nil },
		OnState: func(s client.State, err error) {
			if ke, ok := errors.AsType[*client.KickError](err); ok {
				fmt.Println(s, ke.Status)
				return
			}
			fmt.Println(s, err)
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	if err := call(gatewayAPI, "DELETE", "/v1/devices/device-44", nil, nil); err != nil {
		fmt.Println(err)
		return
	}
	<-c.Done() // closed after the last callback
	_, err = c.Request(ctx, 1, nil, nil)
	fmt.Println("request:", err)
	// Output:
	// connecting <nil>
	// connected <nil>
	// closed UNAUTHORIZED
	// request: client: kicked: UNAUTHORIZED: disconnected by the business
}
