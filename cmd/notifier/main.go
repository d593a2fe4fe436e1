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
// Exit status: 0 success, 1 a runtime failure, 2 bad flags or a bad
// configuration (one line on stderr naming the problem).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

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
              [--log-format text|json] [--log-level info]
  check       validate a configuration without connecting; prints "config OK: N channels, M routes"
              --config FILE
  dlq list    list dead-lettered events
              [--channel X] [--format table|json] [--nats-url URL]
  dlq replay  send dead-lettered events again with the current configuration
              --config FILE [--channel X] [--id EVENT_ID ...] [--nats-url URL]
  test        send a sample event through one channel, bypassing NATS
              --config FILE --channel X [--type subscription.quantity-changed]

run, dlq and test (for nats channels) take the NATS connection flags below; without a URL the notifier
connects to nats://127.0.0.1:4222, the watcher's embedded server (its seed: <data-dir>/nats-auth/notifier.nk).

` + natsconn.Usage() + `
Health endpoint token: PCWATCH_OPS_TOKEN or PCWATCH_OPS_TOKEN_FILE (then /metrics needs it).
Exit status: 0 ok, 1 runtime failure, 2 bad flags or configuration.
`

// exitError carries an exit status and a one-line message.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func usageErr(format string, args ...any) error {
	return &exitError{code: 2, msg: fmt.Sprintf(format, args...)}
}

// run is main without the process: it returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	err := dispatch(ctx, args, stdout, stderr, getenv)
	if err == nil {
		return 0
	}
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stderr, usage)
		return 0
	}
	code := 1
	var ee *exitError
	var ce *notify.ConfigError
	switch {
	case errors.As(err, &ee):
		code = ee.code
	case errors.As(err, &ce):
		code = 2
	}
	fmt.Fprintf(stderr, "notifier: %s\n", oneLine(err.Error()))
	return code
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) == 0 {
		return usageErr("no command: want run, check, dlq list, dlq replay or test (notifier -h for help)")
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
			return usageErr("dlq: want a subcommand: list or replay")
		}
		switch rest[0] {
		case "list":
			return cmdDLQList(ctx, rest[1:], stdout, getenv)
		case "replay":
			return cmdDLQReplay(ctx, rest[1:], stdout, stderr, getenv)
		}
		return usageErr("dlq: unknown subcommand %q (want list or replay)", rest[0])
	}
	return usageErr("unknown command %q (want run, check, dlq list, dlq replay or test)", cmd)
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
		return usageErr("%s: %v", fs.Name(), err)
	}
	if fs.NArg() > 0 {
		return usageErr("%s: unexpected argument %q (settings are flags)", fs.Name(), fs.Arg(0))
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
			return o, usageErr("%v", err)
		}
		if o.URL == "" {
			o.URL = notify.DefaultNATSURL
		}
		return o, nil
	}
}

func loadConfig(path string) (*notify.Config, error) {
	if path == "" {
		return nil, usageErr("--config is required (see deploy/notifier.example.yaml)")
	}
	return notify.LoadConfig(path)
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, usageErr("--log-level %q: want debug, info, warn or error", level)
	}
	ho := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, ho)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, ho)), nil
	}
	return nil, usageErr("--log-format %q: want text or json", format)
}

func cmdRun(ctx context.Context, args []string, stderr io.Writer, getenv func(string) string) error {
	fs := newFlags("run")
	config := fs.String("config", "", "configuration file (YAML)")
	listen := fs.String("listen", "", "health and metrics address (default the config's listen, else "+notify.DefaultListen+")")
	var allowed stringList
	fs.Var(&allowed, "allowed-hosts", "further Host names the health endpoint answers, comma-separated (added to allowed_hosts)")
	format := fs.String("log-format", "text", "log format: text or json")
	level := fs.String("log-level", "info", "log level: debug, info, warn or error")
	natsOpts := natsFlags(fs, getenv)
	if err := parse(fs, args); err != nil {
		return err
	}
	log, err := newLogger(stderr, *format, *level)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(*config)
	if err != nil {
		return err
	}
	for i, h := range allowed {
		if _, err := opsguard.CheckHost(h); err != nil {
			return usageErr("run: --allowed-hosts[%d]: %v", i, err)
		}
	}
	token, err := opsguard.TokenFromEnv(getenv)
	if err != nil {
		return usageErr("run: %v", err)
	}
	no, err := natsOpts()
	if err != nil {
		return err
	}
	no.Logger = log
	return notify.Run(ctx, notify.Options{Config: cfg, NATS: no, Listen: *listen, Logger: log, OpsToken: token, AllowedHosts: allowed})
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

// connect dials NATS and waits until the connection is up: the one-shot
// commands need the server now.
func connect(ctx context.Context, o natsconn.Options) (*nats.Conn, error) {
	nc, err := natsconn.Connect(o)
	if ae := (*natsconn.AuthError)(nil); errors.As(err, &ae) {
		return nil, notify.NATSRefused(o, ae.Err)
	}
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for !nc.IsConnected() {
		if nc.IsClosed() {
			return nil, notify.NATSRefused(o, nc.LastError())
		}
		select {
		case <-ctx.Done():
			nc.Close()
			return nil, fmt.Errorf("cannot reach %s: is the watcher (or NATS) running? Set --nats-url or PCWATCH_NATS_URL", o)
		case <-t.C:
		}
	}
	return nc, nil
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
		return usageErr("dlq list: --format %q: want table or json", *format)
	}
	no, err := natsOpts()
	if err != nil {
		return err
	}
	nc, err := connect(ctx, no)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	entries, err := notify.ListDLQ(ctx, js, *channel)
	if err != nil {
		return err
	}
	return printDLQ(stdout, entries, *format)
}

func printDLQ(w io.Writer, entries []notify.DLQEntry, format string) error {
	if format == "json" {
		if entries == nil {
			entries = []notify.DLQEntry{}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(entries)
	}
	if len(entries) == 0 {
		fmt.Fprintln(w, "no dead-lettered events")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tCHANNEL\tTYPE\tEVENT ID\tCUSTOMER\tREASON")
	for _, e := range entries {
		customer := e.CustomerID
		if e.CustomerName != "" && e.CustomerName != e.CustomerID {
			customer = e.CustomerName + " (" + e.CustomerID + ")"
		}
		reason := e.Reason
		if e.Status != 0 {
			reason += fmt.Sprintf(" %d", e.Status)
		}
		reason += fmt.Sprintf(", %d attempts", e.Attempts)
		if e.Error != "" {
			reason += ": " + truncate(e.Error, 120)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.Time.UTC().Format("2006-01-02 15:04:05"), e.Channel, dash(e.Type), dash(e.EventID), dash(customer), reason)
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
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
	nc, err := connect(ctx, no)
	if err != nil {
		return err
	}
	defer nc.Close()
	log, _ := newLogger(stderr, "text", "warn")
	results, err := notify.ReplayDLQ(ctx, notify.ReplayOptions{Config: cfg, Conn: nc, Channel: *channel, IDs: ids, Logger: log})
	if err != nil {
		return err
	}
	return printReplay(stdout, results)
}

func printReplay(w io.Writer, results []notify.ReplayResult) error {
	if len(results) == 0 {
		fmt.Fprintln(w, "nothing to replay")
		return nil
	}
	failed := 0
	for _, r := range results {
		e := r.Entry
		switch {
		case r.Err != nil:
			failed++
			fmt.Fprintf(w, "FAILED     %s %s %s: %s\n", e.Channel, dash(e.EventID), dash(e.Type), oneLine(r.Err.Error()))
		case r.Delivered:
			fmt.Fprintf(w, "delivered  %s %s %s\n", e.Channel, e.EventID, e.Type)
		default:
			fmt.Fprintf(w, "skipped    %s %s %s: %s\n", e.Channel, e.EventID, e.Type, r.Skipped)
		}
	}
	if failed > 0 {
		return &exitError{code: 1, msg: fmt.Sprintf("dlq replay: %d of %d failed; they stay in the dead-letter queue", failed, len(results))}
	}
	return nil
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
		return usageErr("test: --channel is required")
	}
	t := events.Type(*typ)
	if !strings.HasPrefix(*typ, events.TypePrefix) {
		t = events.Type(events.TypePrefix + *typ)
	}
	if _, ok := events.Lookup(t); !ok {
		return usageErr("test: --type %q is not an event type (e.g. subscription.quantity-changed; see docs/events.md)", *typ)
	}
	cfg, err := loadConfig(*config)
	if err != nil {
		return err
	}
	if !slices.Contains(cfg.ChannelNames(), *channel) {
		return usageErr("test: --channel %q is not in %s (channels: %s)", *channel, *config, strings.Join(cfg.ChannelNames(), ", "))
	}
	to := notify.TestOptions{Config: cfg, Channel: *channel, Type: t}
	if cfg.Channels[*channel].Kind == notify.KindNATS {
		no, err := natsOpts()
		if err != nil {
			return err
		}
		nc, err := connect(ctx, no)
		if err != nil {
			return err
		}
		defer nc.Close()
		to.Conn = nc
	}
	ev, err := notify.SendTest(ctx, to)
	if err != nil {
		// The channel's peer may have echoed a secret (an SMTP server
		// repeating AUTH): the message printed is redacted.
		return cfg.Redactor().WrapError(fmt.Errorf("test: %w", err))
	}
	fmt.Fprintf(stdout, "sent sample %s event %s through %s\n", strings.TrimPrefix(string(ev.Type), events.TypePrefix), ev.ID, *channel)
	return nil
}
