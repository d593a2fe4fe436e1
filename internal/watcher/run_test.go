package watcher

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/oauth2"

	"github.com/pcwatch/pcwatch/internal/clock"
	"github.com/pcwatch/pcwatch/internal/events"
	"github.com/pcwatch/pcwatch/internal/natsembed"
	"github.com/pcwatch/pcwatch/internal/pcsim"
	"github.com/pcwatch/pcwatch/internal/poller"
	"github.com/pcwatch/pcwatch/internal/resource"
	"github.com/pcwatch/pcwatch/internal/stream"
)

type running struct {
	rt     chan *Runtime
	cycles chan *poller.Report
	done   chan error
	cancel context.CancelFunc
	sim    *pcsim.Sim
	// result is Run's result once a test read it from done; failed says
	// the test expects Run to have failed.
	result *error
	failed bool
}

// wait returns Run's result (once).
func (r *running) wait() error {
	if r.result == nil {
		err := <-r.done
		r.result = &err
	}
	return *r.result
}

func startWatcher(t *testing.T, mod func(*Config)) *running {
	t.Helper()
	return startWatcherWith(t, mod, nil)
}

// startWatcherWith starts a watcher against a simulator; opts, when set,
// adjusts the Options (test hooks, a logger). The cleanup cancels it and
// expects a nil result unless the test read r.done itself.
func startWatcherWith(t *testing.T, mod func(*Config), opts func(*Options)) *running {
	t.Helper()
	clk := clock.NewFake(time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC))
	sim := pcsim.New(pcsim.Options{Seed: 3, Customers: 10, Clock: clk, Token: "tok"})
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	return startWatcherOnWith(t, sim, srv, clk, mod, opts)
}

// startWatcherOn starts a watcher against the simulator sim served by srv
// (plain or TLS: the watcher uses srv's client), on clk.
func startWatcherOn(t *testing.T, sim *pcsim.Sim, srv *httptest.Server, clk *clock.Fake, mod func(*Config)) *running {
	t.Helper()
	return startWatcherOnWith(t, sim, srv, clk, mod, nil)
}

func startWatcherOnWith(t *testing.T, sim *pcsim.Sim, srv *httptest.Server, clk *clock.Fake, mod func(*Config), opts func(*Options)) *running {
	t.Helper()
	c := Default()
	c.PCURL, c.DataDir, c.NATSPort, c.Listen = srv.URL, t.TempDir(), -1, "127.0.0.1:0"
	c.Interval, c.DeadlineInterval, c.Rate = 20*time.Millisecond, 20*time.Millisecond, 1e5
	c.Resources = []string{"subscriptions", "managedservices"}
	if mod != nil {
		mod(&c)
	}
	r := &running{rt: make(chan *Runtime, 1), cycles: make(chan *poller.Report, 100), done: make(chan error, 1), sim: sim}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	o := Options{Config: c, Clock: clk, Logger: NewLogger(testLog(), "text", "error"), HTTPClient: srv.Client(),
		TokenSource: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "tok"}),
		Started:     func(rt *Runtime) { r.rt <- rt },
		Cycled: func(rep *poller.Report) {
			select {
			case r.cycles <- rep:
			default:
			}
		}}
	if opts != nil {
		opts(&o)
	}
	go func() { r.done <- Run(ctx, o) }()
	t.Cleanup(func() {
		cancel()
		if err := r.wait(); err != nil && !r.failed {
			t.Errorf("Run returned %v after cancel", err)
		}
	})
	return r
}

func (r *running) waitCycle(t *testing.T) *poller.Report {
	t.Helper()
	select {
	case rep := <-r.cycles:
		return rep
	case err := <-r.done:
		r.result = &err
		t.Fatalf("watcher stopped: %v", err)
	}
	return nil
}

// waitEvent reads PCWATCH_EVENTS until an event of type typ arrives.
func waitEvent(t *testing.T, rt *Runtime, typ events.Type) *events.Data {
	t.Helper()
	js, _ := jetstream.New(rt.Conn)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// The connection may still be reconnecting, or the stream not be made
	// yet (NATS was down at start): a failed attempt waits for the
	// connection to come up or for JetStream to announce the stream, not
	// for a guessed while. Both are watched before the first attempt, so
	// neither can pass unseen.
	up := rt.Conn.StatusChanged(nats.CONNECTED)
	defer rt.Conn.RemoveStatusListener(up)
	created := make(chan *nats.Msg, 8)
	sub, err := rt.Conn.ChanSubscribe(server.JSAdvisoryStreamCreatedPre+"."+stream.Name, created)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	var cons jetstream.Consumer
	for {
		if cons, err = js.OrderedConsumer(ctx, stream.Name, jetstream.OrderedConsumerConfig{}); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no consumer on %s: %v", stream.Name, err)
		case <-up:
		case <-created:
		}
	}
	for {
		m, err := cons.Next(jetstream.FetchMaxWait(time.Second))
		if ctx.Err() != nil {
			t.Fatalf("no %s event on JetStream", typ)
		}
		if err != nil {
			continue
		}
		ev, err := events.Decode(m.Data())
		if err != nil {
			t.Fatal(err)
		}
		if ev.Type == typ {
			d, _ := ev.DecodeData()
			return d
		}
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestRunLoopEndToEnd(t *testing.T) {
	r := startWatcher(t, nil)
	rt := <-r.rt
	if !rt.Embedded {
		t.Fatal("no NATS URL configured should run an embedded server")
	}
	r.waitCycle(t) // baseline
	c, sub := activeSub(t, r.sim)
	if err := r.sim.IncreaseSeats(c.ID, sub.ID, 4); err != nil {
		t.Fatal(err)
	}
	d := waitEvent(t, rt, events.SubscriptionQuantityChanged)
	if d.SubscriptionID != sub.ID || *d.Delta != 4 {
		t.Errorf("quantity event = %+v", d)
	}
	base := "http://" + rt.Listen
	if code, body := get(t, base+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz = %d %q", code, body)
	}
	if code, body := get(t, base+"/readyz"); code != 200 {
		t.Errorf("/readyz = %d %q", code, body)
	}
	_, metrics := get(t, base+"/metrics")
	for _, want := range []string{"pcwatch_cycles_total{result=\"complete\"}", `pcwatch_events_emitted_total{type="io.pcwatch.subscription.quantity-changed"} 1`,
		`pcwatch_api_requests_total{endpoint="subscriptions",status="200"}`, "pcwatch_outbox_depth", "pcwatch_last_successful_cycle_timestamp_seconds",
		"pcwatch_cycle_duration_seconds_bucket", "pcwatch_deadline_ledger_entries"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	_, st := get(t, base+"/api/state")
	var sum StateSummary
	if err := json.Unmarshal([]byte(st), &sum); err != nil || sum.Records[resource.Customers] != 10 || len(sum.PerCustomer) != 10 {
		t.Errorf("/api/state = %s (%v)", st, err)
	}
	if code, _ := get(t, base+"/api/deadlines"); code != 200 {
		t.Errorf("/api/deadlines = %d", code)
	}
}

// TestNATSDownAtStart: polling goes on while NATS is unreachable, events
// wait in the outbox, and they all go out once NATS comes up.
func TestNATSDownAtStart(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	r := startWatcher(t, func(c *Config) { c.NATS.URL = "nats://127.0.0.1:" + strconv.Itoa(port) })
	rt := <-r.rt
	r.waitCycle(t)
	c, sub := activeSub(t, r.sim)
	if err := r.sim.SetAutoRenew(c.ID, sub.ID, !sub.AutoRenewEnabled); err != nil {
		t.Fatal(err)
	}
	r.waitCycle(t)
	rep := r.waitCycle(t)
	if !rep.Complete() {
		t.Fatalf("polling failed while NATS was down: %+v", rep)
	}
	if n, _ := rt.Store.OutboxLen(); n == 0 {
		t.Fatal("events did not wait in the outbox while NATS was down")
	}
	srv, err := natsembed.Start(natsembed.Options{Port: port, StoreDir: filepath.Join(t.TempDir(), "nats")})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	d := waitEvent(t, rt, events.SubscriptionAutoRenewChanged)
	if d.SubscriptionID != sub.ID {
		t.Errorf("auto-renew event for %s", d.SubscriptionID)
	}
}

func testLog() io.Writer { return io.Discard }

// activeSub finds an active NCE subscription (one that accepts changes).
func activeSub(t *testing.T, sim *pcsim.Sim) (pcsim.CustomerState, pcsim.SubscriptionState) {
	t.Helper()
	for _, c := range sim.State().Customers {
		for _, s := range c.Subscriptions {
			if s.Status == "active" && s.CancellationAllowedUntil != nil && !s.IsTrial {
				return c, s
			}
		}
	}
	t.Fatal("no active NCE subscription in the dataset")
	return pcsim.CustomerState{}, pcsim.SubscriptionState{}
}
