// Package web serves Longlink's browser client and its demo page: static
// files embedded in the binary, with no build step.
//
//	longlink.js  an ES module implementing the wire protocol over the
//	             browser's WebSocket (login and resume, heartbeats,
//	             requests, pushes with automatic PUSH_ACK, kicks,
//	             reconnection with backoff)
//	demo.html    a page where a person gets or pastes a token, connects,
//	             watches pushes arrive and sends requests (the path "/"
//	             serves it)
//	demo.js      the page's logic; demo.css its style
//	admin.html   the operator console (AdminHandler): nodes, live charts,
//	admin.js     businesses, device look-up and kick, group look-up, a
//	admin.css    push form; it reads /v1 with the API key a person types
//	             in (kept in the tab's sessionStorage), and requests
//	             nothing from another origin
//
// The API server mounts Handler at /demo/ and AdminHandler at /admin/
// (see package api). The files are
// public and static: they need no API key and hold no secret. The page's
// "Get a token" button calls POST /v1/tokens with an API key the person
// types in, which is for development only: in production a business's own
// backend mints tokens.
package web

import (
	"embed"
	"io/fs"
	"net/http"
	"path"
)

//go:embed static
var files embed.FS

// Static is the embedded file tree: longlink.js, demo.html, demo.js and
// demo.css at its root.
var Static fs.FS = mustSub(files, "static")

func mustSub(f fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(f, dir)
	if err != nil {
		panic(err)
	}
	return sub
}

// Content-Security-Policy of every file: scripts, styles and fetches from
// this origin only, WebSocket connections anywhere (the gateway's
// WebSocket listener is on another port), no framing.
const csp = "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; " +
	"object-src 'none'; base-uri 'none'; frame-ancestors 'none'"

// Handler serves the embedded files at the root of its URL space: mount it
// with http.StripPrefix. "/" serves demo.html; there is no directory
// listing. Only GET and HEAD are answered (405 otherwise). Responses carry
// Cache-Control: no-cache (the embedded files have no modification time to
// revalidate against, and a new binary must not serve a stale page),
// X-Content-Type-Options: nosniff and a restrictive Content-Security-Policy.
func Handler() http.Handler { return handler("demo.html") }

// AdminHandler is Handler with the console, admin.html, at "/".
func AdminHandler() http.Handler { return handler("admin.html") }

// handler serves the embedded files, index at "/".
func handler(index string) http.Handler {
	fileServer := http.FileServerFS(Static)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Security-Policy", csp)
		h.Set("Referrer-Policy", "no-referrer")
		name := path.Clean("/" + r.URL.Path)
		if name == "/" {
			http.ServeFileFS(w, r, Static, index)
			return
		}
		if fi, err := fs.Stat(Static, name[1:]); err != nil || fi.IsDir() {
			http.NotFound(w, r)
			return
		}
		fileServer.ServeHTTP(w, r)
	})
}
