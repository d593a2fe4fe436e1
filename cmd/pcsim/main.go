// Command pcsim serves the Partner Center simulator (package pcsim): the
// /v1 API pcwatch polls and the /admin/ API test harnesses drive.
//
//	pcsim --listen 127.0.0.1:0 --seed 1 --customers 200 --subs-per-customer 0 \
//	      --token T --clock 'start=2025-01-01T00:00:00Z,epoch=...,speed=60' \
//	      --mutate-every 2s --mutations 3 --include-refundable-in-list
//
// Once it serves it prints exactly one line to stdout,
// "pcsim listening on http://HOST:PORT"; logs go to stderr. It exits 0 on
// SIGINT or SIGTERM, 2 on bad flags, 1 on other errors.
//
// A second listener, the off-origin server (--off-origin-listen; by default
// a free port of --listen's host), is where hostile redirects send clients;
// GET /admin/offorigin says where it listens and what it received.
//
// --clock accepts what clock.Parse accepts ("" or "real", or
// "start=RFC3339,epoch=RFC3339,speed=N"), plus "fake" or "fake=RFC3339": a
// manual clock that only POST /admin/advance moves.
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
	"strings"
	"syscall"
	"time"

	"github.com/pcwatch/pcwatch/internal/clock"
	"github.com/pcwatch/pcwatch/internal/pcsim"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	opts, level, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "pcsim: %v\n", err)
		return 2
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	opts.Logger = logger
	opts.Ready = func(url string, _ *pcsim.Sim) { fmt.Fprintf(stdout, "pcsim listening on %s\n", url) }

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := pcsim.Run(ctx, opts); err != nil {
		logger.Error("pcsim failed", "err", err)
		return 1
	}
	return 0
}

func parseFlags(args []string, stderr io.Writer) (pcsim.RunOptions, slog.Level, error) {
	fs := flag.NewFlagSet("pcsim", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var (
		o         pcsim.RunOptions
		clockSpec string
		logLevel  string
	)
	fs.StringVar(&o.Addr, "listen", "127.0.0.1:8090", "listen address (host:port; port 0 picks a free one)")
	fs.StringVar(&o.OffOriginAddr, "off-origin-listen", "", "listen address of the off-origin server, the target of hostile redirects (empty: --listen's host, a free port)")
	fs.Int64Var(&o.Sim.Seed, "seed", 1, "dataset and randomness seed")
	fs.IntVar(&o.Sim.Customers, "customers", 200, "number of generated customers")
	fs.IntVar(&o.Sim.SubscriptionsPerCustomer, "subs-per-customer", 0, "subscriptions per customer (0: a realistic mix averaging about 8)")
	fs.StringVar(&o.Sim.Token, "token", "", "required bearer token (empty accepts any bearer token)")
	fs.StringVar(&clockSpec, "clock", "", `business clock: "real", "start=RFC3339,epoch=RFC3339,speed=N", or "fake[=RFC3339]"`)
	fs.DurationVar(&o.MutateEvery, "mutate-every", 0, "apply random mutations this often (wall time; 0 disables)")
	fs.IntVar(&o.Mutations, "mutations", 3, "random mutations per --mutate-every tick")
	fs.BoolVar(&o.Sim.IncludeRefundableInList, "include-refundable-in-list", false, "render refundableQuantity in subscription list items")
	fs.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.Usage = func() {} // errors are reported in one line by run; -h prints the defaults below
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stderr, "usage: pcsim [flags]")
			fs.SetOutput(stderr)
			fs.PrintDefaults()
		}
		return o, 0, err
	}
	if fs.NArg() > 0 {
		return o, 0, fmt.Errorf("unexpected argument %q (all settings are flags)", fs.Arg(0))
	}
	if o.Sim.Customers < 0 || o.Sim.SubscriptionsPerCustomer < 0 || o.Mutations < 0 || o.MutateEvery < 0 {
		return o, 0, errors.New("--customers, --subs-per-customer, --mutations and --mutate-every must not be negative")
	}
	clk, err := parseClock(clockSpec)
	if err != nil {
		return o, 0, fmt.Errorf("--clock: %w", err)
	}
	o.Sim.Clock = clk
	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		return o, 0, fmt.Errorf("--log-level: %w", err)
	}
	return o, level, nil
}

// parseClock extends clock.Parse with "fake" and "fake=RFC3339".
func parseClock(spec string) (clock.Clock, error) {
	spec = strings.TrimSpace(spec)
	if spec == "fake" {
		return clock.NewFake(time.Now().UTC().Truncate(time.Second)), nil
	}
	if v, ok := strings.CutPrefix(spec, "fake="); ok {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return nil, fmt.Errorf("fake start %q: %w", v, err)
		}
		return clock.NewFake(t), nil
	}
	return clock.Parse(spec)
}
