#!/usr/bin/env python3
"""A business for the soak test: echoes requests with 200, except between
--fail-from and --fail-until seconds after start, when it answers 503 (a
business that fails and recovers midway)."""
import argparse, http.server, time

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, default=9102)
ap.add_argument("--fail-from", type=float, default=240)
ap.add_argument("--fail-until", type=float, default=360)
args = ap.parse_args()
start = time.monotonic()


class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        t = time.monotonic() - start
        if args.fail_from <= t < args.fail_until:
            self.send_response(503)
            body = b"down for the soak"
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", args.port), H).serve_forever()
