package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcwatch/pcwatch/internal/cli"
	"github.com/pcwatch/pcwatch/internal/events"
	"github.com/pcwatch/pcwatch/internal/natsconn"
)

// The one-shot commands of cmd/notifier (check, dlq list, dlq replay,
// test), once their flags are parsed. Their errors follow package cli:
// a *cli.UsageError or *ConfigError is exit status 2, anything else 1.

// ExitStatus is 2 (cli.StatusUsage): the notifier could not start.
func (e *ConfigError) ExitStatus() int { return cli.StatusUsage }

// dialWait bounds how long the one-shot commands wait for NATS.
const dialWait = 10 * time.Second

// Dial connects to NATS and waits, up to 10 seconds, until the connection
// is up: the one-shot commands need the server now, where Run keeps
// retrying. Refused credentials are said at once (NATSRefused), a server
// that does not answer in time names the URL and the settings to fix.
func Dial(ctx context.Context, o natsconn.Options) (*nats.Conn, error) {
	nc, err := natsconn.Connect(o)
	if ae := (*natsconn.AuthError)(nil); errors.As(err, &ae) {
		return nil, NATSRefused(o, ae.Err)
	}
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, dialWait)
	defer cancel()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for !nc.IsConnected() {
		if nc.IsClosed() {
			return nil, NATSRefused(o, nc.LastError())
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

// NewLogger returns the logger of --log-format (text or json) and
// --log-level (debug, info, warn or error) writing to w; another value is
// a *cli.UsageError naming the flag.
func NewLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, cli.Usagef("--log-level %q: want debug, info, warn or error", level)
	}
	ho := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, ho)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, ho)), nil
	}
	return nil, cli.Usagef("--log-format %q: want text or json", format)
}

// listWait bounds `notifier dlq list`'s reading of the dead-letter stream.
const listWait = 60 * time.Second

// DeadLetters is `notifier dlq list`: the dead-lettered events of channel
// (every channel when ""), read from the NATS server o names within a
// minute.
func DeadLetters(ctx context.Context, o natsconn.Options, channel string) ([]DLQEntry, error) {
	nc, err := Dial(ctx, o)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, listWait)
	defer cancel()
	return ListDLQ(ctx, js, channel)
}

// Replay is `notifier dlq replay`: ReplayDLQ over a connection to the
// NATS server o names (ro.Conn is set here).
func Replay(ctx context.Context, o natsconn.Options, ro ReplayOptions) ([]ReplayResult, error) {
	nc, err := Dial(ctx, o)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	ro.Conn = nc
	return ReplayDLQ(ctx, ro)
}

// WriteDLQ writes dead-lettered entries: a JSON array (empty, never null),
// or a table, one line each with the reason, the attempts and the
// channel's error (cut at 120 characters).
func WriteDLQ(w io.Writer, entries []DLQEntry, asJSON bool) error {
	if asJSON {
		if entries == nil {
			entries = []DLQEntry{}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(entries)
	}
	if len(entries) == 0 {
		_, err := fmt.Fprintln(w, "no dead-lettered events")
		return err
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
			reason += ": " + truncate(120, e.Error)
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

// WriteReplay writes one line per replayed entry: delivered, skipped (and
// why) or FAILED (the error on one line). When some failed, the error
// (exit status 1) says how many; they stay in the dead-letter queue.
func WriteReplay(w io.Writer, results []ReplayResult) error {
	if len(results) == 0 {
		_, err := fmt.Fprintln(w, "nothing to replay")
		return err
	}
	failed := 0
	for _, r := range results {
		e := r.Entry
		switch {
		case r.Err != nil:
			failed++
			fmt.Fprintf(w, "FAILED     %s %s %s: %s\n", e.Channel, dash(e.EventID), dash(e.Type), cli.OneLine(r.Err.Error()))
		case r.Delivered:
			fmt.Fprintf(w, "delivered  %s %s %s\n", e.Channel, e.EventID, e.Type)
		default:
			fmt.Fprintf(w, "skipped    %s %s %s: %s\n", e.Channel, e.EventID, e.Type, r.Skipped)
		}
	}
	if failed > 0 {
		return fmt.Errorf("dlq replay: %d of %d failed; they stay in the dead-letter queue", failed, len(results))
	}
	return nil
}

// ParseEventType reads `notifier test --type`: a type of the catalog,
// with or without the io.pcwatch. prefix; another is a *cli.UsageError.
func ParseEventType(s string) (events.Type, error) {
	t := events.Type(s)
	if !strings.HasPrefix(s, events.TypePrefix) {
		t = events.Type(events.TypePrefix + s)
	}
	if _, ok := events.Lookup(t); !ok {
		return "", cli.Usagef("test: --type %q is not an event type (e.g. subscription.quantity-changed; see docs/events.md)", s)
	}
	return t, nil
}

// Test is `notifier test`: SendTest of a sample event of type t through
// channel. A channel cfg does not define is a *cli.UsageError naming the
// ones it does; dial is called only for a nats channel. The error is
// redacted of cfg's secrets: the channel's peer may have echoed one (an
// SMTP server repeating AUTH).
func Test(ctx context.Context, cfg *Config, channel string, t events.Type, dial func() (*nats.Conn, error)) (*events.Event, error) {
	if !slices.Contains(cfg.names, channel) {
		return nil, cli.Usagef("test: --channel %q is not in %s (channels: %s)", channel, cfg.file, strings.Join(cfg.names, ", "))
	}
	to := TestOptions{Config: cfg, Channel: channel, Type: t}
	if cfg.Channels[channel].Kind == KindNATS {
		nc, err := dial()
		if err != nil {
			return nil, err
		}
		defer nc.Close()
		to.Conn = nc
	}
	ev, err := SendTest(ctx, to)
	if err != nil {
		return nil, cfg.Redactor().WrapError(fmt.Errorf("test: %w", err))
	}
	return ev, nil
}

// Silences is `notifier silence ...`: f runs with a JetStream context on a
// connection to the server o names.
func Silences(ctx context.Context, o natsconn.Options, f func(ctx context.Context, js jetstream.JetStream) error) error {
	nc, err := Dial(ctx, o)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, listWait)
	defer cancel()
	return f(ctx, js)
}

// WriteSilences writes runtime silences: a JSON array (empty, never null),
// or a table with the state at now (active, pending, expired), the end,
// the matchers, the author and the comment. Expired ones only with all.
func WriteSilences(w io.Writer, l []RuntimeSilence, now time.Time, all, asJSON bool) error {
	var sel []RuntimeSilence
	for _, s := range l {
		if all || now.Before(s.EndsAt) {
			sel = append(sel, s)
		}
	}
	if asJSON {
		if sel == nil {
			sel = []RuntimeSilence{}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(sel)
	}
	if len(sel) == 0 {
		_, err := fmt.Fprintln(w, "no silences")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tSTARTS\tENDS\tMATCH\tBY\tCOMMENT")
	for _, s := range sel {
		state := "active"
		switch {
		case !now.Before(s.EndsAt):
			state = "expired"
		case now.Before(s.StartsAt):
			state = "pending"
		}
		m, _ := json.Marshal(s.Match)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, state, s.StartsAt.UTC().Format(time.RFC3339), s.EndsAt.UTC().Format(time.RFC3339),
			cli.OneLine(string(m)), cli.OneLine(s.CreatedBy), truncate(60, cli.OneLine(s.Comment)))
	}
	return tw.Flush()
}
