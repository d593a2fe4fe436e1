package notify

import (
	"context"
	"testing"
	"time"

	"github.com/pcwatch/pcwatch/internal/clock"
)

// TestCommittedClaimIsRecognisedWithoutMark checks the contract of the
// delivered batches: a send that was committed in a batch, its claim never
// marked delivered, is a duplicate for another process, for a redelivery
// of the same message and for its own process; a claim that was not
// committed is not, and a batch written after the claim went stale does
// not count.
func TestCommittedClaimIsRecognisedWithoutMark(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	kv, err := EnsureDeliveries(ctx, e.js, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	claims, err := EnsureClaims(ctx, e.js, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	clk := clock.NewFake(time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC))
	stale := func(string) time.Duration { return time.Minute }
	store := func(instance string) *deliveryStore {
		s := newDeliveryStore(e.js, kv, claims, instance, clk, time.Hour, stale)
		s.writeRestored(ctx)
		return s
	}
	a, b := store("a-1"), store("b-2")
	ask := func(s *deliveryStore, key string, seq, n uint64) claim {
		t.Helper()
		cl, err := s.claim(ctx, "hook", key, seq, n)
		if err != nil {
			t.Fatal(err)
		}
		return cl
	}
	// Batches of a before the claims: the claims point past them.
	if err := a.commit(ctx, "hook.old"); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"hook.e1", "hook.e2", "hook.e3"} {
		if cl := ask(a, k, 10, 1); cl.outcome != claimed {
			t.Fatalf("%s: first claim %v", k, cl.outcome)
		}
	}
	// Another process's batch in between, then a's.
	if err := b.commit(ctx, "hook.other"); err != nil {
		t.Fatal(err)
	}
	if err := a.commit(ctx, "hook.e1"); err != nil {
		t.Fatal(err)
	}

	// Another process: e1 is delivered, e2 is being sent (busy).
	if cl := ask(b, "hook.e1", 20, 1); cl.outcome != duplicate {
		t.Errorf("committed e1 for another process: %v, want duplicate", cl.outcome)
	}
	if cl := ask(b, "hook.e2", 21, 1); cl.outcome != busy {
		t.Errorf("uncommitted e2 for another process: %v, want busy", cl.outcome)
	}
	// A redelivery of e1's message to a fresh process, after the first
	// answer marked the claim delivered: still a duplicate.
	if cl := ask(store("c-3"), "hook.e1", 10, 2); cl.outcome != duplicate {
		t.Errorf("redelivered e1: %v, want duplicate", cl.outcome)
	}
	// A redelivery of e2's message: JetStream gave up on the first
	// delivery, which never committed: taken over.
	if cl := ask(store("d-4"), "hook.e2", 10, 2); cl.outcome != claimed || cl.takeover == nil {
		t.Errorf("redelivered uncommitted e2: %+v, want a takeover", cl)
	}
	// e3 committed only after its claim went stale: the window of a
	// stalled sender, taken over.
	clk.Advance(2 * time.Minute)
	if err := a.commit(ctx, "hook.e3"); err != nil {
		t.Fatal(err)
	}
	if cl := ask(b, "hook.e3", 22, 1); cl.outcome != claimed || cl.takeover == nil {
		t.Errorf("e3 committed after going stale: %+v, want a takeover", cl)
	}
}
