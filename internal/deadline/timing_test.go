package deadline

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pcwatch/pcwatch/internal/clock"
	"github.com/pcwatch/pcwatch/internal/events"
	pc "github.com/pcwatch/pcwatch/internal/partnercenter"
	"github.com/pcwatch/pcwatch/internal/resource"
	"github.com/pcwatch/pcwatch/internal/state"
)

// TestTiming drives Evaluate on a fake clock through the situations issue
// 15 (bug 2) is about: each step evaluates at an instant and lists what
// fires, as rule/threshold/timing. The default config: a 5-minute grace
// (LateAfter) and a 20-minute sighting lag.
func TestTiming(t *testing.T) {
	const h = time.Hour
	cancelBy := t0.Add(7 * 24 * h)
	end := t0.Add(5 * 24 * h) // a commitment end 5 days after the first sighting
	window := func(seen time.Time) Facts {
		return Facts{NCE: true, Status: "active", Quantity: 10, Term: "P1M", CancelBy: cancelBy, CancelSeenOpen: cancelBy, CancelBySeen: seen}
	}
	// The demo's calendar: an hour a wall second, a poll every 3 s, an
	// evaluation every second (what watcher.Config.DeadlineConfigAt gives).
	const rate = 3600
	demoGrace := clock.Scale(2*time.Second, rate)
	demo := Config{LateAfter: demoGrace, SightingLag: clock.Scale(3*time.Second+300*time.Millisecond, rate) + demoGrace}

	type step struct {
		at   time.Time
		want string // what fires, "" for nothing
	}
	tests := []struct {
		name  string
		facts Facts
		cfg   Config
		steps []step
	}{
		{"on time: seen long before, evaluated as each threshold passes", window(t0), Config{}, []step{
			{t0, ""},
			{cancelBy.Add(-72*h + time.Minute), "cancellation/72h/on-time"},
			{cancelBy.Add(-24*h + 5*time.Minute), "cancellation/24h/on-time"}, // the grace, to the second
			{cancelBy.Add(-4*h + time.Second), "cancellation/4h/on-time"},
			{cancelBy.Add(30 * time.Second), "cancellation-closed/0s/on-time"},
		}},
		{"cancellation window first seen inside its 72h threshold", window(cancelBy.Add(-30 * h)), Config{}, []step{
			{cancelBy.Add(-30 * h), "cancellation/72h/first-seen-inside"},
			{cancelBy.Add(-24*h + time.Minute), "cancellation/24h/on-time"},
		}},
		{"first seen inside two thresholds: the tightest fires, first seen inside", window(cancelBy.Add(-10 * h)), Config{}, []step{
			{cancelBy.Add(-10 * h), "cancellation/24h/first-seen-inside"},
			{cancelBy.Add(-4 * h), "cancellation/4h/on-time"},
		}},
		{"refund batch first seen inside its 48h threshold", Facts{NCE: true, Status: "active", Quantity: 8,
			Refund: []Batch{{Quantity: 3, Until: t0.Add(40 * h), Seen: t0}}}, Config{}, []step{
			{t0, "refund/48h/first-seen-inside"},
			{t0.Add(36*h + time.Minute), "refund/4h/on-time"},
		}},
		{"refund batches closing together: seen since the first", Facts{NCE: true, Status: "active", Quantity: 8,
			Refund: []Batch{{Quantity: 3, Until: t0.Add(100 * h), Seen: t0.Add(60 * h)}, {Quantity: 2, Until: t0.Add(100 * h), Seen: t0}}}, Config{}, []step{
			{t0.Add(60 * h), "refund/48h/late"}, // the batch seen at t0 was known when 48h passed (t0+52h)
		}},
		{"renewal: commitment end first seen inside 7d (30d skipped)", Facts{Status: "active", Term: "P1Y", AutoRenew: true,
			CommitmentEnd: end, CommitmentEndSeen: t0}, Config{}, []step{
			{t0, "renewal/168h/first-seen-inside"},
			{end.Add(-24*h + time.Minute), "renewal/24h/on-time"},
		}},
		{"trial first seen 5 days before it ends: 7d first seen inside, 1d on time", Facts{Status: "active", Trial: true, Term: "P1M",
			CommitmentEnd: end, CommitmentEndSeen: t0}, Config{}, []step{
			{t0, "trial/168h/first-seen-inside"},
			{end.Add(-24*h + time.Minute), "trial/24h/on-time"},
		}},
		{"watcher down across a threshold: late", window(t0), Config{}, []step{
			{t0, ""},
			{cancelBy.Add(-70 * h), "cancellation/72h/late"},
		}},
		{"down across two thresholds after an on-time one: the tightest fires late", window(t0), Config{}, []step{
			{cancelBy.Add(-72 * h), "cancellation/72h/on-time"},
			{cancelBy.Add(-3 * h), "cancellation/4h/late"},
		}},
		{"a skipped threshold missed while down makes its firing late", window(cancelBy.Add(-50 * h)), Config{}, []step{
			{cancelBy.Add(-50 * h), "cancellation/72h/first-seen-inside"},
			{cancelBy.Add(-4*h + time.Minute), "cancellation/4h/late"}, // 24h passed unfired, 26h after the sighting
		}},
		{"a skipped wider threshold first seen inside, the tighter one in its grace: first seen inside", window(cancelBy.Add(-24*h + time.Minute)), Config{}, []step{
			{cancelBy.Add(-24*h + time.Minute), "cancellation/24h/first-seen-inside"},
		}},
		{"crossed within the sighting lag after the sighting: not the watcher's fault", window(cancelBy.Add(-72*h - 10*time.Minute)), Config{}, []step{
			// Listed at a cycle's start, committed a slow cycle later: 72h
			// passed 10 minutes after the recorded sighting and fired 15
			// minutes after it passed.
			{cancelBy.Add(-72*h - 10*time.Minute), ""},
			{cancelBy.Add(-72*h + 15*time.Minute), "cancellation/72h/first-seen-inside"},
		}},
		{"cancellation window closed while the watcher was down: late", window(t0), Config{}, []step{
			{cancelBy.Add(-72 * h), "cancellation/72h/on-time"},
			{cancelBy.Add(-24 * h), "cancellation/24h/on-time"},
			{cancelBy.Add(-4 * h), "cancellation/4h/on-time"},
			{cancelBy.Add(h), "cancellation-closed/0s/late"},
		}},
		{"cancellation window seen open only just before it closed: first seen inside", window(cancelBy.Add(-10 * time.Minute)), Config{}, []step{
			{cancelBy.Add(-10 * time.Minute), "cancellation/4h/first-seen-inside"},
			{cancelBy.Add(h), "cancellation-closed/0s/first-seen-inside"},
		}},
		{"no seen time (facts an older watcher wrote, read raw): never late", window(time.Time{}), Config{}, []step{
			{cancelBy.Add(-70 * h), "cancellation/72h/first-seen-inside"},
			{cancelBy.Add(-24*h + time.Minute), "cancellation/24h/on-time"},
		}},
		{"accelerated clock: evaluated every simulated hour, the scaled grace keeps it on time", window(t0), demo, []step{
			{cancelBy.Add(-72*h - 30*time.Minute), ""},
			{cancelBy.Add(-71*h - 30*time.Minute), "cancellation/72h/on-time"}, // 90 simulated minutes after
			{cancelBy.Add(-4*h + 90*time.Minute), "cancellation/4h/late"},      // 20 simulated hours down: late still
		}},
		{"accelerated clock with an unscaled grace: the demo's old [late]", window(t0), Config{}, []step{
			{cancelBy.Add(-71*h - 30*time.Minute), "cancellation/72h/late"},
		}},
		{"accelerated clock: a threshold crossed within the scaled lag of the sighting is first seen inside", window(cancelBy.Add(-76 * h)), demo, []step{
			// Seen at a cycle's start, the 72h passes 4 simulated hours later
			// (under the 5h18m lag) and fires 3 hours after that.
			{cancelBy.Add(-76 * h), ""},
			{cancelBy.Add(-69 * h), "cancellation/72h/first-seen-inside"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := clock.NewFake(t0)
			l := ledger{}
			for i, s := range tt.steps {
				clk.Set(s.at)
				fs := Evaluate("subscriptions/c/s", tt.facts, clk.Now(), tt.cfg, l.has)
				var got []string
				for _, fi := range fs {
					got = append(got, fmt.Sprintf("%s/%s/%s", fi.Rule, events.FormatDuration(fi.Threshold), fi.Timing))
					if fi.Late() != (fi.Timing == events.TimingLate) {
						t.Errorf("step %d: Late() %v with timing %s", i, fi.Late(), fi.Timing)
					}
				}
				if g := strings.Join(got, " "); g != s.want {
					t.Errorf("step %d at %v: fired %q, want %q", i, s.at, g, s.want)
				}
				l.record(fs)
			}
		})
	}
}

// The lag case above fires nothing at its one step; this checks what it
// fires once the slow cycle committed, against the same lag.
func TestTimingSightingLag(t *testing.T) {
	cancelBy := t0.Add(7 * 24 * time.Hour)
	seen := cancelBy.Add(-72*time.Hour - 10*time.Minute) // the cycle's start
	f := Facts{NCE: true, Status: "active", CancelBy: cancelBy, CancelSeenOpen: cancelBy, CancelBySeen: seen}
	for _, tc := range []struct {
		after time.Duration // after the 72h threshold passed
		want  events.Timing
	}{
		{5 * time.Minute, events.TimingOnTime},
		{15 * time.Minute, events.TimingFirstSeenInside}, // passed 10m after the sighting: inside the 20m lag
		{time.Hour, events.TimingFirstSeenInside},
	} {
		fs := Evaluate("e", f, cancelBy.Add(-72*time.Hour+tc.after), Config{}, ledger{}.has)
		if len(fs) != 1 || fs[0].Timing != tc.want {
			t.Errorf("fired %v after 72h: %+v, want %s", tc.after, fs, tc.want)
		}
	}
	// Passed 30 minutes after the sighting (beyond the lag), fired an hour
	// later: the watcher knew in time.
	f.CancelBySeen = cancelBy.Add(-72*time.Hour - 30*time.Minute)
	if fs := Evaluate("e", f, cancelBy.Add(-71*time.Hour), Config{}, ledger{}.has); len(fs) != 1 || fs[0].Timing != events.TimingLate {
		t.Errorf("beyond the lag: %+v, want late", fs)
	}
}

// FactsOf keeps each deadline's first sighting while the deadline keeps
// its value, starts it afresh for a moved one, and Encode/Decode (the state
// file) keeps it across restarts.
func TestFactsSeenTimes(t *testing.T) {
	cancelBy := t0.Add(7 * 24 * time.Hour)
	end := t0.AddDate(1, 0, 0)
	s := &pc.Subscription{ID: "s", Status: "active", Quantity: 5, TermDuration: "P1Y", ProductType: &pc.ProductType{ID: "OnlineServicesNCE"},
		CancellationAllowedUntilDate: pc.NewTime(cancelBy), CommitmentEndDate: pc.NewTime(end),
		RefundableQuantity: &pc.RefundableQuantity{TotalQuantity: 5, Details: []pc.RefundableDetail{{Quantity: 5, AllowedUntilDateTime: pc.NewTime(cancelBy)}}}}
	f := FactsOf(s, nil, t0)
	if !f.CancelBySeen.Equal(t0) || !f.CommitmentEndSeen.Equal(t0) || len(f.Refund) != 1 || !f.Refund[0].Seen.Equal(t0) {
		t.Fatalf("first sighting: %+v", f)
	}
	// A restart: the facts come back from the state file.
	back, err := DecodeFacts(f.Encode())
	if err != nil {
		t.Fatal(err)
	}
	t1 := t0.Add(time.Hour)
	s.Quantity = 7 // a seat increase: a new batch closing later
	later := t1.Add(7 * 24 * time.Hour)
	s.RefundableQuantity = &pc.RefundableQuantity{TotalQuantity: 7, Details: []pc.RefundableDetail{
		{Quantity: 5, AllowedUntilDateTime: pc.NewTime(cancelBy)}, {Quantity: 2, AllowedUntilDateTime: pc.NewTime(later)}}}
	g := FactsOf(s, &back, t1)
	if !g.CancelBySeen.Equal(t0) || !g.CommitmentEndSeen.Equal(t0) || !g.Refund[0].Seen.Equal(t0) || !g.Refund[1].Seen.Equal(t1) {
		t.Errorf("carried: %+v", g)
	}
	// A renewal moves both deadlines: seen afresh.
	t2 := end.Add(time.Hour)
	s.CancellationAllowedUntilDate, s.CommitmentEndDate = pc.NewTime(end.Add(7*24*time.Hour)), pc.NewTime(end.AddDate(1, 0, 0))
	h := FactsOf(s, &g, t2)
	if !h.CancelBySeen.Equal(t2) || !h.CommitmentEndSeen.Equal(t2) {
		t.Errorf("moved: %+v", h)
	}
	// Batches read by id keep the sighting of the batches known before.
	var byID Facts
	byID.SetRefund(&pc.RefundableQuantity{Details: []pc.RefundableDetail{{Quantity: 5, AllowedUntilDateTime: pc.NewTime(cancelBy)}}}, t0)
	byID.SetRefund(&pc.RefundableQuantity{Details: []pc.RefundableDetail{{Quantity: 5, AllowedUntilDateTime: pc.NewTime(cancelBy)},
		{Quantity: 1, AllowedUntilDateTime: pc.NewTime(later)}}}, t1)
	if !byID.Refund[0].Seen.Equal(t0) || !byID.Refund[1].Seen.Equal(t1) {
		t.Errorf("read by id: %+v", byID.Refund)
	}
}

// A state file written before the seen times: the evaluator, restarted on
// it, takes its deadlines as seen at the record's last write. A threshold
// that passed before that write is first seen inside (never a false late);
// one that passed after it, while the watcher was down, is late.
func TestTimingRestartOnOldState(t *testing.T) {
	cancelBy := t0.Add(7 * 24 * time.Hour)
	written := cancelBy.Add(-50 * time.Hour) // the record's last write, by an older watcher
	// The facts as an older watcher encoded them: no seen times.
	old := []byte(fmt.Sprintf(`{"nce":true,"status":"active","quantity":10,"term":"P1M","cancelBy":%q,"cancelSeenOpen":%q}`,
		cancelBy.Format(time.RFC3339), cancelBy.Format(time.RFC3339)))
	if f, err := DecodeFacts(old); err != nil || !f.CancelBySeen.IsZero() {
		t.Fatalf("old facts: %+v, %v", f, err)
	}
	for _, tc := range []struct {
		name    string
		at      time.Time
		updated time.Time
		want    string
	}{
		{"threshold passed before the last write", cancelBy.Add(-49 * time.Hour), written, "72h first-seen-inside"},
		{"down across a threshold after the last write", cancelBy.Add(-20 * time.Hour), written, "24h late"},
		{"no write time either: unknown, never late", cancelBy.Add(-20 * time.Hour), time.Time{}, "24h first-seen-inside"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := state.Open(filepath.Join(t.TempDir(), state.FileName), state.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			raw := []byte(`{"id":"s1","offerName":"Microsoft 365 E3","quantity":10,"status":"active"}`)
			rec := state.Record{Hash: state.HashOf(raw), Rev: 1, Raw: raw, Meta: old, FirstSeen: tc.updated, Updated: tc.updated}
			if err := st.Commit(&state.Change{Puts: []state.Put{{Kind: resource.Subscriptions, Key: "c1/s1", Record: rec}}}); err != nil {
				t.Fatal(err)
			}
			clk := clock.NewFake(tc.at)
			ev := &Evaluator{Store: st, Clock: clk, Source: "https://pc.test"}
			if n, err := ev.EvaluateOnce(context.Background()); err != nil || n != 1 {
				t.Fatalf("EvaluateOnce = %d, %v", n, err)
			}
			evs := outbox(t, st)
			d, err := evs[0].DecodeData()
			if err != nil {
				t.Fatal(err)
			}
			if got := d.Threshold + " " + string(d.Timing); got != tc.want || *d.Late != (d.Timing == events.TimingLate) {
				t.Errorf("fired %s (late %v), want %s", got, *d.Late, tc.want)
			}
		})
	}
}
