// Command callgate-bench generates load against callgate gateways and
// reports what their clients see: deliveries per second, latency from a
// webhook's HTTP call and from the event's publish to its receipt, lost and
// duplicated events, connect and subscribe times; and the gateways' CPU
// time and memory, their Redis's CPU time, and how many messages each
// gateway received from Redis for each one it needed.
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
	"runtime/pprof"
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
	stopProfile := func() {}
	if cfg.CPUProfile != "" {
		if stopProfile, err = startCPUProfile(cfg.CPUProfile); err != nil {
			fmt.Fprintf(os.Stderr, "callgate-bench: %v\n", err)
			os.Exit(2)
		}
	}
	os.Exit(runMain(cfg, stopProfile))
}

// runMain runs the benchmark, prints its result and returns the exit code.
func runMain(cfg config, stopProfile func()) int {
	defer stopProfile()
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
	switch {
	case err != nil:
		fmt.Fprintf(os.Stderr, "callgate-bench: %v\n", err)
		return 3
	case res.failed():
		return 1
	}
	return 0
}

// startCPUProfile profiles this process into path until the returned
// function runs.
func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "callgate-bench: --cpuprofile: %v\n", err)
		}
	}, nil
}
