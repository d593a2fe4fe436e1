package watcher

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"golang.org/x/oauth2"

	"github.com/pcwatch/pcwatch/internal/clock"
	"github.com/pcwatch/pcwatch/internal/events"
	"github.com/pcwatch/pcwatch/internal/natstest"
	"github.com/pcwatch/pcwatch/internal/pcsim"
	"github.com/pcwatch/pcwatch/internal/relay"
	"github.com/pcwatch/pcwatch/internal/secret"
	"github.com/pcwatch/pcwatch/internal/state"
)

// TestReadinessReflectsARelayThatCannotPublish: /readyz stayed 200 while
// the relay failed on one record forever. An oversized record no longer
// blocks it, but publishing can still fail for other reasons; when it has
// failed relayFailuresUnready times in a row while events wait, and NATS is
// connected (not an outage the outbox rides out) or refuses the
// credentials, the watcher is not ready and says why.
func TestReadinessReflectsARelayThatCannotPublish(t *testing.T) {
	st, err := state.Open(filepath.Join(t.TempDir(), state.FileName), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	env, _, err := events.New("src", events.OpsCycleCompleted, events.IDKey{Entity: "ops/cycle", Revision: 1}, time.Now(),
		&events.Data{Cycle: &events.CycleSummary{Number: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Commit(&state.Change{Events: []events.Envelope{env}}); err != nil {
		t.Fatal(err)
	}
	up := natstest.Connect(t, natstest.Start(t).ClientURL())
	gone := natstest.Start(t)
	down := natstest.Connect(t, gone.ClientURL())
	lost := down.StatusChanged(nats.RECONNECTING, nats.DISCONNECTED, nats.CLOSED)
	gone.Shutdown()
	<-lost // the client has noticed
	since := time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)
	tooSmall := fmt.Errorf("publishing event x: %w", relay.ErrLimitTooSmall)
	refused := fmt.Errorf("NATS is not connected: the server refused the credentials (%w)", nats.ErrAuthorization)
	for _, tc := range []struct {
		name     string
		nc       *nats.Conn
		failures int
		err      error
		why      string // "" = ready
	}{
		{"publishing", up, 0, nil, ""},
		{"a few failures", up, relayFailuresUnready - 1, tooSmall, ""},
		{"failing while connected", up, relayFailuresUnready, tooSmall, "events are not being published (8 attempts in a row failed since 2026-07-01T12:00:00Z; 1 waiting in the outbox)"},
		{"NATS down: the outbox rides it out", down, 50, errors.New("nats: outbound buffer limit exceeded"), ""},
		{"credentials refused", down, relayFailuresUnready, refused, "refused the credentials"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &health{store: st, nc: tc.nc, interval: time.Minute, started: time.Now(), listFailures: 3,
				relay: func() relay.Health {
					return relay.Health{ConsecutiveFailures: tc.failures, FailingSince: since, LastError: tc.err}
				}}
			ok, why := h.ready()
			got := strings.Join(why, "; ")
			if ok != (tc.why == "") || !strings.Contains(got, tc.why) {
				t.Errorf("ready %v (%q), want ready %v with %q", ok, got, tc.why == "", tc.why)
			}
		})
	}
}

// TestMetricsCountOversizedEvents: the relay's counts reach /metrics.
func TestMetricsCountOversizedEvents(t *testing.T) {
	m := newMetrics()
	var rm relay.Metrics = m
	rm.EventsTruncated(2)
	rm.EventsDropped(1)
	fams, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range fams {
		if len(f.GetMetric()) == 1 && f.GetMetric()[0].GetCounter() != nil {
			got[f.GetName()] = f.GetMetric()[0].GetCounter().GetValue()
		}
	}
	if got["pcwatch_events_truncated_total"] != 2 || got["pcwatch_events_dropped_total"] != 1 {
		t.Errorf("truncated %v, dropped %v; want 2 and 1", got["pcwatch_events_truncated_total"], got["pcwatch_events_dropped_total"])
	}
}

// lockedBuffer is a log sink written by the watcher's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestLogShowsTheNATSAuthInUse: the watcher logged "auth none" for a NATS
// server it reached with a user and password (the log line was built from
// the URL alone), and a password in --nats-url must never show.
func TestLogShowsTheNATSAuthInUse(t *testing.T) {
	const pass = "n4ts-pa/ss@word"
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
		Username: "svc", Password: pass, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	defer ns.Shutdown()
	host := strings.TrimPrefix(ns.ClientURL(), "nats://")
	for _, tc := range []struct {
		name string
		url  string
		env  map[string]string
		want string
	}{
		{"user and password from the environment", ns.ClientURL(), map[string]string{"PCWATCH_NATS_USER": "svc", "PCWATCH_NATS_PASSWORD": pass},
			`auth user \"svc\" and password)`},
		{"password in --nats-url", "nats://svc:" + strings.NewReplacer("/", "%2F", "@", "%40").Replace(pass) + "@" + host, nil,
			`auth user \"svc\" and password in the URL)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := clock.NewFake(time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC))
			sim := pcsim.New(pcsim.Options{Seed: 3, Customers: 2, Clock: clk, Token: "tok"})
			pcs := httptest.NewServer(sim)
			defer pcs.Close()
			c := Default()
			c.PCURL, c.DataDir, c.NATS.URL, c.Listen, c.Once = pcs.URL, t.TempDir(), tc.url, "", true
			c.Rate = 1e5
			logs := &lockedBuffer{}
			err := Run(context.Background(), Options{Config: c, Clock: clk, Logger: slog.New(slog.NewTextHandler(logs, nil)),
				Getenv:      func(k string) string { return tc.env[k] },
				TokenSource: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "tok"})})
			if err != nil {
				t.Fatalf("Run: %v\n%s", err, logs)
			}
			var started string
			for _, l := range strings.Split(logs.String(), "\n") {
				if strings.Contains(l, `msg="watcher started"`) {
					started = l
				}
			}
			if !strings.Contains(started, `nats="NATS `+ns.ClientURL()+" (") || !strings.Contains(started, tc.want) {
				t.Errorf("start line does not describe the auth in use (want %s):\n%s", tc.want, started)
			}
			for _, enc := range secret.Encodings(pass) {
				if strings.Contains(logs.String(), enc) {
					t.Errorf("the log holds the password (as %q)", enc)
				}
			}
		})
	}
}
