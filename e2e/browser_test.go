package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/longlink/longlink/codec"
	"github.com/longlink/longlink/internal/gatewaytest"
)

// The browser tests drive the gateway with clients from another ecosystem:
// the demo page (web/static) in headless Chromium through Playwright, and
// Node's `ws` package. They need node and npm; they install what else they
// need when it is missing: the Debian package chromium (apt-get, as root)
// and the npm packages playwright-core and ws (into e2e/testdata/node_modules,
// npm install --no-save). Set LONGLINK_E2E_NO_BROWSER=1 to skip them.

const (
	browserChromium   = "/usr/bin/chromium"
	browserScreenshot = "testdata/artifacts/browser-demo.png"
	consoleScreenshot = "testdata/artifacts/browser-console.png"
)

// TestBrowserDemo opens the demo page served at /demo/ on the API port in
// headless Chromium, gets a token with the page's button, logs in with a
// token minted here, and checks that a push sent through the API shows on
// the page, that a request through the page's form gets the echo answer,
// and that heartbeats run. The page is saved to testdata/artifacts/browser-demo.png
// (not committed; docs/img/browser-demo.png is a reviewed copy).
func TestBrowserDemo(t *testing.T) {
	needNode(t)
	chromium := ensureChromium(t)
	ensureNodeModules(t)
	s := startServer(t, "-ws-listen", "127.0.0.1:0", "-hb", "1s")

	const device = "browser-1"
	pushBody := "hello, browser ✓ <b>not html</b>"
	request := "echo from the page"
	cfg := map[string]string{
		"demo":       s.API + "/demo/",
		"ws":         "ws://" + s.WS + "/",
		"token":      token(t, device, time.Hour),
		"apiKey":     testAPIKey,
		"device":     "browser-minted",
		"push":       pushBody,
		"request":    request,
		"screenshot": bwAbs(t, browserScreenshot),
		"chromium":   chromium,
	}
	p := runNode(t, "browser_demo.mjs", cfg)

	ev := p.next("loaded")
	if ev["title"] != "Longlink demo" || !strings.HasPrefix(bwStr(ev["wsUrl"]), "ws://127.0.0.1:7001") || ev["apiKey"] != "longlink-dev-api-key" {
		t.Errorf("page defaults: %v", ev)
	}
	if ev = p.next("minted"); ev["wsUrl"] != "ws://"+s.WS+"/" {
		t.Errorf("Get a token did not fill in the advertised ws endpoint: %v (want ws://%s/)", ev, s.WS)
	}
	ev = p.next("connected")
	if ev["node"] != s.Node || ev["conn"] == "" || ev["hb"] != "1s" {
		t.Errorf("connected: %v", ev)
	}
	var dev struct {
		Online bool
		Conn   string
	}
	if s.api("GET", "/v1/devices/"+device, nil, &dev); !dev.Online || dev.Conn != ev["conn"] {
		t.Errorf("device %s: %+v, page shows conn %v", device, dev, ev["conn"])
	}

	var res struct {
		Delivered int
		Offline   []string
	}
	if code := s.api("POST", "/v1/push", map[string]any{"devices": []string{device}, "biz": 7, "id": "msg-1", "data": pushBody, "ack": true}, &res); code != 200 || res.Delivered != 1 {
		t.Fatalf("push: %d %+v", code, res)
	}
	ev = p.next("push")
	if ev["seq"] != "1" || ev["biz"] != "7" || ev["id"] != "msg-1" || ev["group"] != "–" || ev["body"] != pushBody || ev["count"] != "1" {
		t.Errorf("push row: %v", ev)
	}
	ev = p.next("response")
	if ev["status"] != "OK (0)" || ev["body"] != request {
		t.Errorf("response: %v", ev)
	}
	checkFor(t, 5*time.Second, 50*time.Millisecond, func() error {
		if acks := s.stats()["push"].(map[string]any)["acks"].(float64); acks < 1 {
			return fmt.Errorf("no PUSH_ACK from the page (acks %v)", acks)
		}
		return nil
	})
	p.next("pong")
	p.next("screenshot")
	if ev = p.next("disconnected"); ev["connectEnabled"] != true {
		t.Errorf("after Disconnect: %v", ev)
	}
	p.wait()
	if fi, err := os.Stat(browserScreenshot); err != nil || fi.Size() < 10000 {
		t.Errorf("screenshot %s: %v", browserScreenshot, err)
	}
	t.Logf("screenshot: %s", bwAbs(t, browserScreenshot))
}

// TestBrowserConsole opens the operator console served at /admin/ in
// headless Chromium: without a key it shows only the form, a wrong key is
// refused, the right one shows this node, whose connection count rises as
// a device logs in; the page looks the device up, pushes to it (the
// device gets the push), kicks it (the device gets KICK) and finds it
// gone; its charts are drawn, and it requests nothing from another
// origin. The page is saved to testdata/artifacts/browser-console.png
// (not committed; docs/img/console.png is a reviewed copy).
func TestBrowserConsole(t *testing.T) {
	needNode(t)
	chromium := ensureChromium(t)
	ensureNodeModules(t)
	s := startServer(t, "-node", "console-node")
	s.Node = "console-node"
	const device = "console-dev"
	push := "from the console"
	p := runNode(t, "browser_console.mjs", map[string]string{
		"admin": s.API + "/admin/", "apiKey": testAPIKey, "node": s.Node, "device": device,
		"push": push, "screenshot": bwAbs(t, consoleScreenshot), "chromium": chromium,
	})
	if ev := p.next("form"); ev["consoleVisible"] != false || ev["title"] != "Longlink console" {
		t.Errorf("without a key: %v", ev)
	}
	if ev := p.next("refused"); ev["consoleVisible"] != false || bwStr(ev["error"]) == "" {
		t.Errorf("a wrong key: %v", ev)
	}
	if ev := p.next("nodes"); ev["stored"] != testAPIKey {
		t.Errorf("after the key: %v", ev)
	}
	d, _ := loggedIn(t, s, device)
	if ev := p.next("connections"); ev["connections"] != 1.0 {
		t.Errorf("connections after a login: %v", ev)
	}
	if ev := p.next("lookup"); !strings.HasPrefix(bwStr(ev["result"]), "online on node console-node") {
		t.Errorf("look-up: %v", ev)
	}
	if ev := p.next("pushed"); ev["result"] != "delivered 1" {
		t.Errorf("push from the page: %v", ev)
	}
	d.clWantPush(1, push)
	if ev := p.next("charts"); ev["lines"].(float64) < 5 || ev["businesses"] != 1.0 {
		t.Errorf("charts and businesses: %v", ev)
	}
	p.next("screenshot")
	if ev := p.next("kicked"); ev["result"] != "kicked" {
		t.Errorf("kick from the page: %v", ev)
	}
	d.kickedWith(codec.StatusUnauthorized, 5*time.Second)
	p.next("gone")
	if ev := p.next("requests"); len(ev["foreign"].([]any)) != 0 {
		t.Errorf("the console requested other origins: %v", ev["foreign"])
	}
	p.wait()
	t.Logf("screenshot: %s", bwAbs(t, consoleScreenshot))
}

// TestNodeWebSocketClient speaks the protocol from Node's `ws` package:
// raw frames (login, ping, request, a large and a fragmented message, a
// text message kicked as BAD_FRAME with close 1002), then the browser
// client longlink.js running on ws: requests, pushes with ack and dedup by
// id, heartbeats, close and resume, reconnection after a network drop, and
// no reconnection after a kick through the API.
func TestNodeWebSocketClient(t *testing.T) {
	needNode(t)
	ensureNodeModules(t)
	s := startServer(t, "-ws-listen", "127.0.0.1:0", "-hb", "1s")
	const device = "node-ws-1"
	p := runNode(t, "ws_client.mjs", map[string]string{
		"ws":       "ws://" + s.WS + "/",
		"rawToken": token(t, "node-ws-raw", time.Hour),
		"token":    token(t, device, time.Hour),
	})

	if ev := p.next("codec"); ev["ok"] != true {
		t.Errorf("longlink.js codec against docs/protocol.md examples: %v", ev["checks"])
	}
	if ev := p.next("raw-open"); ev["protocol"] != "longlink.v1" {
		t.Errorf("subprotocol: %v", ev)
	}
	if ev := p.next("raw-login"); ev["op"] != 2.0 || ev["status"] != "OK" || ev["node"] != s.Node || ev["hb"] != "1" {
		t.Errorf("raw login: %v", ev)
	}
	if ev := p.next("raw-pong"); ev["op"] != 4.0 || ev["seq"] != 7.0 {
		t.Errorf("raw ping: %v", ev)
	}
	if ev := p.next("raw-response"); ev["op"] != 6.0 || ev["seq"] != 8.0 || ev["status"] != "OK" || ev["body"] != "hello from node ws" || ev["trace"] != "node" {
		t.Errorf("raw request: %v", ev)
	}
	if ev := p.next("raw-large"); ev["status"] != "OK" || ev["bodyLen"] != 40000.0 {
		t.Errorf("large request: %v", ev)
	}
	if ev := p.next("raw-fragmented"); ev["status"] != "OK" || ev["body"] != "in three fragments" {
		t.Errorf("fragmented request: %v", ev)
	}
	if ev := p.next("raw-text"); ev["op"] != 9.0 || ev["status"] != "BAD_FRAME" {
		t.Errorf("text message: %v", ev)
	}
	if ev := p.next("raw-closed"); ev["code"] != 1002.0 {
		t.Errorf("close after a text message: %v", ev)
	}

	if ev := p.next("login"); ev["node"] != s.Node || ev["hb"] != 1.0 || ev["resumed"] != nil {
		t.Errorf("client login: %v", ev)
	}
	if ev := p.next("response"); ev["status"] != "OK" || ev["body"] != "via LonglinkClient" || ev["meta"] != "v" {
		t.Errorf("client request: %v", ev)
	}
	if ev := p.next("response-unknown"); ev["status"] != "UNKNOWN_BIZ" || ev["ok"] != false {
		t.Errorf("request to an unknown biz: %v", ev)
	}

	p.next("ready-push")
	push := func(id, data string, wantDelivered int) {
		t.Helper()
		var res struct {
			Delivered int
			Offline   []string
		}
		if code := s.api("POST", "/v1/push", map[string]any{"devices": []string{device}, "biz": 3, "id": id, "data": data, "ack": true}, &res); code != 200 || res.Delivered != wantDelivered {
			t.Fatalf("push %s: %d %+v, want %d delivered", id, code, res, wantDelivered)
		}
	}
	push("p1", "first", 1)
	push("p2", "second", 1)
	push("p2", "second again", 1) // same id: the client drops it
	if ev := p.next("push"); ev["seq"] != 1.0 || ev["id"] != "p1" || ev["body"] != "first" || ev["ack"] != true {
		t.Errorf("push 1: %v", ev)
	}
	if ev := p.next("push"); ev["seq"] != 2.0 || ev["id"] != "p2" {
		t.Errorf("push 2: %v", ev)
	}
	if ev := p.next("duplicate"); ev["seq"] != 3.0 || ev["id"] != "p2" {
		t.Errorf("duplicate: %v", ev)
	}
	p.next("pong")
	checkFor(t, 5*time.Second, 50*time.Millisecond, func() error {
		if acks := s.stats()["push"].(map[string]any)["acks"].(float64); acks < 1 {
			return fmt.Errorf("no PUSH_ACK from the client")
		}
		return nil
	})
	// The PINGs after the first PONG carry its round trip (no net in
	// Node: "other").
	var reported float64
	for _, h := range s.stats()["client_rtt"].([]any) {
		if h := h.(map[string]any); h["net"] == "other" {
			reported = h["count"].(float64)
		}
	}
	if reported < 1 {
		t.Errorf("no round-trip report from longlink.js: client_rtt %v", s.stats()["client_rtt"])
	}

	if ev := p.next("closed"); ev["lastPushSeq"] != 3.0 || ev["state"] != "disconnected" || ev["requestError"] != "not_connected" {
		t.Errorf("closed: %v", ev)
	}
	checkFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		var dev struct{ Online bool }
		if s.api("GET", "/v1/devices/"+device, nil, &dev); dev.Online {
			return fmt.Errorf("%s still online after close()", device)
		}
		return nil
	})
	push("p4", "fourth", 0)
	push("p5", "fifth", 0)
	p.send("reconnect")
	// The recovered pushes may come before or after the login event; the
	// script reports them together.
	if ev := p.next("resumed"); ev["resumed"] != true || ev["lastPushSeq"] != 5.0 || fmt.Sprint(ev["recovered"]) != "[4:p4 5:p5]" {
		t.Errorf("resumed: %v", ev)
	}
	if ev := p.next("reconnected"); ev["resumed"] != true || ev["retryIn"] == nil {
		t.Errorf("reconnect after a drop: %v", ev)
	}

	p.next("ready-kick")
	var kick struct{ Kicked bool }
	if s.api("DELETE", "/v1/devices/"+device, nil, &kick); !kick.Kicked {
		t.Fatalf("kick: %+v", kick)
	}
	if ev := p.next("kick"); ev["statusName"] != "UNAUTHORIZED" || ev["reason"] == "" {
		t.Errorf("kick: %v", ev)
	}
	if ev := p.next("kicked"); ev["status"] != 2.0 || ev["retryIn"] != nil || ev["reconnectsAfter"] != 0.0 || ev["state"] != "disconnected" {
		t.Errorf("after a kick: %v", ev)
	}
	p.next("done")
	p.wait()
}

// nodeProc is a Node script printing JSON lines ({"event": ...}).
type nodeProc struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	events chan map[string]any
	stderr *gatewaytest.LogBuffer
	seen   []string      // every line, for failure messages
	exited chan struct{} // closed when the process has exited; err is then set
	err    error
}

// runNode starts node testdata/<script> with arg as its JSON argument.
func runNode(t *testing.T, script string, arg any) *nodeProc {
	t.Helper()
	b, err := json.Marshal(arg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	cmd := exec.CommandContext(ctx, "node", script, string(b))
	cmd.Dir = "testdata"
	cmd.WaitDelay = 5 * time.Second
	p := &nodeProc{t: t, cmd: cmd, events: make(chan map[string]any, 64), stderr: &gatewaytest.LogBuffer{}, exited: make(chan struct{})}
	cmd.Stderr = p.stderr
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("node %s: %v", script, err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			var ev map[string]any
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				ev = map[string]any{"event": "stdout", "text": sc.Text()}
			}
			select {
			case p.events <- ev:
			case <-ctx.Done(): // the test is over: drain the output
			}
		}
		close(p.events)
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		cancel() // kills the process if it still runs
		<-p.exited
	})
	return p
}

// next returns the next event named name, failing the test on an "error"
// event, a page error, the end of the output or a timeout. Events of other
// names before it are skipped (and logged).
func (p *nodeProc) next(name string) map[string]any {
	p.t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case ev, ok := <-p.events:
			if !ok {
				p.t.Fatalf("node exited before %q\nevents:\n%s\nstderr:\n%s", name, strings.Join(p.seen, "\n"), p.stderr)
			}
			line, _ := json.Marshal(ev)
			p.seen = append(p.seen, string(line))
			switch ev["event"] {
			case name:
				return ev
			case "error", "pageerror", "client-error":
				p.t.Fatalf("node reported %s while waiting for %q\nevents:\n%s\nstderr:\n%s", line, name, strings.Join(p.seen, "\n"), p.stderr)
			}
		case <-timeout:
			p.t.Fatalf("no %q event within 30s\nevents:\n%s\nstderr:\n%s", name, strings.Join(p.seen, "\n"), p.stderr)
		}
	}
}

// send writes one command line to the script.
func (p *nodeProc) send(line string) {
	p.t.Helper()
	if _, err := io.WriteString(p.stdin, line+"\n"); err != nil {
		p.t.Fatalf("writing to node: %v", err)
	}
}

// wait expects the script to exit successfully.
func (p *nodeProc) wait() {
	p.t.Helper()
	for ev := range p.events {
		line, _ := json.Marshal(ev)
		p.seen = append(p.seen, string(line))
		if ev["event"] == "error" || ev["event"] == "pageerror" {
			p.t.Errorf("node reported %s", line)
		}
	}
	<-p.exited
	if p.err != nil {
		p.t.Fatalf("node: %v\nevents:\n%s\nstderr:\n%s", p.err, strings.Join(p.seen, "\n"), p.stderr)
	}
}

func needNode(t *testing.T) {
	t.Helper()
	if os.Getenv("LONGLINK_E2E_NO_BROWSER") != "" {
		t.Skip("LONGLINK_E2E_NO_BROWSER is set")
	}
	for _, bin := range []string{"node", "npm"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s is not installed: %v", bin, err)
		}
	}
}

var browserProvision sync.Mutex // one installer at a time in this process

// ensureChromium returns the Chromium binary, installing the Debian
// package chromium when it is missing (apt-get, as root; apt-get update
// first if the package is unknown).
func ensureChromium(t *testing.T) string {
	t.Helper()
	browserProvision.Lock()
	defer browserProvision.Unlock()
	if _, err := os.Stat(browserChromium); err == nil {
		return browserChromium
	}
	if os.Geteuid() != 0 {
		t.Skipf("%s is missing and installing it needs root: apt-get install chromium", browserChromium)
	}
	apt := func(args ...string) error {
		cmd := exec.Command("apt-get", append([]string{"-o", "DPkg::Lock::Timeout=300", "-q"}, args...)...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Logf("apt-get %s: %v\n%s", strings.Join(args, " "), err, bwTail(out, 2000))
		}
		return err
	}
	t.Logf("installing chromium (apt-get install -y chromium)")
	if apt("install", "-y", "chromium") != nil {
		if err := apt("update"); err != nil {
			t.Fatalf("apt-get update: %v", err)
		}
		if err := apt("install", "-y", "chromium"); err != nil {
			t.Fatalf("apt-get install chromium: %v", err)
		}
	}
	return browserChromium
}

// ensureNodeModules installs playwright-core and ws into
// testdata/node_modules when either is missing. Both are installed by one
// command: npm removes packages a later install does not name. A file lock
// keeps concurrent test processes from installing at once.
func ensureNodeModules(t *testing.T) {
	t.Helper()
	browserProvision.Lock()
	defer browserProvision.Unlock()
	have := func() bool {
		for _, m := range []string{"playwright-core", "ws"} {
			if _, err := os.Stat(filepath.Join("testdata", "node_modules", m, "package.json")); err != nil {
				return false
			}
		}
		return true
	}
	if have() {
		return
	}
	lock, err := os.OpenFile(filepath.Join(os.TempDir(), "longlink-e2e-npm.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if have() {
		return
	}
	t.Logf("installing playwright-core and ws into e2e/testdata/node_modules")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "install", "--no-save", "--no-package-lock", "--no-audit", "--no-fund",
		"playwright-core@1", "ws@8")
	cmd.Dir = "testdata"
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm install: %v\n%s", err, bwTail(out, 4000))
	}
}

func bwAbs(t *testing.T, path string) string {
	t.Helper()
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

func bwStr(v any) string { s, _ := v.(string); return s }

func bwTail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// TestNodeWebSocketRefresh runs longlink.js's session refresh on Node's
// `ws` against the real gateway: a 2 s token is refreshed on the same
// connection, which outlives the token's end (exp plus the 5 s leeway);
// a refused refresh leaves the session to its "token expired" kick, after
// which the client logs in again with a fresh token.
func TestNodeWebSocketRefresh(t *testing.T) {
	needNode(t)
	ensureNodeModules(t)
	s := startServer(t, "-ws-listen", "127.0.0.1:0", "-hb", "1s")
	short := token(t, "node-refresh", 2*time.Second)
	until := time.Now().Add(2*time.Second + 5*time.Second + 1500*time.Millisecond)
	p := runNode(t, "ws_refresh.mjs", map[string]any{
		"ws":   "ws://" + s.WS + "/",
		"good": []string{short, token(t, "node-refresh", time.Hour)},
		// Used once the good client is done, at until: 2 s left then.
		"bad":   []string{token(t, "node-expiring", time.Until(until)-3*time.Second), token(t, "node-other", time.Hour), token(t, "node-expiring", time.Hour)},
		"until": until.UnixMilli(),
	})
	if ev := p.next("refreshed"); ev["ok"] != true || ev["exp"].(float64) < float64(time.Now().Add(50*time.Minute).UnixMilli()) {
		t.Errorf("refresh: %v", ev)
	}
	if ev := p.next("alive"); ev["state"] != "connected" || ev["sameConn"] != true {
		t.Errorf("after the first token's end: %v, want the same connection up", ev)
	}
	if ev := p.next("refused"); ev["ok"] != false || ev["reason"] != "token is for another device" {
		t.Errorf("refresh with another device's token: %v", ev)
	}
	if ev := p.next("kicked"); ev["statusName"] != "UNAUTHORIZED" || ev["reason"] != "token expired" {
		t.Errorf("kick: %v", ev)
	}
	if ev := p.next("relogin"); ev["state"] != "connected" {
		t.Errorf("after the expiry kick: %v", ev)
	}
	p.wait()
	if st := s.stats(); st["refreshes"].(float64) != 1 || st["refresh_failures"].(float64) != 1 {
		t.Errorf("gateway refreshes %v, failures %v: want 1 and 1", st["refreshes"], st["refresh_failures"])
	}
}
