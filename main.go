// Command longlink is the Longlink gateway: one node of a unified
// long-connection service. With no flags it serves on loopback with
// development secrets (see README.md); every flag is also read from
// LONGLINK_<FLAG> in the environment.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/longlink/longlink/config"
	"github.com/longlink/longlink/gateway"
	"github.com/pkg/profile"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "longlink:", err)
		os.Exit(1)
	}
}

func run() error {
	cfg, err := config.Parse(os.Args[1:], os.Getenv)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err // Parse has validated the whole configuration
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: logLevel(cfg.LogLevel)}))
	slog.SetDefault(log)
	if cfg.DevSecrets() {
		log.Warn("using the well-known development secrets: anyone can log in and push; set -jwt-secret and -api-key for real use",
			"api_key", cfg.APIKey, "jwt_secret", cfg.JWTSecret)
	}
	if stop := startProfile(cfg.Profile, cfg.ProfilePath); stop != nil {
		defer stop()
	}

	// Signals are caught before anything listens, so a SIGTERM that comes
	// as soon as the node is up still drains it.
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	g, err := gateway.New(cfg, log)
	if err != nil {
		return err
	}
	if err := g.Start(); err != nil {
		return err
	}
	for waiting := true; waiting; {
		select {
		case <-hup:
			if err := g.ReloadTLS(); err != nil {
				log.Error("tls reload failed; keeping the current certificate", "err", err)
			} else {
				log.Info("tls certificate reloaded")
			}
		case <-ctx.Done():
			waiting = false
		}
	}
	log.Info("shutting down", "drain_timeout", cfg.DrainTimeout)
	drain, cancelDrain := context.WithTimeout(context.Background(), cfg.DrainTimeout)
	defer cancelDrain()
	if err := g.Shutdown(drain); err != nil {
		log.Warn("drain incomplete", "err", err)
	}
	log.Info("stopped")
	return nil
}

func logLevel(s string) slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return slog.LevelInfo
	}
	return l
}

// startProfile starts the -profile mode and returns its stop function.
func startProfile(mode, path string) func() {
	opts := []func(*profile.Profile){profile.ProfilePath(path), profile.NoShutdownHook}
	switch mode {
	case "cpu":
		opts = append(opts, profile.CPUProfile)
	case "mem":
		opts = append(opts, profile.MemProfile)
	case "block":
		opts = append(opts, profile.BlockProfile)
	case "mutex":
		opts = append(opts, profile.MutexProfile)
	case "trace":
		opts = append(opts, profile.TraceProfile)
	case "goroutine":
		opts = append(opts, profile.GoroutineProfile)
	default:
		return nil
	}
	return profile.Start(opts...).Stop
}
