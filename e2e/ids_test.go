package e2e

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/longlink/longlink/codec"
)

// TestDeviceIDs checks that login and the HTTP API agree on device ids
// (auth.ValidDevice): an id the API could not name is refused at login,
// and an id full of URL-significant characters logs in and can then be
// pushed to, grouped, looked up and kicked through the API, named
// percent-encoded in paths.
func TestDeviceIDs(t *testing.T) {
	s := startServer(t)

	for _, bad := range []struct{ sub, segment, reason string }{
		{"a\u0085", "a%C2%85", "invalid sub (control character)"}, // NEL, a C1 control character
		{"..", "%2E%2E", "invalid sub (reserved name)"},           // a dot segment in any URL
	} {
		sub := bad.sub
		c := dial(t, s.TCP)
		ack := c.login(token(t, sub, time.Hour))
		if ack.Status != codec.StatusUnauthorized || metaString(ack, "reason") != bad.reason {
			t.Errorf("login as %q: %v %q, want UNAUTHORIZED %q", sub, ack.Status, metaString(ack, "reason"), bad.reason)
		}
		c.expectClosed(5 * time.Second)

		var e struct{ Error string }
		if code := s.api("GET", "/v1/devices/"+bad.segment, nil, &e); code != 400 || !strings.Contains(e.Error, fmt.Sprintf("device %q", sub)) {
			t.Errorf("GET of %q: %d %q, want 400 naming the id", sub, code, e.Error)
		}
		if code := s.api("POST", "/v1/push", map[string]any{"devices": []string{sub}, "biz": 1, "data": "x"}, &e); code != 400 || !strings.Contains(e.Error, fmt.Sprintf("devices[0] %q", sub)) {
			t.Errorf("push to %q: %d %q, want 400 naming the id", sub, code, e.Error)
		}
	}

	const id = "a/b ü%"
	path := "/v1/devices/" + url.PathEscape(id) // a%2Fb%20%C3%BC%25
	c, _ := loggedIn(t, s, id)

	var members struct{ Members int }
	if code := s.api("PUT", "/v1/groups/ids-room/members", map[string]any{"devices": []string{id}}, &members); code != 200 || members.Members != 1 {
		t.Fatalf("join: %d, members %d", code, members.Members)
	}
	var res struct{ Delivered int }
	if code := s.api("POST", "/v1/push", map[string]any{"devices": []string{id}, "biz": 1, "data": "direct"}, &res); code != 200 || res.Delivered != 1 {
		t.Fatalf("push: %d, delivered %d", code, res.Delivered)
	}
	if f := c.read(5 * time.Second); f.Op != codec.OpPush || string(f.Body) != "direct" {
		t.Fatalf("push: got %v %q", f.Op, f.Body)
	}
	if code := s.api("POST", "/v1/groups/ids-room/push", map[string]any{"biz": 1, "data": "group"}, &res); code != 200 || res.Delivered != 1 {
		t.Fatalf("group push: %d, delivered %d", code, res.Delivered)
	}
	if f := c.read(5 * time.Second); f.Op != codec.OpPush || string(f.Body) != "group" {
		t.Fatalf("group push: got %v %q", f.Op, f.Body)
	}

	var info struct {
		Online bool
		Node   string
	}
	if code := s.api("GET", path, nil, &info); code != 200 || !info.Online || info.Node != s.Node {
		t.Fatalf("GET %s: %d %+v, want online on %s", path, code, info, s.Node)
	}
	var kicked struct{ Kicked bool }
	if code := s.api("DELETE", path+"?reason=bye", nil, &kicked); code != 200 || !kicked.Kicked {
		t.Fatalf("DELETE %s: %d %+v", path, code, kicked)
	}
	if f := c.read(5 * time.Second); f.Op != codec.OpKick || f.Status != codec.StatusUnauthorized || metaString(f, "reason") != "bye" {
		t.Fatalf("kick: got %v %v %q", f.Op, f.Status, metaString(f, "reason"))
	}
	c.expectClosed(5 * time.Second)
	checkFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		info.Online = true
		if code := s.api("GET", path, nil, &info); code != 200 || info.Online {
			return fmt.Errorf("GET %s after the kick: %d %+v", path, code, info)
		}
		return nil
	})
}
