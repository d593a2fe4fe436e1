package state

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/pcwatch/pcwatch/internal/events"
	"github.com/pcwatch/pcwatch/internal/resource"
)

// TestBatchRerunsCommitOnce puts two changes in one bbolt batch, one of
// which fails at its last step (a ledger key bbolt refuses), after its
// snapshot and its event were written in the transaction. bbolt rolls the
// batch back, re-runs the failing change alone and the other again: the
// good change must be in the file exactly once (its event once, the
// outbox counter right), the failing one not at all — what Commit's
// contract promises of a Batch that runs apply twice.
func TestBatchRerunsCommitOnce(t *testing.T) {
	s := openTest(t)
	// Hold the batch until both changes are in it: it runs when it is
	// full, never on the timer.
	s.db.MaxBatchSize, s.db.MaxBatchDelay = 2, time.Hour
	good := revChange(1)
	bad := &Change{
		Puts: []Put{{Kind: resource.Subscriptions, Key: "c2/s9", Record: Record{Hash: HashOf([]byte(`{}`)), Rev: 1, Raw: []byte(`{}`)}}},
		Events: []events.Envelope{{ID: "ev-bad", Subject: "pcwatch.events.subscription.created.c2.s9", Entity: "subscription/c2/s9",
			Body: []byte(`{}`)}},
		Ledger: []string{""},
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, c := range []*Change{good, bad} {
		wg.Go(func() { errs[i] = s.Commit(c) })
	}
	wg.Wait()
	if errs[0] != nil {
		t.Fatalf("the good change: %v", errs[0])
	}
	if !errors.Is(errs[1], bolterrors.ErrKeyRequired) {
		t.Fatalf("the failing change: %v, want bbolt's ErrKeyRequired", errs[1])
	}
	recs, err := s.OutboxRead(10)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range recs {
		ids = append(ids, r.ID)
	}
	if fmt.Sprint(ids) != "[ev-1]" {
		t.Errorf("outbox %v, want the good change's event once", ids)
	}
	if n, _ := s.OutboxLen(); n != 1 {
		t.Errorf("OutboxLen %d, want 1", n)
	}
	err = s.View(func(r *ReadTx) error {
		if _, ok, _ := r.Get(resource.Subscriptions, "c2/s9"); ok {
			t.Error("the failing change's snapshot was committed")
		}
		if rec, ok, _ := r.Get(resource.Subscriptions, "c1/s1"); !ok || rec.Rev != 1 {
			t.Errorf("the good change's snapshot: %v %+v", ok, rec)
		}
		if !r.LedgerHas("ledger-1") {
			t.Error("the good change's ledger entry is missing")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// openTest's cleanup checks the outbox counter against the bucket.
}
