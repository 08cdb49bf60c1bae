package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/bytedance/sonic"

	"github.com/longlink/longlink/route"
)

// statusClientClosed is nginx's "client closed request": the caller went
// away (its request's context was canceled) before the gateway finished.
// Nobody reads the answer; the code is for access logs.
const statusClientClosed = 499

type errorBody struct {
	Error string `json:"error"`
}

type statusBody struct {
	Status string `json:"status"`
}

// requestError is a problem with the request found by the API itself.
type requestError struct {
	status int // 4xx
	err    error
}

func (e *requestError) Error() string { return e.err.Error() }
func (e *requestError) Unwrap() error { return e.err }

// badRequest is a 400 whose message is fmt.Errorf(format, args...).
func badRequest(format string, args ...any) error {
	return &requestError{status: http.StatusBadRequest, err: fmt.Errorf(format, args...)}
}

// endpoint is a JSON call: it returns the value to answer with 200, or an
// error that fail turns into a status.
type endpoint func(w http.ResponseWriter, r *http.Request) (any, error)

// json adapts an endpoint to an http.HandlerFunc.
func (s *server) json(e endpoint) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := e(w, r)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		s.writeJSON(w, http.StatusOK, v)
	}
}

// fail answers err with the status classify picks, logging server faults.
func (s *server) fail(w http.ResponseWriter, r *http.Request, err error) {
	status, msg := classify(err)
	switch {
	case status == statusClientClosed:
		s.log.Debug("api: client went away", "method", r.Method, "path", r.URL.Path, "err", err)
	case status >= 500:
		s.log.Error("api: request failed", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
	}
	s.writeError(w, status, msg)
}

// classify maps an error to an HTTP status and the message to send.
func classify(err error) (int, string) {
	var re *requestError
	switch {
	case errors.As(err, &re):
		return re.status, re.Error()
	case errors.Is(err, ErrInvalid):
		return http.StatusBadRequest, err.Error()
	case errors.Is(err, context.Canceled):
		return statusClientClosed, err.Error()
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, route.ErrUnavailable), errors.Is(err, ErrPeersUnavailable):
		return http.StatusServiceUnavailable, err.Error()
	default:
		return http.StatusInternalServerError, err.Error()
	}
}

func (s *server) writeError(w http.ResponseWriter, status int, msg string) {
	s.writeJSON(w, status, errorBody{Error: msg})
}

// writeJSON answers status with v encoded as JSON.
func (s *server) writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := sonic.ConfigStd.Marshal(v)
	if err != nil {
		// Plain data only fails to encode when a float is NaN or
		// infinite, say a Snapshot field computed from a zero duration.
		s.log.Error("api: encoding the response failed", "type", fmt.Sprintf("%T", v), "err", err)
		status = http.StatusInternalServerError
		b = []byte(`{"error":"encoding the response failed"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	// A write error means the client is gone; there is nobody to tell.
	_, _ = w.Write(append(b, '\n'))
}
