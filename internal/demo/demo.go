// Package demo is `watcher demo`, the zero-config tour: the Partner Center
// simulator on an accelerated calendar, the watcher (package watcher, run
// as the service runs it) with an embedded NATS server, and one readable
// line per event. Run embeds it in any program.
package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/oauth2"

	"github.com/pcwatch/pcwatch/internal/clock"
	"github.com/pcwatch/pcwatch/internal/events"
	"github.com/pcwatch/pcwatch/internal/pcsim"
	"github.com/pcwatch/pcwatch/internal/poller"
	"github.com/pcwatch/pcwatch/internal/resource"
	"github.com/pcwatch/pcwatch/internal/stream"
	"github.com/pcwatch/pcwatch/internal/watcher"
)

// Options configure the tour. The zero value is the documented demo.
type Options struct {
	Customers   int           // simulated customers; default 40
	Speed       float64       // simulated seconds per wall second; default 3600 (an hour a second)
	Interval    time.Duration // poll interval; default 3s
	MutateEvery time.Duration // random simulator changes; default 2s
	DataDir     string        // default a temporary directory, removed at exit
	NATSPort    int           // default 4222 when free, else a free port
	Listen      string        // operations server; default 127.0.0.1:9464 when free
	Out         io.Writer     // the live event lines; default os.Stdout
	Logger      *slog.Logger  // default warnings to stderr
	// Started is called when the watcher runs (tests).
	Started func(*watcher.Runtime)
}

// Run runs the tour in one process until ctx ends: the Partner Center
// simulator with an accelerated calendar, an embedded NATS server, the
// watcher polling every few seconds, and one readable line per event on
// o.Out. It returns nil when ctx ends, and the simulator's or the
// watcher's error when either cannot run (a *watcher.StartupError when
// the watcher cannot start).
func Run(ctx context.Context, o Options) error {
	if o.Customers <= 0 {
		o.Customers = 40
	}
	if o.Speed <= 0 {
		o.Speed = 3600
	}
	if o.Interval <= 0 {
		o.Interval = 3 * time.Second
	}
	if o.MutateEvery <= 0 {
		o.MutateEvery = 2 * time.Second
	}
	if o.Out == nil {
		o.Out = os.Stdout
	}
	if o.Logger == nil {
		o.Logger = watcher.NewLogger(os.Stderr, "text", "warn")
	}
	if o.DataDir == "" {
		dir, err := os.MkdirTemp("", "pcwatch-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		o.DataDir = dir
	}
	if o.NATSPort == 0 {
		o.NATSPort = freeOr(4222)
	}
	if o.Listen == "" {
		o.Listen = "127.0.0.1:" + strconv.Itoa(freeOr(9464))
	}
	now := time.Now().UTC().Truncate(time.Second)
	clk := clock.Accelerated{Start: now, Epoch: now, Speed: o.Speed}

	simReady := make(chan string, 1)
	simCtx, stopSim := context.WithCancel(ctx)
	defer stopSim()
	simDone := make(chan error, 1)
	go func() {
		simDone <- pcsim.Run(simCtx, pcsim.RunOptions{Addr: "127.0.0.1:0", MutateEvery: o.MutateEvery, Mutations: 3,
			Sim:   pcsim.Options{Seed: time.Now().UnixNano() % 1000, Customers: o.Customers, Clock: clk, Token: "demo"},
			Ready: func(url string, _ *pcsim.Sim) { simReady <- url }})
	}()
	var simURL string
	select {
	case simURL = <-simReady:
	case err := <-simDone:
		return fmt.Errorf("simulator: %w", err)
	case <-ctx.Done():
		return nil
	}

	c := watcher.Default()
	c.PCURL, c.DataDir, c.NATSPort, c.Listen = simURL, o.DataDir, o.NATSPort, o.Listen
	c.Interval, c.DeadlineInterval = o.Interval, time.Second
	c.Rate, c.Concurrency = 6000, 8
	c.Resources = nil
	for _, k := range resource.All() {
		if k.InDemo() {
			c.Resources = append(c.Resources, k.Option())
		}
	}
	c.Clock = clk.String()
	c.Source = "pcwatch-demo"

	pr := &printer{out: o.Out}
	err := watcher.Run(ctx, watcher.Options{
		Config: c, Logger: o.Logger, TokenSource: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "demo"}),
		Started: func(rt *watcher.Runtime) {
			fmt.Fprintf(o.Out, "pcwatch demo: %d simulated customers, calendar running %gx (an hour every %s), polling every %s\n",
				o.Customers, o.Speed, time.Duration(float64(time.Hour)/o.Speed).Round(time.Millisecond), o.Interval)
			fmt.Fprintf(o.Out, "  Partner Center simulator  %s   (admin API: %s/admin/state)\n", simURL, simURL)
			seed := rt.NATSCredentials.NotifierSeed
			fmt.Fprintf(o.Out, "  NATS (JetStream)          %s   stream %s, subjects pcwatch.events.> and pcwatch.ops.>\n", rt.NATSURL, stream.Name)
			fmt.Fprintf(o.Out, "                            authenticated: connect with the notifier's NKey seed %s\n", seed)
			fmt.Fprintf(o.Out, "  operations                http://%s/metrics  /readyz  /api/deadlines\n", rt.Listen)
			fmt.Fprintf(o.Out, "  try: nats --server %s --nkey %s sub 'pcwatch.events.subscription.>'\n", rt.NATSURL, seed)
			// --clock: the notifier reads deadlines, reminders and silences
			// on the demo's accelerated calendar.
			fmt.Fprintf(o.Out, "       PCWATCH_NATS_URL=%s PCWATCH_NATS_NKEY=%s go run ./cmd/notifier run --config deploy/notifier.demo.yaml --clock %s   (then: nats --nkey ... sub 'alerts.>')\n", rt.NATSURL, seed, clk.String())
			fmt.Fprintf(o.Out, "The first cycle is a silent baseline; changes and deadlines follow. Ctrl-C to stop.\n\n")
			sub, err := rt.Conn.Subscribe("pcwatch.>", pr.handle)
			if err != nil {
				o.Logger.Error("demo: subscribing to events", "err", err)
				return
			}
			pr.sub = sub
			if o.Started != nil {
				o.Started(rt)
			}
		},
		Cycled: func(r *poller.Report) {},
	})
	stopSim()
	<-simDone
	if err == nil {
		fmt.Fprintf(o.Out, "\npcwatch demo stopped after %d events.\n", pr.count())
	}
	return err
}

func freeOr(port int) int {
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err == nil {
		ln.Close()
		return port
	}
	ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return -1
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// printer renders one readable line per event.
type printer struct {
	out io.Writer
	sub *nats.Subscription
	mu  sync.Mutex
	n   int
}

func (p *printer) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

func (p *printer) handle(m *nats.Msg) {
	ev, err := events.Decode(m.Data)
	if err != nil {
		return
	}
	d, err := ev.DecodeData()
	if err != nil {
		return
	}
	line := FormatEvent(ev, d)
	p.mu.Lock()
	p.n++
	fmt.Fprintln(p.out, line)
	p.mu.Unlock()
}

// FormatEvent renders an event as one terminal line: time, type, customer,
// subscription, old -> new, deadline.
func FormatEvent(ev *events.Event, d *events.Data) string {
	typ := strings.TrimPrefix(string(ev.Type), events.TypePrefix)
	who := d.CustomerName
	if who == "" {
		who = short(d.CustomerID)
	}
	what := ""
	v := d.After
	if v == nil {
		v = d.Before
	}
	if v != nil {
		switch {
		case v.OfferName != "":
			what = v.OfferName
		case v.Name != "":
			what = v.Name
		case v.Title != "":
			what = v.Title
		case v.Domain != "":
			what = v.Domain
		}
		if d.SubscriptionID != "" {
			what += " (" + short(d.SubscriptionID) + ")"
		}
	}
	detail := ""
	switch {
	case d.Cycle != nil:
		c := d.Cycle
		return fmt.Sprintf("%s  %-42s cycle %d: %d/%d customers ok, %d events, %d requests, %d throttled, %.1fs",
			ev.Time.Local().Format("15:04:05"), typ, c.Number, c.CustomersOK, c.CustomersTotal, c.EventsEmitted, c.APIRequests, c.Throttled, c.DurationSeconds)
	case d.Failure != nil:
		detail = fmt.Sprintf("%d failures in a row: %s", d.Failure.ConsecutiveFailures, d.Failure.LastError)
	case d.Hold != nil:
		detail = fmt.Sprintf("%d of %d %ss vanished at once; removals held", d.Hold.Missing, d.Hold.Total, d.Hold.Resource)
	case d.Deadline != nil:
		detail = "closes " + d.Deadline.Format("2006-01-02 15:04 UTC")
		if d.Remaining != "" {
			detail += " (in " + d.Remaining + ")"
		}
		if d.Quantity != nil {
			detail += fmt.Sprintf(", %d seats", *d.Quantity)
		}
		if d.AutoRenewEnabled != nil {
			if *d.AutoRenewEnabled {
				detail += ", will renew"
			} else {
				detail += ", will EXPIRE (auto-renew off)"
			}
		}
		detail += timingNote(d)
	case d.Old != nil || d.New != nil:
		detail = compact(d.Old) + " -> " + compact(d.New)
		if d.Delta != nil {
			detail += fmt.Sprintf(" (%+d)", *d.Delta)
		}
	case len(d.Changes) > 0:
		var parts []string
		for i, c := range d.Changes {
			if i == 3 {
				parts = append(parts, fmt.Sprintf("+%d more", len(d.Changes)-3))
				break
			}
			parts = append(parts, fmt.Sprintf("%s %s -> %s", c.Path, compact(c.Old), compact(c.New)))
		}
		detail = strings.Join(parts, "; ")
	}
	return fmt.Sprintf("%s  %-42s %-26s %-40s %s", ev.Time.Local().Format("15:04:05"), typ, trunc(who, 26), trunc(what, 40), detail)
}

// timingNote says why a deadline event fires when it does: nothing when on
// time, "[LATE: watcher was down]", or "(first seen inside 72h)".
func timingNote(d *events.Data) string {
	switch {
	case d.Timing == events.TimingLate:
		return " [LATE: watcher was down]"
	case d.Timing == events.TimingFirstSeenInside && d.Threshold != "":
		return " (first seen inside " + d.Threshold + ")"
	case d.Timing == events.TimingFirstSeenInside:
		return " (first seen just before)"
	case d.Timing == "" && d.Late != nil && *d.Late:
		return " [late]"
	}
	return ""
}

func compact(b json.RawMessage) string {
	if len(b) == 0 {
		return "∅"
	}
	s := string(b)
	if t, err := strconv.Unquote(s); err == nil {
		if tm, err := time.Parse(time.RFC3339Nano, t); err == nil {
			return tm.UTC().Format("2006-01-02")
		}
		return t
	}
	return trunc(s, 40)
}

func short(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

func trunc(s string, n int) string {
	if len([]rune(s)) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}
