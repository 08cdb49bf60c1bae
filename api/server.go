package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"runtime/debug"
	"strings"
	"time"

	"github.com/longlink/longlink/web"
)

// Defaults for the zero values of Options.
const (
	DefaultMaxBody    = 1 << 20
	DefaultMaxDevices = 10000
	DefaultMaxTTL     = 30 * 24 * time.Hour
)

// PprofMode says whether and to whom /debug/pprof/ is served.
type PprofMode string

// The modes of Options.Pprof.
const (
	// PprofOff serves no profiling: /debug/pprof/... is 404 like any
	// unknown path. The zero value "" means the same.
	PprofOff PprofMode = "off"
	// PprofKey serves profiling behind the API key, like /v1.
	PprofKey PprofMode = "key"
	// PprofOpen serves profiling without a key, for an API port that only
	// trusted hosts can reach.
	PprofOpen PprofMode = "open"
)

// Options configures the API handler.
type Options struct {
	// APIKey is the bearer token every /v1 call must present. Empty means
	// no key can match: every /v1 call is refused (fail closed).
	APIKey string
	// Metrics is served at GET /metrics. Nil means /metrics is 404.
	Metrics http.Handler
	// MetricsKey puts /metrics behind the API key. False serves it to
	// anyone, so that scrapers need no secret.
	MetricsKey bool
	// Pprof serves /debug/pprof/: PprofOff (or ""), PprofKey or PprofOpen.
	// Any other value is treated as PprofOff, with a warning. Whenever it
	// is served, /debug/pprof/cmdline prints the command line with the
	// values of the secret flags redacted (see redactArgs).
	Pprof PprofMode
	// MaxBody is the largest request body accepted, in bytes; a larger one
	// gets 413. Zero means DefaultMaxBody (1 MiB).
	MaxBody int64
	// MaxDevices is the most devices one push or members call may name.
	// Zero means DefaultMaxDevices (10000).
	MaxDevices int
	// MaxTTL is the longest token lifetime POST /v1/tokens grants. Zero
	// means DefaultMaxTTL (30 days).
	MaxTTL time.Duration
	// Logger receives panics, 5xx answers and a warning when APIKey is
	// empty. Nil means slog.Default().
	Logger *slog.Logger
}

// server is the http.Handler New returns.
type server struct {
	gw         Gateway
	mux        *http.ServeMux
	log        *slog.Logger
	keySum     [sha256.Size]byte // SHA-256 of the API key, compared in constant time
	hasKey     bool              // false when Options.APIKey is empty: refuse every /v1 call
	pprofKey   bool              // /debug/pprof/ is served and needs the key
	metricsKey bool              // /metrics needs the key
	maxBody    int64
	maxDevices int
	maxTTL     time.Duration
}

// New returns the HTTP API over gw. The handler is safe for concurrent use.
func New(gw Gateway, opts Options) http.Handler {
	s := &server{
		gw:         gw,
		mux:        http.NewServeMux(),
		log:        opts.Logger,
		keySum:     sha256.Sum256([]byte(opts.APIKey)),
		hasKey:     opts.APIKey != "",
		pprofKey:   opts.Pprof == PprofKey,
		metricsKey: opts.MetricsKey,
		maxBody:    opts.MaxBody,
		maxDevices: opts.MaxDevices,
		maxTTL:     opts.MaxTTL,
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if !s.hasKey {
		s.log.Warn("api: no API key configured; every /v1 call will be refused")
	}
	if s.maxBody <= 0 {
		s.maxBody = DefaultMaxBody
	}
	if s.maxDevices <= 0 {
		s.maxDevices = DefaultMaxDevices
	}
	if s.maxTTL <= 0 {
		s.maxTTL = DefaultMaxTTL
	}

	m := s.mux
	m.HandleFunc("POST /v1/push", s.json(s.push))
	m.HandleFunc("POST /v1/groups/{group}/push", s.json(s.pushGroup))
	m.HandleFunc("POST /v1/broadcast", s.json(s.broadcast))
	m.HandleFunc("PUT /v1/groups/{group}/members", s.json(s.join))
	m.HandleFunc("DELETE /v1/groups/{group}/members", s.json(s.leave))
	m.HandleFunc("GET /v1/groups/{group}", s.json(s.group))
	m.HandleFunc("GET /v1/devices/{device}", s.json(s.device))
	m.HandleFunc("DELETE /v1/devices/{device}", s.json(s.kick))
	m.HandleFunc("POST /v1/tokens", s.json(s.token))
	m.HandleFunc("GET /v1/endpoints", s.json(s.endpoints))
	m.HandleFunc("GET /v1/nodes", s.json(s.nodes))
	m.HandleFunc("GET /v1/stats", s.json(s.stats))

	// Operations endpoints: no API key unless Options ask for one (see the
	// package documentation and needsKey).
	if opts.Metrics != nil {
		m.Handle("GET /metrics", s.keyed(opts.Metrics, s.metricsKey))
	}
	// The browser client and its demo page (package web): public static
	// files, no API key, like the operations endpoints. The page's "Get a
	// token" button calls POST /v1/tokens with a key the person types in.
	m.Handle("GET /demo/", http.StripPrefix("/demo", web.Handler()))
	m.Handle("GET /demo", http.RedirectHandler("/demo/", http.StatusMovedPermanently))
	// The operator console: static too; it asks for the key and sends it
	// with each /v1 call it makes.
	m.Handle("GET /admin/", http.StripPrefix("/admin", web.AdminHandler()))
	m.Handle("GET /admin", http.RedirectHandler("/admin/", http.StatusMovedPermanently))
	m.HandleFunc("GET /healthz", s.healthz)
	m.HandleFunc("GET /readyz", s.readyz)
	switch opts.Pprof {
	case PprofKey, PprofOpen:
		s.handlePprof()
	case PprofOff, "":
	default:
		s.log.Warn("api: unknown pprof mode; profiling is off", "pprof", string(opts.Pprof))
	}
	return s
}

// handlePprof registers the profiling endpoints. /debug/pprof/cmdline is
// ours, not net/http/pprof's, which would print the secrets given as
// flags.
func (s *server) handlePprof() {
	m := s.mux
	m.Handle("GET /debug/pprof/", s.keyed(http.HandlerFunc(pprof.Index), s.pprofKey))
	m.Handle("GET /debug/pprof/cmdline", s.keyed(http.HandlerFunc(cmdline), s.pprofKey))
	m.Handle("GET /debug/pprof/profile", s.keyed(http.HandlerFunc(pprof.Profile), s.pprofKey))
	m.Handle("GET /debug/pprof/symbol", s.keyed(http.HandlerFunc(pprof.Symbol), s.pprofKey))
	m.Handle("POST /debug/pprof/symbol", s.keyed(http.HandlerFunc(pprof.Symbol), s.pprofKey)) // go tool pprof POSTs here
	m.Handle("GET /debug/pprof/trace", s.keyed(http.HandlerFunc(pprof.Trace), s.pprofKey))
}

// keyed returns h, checking the API key first when key is set. ServeHTTP
// already checks it for every path needsKey names; this second check ties
// the key to the handler itself, so that no spelling of a path that
// reaches h can skip it.
func (s *server) keyed(h http.Handler, key bool) http.Handler {
	if !key {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.authorized(w, r) {
			h.ServeHTTP(w, r)
		}
	})
}

// needsKey reports whether a request for path must present the API key
// before it is routed: every /v1 path, known or not (no probing without
// the key), and the operations endpoints Options put behind it.
func (s *server) needsKey(path string) bool {
	switch {
	case strings.HasPrefix(path, "/v1/"):
		return true
	case s.pprofKey && (path == "/debug/pprof" || strings.HasPrefix(path, "/debug/pprof/")):
		return true
	case s.metricsKey && path == "/metrics":
		return true
	}
	return false
}

// ServeHTTP recovers panics, checks the API key where needsKey asks for
// it and routes.
func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rw := &recoverWriter{ResponseWriter: w}
	defer s.recover(rw, r)

	if s.needsKey(r.URL.Path) && !s.authorized(rw, r) {
		return
	}
	if h, pattern := s.mux.Handler(r); pattern == "" {
		s.noRoute(rw, r, h)
		return
	}
	s.mux.ServeHTTP(rw, r)
}

// recover turns a panic into a logged 500 so that one bad request cannot
// take the node down. http.ErrAbortHandler passes through: it is how a
// handler asks net/http to drop the connection.
func (s *server) recover(w *recoverWriter, r *http.Request) {
	v := recover()
	if v == nil {
		return
	}
	if v == http.ErrAbortHandler {
		panic(v)
	}
	s.log.Error("api: handler panicked", "method", r.Method, "path", r.URL.Path,
		"panic", v, "stack", string(debug.Stack()))
	if w.wrote {
		// Part of an answer is on the wire; a 500 can no longer be sent,
		// and ending normally would pass the truncated answer off as
		// whole. Abort the connection instead.
		panic(http.ErrAbortHandler)
	}
	s.writeError(w, http.StatusInternalServerError, "internal error")
}

// authorized checks "Authorization: Bearer <key>" and answers 401 when it
// is missing or wrong. Both keys are hashed before the constant-time
// comparison, so neither the key's content nor its length leaks through
// timing.
func (s *server) authorized(w http.ResponseWriter, r *http.Request) bool {
	h := r.Header.Get("Authorization")
	scheme, token, _ := strings.Cut(h, " ")
	switch {
	case h == "":
		w.Header().Set("WWW-Authenticate", `Bearer realm="longlink"`)
		s.writeError(w, http.StatusUnauthorized, "missing API key: send Authorization: Bearer <api key>")
		return false
	case !strings.EqualFold(scheme, "Bearer"):
		w.Header().Set("WWW-Authenticate", `Bearer realm="longlink"`)
		s.writeError(w, http.StatusUnauthorized, "Authorization must use the Bearer scheme: Authorization: Bearer <api key>")
		return false
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(token)))
	if subtle.ConstantTimeCompare(sum[:], s.keySum[:]) != 1 || !s.hasKey {
		w.Header().Set("WWW-Authenticate", `Bearer realm="longlink", error="invalid_token"`)
		s.writeError(w, http.StatusUnauthorized, "invalid API key")
		return false
	}
	return true
}

// noRoute answers a request no pattern matches with JSON: 405 with Allow
// when the path exists under other methods, else 404. The mux decides which
// (and handles canonicalising redirects): fallback is the handler it chose,
// whose plain-text answer is captured and rewritten.
func (s *server) noRoute(w http.ResponseWriter, r *http.Request, fallback http.Handler) {
	rec := &statusRecorder{header: make(http.Header)}
	fallback.ServeHTTP(rec, r)
	switch rec.status {
	case http.StatusMethodNotAllowed:
		allow := rec.header.Get("Allow")
		w.Header().Set("Allow", allow)
		s.writeError(w, rec.status, "method "+r.Method+" is not allowed on "+r.URL.Path+"; allowed: "+allow)
	case http.StatusNotFound:
		s.writeError(w, rec.status, "no such endpoint: "+r.URL.Path)
	default: // a redirect to the cleaned path
		fallback.ServeHTTP(w, r)
	}
}

func (s *server) healthz(w http.ResponseWriter, _ *http.Request) {
	s.writeJSON(w, http.StatusOK, statusBody{Status: "ok"})
}

func (s *server) readyz(w http.ResponseWriter, _ *http.Request) {
	if !s.gw.Ready() {
		s.writeJSON(w, http.StatusServiceUnavailable, statusBody{Status: "draining"})
		return
	}
	s.writeJSON(w, http.StatusOK, statusBody{Status: "ok"})
}

// recoverWriter remembers whether anything was written, so that recover
// knows whether a 500 can still be sent.
type recoverWriter struct {
	http.ResponseWriter
	wrote bool
}

func (w *recoverWriter) WriteHeader(code int) {
	w.wrote = true
	w.ResponseWriter.WriteHeader(code)
}

func (w *recoverWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer
// (flush, deadlines) through the wrapper.
func (w *recoverWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// statusRecorder captures the status and headers of the mux's fallback
// handlers; their plain-text body is dropped.
type statusRecorder struct {
	header http.Header
	status int
}

func (r *statusRecorder) Header() http.Header         { return r.header }
func (r *statusRecorder) WriteHeader(code int)        { r.status = code }
func (r *statusRecorder) Write(b []byte) (int, error) { return len(b), nil }
