// Command callgate runs one instance of the callgate WebSocket gateway,
// or, as callgate tail, follows a call on one.
//
//	callgate --dev                       one instance on an embedded Redis
//	callgate --redis-url redis://… \
//	         --webhook-secret … --api-key …
//	callgate tail EL_demo                print the events of call EL_demo
//
// See README.md for every flag and its CALLGATE_* variable.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/redis/go-redis/v9"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "tail" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := runTail(ctx, os.Args[2:], os.Getenv, os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	cfg, err := parseConfig(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "callgate: invalid configuration:\n%v\n", err)
		os.Exit(2)
	}
	log := newLogger(cfg, os.Stderr)
	redis.SetLogger(redisLogger{log.With("component", "go-redis")})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, log, os.Stderr); err != nil {
		log.Error("callgate stopped", "err", err)
		os.Exit(1)
	}
}

func newLogger(cfg config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	var h slog.Handler = slog.NewJSONHandler(w, opts)
	if cfg.LogFormat == "text" {
		h = slog.NewTextHandler(w, opts)
	}
	return slog.New(h).With("instance", cfg.InstanceID)
}

// redisLogger sends go-redis's own messages to the structured log.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, "redis client", "detail", fmt.Sprintf(format, v...))
}

// run serves until ctx ends, then shuts down in order.
func run(ctx context.Context, cfg config, log *slog.Logger, banner io.Writer) error {
	a, err := newApp(ctx, cfg, log)
	if err != nil {
		return err
	}
	if cfg.Dev {
		printDevBanner(banner, cfg, a)
	}
	errc := make(chan error, 1)
	go func() { errc <- a.serve() }()
	select {
	case err := <-errc:
		a.shutdown(context.Background())
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down", "timeout", cfg.ShutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	err = a.shutdown(sctx)
	<-errc // serve returns once the HTTP server is shut down
	return err
}
