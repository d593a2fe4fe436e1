package deadline

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/pcwatch/pcwatch/internal/clock"
	"github.com/pcwatch/pcwatch/internal/resource"
	"github.com/pcwatch/pcwatch/internal/state"
)

// TestNoRefireAfterRetention is the probe: an annual NCE
// subscription whose cancellationAllowedUntilDate stays in the past fired
// cancellation-window-closed again once the ledger dropped the entry (45
// days); seen at +52 days. It must fire once, at any later date.
func TestNoRefireAfterRetention(t *testing.T) {
	path := filepath.Join(t.TempDir(), state.FileName)
	clk := clock.NewFake(t0)
	cancelBy := t0.Add(time.Hour)
	f := Facts{NCE: true, Status: "active", Quantity: 10, AutoRenew: true, Term: "P1Y", CancelBy: cancelBy, CancelSeenOpen: cancelBy,
		CommitmentEnd: t0.AddDate(1, 0, 0)}
	st, ev := evalStore(t, path, clk, f)
	defer st.Close()
	clk.Set(cancelBy.Add(time.Minute))
	if n, err := ev.EvaluateOnce(context.Background()); err != nil || n != 1 {
		t.Fatalf("at the close: EvaluateOnce = %d, %v; want the closed event", n, err)
	}
	for _, days := range []int{1, 44, 46, 52, 90, 200, 300} {
		clk.Set(cancelBy.Add(time.Duration(days) * 24 * time.Hour))
		ev = &Evaluator{Store: st, Clock: clk, Source: "https://pc.test"} // a restart collects at once
		n, err := ev.EvaluateOnce(context.Background())
		if err != nil || n != 0 {
			t.Errorf("%d days after the window closed: EvaluateOnce = %d, %v; want nothing (it fired already)", days, n, err)
		}
	}
}

// TestLedgerCollection: which entries a collection drops. It may drop an
// entry only when forgetting it can never make it fire again.
func TestLedgerCollection(t *testing.T) {
	x := t0.Add(-100 * 24 * time.Hour) // a deadline long past the retention
	y := t0.Add(-10 * 24 * time.Hour)  // one within it
	ent := "subscription/c1/s1"
	tests := []struct {
		name   string
		stored *Facts // c1/s1's stored facts; nil: not stored
		key    string
		kept   bool
	}{
		{"closed, the window still the one seen open", &Facts{NCE: true, Status: "active", CancelBy: x, CancelSeenOpen: x},
			LedgerKey(ent, CancellationClosed, x, 0), true},
		{"closed, the subscription cancelled (it can be reinstated)", &Facts{NCE: true, Status: "deleted", CancelBy: x, CancelSeenOpen: x},
			LedgerKey(ent, CancellationClosed, x, 0), true},
		{"closed, suspended", &Facts{NCE: true, Status: "suspended", CancelBy: x, CancelSeenOpen: x},
			LedgerKey(ent, CancellationClosed, x, 0), true},
		{"closed, a renewal opened a new window", &Facts{NCE: true, Status: "active", CancelBy: t0.Add(24 * time.Hour), CancelSeenOpen: t0.Add(24 * time.Hour)},
			LedgerKey(ent, CancellationClosed, x, 0), false},
		{"closed, the subscription no longer stored", nil, LedgerKey(ent, CancellationClosed, x, 0), false},
		{"closed, within the retention", nil, LedgerKey(ent, CancellationClosed, y, 0), true},
		{"a threshold long past its deadline", &Facts{NCE: true, Status: "active", CancelBy: x, CancelSeenOpen: x},
			LedgerKey(ent, Cancellation, x, 72*time.Hour), false},
		{"a threshold within the retention", &Facts{NCE: true, Status: "active", CancelBy: y, CancelSeenOpen: y},
			LedgerKey(ent, Cancellation, y, 72*time.Hour), true},
		{"a renewal threshold long past", &Facts{Status: "active", Term: "P1Y", CommitmentEnd: x}, LedgerKey(ent, Renewal, x, 24*time.Hour), false},
		{"a key this version cannot read", nil, "something|else", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := state.Open(filepath.Join(t.TempDir(), state.FileName), state.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			ch := &state.Change{Ledger: []string{tt.key}}
			if tt.stored != nil {
				raw := []byte(`{"id":"s1"}`)
				ch.Puts = []state.Put{{Kind: resource.Subscriptions, Key: "c1/s1", Record: state.Record{Hash: state.HashOf(raw), Rev: 1, Raw: raw, Meta: tt.stored.Encode()}}}
			}
			if err := st.Commit(ch); err != nil {
				t.Fatal(err)
			}
			ev := &Evaluator{Store: st, Clock: clock.NewFake(t0), Source: "https://pc.test"}
			if _, err := ev.EvaluateOnce(context.Background()); err != nil {
				t.Fatal(err)
			}
			var kept bool
			st.View(func(r *state.ReadTx) error { kept = r.LedgerHas(tt.key); return nil })
			if kept != tt.kept {
				t.Errorf("after a collection the entry is kept=%v, want %v", kept, tt.kept)
			}
		})
	}
}

// TestCollectionInterval: the ledger is collected once per GCInterval, not
// at every evaluation (it used to run every minute once nothing was left to
// drop).
func TestCollectionInterval(t *testing.T) {
	st, err := state.Open(filepath.Join(t.TempDir(), state.FileName), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	clk := clock.NewFake(t0)
	ev := &Evaluator{Store: st, Clock: clk, Source: "https://pc.test"}
	// Collections at t0 and an hour later, with nothing to drop.
	for i := range 2 {
		clk.Advance(time.Duration(i) * (time.Hour + time.Minute))
		if _, err := ev.EvaluateOnce(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	// An entry that becomes collectable just after a collection stays
	// until an hour has passed since it.
	old := LedgerKey("subscription/c1/s1", Renewal, t0.Add(-46*24*time.Hour), 24*time.Hour)
	if err := st.Commit(&state.Change{Ledger: []string{old}}); err != nil {
		t.Fatal(err)
	}
	has := func() (h bool) { st.View(func(r *state.ReadTx) error { h = r.LedgerHas(old); return nil }); return }
	clk.Advance(time.Minute)
	ev.EvaluateOnce(context.Background())
	if !has() {
		t.Error("collected a minute after the last collection")
	}
	clk.Advance(time.Hour)
	ev.EvaluateOnce(context.Background())
	if has() {
		t.Error("not collected an hour after the last collection")
	}
}
