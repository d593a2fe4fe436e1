package deadline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/pcwatch/pcwatch/internal/clock"
	"github.com/pcwatch/pcwatch/internal/events"
	pc "github.com/pcwatch/pcwatch/internal/partnercenter"
	"github.com/pcwatch/pcwatch/internal/resource"
	"github.com/pcwatch/pcwatch/internal/state"
)

var t0 = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

type ledger map[string]bool

func (l ledger) has(k string) bool { return l[k] }
func (l ledger) record(fs []Firing) {
	for _, f := range fs {
		for _, k := range f.Ledger {
			l[k] = true
		}
	}
}

func TestEvaluateThresholds(t *testing.T) {
	cancelBy := t0.Add(7 * 24 * time.Hour)
	f := Facts{NCE: true, Status: "active", Quantity: 10, CancelBy: cancelBy, CancelSeenOpen: cancelBy, CancelBySeen: t0, Term: "P1M"}
	l := ledger{}
	type step struct {
		at   time.Time
		want []string // kind/threshold/timing
	}
	steps := []step{
		{t0, nil},
		{cancelBy.Add(-72*time.Hour - time.Second), nil},
		{cancelBy.Add(-72 * time.Hour), []string{"cancellation/72h0m0s/on-time"}},
		{cancelBy.Add(-71 * time.Hour), nil}, // fires once
		{cancelBy.Add(-24*time.Hour + time.Minute), []string{"cancellation/24h0m0s/on-time"}},
		// Down across 4h: nothing until after the deadline, then only
		// "closed", late.
		{cancelBy.Add(10 * time.Minute), []string{"cancellation-closed/0s/late"}},
		{cancelBy.Add(time.Hour), nil},
	}
	for i, s := range steps {
		fs := Evaluate("sub/c/s", f, s.at, Config{}, l.has)
		var got []string
		for _, fi := range fs {
			got = append(got, fmt.Sprintf("%s/%s/%s", fi.Rule, fi.Threshold, fi.Timing))
		}
		if fmt.Sprint(got) != fmt.Sprint(s.want) {
			t.Errorf("step %d at %v: fired %v, want %v", i, s.at, got, s.want)
		}
		l.record(fs)
	}
}

func TestEvaluateDowntimeAcrossTwoThresholds(t *testing.T) {
	cancelBy := t0.Add(7 * 24 * time.Hour)
	f := Facts{NCE: true, Status: "active", CancelBy: cancelBy, CancelSeenOpen: cancelBy, CancelBySeen: t0}
	l := ledger{}
	l.record(Evaluate("e", f, cancelBy.Add(-72*time.Hour), Config{}, l.has)) // 72h fired on time
	// The watcher was down from 30h to 3h before: 24h and 4h both passed.
	fs := Evaluate("e", f, cancelBy.Add(-3*time.Hour), Config{}, l.has)
	if len(fs) != 1 || fs[0].Threshold != 4*time.Hour || !fs[0].Late() || len(fs[0].Ledger) != 2 {
		t.Fatalf("firings = %+v; want one late 4h firing that also records 24h", fs)
	}
	l.record(fs)
	if fs := Evaluate("e", f, cancelBy.Add(-2*time.Hour), Config{}, l.has); len(fs) != 0 {
		t.Errorf("fired again: %+v", fs)
	}
}

func TestEvaluateFirstSighting(t *testing.T) {
	cancelBy := t0.Add(10 * time.Hour)
	l := ledger{}
	// First seen 10h before the window closes: 72h and 24h have passed;
	// only 24h fires, first seen inside (not late: the watcher could not
	// have fired it earlier).
	f := Facts{NCE: true, Status: "active", CancelBy: cancelBy, CancelSeenOpen: cancelBy, CancelBySeen: t0}
	fs := Evaluate("e", f, t0, Config{}, l.has)
	if len(fs) != 1 || fs[0].Threshold != 24*time.Hour || fs[0].Timing != events.TimingFirstSeenInside {
		t.Fatalf("firings = %+v", fs)
	}
	// A deadline already past at first sighting fires nothing, not even
	// closed (the window was never seen open).
	past := Facts{NCE: true, Status: "active", CancelBy: t0.Add(-time.Hour)}
	if fs := Evaluate("e2", past, t0, Config{}, ledger{}.has); len(fs) != 0 {
		t.Errorf("past deadline fired: %+v", fs)
	}
}

func TestEvaluateKinds(t *testing.T) {
	end := t0.Add(20 * 24 * time.Hour)
	tests := []struct {
		name  string
		facts Facts
		at    time.Time
		want  string
	}{
		{"renewal of an annual term", Facts{Status: "active", Term: "P1Y", AutoRenew: false, CommitmentEnd: end}, end.Add(-7 * 24 * time.Hour), "[renewal/168h0m0s]"},
		{"no renewal for monthly terms", Facts{Status: "active", Term: "P1M", CommitmentEnd: end}, end.Add(-12 * time.Hour), "[]"},
		{"no renewal when suspended", Facts{Status: "suspended", Term: "P1Y", CommitmentEnd: end}, end.Add(-12 * time.Hour), "[]"},
		{"trial end", Facts{Status: "active", Trial: true, Term: "P1M", CommitmentEnd: end}, end.Add(-20 * time.Hour), "[trial/24h0m0s]"},
		{"refund batch", Facts{NCE: true, Status: "active", Refund: []Batch{{Quantity: 3, Until: end}, {Quantity: 2, Until: end}, {Quantity: 1, Until: end.Add(time.Hour)}}}, end.Add(-4 * time.Hour), "[refund/4h0m0s/5 refund/48h0m0s/1]"},
		{"nothing for deleted", Facts{NCE: true, Status: "deleted", CancelBy: end, CancelSeenOpen: end}, end.Add(-time.Hour), "[]"},
		{"renewal of all terms when asked", Facts{Status: "active", Term: "P1M", CommitmentEnd: end}, end.Add(-12 * time.Hour), "[renewal/24h0m0s]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{}
			if tt.name == "renewal of all terms when asked" {
				cfg.RenewalAllTerms = true
			}
			var got []string
			for _, fi := range Evaluate("e", tt.facts, tt.at, cfg, ledger{}.has) {
				s := fmt.Sprintf("%s/%s", fi.Rule, fi.Threshold)
				if fi.Rule == Refund {
					s += fmt.Sprintf("/%d", fi.Quantity)
				}
				got = append(got, s)
			}
			if fmt.Sprint(got) != tt.want && !(len(got) == 0 && tt.want == "[]") {
				t.Errorf("fired %v, want %s", got, tt.want)
			}
		})
	}
}

func TestParseTermAndThresholds(t *testing.T) {
	for term, ok := range map[string]bool{"P1Y": true, "P3Y": true, "P12M": false, "P1M": false, "p1y": true, "": false, "P": false, "1Y": false} {
		if TermAtLeastYear(term) != ok && !(term == "P12M") {
			t.Errorf("TermAtLeastYear(%q) = %v", term, !ok)
		}
	}
	if d, _ := ParseTerm("P12M"); d != 360*day {
		t.Errorf("P12M = %v", d)
	}
	th, err := ParseThresholds("30d, 7d,1d,4h")
	if err != nil || fmt.Sprint(th) != "[720h0m0s 168h0m0s 24h0m0s 4h0m0s]" {
		t.Errorf("ParseThresholds = %v, %v", th, err)
	}
	for _, bad := range []string{"", "x", "-4h", "0d"} {
		if _, err := ParseThresholds(bad); err == nil {
			t.Errorf("ParseThresholds(%q) accepted", bad)
		}
	}
}

func TestFactsOf(t *testing.T) {
	cancelBy := t0.Add(100 * time.Hour)
	s := &pc.Subscription{ID: "s", Quantity: 5, Status: "active", CancellationAllowedUntilDate: pc.NewTime(cancelBy),
		ProductType: &pc.ProductType{ID: "OnlineServicesNCE"}, TermDuration: "P1Y"}
	f := FactsOf(s, nil, t0)
	if !f.NCE || !f.CancelSeenOpen.Equal(cancelBy) || !f.LastIncreaseAt.IsZero() {
		t.Fatalf("first facts = %+v", f)
	}
	if !f.NeedsRefundFetch(t0, 6*time.Hour) {
		t.Error("an open window with no fetched batches should be fetched")
	}
	f.SetRefund(&pc.RefundableQuantity{TotalQuantity: 5, Details: []pc.RefundableDetail{{Quantity: 5, AllowedUntilDateTime: pc.NewTime(cancelBy)}}}, t0)
	if f.NeedsRefundFetch(t0.Add(time.Hour), 6*time.Hour) {
		t.Error("fresh batches refetched")
	}
	s.Quantity = 8
	f2 := FactsOf(s, &f, t0.Add(2*time.Hour))
	if !f2.LastIncreaseAt.Equal(t0.Add(2*time.Hour)) || len(f2.Refund) != 1 || !f2.NeedsRefundFetch(t0.Add(2*time.Hour), 6*time.Hour) {
		t.Errorf("after an increase: %+v (stale batches must be refetched)", f2)
	}
	// The window is seen open once; later, past the deadline, the mark stays.
	f3 := FactsOf(s, &f2, cancelBy.Add(time.Hour))
	if !f3.CancelSeenOpen.Equal(cancelBy) {
		t.Errorf("seen-open mark lost: %+v", f3)
	}
	// A subscription first seen after its window closed never saw it open.
	if f4 := FactsOf(s, nil, cancelBy.Add(time.Hour)); !f4.CancelSeenOpen.IsZero() {
		t.Errorf("closed window marked seen open: %+v", f4)
	}
	back, err := DecodeFacts(f3.Encode())
	if err != nil || !back.CancelSeenOpen.Equal(f3.CancelSeenOpen) || back.Quantity != 8 {
		t.Errorf("facts round trip: %+v, %v", back, err)
	}
}

// evalStore puts one NCE subscription into a real store and returns an
// evaluator on a fake clock.
func evalStore(t *testing.T, path string, clk *clock.Fake, f Facts) (*state.Store, *Evaluator) {
	t.Helper()
	st, err := state.Open(path, state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if f.Quantity != 0 {
		raw := []byte(`{"id":"s1","offerName":"Microsoft 365 E3","quantity":10,"status":"active","autoRenewEnabled":true}`)
		cust := []byte(`{"id":"c1","companyProfile":{"companyName":"Contoso"}}`)
		err = st.Commit(&state.Change{Puts: []state.Put{
			{Kind: resource.Subscriptions, Key: "c1/s1", Record: state.Record{Hash: state.HashOf(raw), Rev: 1, Raw: raw, Meta: f.Encode()}},
			{Kind: resource.Customers, Key: "c1", Record: state.Record{Hash: state.HashOf(cust), Rev: 1, Raw: cust}},
		}})
		if err != nil {
			t.Fatal(err)
		}
	}
	return st, &Evaluator{Store: st, Clock: clk, Source: "https://pc.test"}
}

func outbox(t *testing.T, st *state.Store) []events.Event {
	t.Helper()
	recs, err := st.OutboxRead(1000)
	if err != nil {
		t.Fatal(err)
	}
	var out []events.Event
	for _, r := range recs {
		var e events.Event
		if err := json.Unmarshal(r.Body, &e); err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

// TestEvaluatorFiresOnceAcrossRestarts uses a real state file and a fake
// clock: thresholds fire once; a restart fires nothing again; downtime
// across two thresholds fires one late event.
func TestEvaluatorFiresOnceAcrossRestarts(t *testing.T) {
	path := filepath.Join(t.TempDir(), state.FileName)
	clk := clock.NewFake(t0)
	cancelBy := t0.Add(73 * time.Hour)
	f := Facts{NCE: true, Status: "active", Quantity: 10, AutoRenew: true, CancelBy: cancelBy, CancelSeenOpen: cancelBy, CancelBySeen: t0, Term: "P1Y"}
	st, ev := evalStore(t, path, clk, f)
	ctx := context.Background()

	mustEval := func(want int) {
		t.Helper()
		n, err := ev.EvaluateOnce(ctx)
		if err != nil || n != want {
			t.Fatalf("at %v: EvaluateOnce = %d, %v; want %d", clk.Now(), n, err, want)
		}
	}
	mustEval(0)
	ledger := &ledgerGauge{}
	ev.Metrics = ledger
	clk.Set(cancelBy.Add(-72 * time.Hour))
	mustEval(1)
	if ledger.n != 1 {
		t.Errorf("ledger gauge = %d after one firing, want 1", ledger.n)
	}
	mustEval(0)
	// Restart: a new store handle and a new evaluator.
	st.Close()
	st, ev = evalStore(t, path, clk, Facts{})
	mustEval(0)
	st.Close()
	// Down from 71h to 3h before: 24h and 4h passed while down.
	clk.Set(cancelBy.Add(-3 * time.Hour))
	st, ev = evalStore(t, path, clk, Facts{})
	defer st.Close()
	mustEval(1)
	clk.Set(cancelBy.Add(time.Minute))
	mustEval(1) // closed
	clk.Advance(time.Hour)
	mustEval(0)

	evs := outbox(t, st)
	if len(evs) != 3 {
		t.Fatalf("outbox holds %d events, want 3", len(evs))
	}
	wantTypes := []events.Type{events.SubscriptionCancellationClosing, events.SubscriptionCancellationClosing, events.SubscriptionCancellationClosed}
	for i, e := range evs {
		d, _ := e.DecodeData()
		if e.Type != wantTypes[i] || d.CustomerName != "Contoso" || d.After.OfferName != "Microsoft 365 E3" || !d.Deadline.Equal(cancelBy) {
			t.Errorf("event %d = %s %+v", i, e.Type, d)
		}
		switch i {
		case 0:
			if d.Threshold != "72h" || *d.Late || *d.RemainingSeconds != 72*3600 {
				t.Errorf("72h event: %+v", d)
			}
		case 1:
			if d.Threshold != "4h" || !*d.Late || d.Remaining != "3h" {
				t.Errorf("late 4h event: threshold %s late %v remaining %s", d.Threshold, *d.Late, d.Remaining)
			}
		case 2:
			if d.Threshold != "" || *d.Late {
				t.Errorf("closed event: %+v", d)
			}
		}
	}
	if evs[0].ID == evs[1].ID {
		t.Error("two thresholds share an event id")
	}
}

// A moved deadline (a renewal opens a new window) is a new deadline.
func TestEvaluatorMovedDeadline(t *testing.T) {
	l := ledger{}
	first := t0.Add(48 * time.Hour)
	f := Facts{NCE: true, Status: "active", CancelBy: first, CancelSeenOpen: first}
	l.record(Evaluate("e", f, t0, Config{}, l.has))
	moved := first.Add(30 * 24 * time.Hour)
	f.CancelBy, f.CancelSeenOpen = moved, moved
	if fs := Evaluate("e", f, moved.Add(-72*time.Hour), Config{}, l.has); len(fs) != 1 || fs[0].Late() {
		t.Errorf("new window's 72h: %+v", fs)
	}
}

type ledgerGauge struct{ n int }

func (g *ledgerGauge) LedgerSize(n int) { g.n = n }

// StoredFacts is the one reader of facts kept with a stored subscription:
// none gives nil (not zero facts: the differ must tell a first sighting
// from a subscription whose facts are all zero), and facts that do not
// decode are a damaged record, named.
func TestStoredFacts(t *testing.T) {
	good := Facts{NCE: true, Status: "active", Quantity: 3, PartnerID: "p1"}
	for _, tc := range []struct {
		name    string
		meta    []byte
		want    *Facts
		damaged bool
	}{
		{name: "none", meta: nil},
		{name: "empty", meta: []byte{}},
		{name: "zero", meta: Facts{}.Encode(), want: &Facts{}},
		{name: "facts", meta: good.Encode(), want: &good},
		{name: "undecodable", meta: []byte(`{"nce":tru`), damaged: true},
		{name: "wrong type", meta: []byte(`{"quantity":"3"}`), damaged: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := StoredFacts("c1/s1", state.Record{Meta: tc.meta})
			if tc.damaged {
				var re *state.RecordError
				if !errors.As(err, &re) || !errors.Is(err, state.ErrCorrupt) || re.Key != "c1/s1" || re.Kind != resource.Subscriptions.Name() || f != nil {
					t.Fatalf("StoredFacts = %+v, %v; want a RecordError naming subscription c1/s1", f, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (f == nil) != (tc.want == nil) || f != nil && !reflect.DeepEqual(*f, *tc.want) {
				t.Errorf("StoredFacts = %+v, want %+v", f, tc.want)
			}
		})
	}
}

// Partner Center lists legacy Azure subscriptions with a commitment end in
// year 9999: that is "no end", not a renewal 8,000 years away (before,
// `watcher deadlines` with renewal_all_terms listed it closing in "106751d
// 23h"). The documented body of the shared corpus is read too when the
// corpus is next to the repository (as the client's corpus tests do).
func TestNoEndCommitment(t *testing.T) {
	bodies := map[string][]byte{"minimal": []byte(`{"id":"a1","offerId":"MS-AZR-0145P","quantity":1,"status":"active","commitmentEndDate":"9999-12-10T00:00:00Z"}`)}
	path := filepath.Join("..", "..", "..", "shared", "corpus", "partner-center", "subscription-legacy-azure-01.json")
	if b, err := os.ReadFile(path); err == nil {
		bodies["corpus"] = b
	} else {
		t.Logf("the shared corpus is not next to the repository (%v): checking the minimal body only", err)
	}
	for name, b := range bodies {
		var s pc.Subscription
		if err := json.Unmarshal(b, &s); err != nil {
			t.Fatalf("%s: decoding: %v", name, err)
		}
		if s.CommitmentEnd().T.Year() != 9999 {
			t.Fatalf("%s: commitment end %v; this test expects the documented 9999", name, s.CommitmentEnd().T)
		}
		if f := FactsOf(&s, nil, t0); !f.CommitmentEnd.IsZero() {
			t.Errorf("%s: facts of a no-end subscription: commitment end %v, want none", name, f.CommitmentEnd)
		}
	}
}

// Facts stored by an earlier release still carry the 9999 end: the rules
// ignore it too.
func TestNoEndCommitmentInStoredFacts(t *testing.T) {
	f := Facts{Status: "active", Term: "P1Y", CommitmentEnd: time.Date(9999, 12, 10, 0, 0, 0, 0, time.UTC)}
	cfg := DefaultConfig()
	cfg.RenewalAllTerms = true
	for _, r := range Rules() {
		if r.due == nil {
			continue
		}
		if ds := r.due(f, r.Defaults(), cfg); len(ds) != 0 {
			t.Errorf("rule %s: %d deadlines for a subscription without end", r.Name(), len(ds))
		}
	}
}
