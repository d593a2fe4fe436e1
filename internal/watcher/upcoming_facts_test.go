package watcher

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pcwatch/pcwatch/internal/clock"
	"github.com/pcwatch/pcwatch/internal/deadline"
	"github.com/pcwatch/pcwatch/internal/resource"
	"github.com/pcwatch/pcwatch/internal/state"
)

// Facts that do not decode make a record damaged for /api/deadlines as
// they do for the evaluator (both read them with deadline.StoredFacts):
// named, and everything else listed.
func TestUpcomingNamesUndecodableFacts(t *testing.T) {
	now := time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)
	st, err := state.Open(filepath.Join(t.TempDir(), state.FileName), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cancelBy := now.Add(100 * time.Hour)
	good := deadline.Facts{NCE: true, Status: "active", Quantity: 2, CancelBy: cancelBy, CancelSeenOpen: cancelBy, Term: "P1Y"}
	raw := []byte(`{"id":"s","offerName":"Microsoft 365 E3","quantity":2,"status":"active"}`)
	put := func(key string, meta []byte) state.Put {
		return state.Put{Kind: resource.Subscriptions, Key: key, Record: state.Record{Hash: state.HashOf(raw), Rev: 1, Raw: raw, Meta: meta}}
	}
	if err := st.Commit(&state.Change{Puts: []state.Put{put("c1/good", good.Encode()), put("c1/bad", []byte(`{"nce":tru`))}}); err != nil {
		t.Fatal(err)
	}

	up, err := Upcoming(st, deadline.DefaultConfig(), now)
	var de *state.DamagedError
	if !errors.As(err, &de) || de.Count != 1 || !strings.Contains(err.Error(), "c1/bad") {
		t.Fatalf("Upcoming error = %v, want a DamagedError naming c1/bad", err)
	}
	if len(up) == 0 {
		t.Fatal("the sound subscription's deadlines are not listed")
	}
	for _, u := range up {
		if u.SubscriptionID != "good" {
			t.Errorf("listed %+v", u)
		}
	}

	ev := &deadline.Evaluator{Store: st, Source: "https://pc.test", Clock: clock.NewFake(now)}
	if _, err := ev.EvaluateOnce(context.Background()); !errors.As(err, &de) || de.Count != 1 || !strings.Contains(err.Error(), "c1/bad") {
		t.Errorf("the evaluator reports %v, want the same damaged record", err)
	}
}
