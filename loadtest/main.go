// Command loadtest is Longlink's load generator: it opens and logs in many
// connections (TCP, WebSocket with -ws, or TLS with -tls), drives a
// scenario (hold, request, push, group, mixed) open loop, and reports
// logins per second, throughput, latency percentiles (HDR histograms) and
// the server's memory, goroutines and CPU from /v1/stats, as text, JSON
// (-json) and an HTML report with charts (-html). With -sdk every device
// is a client.Client of the Go SDK (sdk.go). See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
)

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

// Exit statuses.
const (
	exitOK     = 0
	exitErrors = 1 // the run had more errors than -max-errors
	exitUsage  = 2 // bad flags, or the run could not start
)

// realMain runs the generator and returns the exit status.
func realMain(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		fmt.Fprintln(stderr, "loadtest:", err)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// A hard bound on the whole run, whatever the server does: every phase
	// has its own bound, this one catches the sum.
	ctx, cancel := context.WithTimeout(ctx, cfg.maxRunTime())
	defer cancel()

	if cfg.CPUProfile != "" {
		f, err := os.Create(cfg.CPUProfile)
		if err != nil {
			fmt.Fprintln(stderr, "loadtest:", err)
			return exitUsage
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(stderr, "loadtest:", err)
			return exitUsage
		}
		defer pprof.StopCPUProfile()
	}
	r := newRunner(cfg, stderr)
	s, err := r.run(ctx)
	if err != nil {
		fmt.Fprintln(stderr, "loadtest:", err)
		return exitUsage
	}
	if cfg.JSONFile != "-" {
		writeText(stdout, s)
	}
	if cfg.JSONFile != "" {
		if err := writeJSON(s, cfg.JSONFile, stdout); err != nil {
			fmt.Fprintln(stderr, "loadtest: -json:", err)
			return exitUsage
		}
	}
	if cfg.HTMLFile != "" {
		if err := writeHTML(s, cfg.HTMLFile, cfg.HTMLAssets); err != nil {
			fmt.Fprintln(stderr, "loadtest: -html:", err)
			return exitUsage
		}
	}
	if s.Errors > cfg.MaxErrors {
		fmt.Fprintf(stderr, "loadtest: %d errors, more than -max-errors %d\n", s.Errors, cfg.MaxErrors)
		return exitErrors
	}
	return exitOK
}
