// Command notifier turns pcwatch's events into alerts: it consumes the
// CloudEvents the watcher publishes on NATS JetStream and delivers them,
// routed and deduplicated, to signed webhooks, Slack, Teams, email and NATS
// subjects (package notify).
//
//	notifier run    --config FILE [--nats-url URL] [--listen 127.0.0.1:9465] [--log-format text|json] [--log-level info]
//	notifier check  --config FILE
//	notifier dlq list   [--channel X] [--format table|json] [--nats-url URL]
//	notifier dlq replay --config FILE [--channel X] [--id ID ...] [--nats-url URL]
//	notifier test   --config FILE --channel X [--type subscription.quantity-changed]
//
// NATS: the connection settings are the watcher's (package natsconn, the
// README's "NATS connection"): --nats-url (default $PCWATCH_NATS_URL, else
// nats://127.0.0.1:4222, the watcher's embedded server), --nats-nkey (for
// the embedded server, <data-dir>/nats-auth/notifier.nk), --nats-creds,
// --nats-tls-ca, --nats-tls-cert, --nats-tls-key, each also a PCWATCH_NATS_*
// variable, and PCWATCH_NATS_USER, PCWATCH_NATS_PASSWORD and
// PCWATCH_NATS_TOKEN (or their _FILE variants).
//
// The health endpoint answers only Host names of this server (loopback, the
// listen address, --allowed-hosts and the configuration's allowed_hosts);
// with PCWATCH_OPS_TOKEN or PCWATCH_OPS_TOKEN_FILE set, /metrics needs
// "Authorization: Bearer <token>".
//
// Exit status (package cli, the watcher's too): 0 success; 1 a runtime
// failure (NATS unreachable or refusing the credentials, a channel failing
// the test, dlq replay with failures); 2 bad flags or a bad configuration.
// Errors are one line on stderr naming the problem.
//
// This file only parses arguments, turns signals into a context and maps
// errors to the exit status: the work is package notify's.
package main

import (
	_ "time/tzdata" // time_zone of digests works in a scratch container

	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcwatch/pcwatch/internal/cli"
	"github.com/pcwatch/pcwatch/internal/clock"
	"github.com/pcwatch/pcwatch/internal/events"
	"github.com/pcwatch/pcwatch/internal/natsconn"
	"github.com/pcwatch/pcwatch/internal/notify"
	"github.com/pcwatch/pcwatch/internal/opsguard"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

var usage = `usage: notifier <command> [flags]

commands:
  run         consume events and deliver alerts
              --config FILE [--nats-url URL] [--nats-nkey FILE] [--listen ADDR] [--allowed-hosts NAMES]
              [--log-format text|json] [--log-level info] [--clock SPEC (testing, the demo)]
  check       validate a configuration without connecting; prints "config OK: N channels, M routes"
              --config FILE
  dlq list    list dead-lettered events
              [--channel X] [--format table|json] [--nats-url URL]
  dlq replay  send dead-lettered events again with the current configuration
              --config FILE [--channel X] [--id EVENT_ID ...] [--nats-url URL]
  test        send a sample event through one channel, bypassing NATS
              --config FILE --channel X [--type subscription.quantity-changed]
  silence add     mute matching events on every channel, applied by running notifiers within seconds;
                  deadline warnings are held and sent when it ends, or alerts.silence_lead before their deadline
              --end TIME|--duration D [--start TIME] [--customer ID ...] [--type GLOB ...] [--offer GLOB ...]
              [--partner-id ID ...] [--author NAME] [--comment TEXT] [--nats-url URL] [--clock SPEC]
  silence list    [--all] [--format table|json] [--nats-url URL]
  silence expire  ID [--nats-url URL]

run, dlq and test (for nats channels) take the NATS connection flags below; without a URL the notifier
connects to nats://127.0.0.1:4222, the watcher's embedded server (its seed: <data-dir>/nats-auth/notifier.nk).

` + natsconn.Usage() + `
Health endpoint token: PCWATCH_OPS_TOKEN or PCWATCH_OPS_TOKEN_FILE (then /metrics needs it).
Exit status: 0 ok, 1 runtime failure, 2 bad flags or configuration.
`

// run is main without the process: it returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	err := dispatch(ctx, args, stdout, stderr, getenv)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stderr, usage)
	}
	return cli.Exit(stderr, "notifier", err)
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) == 0 {
		return cli.Usagef("no command: want run, check, dlq list, dlq replay, silence add|list|expire or test (notifier -h for help)")
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "-h", "-help", "--help", "help":
		return flag.ErrHelp
	case "run":
		return cmdRun(ctx, rest, stderr, getenv)
	case "check":
		return cmdCheck(rest, stdout, stderr)
	case "test":
		return cmdTest(ctx, rest, stdout, getenv)
	case "dlq":
		if len(rest) == 0 {
			return cli.Usagef("dlq: want a subcommand: list or replay")
		}
		switch rest[0] {
		case "list":
			return cmdDLQList(ctx, rest[1:], stdout, getenv)
		case "replay":
			return cmdDLQReplay(ctx, rest[1:], stdout, stderr, getenv)
		}
		return cli.Usagef("dlq: unknown subcommand %q (want list or replay)", rest[0])
	case "silence":
		if len(rest) == 0 {
			return cli.Usagef("silence: want a subcommand: add, list or expire")
		}
		switch rest[0] {
		case "add":
			return cmdSilenceAdd(ctx, rest[1:], stdout, getenv)
		case "list":
			return cmdSilenceList(ctx, rest[1:], stdout, getenv)
		case "expire":
			return cmdSilenceExpire(ctx, rest[1:], stdout, getenv)
		}
		return cli.Usagef("silence: unknown subcommand %q (want add, list or expire)", rest[0])
	}
	return cli.Usagef("unknown command %q (want run, check, dlq list, dlq replay, silence or test)", cmd)
}

func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return cli.Usagef("%s: %w", fs.Name(), err)
	}
	if fs.NArg() > 0 {
		return cli.Usagef("%s: unexpected argument %q (settings are flags)", fs.Name(), fs.Arg(0))
	}
	return nil
}

// natsFlags registers the NATS connection flags (package natsconn: the
// watcher's too) and returns a func resolving the options from them and
// the environment once the flags are parsed. The URL defaults to the
// watcher's embedded server; a credential that cannot be read is a usage
// error (exit 2) naming the variable.
func natsFlags(fs *flag.FlagSet, getenv func(string) string) func() (natsconn.Options, error) {
	f := natsconn.AddFlags(fs)
	return func() (natsconn.Options, error) {
		o, err := f.Options(getenv, natsconn.Options{URL: notify.DefaultNATSURL, Name: "pcwatch-notifier"})
		if err != nil {
			return o, cli.Usage(err)
		}
		if o.URL == "" {
			o.URL = notify.DefaultNATSURL
		}
		return o, nil
	}
}

func loadConfig(path string) (*notify.Config, error) {
	if path == "" {
		return nil, cli.Usagef("--config is required (see deploy/notifier.example.yaml)")
	}
	return notify.LoadConfig(path)
}

func cmdRun(ctx context.Context, args []string, stderr io.Writer, getenv func(string) string) error {
	fs := newFlags("run")
	config := fs.String("config", "", "configuration file (YAML)")
	listen := fs.String("listen", "", "health and metrics address (default the config's listen, else "+notify.DefaultListen+")")
	var allowed stringList
	fs.Var(&allowed, "allowed-hosts", "further Host names the health endpoint answers, comma-separated (added to allowed_hosts)")
	format := fs.String("log-format", "text", "log format: text or json")
	level := fs.String("log-level", "info", "log level: debug, info, warn or error")
	clockSpec := fs.String("clock", "", "calendar of deadlines and silences (testing and the demo): start=RFC3339,epoch=RFC3339,speed=N, as the watcher's")
	natsOpts := natsFlags(fs, getenv)
	if err := parse(fs, args); err != nil {
		return err
	}
	cal, err := clock.Parse(*clockSpec)
	if err != nil {
		return cli.Usagef("run: --clock: %v", err)
	}
	log, err := notify.NewLogger(stderr, *format, *level)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(*config)
	if err != nil {
		return err
	}
	for i, h := range allowed {
		if _, err := opsguard.CheckHost(h); err != nil {
			return cli.Usagef("run: --allowed-hosts[%d]: %v", i, err)
		}
	}
	token, err := opsguard.TokenFromEnv(getenv)
	if err != nil {
		return cli.Usagef("run: %w", err)
	}
	no, err := natsOpts()
	if err != nil {
		return err
	}
	no.Logger = log
	return notify.Run(ctx, notify.Options{Config: cfg, NATS: no, Listen: *listen, Logger: log, OpsToken: token, AllowedHosts: allowed, Calendar: cal})
}

func cmdCheck(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("check")
	config := fs.String("config", "", "configuration file (YAML)")
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(*config)
	if err != nil {
		return err
	}
	for _, w := range cfg.Warnings() {
		fmt.Fprintf(stderr, "notifier: warning: %s\n", w)
	}
	fmt.Fprintf(stdout, "config OK: %s\n", cfg.Summary())
	return nil
}

func cmdDLQList(ctx context.Context, args []string, stdout io.Writer, getenv func(string) string) error {
	fs := newFlags("dlq list")
	channel := fs.String("channel", "", "only this channel")
	format := fs.String("format", "table", "output: table or json")
	natsOpts := natsFlags(fs, getenv)
	if err := parse(fs, args); err != nil {
		return err
	}
	if *format != "table" && *format != "json" {
		return cli.Usagef("dlq list: --format %q: want table or json", *format)
	}
	no, err := natsOpts()
	if err != nil {
		return err
	}
	entries, err := notify.DeadLetters(ctx, no, *channel)
	if err != nil {
		return err
	}
	return notify.WriteDLQ(stdout, entries, *format == "json")
}

// stringList is a repeatable flag.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

func cmdDLQReplay(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := newFlags("dlq replay")
	config := fs.String("config", "", "configuration file (YAML)")
	channel := fs.String("channel", "", "only this channel")
	var ids stringList
	fs.Var(&ids, "id", "only this event id (repeatable)")
	natsOpts := natsFlags(fs, getenv)
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(*config)
	if err != nil {
		return err
	}
	no, err := natsOpts()
	if err != nil {
		return err
	}
	log, err := notify.NewLogger(stderr, "text", "warn")
	if err != nil {
		return err
	}
	results, err := notify.Replay(ctx, no, notify.ReplayOptions{Config: cfg, Channel: *channel, IDs: ids, Logger: log})
	if err != nil {
		return err
	}
	return notify.WriteReplay(stdout, results)
}

func cmdTest(ctx context.Context, args []string, stdout io.Writer, getenv func(string) string) error {
	fs := newFlags("test")
	config := fs.String("config", "", "configuration file (YAML)")
	channel := fs.String("channel", "", "the channel to send through")
	typ := fs.String("type", "subscription.quantity-changed", "event type of the sample (with or without io.pcwatch.)")
	natsOpts := natsFlags(fs, getenv)
	if err := parse(fs, args); err != nil {
		return err
	}
	if *channel == "" {
		return cli.Usagef("test: --channel is required")
	}
	t, err := notify.ParseEventType(*typ)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(*config)
	if err != nil {
		return err
	}
	ev, err := notify.Test(ctx, cfg, *channel, t, func() (*nats.Conn, error) {
		no, err := natsOpts()
		if err != nil {
			return nil, err
		}
		return notify.Dial(ctx, no)
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "sent sample %s event %s through %s\n", strings.TrimPrefix(string(ev.Type), events.TypePrefix), ev.ID, *channel)
	return nil
}

func cmdSilenceAdd(ctx context.Context, args []string, stdout io.Writer, getenv func(string) string) error {
	fs := newFlags("silence add")
	var customers, types, offers, partners stringList
	fs.Var(&customers, "customer", "customer id (repeatable, or comma-separated)")
	fs.Var(&types, "type", "event type glob, e.g. subscription.* (repeatable)")
	fs.Var(&offers, "offer", "offer name glob (repeatable)")
	fs.Var(&partners, "partner-id", "reseller MPN id (repeatable)")
	start := fs.String("start", "", "RFC 3339 start (default now)")
	end := fs.String("end", "", "RFC 3339 end")
	dur := fs.String("duration", "", "length from the start, e.g. 2h or 7d (instead of --end)")
	author := fs.String("author", getenv("USER"), "who adds it (default $USER)")
	comment := fs.String("comment", "", "why")
	clockSpec := fs.String("clock", "", "calendar the notifiers run on (testing and the demo), as notifier run --clock")
	natsOpts := natsFlags(fs, getenv)
	if err := parse(fs, args); err != nil {
		return err
	}
	cal, err := clock.Parse(*clockSpec)
	if err != nil {
		return cli.Usagef("silence add: --clock: %v", err)
	}
	now := cal.Now().UTC()
	s := notify.RuntimeSilence{Match: notify.Match{Customers: customers, Types: types, Offers: offers, PartnerIDs: partners},
		CreatedBy: *author, Comment: *comment, StartsAt: now}
	if *start != "" {
		t, err := time.Parse(time.RFC3339, *start)
		if err != nil {
			return cli.Usagef("silence add: --start %q: want RFC 3339, e.g. 2026-12-24T18:00:00+01:00", *start)
		}
		s.StartsAt = t.UTC()
	}
	switch {
	case *end != "" && *dur != "":
		return cli.Usagef("silence add: give --end or --duration, not both")
	case *end != "":
		t, err := time.Parse(time.RFC3339, *end)
		if err != nil {
			return cli.Usagef("silence add: --end %q: want RFC 3339, e.g. 2026-12-27T08:00:00+01:00", *end)
		}
		s.EndsAt = t.UTC()
	case *dur != "":
		var d notify.Duration
		if err := d.UnmarshalJSON([]byte(strconv.Quote(*dur))); err != nil || d.D() <= 0 {
			return cli.Usagef("silence add: --duration %q: want a positive duration such as 2h or 7d", *dur)
		}
		s.EndsAt = s.StartsAt.Add(d.D())
	default:
		return cli.Usagef("silence add: say until when: --end TIME or --duration D")
	}
	if len(customers)+len(types)+len(offers)+len(partners) == 0 {
		return cli.Usagef("silence add: no matcher: give --customer, --type, --offer or --partner-id (a silence of everything is refused)")
	}
	no, err := natsOpts()
	if err != nil {
		return err
	}
	return notify.Silences(ctx, no, func(ctx context.Context, js jetstream.JetStream) error {
		id, err := notify.AddSilence(ctx, js, s, now)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "silence %s added: %s to %s\n", id, s.StartsAt.Format(time.RFC3339), s.EndsAt.Format(time.RFC3339))
		return nil
	})
}

func cmdSilenceList(ctx context.Context, args []string, stdout io.Writer, getenv func(string) string) error {
	fs := newFlags("silence list")
	all := fs.Bool("all", false, "include silences that ended (kept a week)")
	format := fs.String("format", "table", "output: table or json")
	natsOpts := natsFlags(fs, getenv)
	if err := parse(fs, args); err != nil {
		return err
	}
	if *format != "table" && *format != "json" {
		return cli.Usagef("silence list: --format %q: want table or json", *format)
	}
	no, err := natsOpts()
	if err != nil {
		return err
	}
	return notify.Silences(ctx, no, func(ctx context.Context, js jetstream.JetStream) error {
		l, err := notify.ListSilences(ctx, js)
		if err != nil {
			return err
		}
		return notify.WriteSilences(stdout, l, time.Now(), *all, *format == "json")
	})
}

func cmdSilenceExpire(ctx context.Context, args []string, stdout io.Writer, getenv func(string) string) error {
	fs := newFlags("silence expire")
	natsOpts := natsFlags(fs, getenv)
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return cli.Usagef("silence expire: want the silence id first (see notifier silence list)")
	}
	id := args[0]
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	no, err := natsOpts()
	if err != nil {
		return err
	}
	return notify.Silences(ctx, no, func(ctx context.Context, js jetstream.JetStream) error {
		if err := notify.ExpireSilence(ctx, js, id, time.Now()); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "silence %s expired; held deadline warnings it covered are sent within seconds\n", id)
		return nil
	})
}
