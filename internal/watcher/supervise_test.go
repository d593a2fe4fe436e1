package watcher

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pcwatch/pcwatch/internal/actor"
	"github.com/pcwatch/pcwatch/internal/events"
	"github.com/pcwatch/pcwatch/internal/state"
)

// failFirst wraps the Run of the actor named name: its first run fails at
// once with err; the next runs close rerun (once) and run for real.
func failFirst(name string, err error, rerun chan struct{}) func(string, func(context.Context) error) func(context.Context) error {
	runs := 0
	return func(n string, run func(context.Context) error) func(context.Context) error {
		if n != name {
			return run
		}
		return func(ctx context.Context) error {
			runs++
			if runs == 1 {
				return err
			}
			if runs == 2 && rerun != nil {
				close(rerun)
			}
			return run(ctx)
		}
	}
}

// A relay that fails is restarted with backoff and counted, the failure is
// logged naming it, and /readyz says it is down while it waits; once it
// runs again, events flow.
func TestFailedRelayIsRestartedAndCounted(t *testing.T) {
	injected := errors.New("injected relay failure")
	t.Run("down while waiting for the restart", func(t *testing.T) {
		var logs lockedBuffer
		r := startWatcherWith(t, nil, func(o *Options) {
			o.Logger = NewLogger(&logs, "text", "error")
			o.hooks = &testHooks{wrap: failFirst(actorRelay, injected, nil),
				// Far beyond the test: the relay stays down.
				group: func(g *actor.Options) { g.InitialBackoff, g.MaxBackoff = time.Hour, 2*time.Hour }}
		})
		rt := <-r.rt
		r.waitCycle(t)
		base := "http://" + rt.Listen
		code, body := get(t, base+"/readyz")
		if code != 503 || !strings.Contains(body, "relay is down, restarting after a failure (1 restarts so far): injected relay failure") {
			t.Errorf("/readyz = %d %q, want 503 naming the relay", code, body)
		}
		if _, m := get(t, base+"/metrics"); !strings.Contains(m, `pcwatch_actor_restarts_total{actor="relay"} 1`) {
			t.Errorf("/metrics does not count the restart:\n%s", grepLines(m, "pcwatch_actor"))
		}
		if !strings.Contains(logs.String(), `msg="actor failed; restarting" component=actors actor=relay err="injected relay failure" restarts=1`) {
			t.Errorf("no log line names the failed relay:\n%s", logs.String())
		}
	})
	t.Run("restarted", func(t *testing.T) {
		rerun := make(chan struct{})
		r := startWatcherWith(t, nil, func(o *Options) {
			o.hooks = &testHooks{wrap: failFirst(actorRelay, injected, rerun),
				group: func(g *actor.Options) { g.InitialBackoff, g.MaxBackoff = time.Millisecond, time.Millisecond }}
		})
		rt := <-r.rt
		r.waitCycle(t) // baseline
		<-rerun
		c, sub := activeSub(t, r.sim)
		if err := r.sim.IncreaseSeats(c.ID, sub.ID, 2); err != nil {
			t.Fatal(err)
		}
		if d := waitEvent(t, rt, events.SubscriptionQuantityChanged); d.SubscriptionID != sub.ID {
			t.Errorf("event for %s", d.SubscriptionID)
		}
		base := "http://" + rt.Listen
		if _, body := get(t, base+"/readyz"); strings.Contains(body, "relay") {
			t.Errorf("/readyz after the restart: %q", body)
		}
		if _, m := get(t, base+"/metrics"); !strings.Contains(m, `pcwatch_actor_restarts_total{actor="relay"} 1`) {
			t.Errorf("/metrics: %s", grepLines(m, "pcwatch_actor"))
		}
	})
}

// The embedded NATS server stopping under the watcher is fatal: Run returns
// an error naming it (the binary exits 1), and everything else shuts down,
// in reverse order of start-up: the state file last, closed.
func TestEmbeddedNATSFailureStopsTheWatcherInOrder(t *testing.T) {
	var logs lockedBuffer
	r := startWatcherWith(t, nil, func(o *Options) {
		o.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	r.failed = true
	rt := <-r.rt
	r.waitCycle(t)
	rt.nats.Shutdown() // the fault: the server goes away under the watcher

	err := r.wait()
	var ae *actor.Error
	if !errors.As(err, &ae) || ae.Actor != actorNATS || !strings.Contains(err.Error(), "embedded NATS server at nats://") {
		t.Fatalf("Run = %v, want the embedded NATS failure", err)
	}
	var steps []string
	for _, m := range regexp.MustCompile(`msg="shutdown step (?:done|failed)" component=actors step=("[^"]+"|\S+)`).FindAllStringSubmatch(logs.String(), -1) {
		steps = append(steps, strings.Trim(m[1], `"`))
	}
	want := []string{actorActivity, actorHot, actorHints, actorQuery, actorEvaluator, "outbox flush", actorRelay, actorOps, "NATS connection", actorNATS, "state file"}
	if !slices.Equal(steps, want) {
		t.Errorf("shutdown steps:\n got %q\nwant %q", steps, want)
	}
	// The state file was closed: it opens again, and the operations
	// server no longer listens.
	st, err := state.Open(rt.StatePath, state.Options{LockTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatalf("the state file is still held: %v", err)
	}
	st.Close()
	if c, err := net.Dial("tcp", rt.Listen); err == nil {
		c.Close()
		t.Error("the operations server still listens")
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
