// Command watcher polls Partner Center, diffs snapshots, computes NCE
// deadlines and publishes CloudEvents onto NATS JetStream.
//
//	watcher run [flags]        the service (see -h for every flag and PCWATCH_* variable)
//	watcher demo               the zero-config tour: simulator + embedded NATS + live events
//	watcher deadlines          upcoming deadlines from the state file, soonest first
//	watcher state              what the state file knows
//	watcher backup <dest>      a consistent copy of the state file, taken while the watcher runs or not
//
// deadlines and state take the configuration of run (--config, PCWATCH_*
// and run's flags; package inspect): deadlines computes with the running
// watcher's deadline settings (--renewal-all-terms decides which renewals
// are listed) and --clock, so it answers what /api/deadlines answers. They read the state file, or ask the running
// watcher at --listen when it holds the file.
//
// Exit status (package cli, the notifier's too): 0 success; 1 runtime
// failure (with --once: some customers could not be polled; deadlines and
// state: the state file cannot be read and no running watcher answers);
// 2 bad flags, bad configuration or a start-up problem (Partner Center
// unreachable, credentials refused, state file locked). Errors are one
// line on stderr. A second SIGINT/SIGTERM exits with 130 at once.
//
// This file only parses arguments, turns signals into a context and maps
// errors to the exit status: the work is package watcher's (run), demo's
// and inspect's.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/pcwatch/pcwatch/internal/cli"
	"github.com/pcwatch/pcwatch/internal/demo"
	"github.com/pcwatch/pcwatch/internal/inspect"
	"github.com/pcwatch/pcwatch/internal/watcher"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		// A second signal exits at once. The state file stays consistent:
		// every commit is one bbolt transaction.
		<-ctx.Done()
		stop()
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
		<-sig
		fmt.Fprintln(os.Stderr, "watcher: second signal, exiting now")
		os.Exit(130)
	}()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

const usage = `usage: watcher <command> [flags]

commands:
  run         poll Partner Center and publish events (watcher run -h lists every flag)
  demo        the zero-config tour: simulator, embedded NATS, live events
  deadlines   upcoming deadlines from the state file, soonest first
  state       what the state file knows (customers, last polls, outbox)
  backup      backup <dest>: a consistent, checked copy of the state file (while the watcher runs too)
  webhooks    status|register|unregister|test: the partner's Partner Center webhook registration
`

const backupUsage = `usage: watcher backup <dest> [--config FILE] [flags of watcher run]

  <dest>      the copy's path, or an existing directory (the copy is then pcwatch-<UTC time>.db in it)

A consistent copy of <data-dir>/pcwatch.db, taken in one bbolt read transaction. With no
watcher running the state file is opened read-only; while a watcher holds it, the copy
comes from that watcher's operations server at --listen (GET /api/backup, with
PCWATCH_OPS_TOKEN or PCWATCH_OPS_TOKEN_FILE when set), so polling goes on. The copy is
written to a temporary file, synced, checked as a watcher checks a state file at start,
and only then renamed to <dest>. Restore: stop the watcher, put the copy in place of
<data-dir>/pcwatch.db (mode 0600), start it (README, Operations: Backups).
`

const webhooksUsage = `usage: watcher webhooks status|register|unregister|test [--webhook-url URL] [--events a,b] [--force] [flags of watcher run]

  status       show the registration (URL, events) and whether it points at --webhook-url
  register     register --webhook-url for --events (refused when a registration points elsewhere, unless --force)
  unregister   remove the registration (refused when it points elsewhere, unless --force)
  test         ask Partner Center for a test-created callback and report its delivery
`

const inspectUsage = `usage: watcher %s [--format table|json] [--config FILE] [flags of watcher run]

  --format    table or json (json: what the running watcher's /api/%s answers)

The configuration is watcher run's: its --config file, PCWATCH_* variables and
flags (watcher run -h). --data-dir says which state file to read; while a watcher
holds it, the one at --listen is asked, with PCWATCH_OPS_TOKEN or
PCWATCH_OPS_TOKEN_FILE when set. Deadlines are computed with the configured
deadline settings (--renewal-all-terms, the thresholds) and --clock, as the
running watcher computes them.
`

// run is main without the process: it returns the exit status.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return cli.StatusUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "run":
		return cli.Exit(stderr, "watcher", cmdRun(ctx, rest, getenv, stderr))
	case "demo":
		return cli.Exit(stderr, "watcher", cmdDemo(ctx, rest, stdout, stderr))
	case "deadlines", "state":
		return cli.Exit(stderr, "watcher "+cmd, cmdInspect(ctx, cmd, rest, getenv, stdout, stderr))
	case "webhooks":
		return cli.Exit(stderr, "watcher webhooks", cmdWebhooks(ctx, rest, getenv, stdout, stderr))
	case "backup":
		return cli.Exit(stderr, "watcher backup", cmdBackup(ctx, rest, getenv, stdout, stderr))
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return cli.StatusOK
	}
	code := cli.Exit(stderr, "watcher", cli.Usagef("unknown command %q", cmd))
	fmt.Fprint(stderr, usage)
	return code
}

func cmdRun(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	cfg, err := watcher.Load("run", args, getenv)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(stderr, "usage: watcher run [flags]\n\nflags (each also a PCWATCH_* variable and a config-file key; flags win over env, env over file):\n  --config\tYAML config file (env PCWATCH_CONFIG)\n%s", watcher.Usage())
		return nil
	}
	if err != nil {
		return err
	}
	return watcher.Run(ctx, watcher.Options{Config: cfg, Getenv: getenv, Stderr: stderr,
		Logger: watcher.NewLogger(stderr, cfg.LogFormat, cfg.LogLevel)})
}

func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("watcher demo", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var o demo.Options
	fs.IntVar(&o.Customers, "customers", 40, "simulated customers")
	fs.Float64Var(&o.Speed, "speed", 3600, "simulated seconds per wall second")
	fs.DurationVar(&o.Interval, "interval", 3*time.Second, "poll interval")
	fs.StringVar(&o.DataDir, "data-dir", "", "keep state here (default: a temporary directory removed at exit)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stderr, "usage: watcher demo [flags]")
			fs.SetOutput(stderr)
			fs.PrintDefaults()
			return nil
		}
		return cli.Usagef("demo: %v (watcher demo -h for the flags)", err)
	}
	if fs.NArg() > 0 {
		return cli.Usagef("demo: unexpected argument %q (settings are flags)", fs.Arg(0))
	}
	o.Out = stdout
	return demo.Run(ctx, o)
}

// cmdWebhooks is `watcher webhooks <sub>`: run's configuration (the
// Partner Center URL and credentials, --webhook-url) plus --events and
// --force, then package webhook's commands.
func cmdWebhooks(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			fmt.Fprint(stderr, webhooksUsage)
			return nil
		}
		fmt.Fprint(stderr, webhooksUsage)
		return cli.Usagef("want a subcommand: status, register, unregister or test")
	}
	sub := args[0]
	if !slices.Contains([]string{"status", "register", "unregister", "test"}, sub) {
		fmt.Fprint(stderr, webhooksUsage)
		return cli.Usagef("unknown subcommand %q: want status, register, unregister or test", sub)
	}
	var events string
	var force bool
	cfg, err := watcher.LoadWith("webhooks", args[1:], getenv, func(fs *flag.FlagSet) {
		fs.StringVar(&events, "events", "", "event names to register, comma-separated (default: those pcwatch uses)")
		fs.BoolVar(&force, "force", false, "replace or remove a registration that points elsewhere")
	})
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stderr, webhooksUsage)
		return nil
	}
	if err != nil {
		return err
	}
	var evs []string
	for _, e := range strings.Split(events, ",") {
		if e = strings.TrimSpace(e); e != "" {
			evs = append(evs, e)
		}
	}
	cmds, err := watcher.WebhookCommands(ctx, cfg, getenv, stdout, evs, force)
	if err != nil {
		return err
	}
	return cmds.Run(ctx, []string{sub})
}

// cmdBackup is `watcher backup <dest>`: run's configuration says where
// the state file is (--data-dir) and where a running watcher answers
// (--listen); package inspect takes the copy.
func cmdBackup(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			fmt.Fprint(stderr, backupUsage)
			return nil
		}
		fmt.Fprint(stderr, backupUsage)
		return cli.Usagef("want the copy's path: watcher backup <dest> [flags]")
	}
	dest := args[0]
	cfg, err := watcher.Load("backup", args[1:], getenv)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stderr, backupUsage)
		return nil
	}
	if err != nil {
		return err
	}
	src := inspect.Source{Config: cfg, Getenv: getenv, Warn: func(msg string) {
		fmt.Fprintf(stderr, "watcher backup: warning: %s\n", cli.OneLine(msg))
	}}
	res, err := src.Backup(ctx, dest, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "backup %s: %d bytes from %s, checked (%d customers, %d events waiting in the outbox)\n",
		res.Path, res.Bytes, res.From, res.Customers, res.Outbox)
	return nil
}

// cmdInspect is `watcher deadlines` and `watcher state`: run's
// configuration plus --format, then the view (package inspect).
func cmdInspect(ctx context.Context, name string, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var format string
	cfg, err := watcher.LoadWith(name, args, getenv, func(fs *flag.FlagSet) {
		fs.StringVar(&format, "format", string(inspect.Table), "table or json")
	})
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(stderr, inspectUsage, name, name)
		return nil
	}
	if err != nil {
		return err
	}
	f, err := inspect.ParseFormat(format)
	if err != nil {
		return err
	}
	src := inspect.Source{Config: cfg, Getenv: getenv, Warn: func(msg string) {
		fmt.Fprintf(stderr, "watcher %s: warning: %s\n", name, cli.OneLine(msg))
	}}
	if name == "deadlines" {
		ds, err := src.Deadlines(ctx)
		if err != nil {
			return err
		}
		return inspect.WriteDeadlines(stdout, ds, f)
	}
	s, err := src.State(ctx)
	if err != nil {
		return err
	}
	return inspect.WriteState(stdout, s, f)
}
