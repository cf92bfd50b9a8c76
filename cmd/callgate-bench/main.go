// Command callgate-bench generates load against callgate gateways and
// reports what their clients see: deliveries per second, publish-to-receive
// latency, lost and duplicated events, connect and subscribe times, and the
// gateways' CPU time and memory.
//
//	callgate-bench --scenario fanout --subscribers 1000 --rate 50
//	callgate-bench --help
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	cfg, err := parseConfig(os.Args[1:], os.Stdout)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "callgate-bench: %v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := run(ctx, cfg, os.Stderr)
	if res != nil {
		write := writeText
		if cfg.JSON {
			write = writeJSON
		}
		if werr := write(os.Stdout, res); werr != nil {
			fmt.Fprintf(os.Stderr, "callgate-bench: %v\n", werr)
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "callgate-bench: %v\n", err)
		os.Exit(3)
	}
	if res.failed() {
		os.Exit(1)
	}
}
