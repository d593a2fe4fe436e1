package activity_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pcwatch/pcwatch/internal/activity"
	pc "github.com/pcwatch/pcwatch/internal/partnercenter"
	"github.com/pcwatch/pcwatch/internal/pcsim"
	"github.com/pcwatch/pcwatch/internal/state"
)

func TestHintsForSimulatorChanges(t *testing.T) {
	e := newEnv(t, 8, pcsim.AuditConfig{})
	tl := e.tail(nil)
	subs := e.active(3)
	must(t, e.sim.IncreaseSeats(subs[0].customer, subs[0].id, 2))
	opAt := e.clk.Now()
	e.clk.Advance(time.Minute)
	must(t, e.sim.Rename(subs[1].customer, subs[1].id, "renamed"))
	e.clk.Advance(time.Minute)
	bought, err := e.sim.Purchase(subs[2].customer, pcsim.PurchaseSpec{})
	must(t, err)
	e.clk.Advance(time.Minute)
	newcomer := e.sim.AddCustomer() // not (yet) known to the watcher
	e.clk.Advance(time.Minute)

	rep := e.poll(tl)
	if rep.Records != 4 || rep.New != 4 || rep.Relevant != 3 || rep.Hints != 3 || !rep.Committed {
		t.Fatalf("report %+v, want 4 records read, all new, 3 hinted (3 customers), committed", rep)
	}
	if rep.Skipped[activity.SkipUnknownCustomer] != 1 || e.metrics.skips(activity.SkipUnknownCustomer) != 1 {
		t.Errorf("the new customer's add_customer record: skipped %v, metric %d; want one unknown-customer",
			rep.Skipped, e.metrics.skips(activity.SkipUnknownCustomer))
	}
	if day := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC); !rep.Start.Equal(day) || !rep.End.Equal(day.AddDate(0, 0, 1)) {
		t.Errorf("first poll read %s..%s, want the initial look-back's day 2026-03-01 to today", rep.Start, rep.End)
	}
	hs := e.hints()
	if len(hs) != 3 {
		t.Fatalf("hints %v, want one per changed customer", hs)
	}
	if _, ok := hs[newcomer]; ok {
		t.Errorf("a hint for the unknown customer %s", newcomer)
	}
	for i, s := range []struct {
		sub sub
		op  string
	}{{subs[0], pc.AuditOpUpdateSubscription}, {subs[1], pc.AuditOpUpdateSubscription}, {sub{subs[2].customer, bought}, pc.AuditOpCreateOrder}} {
		h, ok := hs[s.sub.customer]
		if !ok {
			t.Fatalf("no hint for customer %s", s.sub.customer)
		}
		if !slices.Equal(h.Subscriptions, []string{s.sub.id}) || h.Count != 1 || h.Origin != activity.Source {
			t.Errorf("hint %d: subscriptions %v count %d origin %q; want [%s] 1 %q", i, h.Subscriptions, h.Count, h.Origin, s.sub.id, activity.Source)
		}
		a := h.Actors[s.sub.id]
		if a == nil || a.UserPrincipalName != pcsim.AuditExplicitUser || a.ApplicationID == "" || a.OperationType != s.op ||
			a.Source != activity.Source || a.OperationDate.IsZero() {
			t.Errorf("hint %d: actor %+v, want %s via an application, %s, from the activity log", i, a, pcsim.AuditExplicitUser, s.op)
		}
		if !h.FirstAt.Equal(e.clk.Now()) {
			t.Errorf("hint %d arrived at %s, want the poll's time %s", i, h.FirstAt, e.clk.Now())
		}
	}
	if a := hs[subs[0].customer].Actors[subs[0].id]; !a.OperationDate.Equal(opAt) {
		t.Errorf("seat increase actor dated %s, want the change's time %s", a.OperationDate, opAt)
	}
	if got := e.metrics.lastLag(); got != time.Minute {
		// newest seen: the new customer (t0+3m); the poll runs at t0+4m
		t.Errorf("cursor lag %s, want 1m", got)
	}
	if e.metrics.queued != 3 || e.metrics.read != 4 {
		t.Errorf("metrics: hints queued %d, records read %d; want 3, 4", e.metrics.queued, e.metrics.read)
	}
}

func TestCustomerLevelRecordHintsTheCustomer(t *testing.T) {
	e := newEnv(t, 4, pcsim.AuditConfig{})
	tl := e.tail(nil)
	c := e.sim.State().Customers[1].ID
	must(t, e.sim.RemoveCustomer(c))
	e.clk.Advance(time.Second)
	e.poll(tl)
	h, ok := e.hints()[c]
	if !ok {
		t.Fatalf("no hint for the removed customer %s", c)
	}
	if a := h.Actors[""]; len(h.Subscriptions) != 0 || a == nil || a.OperationType != pc.AuditOpRemovePartnerCustomerRelationship {
		t.Errorf("hint %+v (actor %+v), want the customer's own actor for %s", h, a, pc.AuditOpRemovePartnerCustomerRelationship)
	}
}

func TestRestartDoesNotHintAgain(t *testing.T) {
	e := newEnv(t, 6, pcsim.AuditConfig{})
	tl := e.tail(nil)
	for _, s := range e.active(4) {
		must(t, e.sim.IncreaseSeats(s.customer, s.id, 1))
		e.clk.Advance(time.Second)
	}
	e.poll(tl)
	before := e.hints()
	if len(before) != 4 {
		t.Fatalf("%d hints, want 4", len(before))
	}
	stored := e.cursor()

	again := e.poll(tl) // the same tail, nothing new
	if again.New != 0 || again.Skipped[activity.SkipDuplicate] != 4 || again.Committed {
		t.Errorf("second poll %+v, want 4 duplicates and nothing committed", again)
	}

	e.open() // a restart: a new store handle, a new tail
	tl = e.tail(nil)
	rep := e.poll(tl)
	if rep.New != 0 || rep.Skipped[activity.SkipDuplicate] != 4 || rep.Hints != 0 {
		t.Errorf("after the restart: %+v, want the 4 records read again as duplicates", rep)
	}
	after := e.hints()
	for id, h := range before {
		if after[id].Seq != h.Seq || after[id].Count != h.Count {
			t.Errorf("customer %s: hint seq/count %d/%d after the restart, was %d/%d", id, after[id].Seq, after[id].Count, h.Seq, h.Count)
		}
	}
	if !bytes.Equal(e.cursor(), stored) {
		t.Errorf("the restart's poll rewrote the cursor though nothing changed")
	}
}

// TestOverlapAcrossDays follows the log over several days: each record is
// hinted exactly once although every poll re-reads the day before, and
// the dedup set forgets the days the window has left.
func TestOverlapAcrossDays(t *testing.T) {
	e := newEnv(t, 10, pcsim.AuditConfig{})
	e.clk.Set(time.Date(2026, 3, 2, 23, 50, 0, 0, time.UTC))
	tl := e.tail(nil)
	subs := e.active(6)
	floor := e.clk.Now().Add(-activity.DefaultInitialLookBack)
	steps := []struct {
		advance   time.Duration
		change    int // index into subs, -1: none
		wantStart string
	}{
		{0, 0, "2026-03-01"},                // 23:50 day 2: the initial look-back's day
		{15 * time.Minute, 1, "2026-03-01"}, // 00:05 day 3: newest 23:50 day 2 -> from day 1
		{12 * time.Hour, 2, "2026-03-02"},   // 12:05 day 3: newest 00:05 day 3 -> from day 2
		{12 * time.Hour, 3, "2026-03-02"},   // 00:05 day 4: newest 12:05 day 3 -> from day 2
		{36 * time.Hour, 4, "2026-03-03"},   // 12:05 day 5: newest 00:05 day 4 -> from day 3
		{0, -1, "2026-03-04"},               // newest 12:05 day 5 -> from day 4
		{48 * time.Hour, -1, "2026-03-04"},  // quiet days: the window stays at the newest record's
	}
	for i, st := range steps {
		e.clk.Advance(st.advance)
		if st.change >= 0 {
			must(t, e.sim.Rename(subs[st.change].customer, subs[st.change].id, "n"+string(rune('a'+i))))
		}
		e.clk.Advance(time.Second)
		rep := e.poll(tl)
		if got := rep.Start.Format(time.DateOnly); got != st.wantStart {
			t.Errorf("step %d: read from %s, want %s", i, got, st.wantStart)
		}
		if want := e.relevantRecords(floor); e.hintCount() != want {
			t.Fatalf("step %d: hints coalesce %d records, the log has %d to hint (report %+v)", i, e.hintCount(), want, rep)
		}
		if st.change >= 0 && rep.New < 1 {
			t.Errorf("step %d: the change was not new: %+v", i, rep)
		}
	}
	ci := e.cursorInfo()
	if ci.Seen >= e.hintCount() {
		t.Errorf("the dedup set holds %d entries after the window moved past days, want fewer than the %d records", ci.Seen, e.hintCount())
	}
}

// TestLateRecordsArePickedUp: records that become visible after newer
// ones (the log's lag varies) are still hinted, across a day boundary too.
func TestLateRecordsArePickedUp(t *testing.T) {
	for _, tc := range []struct {
		name  string
		start time.Time
		lag   time.Duration
	}{
		{"same day", t0, time.Hour},
		{"across midnight", time.Date(2026, 3, 2, 23, 55, 0, 0, time.UTC), 30 * time.Minute},
		{"most of a day", time.Date(2026, 3, 2, 23, 55, 0, 0, time.UTC), 23 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnvAt(t, tc.start, 6, pcsim.AuditConfig{Lag: tc.lag}, t.TempDir())
			tl := e.tail(nil)
			subs := e.active(2)
			must(t, e.sim.IncreaseSeats(subs[0].customer, subs[0].id, 1)) // late: visible after tc.lag
			e.clk.Advance(10 * time.Minute)
			must(t, e.sim.SetAudit(pcsim.AuditConfig{}))
			must(t, e.sim.IncreaseSeats(subs[1].customer, subs[1].id, 1)) // visible at once
			e.clk.Advance(time.Minute)
			rep := e.poll(tl)
			if rep.Relevant != 1 || e.hints()[subs[1].customer].Count != 1 {
				t.Fatalf("first poll %+v, want only the prompt record", rep)
			}
			if _, ok := e.hints()[subs[0].customer]; ok {
				t.Fatal("the late record was hinted before it was visible")
			}
			e.clk.Advance(tc.lag)
			rep = e.poll(tl)
			if rep.New != 1 || rep.Relevant != 1 {
				t.Fatalf("poll after the lag: %+v, want the late record (older than the newest seen) new and hinted", rep)
			}
			if h := e.hints()[subs[0].customer]; h.Count != 1 || h.Actors[subs[0].id] == nil {
				t.Errorf("late record's hint %+v", h)
			}
			if e.hints()[subs[1].customer].Count != 1 {
				t.Error("the prompt record was hinted again")
			}
		})
	}
}

func TestFirstStartReadsOnlyTheInitialLookBack(t *testing.T) {
	e := newEnv(t, 6, pcsim.AuditConfig{})
	subs := e.active(3)
	must(t, e.sim.IncreaseSeats(subs[0].customer, subs[0].id, 1)) // 3 days before the first poll
	e.clk.Advance(48 * time.Hour)
	must(t, e.sim.IncreaseSeats(subs[1].customer, subs[1].id, 1)) // 1 day before: at the floor's day, before it
	e.clk.Advance(23 * time.Hour)
	must(t, e.sim.IncreaseSeats(subs[2].customer, subs[2].id, 1)) // inside the look-back
	e.clk.Advance(time.Hour)
	rep := e.poll(e.tail(nil))
	if want := midnight(e.clk.Now().Add(-24 * time.Hour)); !rep.Start.Equal(want) {
		t.Errorf("first poll read from %s, want %s (never the 90 days)", rep.Start, want)
	}
	hs := e.hints()
	if _, ok := hs[subs[2].customer]; !ok || len(hs) != 1 {
		t.Errorf("hints %v, want only the change inside the initial look-back", hs)
	}
	if rep.Skipped[activity.SkipBeforeCursor] != 1 {
		t.Errorf("skipped %v, want the record of the floor's day before the floor as before-cursor", rep.Skipped)
	}
	ci := e.cursorInfo()
	if !ci.Floor.Equal(e.clk.Now().Add(-24*time.Hour)) || ci.Seen != 1 {
		t.Errorf("cursor %+v, want floor now-24h and one record", ci)
	}
}

func midnight(t time.Time) time.Time { return t.UTC().Truncate(24 * time.Hour) }

func TestMalformedPageLeavesTheCursor(t *testing.T) {
	for _, shape := range pcsim.AllShapes {
		t.Run(shape, func(t *testing.T) {
			e := newEnv(t, 4, pcsim.AuditConfig{})
			tl := e.tail(nil)
			subs := e.active(2)
			must(t, e.sim.IncreaseSeats(subs[0].customer, subs[0].id, 1))
			e.clk.Advance(time.Second)
			e.poll(tl)
			stored := e.cursor()
			hints := e.hints()

			must(t, e.sim.IncreaseSeats(subs[1].customer, subs[1].id, 1))
			e.clk.Advance(time.Second)
			must(t, e.sim.SetHostile(pcsim.Hostile{Malformed: []pcsim.MalformedRule{
				{Scope: pcsim.Scope{Endpoint: pcsim.EndpointAuditRecords}, Shapes: []string{shape}}}}))
			rep, err := tl.Poll(context.Background())
			if !errors.Is(err, pc.ErrAuditPage) || errors.Is(err, activity.ErrStore) {
				t.Fatalf("poll of a malformed page: %v, want an error matching ErrAuditPage", err)
			}
			if rep.Committed || !bytes.Equal(e.cursor(), stored) || len(e.hints()) != len(hints) || e.metrics.failures() != 1 {
				t.Fatalf("after the failed poll: committed %v, cursor changed %v, hints %d (were %d), failures %d",
					rep.Committed, !bytes.Equal(e.cursor(), stored), len(e.hints()), len(hints), e.metrics.failures())
			}

			must(t, e.sim.SetHostile(pcsim.Hostile{}))
			rep = e.poll(tl)
			if rep.New != 1 || rep.Hints != 1 {
				t.Fatalf("the retry: %+v, want the record the failed poll could not read", rep)
			}
			if _, ok := e.hints()[subs[1].customer]; !ok {
				t.Error("no hint after the retry")
			}
		})
	}
}

func TestHTTPErrorLeavesTheCursor(t *testing.T) {
	e := newEnv(t, 4, pcsim.AuditConfig{})
	tl := e.tail(nil)
	s := e.active(1)[0]
	must(t, e.sim.IncreaseSeats(s.customer, s.id, 1))
	e.clk.Advance(time.Second)
	must(t, e.sim.SetHostile(pcsim.Hostile{Errors: []pcsim.ErrorRule{
		{Scope: pcsim.Scope{Endpoint: pcsim.EndpointAuditRecords}, Status: 403}}}))
	if _, err := tl.Poll(context.Background()); err == nil || errors.Is(err, activity.ErrStore) {
		t.Fatalf("poll against a 403: %v, want a listing error", err)
	}
	if e.cursor() != nil || len(e.hints()) != 0 {
		t.Fatal("a failed first poll stored a cursor or hints")
	}
	must(t, e.sim.SetHostile(pcsim.Hostile{}))
	if rep := e.poll(tl); rep.Hints != 1 {
		t.Fatalf("the retry: %+v", rep)
	}
}

func TestNoiseIsCountedNotHinted(t *testing.T) {
	e := newEnv(t, 4, pcsim.AuditConfig{})
	tl := e.tail(nil)
	s := e.active(1)[0]
	must(t, e.sim.IncreaseSeats(s.customer, s.id, 1))
	e.clk.Advance(time.Second)
	must(t, e.sim.SetHostile(pcsim.Hostile{AuditNoise: &pcsim.AuditNoise{UnknownCustomers: true, UnknownOperations: true}}))
	rep := e.poll(tl)
	if rep.Skipped[activity.SkipUnknownCustomer] != 1 || rep.Skipped[activity.SkipUnknownOperation] != 1 || rep.Hints != 1 {
		t.Fatalf("report %+v, want one unknown customer, one unknown operation, one hint", rep)
	}
	if len(e.hints()) != 1 {
		t.Errorf("hints %v, want only the real change's", e.hints())
	}
	if e.metrics.skips(activity.SkipUnknownOperation) != 1 || len(e.metrics.labelsOutsideTheSet()) != 0 {
		t.Errorf("metrics: unknown operations %d, labels outside the fixed set %v", e.metrics.skips(activity.SkipUnknownOperation),
			e.metrics.labelsOutsideTheSet())
	}
}

// TestFailedCommitLeavesTheCursor: the cursor and the hints of a poll are
// one commit; when it fails, the next poll reads the same records again
// and hints them then.
func TestFailedCommitLeavesTheCursor(t *testing.T) {
	e := newEnv(t, 4, pcsim.AuditConfig{})
	tl := e.tail(nil)
	subs := e.active(2)
	must(t, e.sim.IncreaseSeats(subs[0].customer, subs[0].id, 1))
	e.clk.Advance(time.Second)
	e.poll(tl)
	stored := e.cursor()

	must(t, e.sim.IncreaseSeats(subs[1].customer, subs[1].id, 1))
	e.clk.Advance(time.Second)
	var seen *state.Change
	failing := errors.New("disk full")
	activity.WrapCommit(tl, func(commit func(*state.Change) error) func(*state.Change) error {
		return func(c *state.Change) error { seen = c; return failing }
	})
	_, err := tl.Poll(context.Background())
	if !errors.Is(err, activity.ErrStore) || !errors.Is(err, failing) {
		t.Fatalf("poll with a failing commit: %v, want ErrStore wrapping the commit's error", err)
	}
	if seen == nil || len(seen.Hints) != 1 || seen.Cursors[activity.CursorName] == nil || len(seen.Cursors) != 1 {
		t.Fatalf("the failed commit carried %+v, want the hint and the cursor together", seen)
	}
	if !bytes.Equal(e.cursor(), stored) || len(e.hints()) != 1 {
		t.Fatal("the failed commit changed the state file")
	}

	activity.WrapCommit(tl, func(func(*state.Change) error) func(*state.Change) error { return e.store.Commit })
	rep := e.poll(tl)
	if rep.New != 1 || rep.Hints != 1 || len(e.hints()) != 2 {
		t.Fatalf("after the failed commit: %+v, hints %d; want the record read again and hinted", rep, len(e.hints()))
	}
}

func TestDamagedCursorStartsAgain(t *testing.T) {
	for _, tc := range []struct {
		name string
		raw  []byte
	}{
		{"not json", []byte("\x00\x01garbage")},
		{"wrong version", []byte(`{"version":7,"floor":"2026-03-01T00:00:00Z","seen":""}`)},
		{"floor in the future", []byte(`{"version":1,"floor":"2027-03-01T00:00:00Z","seen":""}`)},
		{"truncated set", []byte(`{"version":1,"floor":"2026-03-01T00:00:00Z","seen":"AAAA"}`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, 4, pcsim.AuditConfig{})
			must(t, e.store.Commit(&state.Change{Cursors: map[string][]byte{activity.CursorName: tc.raw}}))
			s := e.active(1)[0]
			must(t, e.sim.IncreaseSeats(s.customer, s.id, 1))
			e.clk.Advance(time.Second)
			rep := e.poll(e.tail(nil))
			if !rep.Reset || rep.Hints != 1 || !rep.Committed {
				t.Fatalf("report %+v, want a reset cursor, the change hinted, a new cursor stored", rep)
			}
			ci := e.cursorInfo()
			if !ci.Floor.Equal(e.clk.Now().Add(-activity.DefaultInitialLookBack)) || ci.Seen != 1 {
				t.Errorf("new cursor %+v", ci)
			}
		})
	}
}

// TestDedupSetCap: beyond MaxSeen the oldest entries go and the floor rises:
// those records are still not hinted twice (by date), and the set stays at
// the cap.
func TestDedupSetCap(t *testing.T) {
	e := newEnv(t, 10, pcsim.AuditConfig{})
	tl := e.tail(func(o *activity.Options) { o.MaxSeen = 3 })
	subs := e.active(5)
	for _, s := range subs {
		must(t, e.sim.IncreaseSeats(s.customer, s.id, 1))
		e.clk.Advance(time.Minute)
	}
	rep := e.poll(tl)
	if !rep.Degraded || rep.Hints != 5 {
		t.Fatalf("report %+v, want 5 hints and a degraded set", rep)
	}
	ci := e.cursorInfo()
	if ci.Seen != 3 || !ci.Floor.Equal(t0.Add(time.Minute)) {
		t.Errorf("cursor %+v, want 3 entries and the floor at the second record (t0+1m)", ci)
	}
	rep = e.poll(e.tail(func(o *activity.Options) { o.MaxSeen = 3 }))
	if rep.New != 0 || rep.Skipped[activity.SkipDuplicate] != 3 || rep.Skipped[activity.SkipBeforeCursor] != 2 {
		t.Errorf("re-read: %+v, want 3 duplicates by key and 2 by date", rep)
	}
	if e.hintCount() != 5 {
		t.Errorf("hints coalesce %d records, want 5", e.hintCount())
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	e := newEnv(t, 1, pcsim.AuditConfig{})
	known := func(string) bool { return true }
	for _, tc := range []struct {
		name string
		o    activity.Options
	}{
		{"no client", activity.Options{Store: e.store, Known: known}},
		{"no store", activity.Options{Client: e.client, Known: known}},
		{"no known", activity.Options{Client: e.client, Store: e.store}},
		{"negative interval", activity.Options{Client: e.client, Store: e.store, Known: known, Interval: -1}},
		{"look-back over a query", activity.Options{Client: e.client, Store: e.store, Known: known, LookBack: 40 * 24 * time.Hour}},
		{"initial look-back over a query", activity.Options{Client: e.client, Store: e.store, Known: known, InitialLookBack: 90 * 24 * time.Hour}},
		{"max seen over the limit", activity.Options{Client: e.client, Store: e.store, Known: known, MaxSeen: activity.MaxSeenLimit + 1}},
	} {
		if _, err := activity.New(tc.o); err == nil {
			t.Errorf("%s: New accepted it", tc.name)
		} else if !strings.HasPrefix(err.Error(), "activity: ") {
			t.Errorf("%s: error %q does not name the package", tc.name, err)
		}
	}
}

// fakeLister serves fixed pages (tests of classification, and of Run).
type fakeLister struct {
	pages [][]pc.AuditRecord
	err   error
	calls int
	qs    []pc.AuditQuery
}

func (f *fakeLister) ListAuditRecords(ctx context.Context, q pc.AuditQuery, each func(pc.AuditPage) error) error {
	f.calls++
	f.qs = append(f.qs, q)
	for i, p := range f.pages {
		if err := each(pc.AuditPage{Number: i + 1, Records: p}); err != nil {
			return err
		}
	}
	return f.err
}

func rec(id, cust, op, status string, at time.Time, kv ...string) pc.AuditRecord {
	r := pc.AuditRecord{ID: id, CustomerID: cust, OperationType: op, OperationStatus: status, OperationDate: pc.NewTime(at),
		UserPrincipalName: "u@example.com", ApplicationID: "app"}
	for i := 0; i+1 < len(kv); i += 2 {
		r.CustomizedData = append(r.CustomizedData, pc.KeyValue{Key: kv[i], Value: kv[i+1]})
	}
	return r
}

func TestClassification(t *testing.T) {
	now := t0
	at := now.Add(-time.Hour)
	cases := []struct {
		name string
		r    pc.AuditRecord
		skip string // "": hinted
		subs []string
	}{
		{"update_subscription", rec("1", "c1", "update_subscription", "succeeded", at, "SubscriptionId", "s1"), "", []string{"s1"}},
		{"upper-case type", rec("2", "c1", "Update_Subscription", "succeeded", at, "SubscriptionId", "s2"), "", []string{"s2"}},
		{"create_order lines", rec("3", "c2", "create_order", "", at, "SubscriptionId-0", "s3", "SubscriptionId-1", "s4"), "", []string{"s3", "s4"}},
		{"license", rec("4", "c2", "update_customer_user_licenses", "succeeded", at), "", nil},
		{"progress is hinted", rec("5", "c3", "update_order", "progress", at), "", nil},
		{"failed", rec("6", "c1", "update_subscription", "failed", at, "SubscriptionId", "s1"), activity.SkipFailed, nil},
		{"declined", rec("7", "c1", "create_order", "Decline", at), activity.SkipFailed, nil},
		{"irrelevant", rec("8", "c1", "reset_customer_user_password", "succeeded", at), activity.SkipIrrelevant, nil},
		{"unknown type", rec("9", "c1", "teleport_subscription", "succeeded", at), activity.SkipUnknownOperation, nil},
		{"empty type", rec("10", "c1", "", "succeeded", at), activity.SkipUnknownOperation, nil},
		{"no customer", rec("11", "", "update_subscription", "succeeded", at), activity.SkipNoCustomer, nil},
		{"unknown customer", rec("12", "stranger", "update_subscription", "succeeded", at), activity.SkipUnknownCustomer, nil},
		{"odd subscription id", rec("13", "c3", "update_subscription", "succeeded", at, "SubscriptionId", "../../x?y"), "", nil},
		{"long subscription id", rec("14", "c3", "update_subscription", "succeeded", at, "SubscriptionId", strings.Repeat("a", 200)), "", nil},
		{"before the floor", rec("15", "c1", "update_subscription", "succeeded", now.Add(-25*time.Hour)), activity.SkipBeforeCursor, nil},
		{"duplicate in the listing", rec("1", "c1", "update_subscription", "succeeded", at), activity.SkipDuplicate, nil},
		{"no date", rec("16", "c4", "update_subscription", "succeeded", time.Time{}), "", nil},
		{"from the future", rec("17", "c4", "update_subscription", "succeeded", now.Add(24*time.Hour)), "", nil},
	}
	var page []pc.AuditRecord
	for _, c := range cases {
		page = append(page, c.r)
	}
	e := newEnv(t, 1, pcsim.AuditConfig{})
	e.clk.Set(now)
	fl := &fakeLister{pages: [][]pc.AuditRecord{page}}
	known := map[string]bool{"c1": true, "c2": true, "c3": true, "c4": true}
	tl := e.tail(func(o *activity.Options) { o.Client = fl; o.Known = func(id string) bool { return known[id] } })
	rep := e.poll(tl)

	want := map[string]int{}
	hinted := 0
	for _, c := range cases {
		if c.skip == "" {
			hinted++
		} else {
			want[c.skip]++
		}
	}
	if !mapsEqual(rep.Skipped, want) || rep.Relevant != hinted {
		t.Errorf("skipped %v, hinted %d; want %v, %d", rep.Skipped, rep.Relevant, want, hinted)
	}
	if rep.DroppedSubscriptionIDs != 2 {
		t.Errorf("dropped subscription ids %d, want 2", rep.DroppedSubscriptionIDs)
	}
	hs := e.hints()
	if got := hs["c1"].Subscriptions; !slices.Equal(got, []string{"s1", "s2"}) {
		t.Errorf("c1 subscriptions %v", got)
	}
	if got := hs["c2"].Subscriptions; !slices.Equal(got, []string{"s3", "s4"}) || hs["c2"].Actors["s4"].OperationType != "create_order" ||
		hs["c2"].Actors[""].OperationType != "update_customer_user_licenses" {
		t.Errorf("c2 hint %+v", hs["c2"])
	}
	if h := hs["c3"]; len(h.Subscriptions) != 0 || !h.Overflow || h.Count != 3 {
		t.Errorf("c3 hint %+v: want no subscription kept, overflow (list the customer), 3 records", h)
	}
	if a := hs["c1"].Actors["s2"]; a == nil || a.OperationType != "update_subscription" || a.UserPrincipalName != "u@example.com" {
		t.Errorf("c1 actor of s2: %+v (the operation type is stored lower case)", a)
	}
	if ci := e.cursorInfo(); !ci.Newest.Equal(now) {
		t.Errorf("newest %s: a record from the future counts as now (%s)", ci.Newest, now)
	}
	if q := fl.qs[0]; !q.StartDate.Equal(midnight(now.Add(-24*time.Hour))) || !q.EndDate.Equal(midnight(now)) {
		t.Errorf("query %+v", q)
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestActorIsTheLatestRecords: records come newest first; the hint's actor
// of a subscription is the newest record's.
func TestActorIsTheLatestRecords(t *testing.T) {
	e := newEnv(t, 1, pcsim.AuditConfig{})
	newer := rec("a", "c1", "update_subscription", "succeeded", t0.Add(-time.Minute), "SubscriptionId", "s1")
	newer.UserPrincipalName = "newer@example.com"
	older := rec("b", "c1", "upgrade_subscription", "succeeded", t0.Add(-time.Hour), "SubscriptionId", "s1")
	older.UserPrincipalName = "older@example.com"
	fl := &fakeLister{pages: [][]pc.AuditRecord{{newer}, {older}}}
	e.poll(e.tail(func(o *activity.Options) { o.Client = fl; o.Known = func(string) bool { return true } }))
	h := e.hints()["c1"]
	if a := h.Actors["s1"]; a == nil || a.UserPrincipalName != "newer@example.com" || h.Count != 2 {
		t.Errorf("hint %+v actor %+v, want the newer record's actor and 2 records", h, a)
	}
}

// TestLongStopReadsOneQuery: after a month without a poll, the window is
// clamped to what one query may ask (Partner Center answers 400 beyond),
// and the tail follows the log again.
func TestLongStopReadsOneQuery(t *testing.T) {
	e := newEnv(t, 4, pcsim.AuditConfig{})
	subs := e.active(2)
	must(t, e.sim.IncreaseSeats(subs[0].customer, subs[0].id, 1))
	e.clk.Advance(time.Second)
	e.poll(e.tail(nil))
	e.clk.Advance(40 * 24 * time.Hour)
	must(t, e.sim.IncreaseSeats(subs[1].customer, subs[1].id, 1))
	e.clk.Advance(time.Second)
	rep := e.poll(e.tail(nil))
	if want := midnight(e.clk.Now()).AddDate(0, 0, -pc.AuditMaxWindowDays); !rep.Start.Equal(want) {
		t.Errorf("read from %s, want %s (the widest query)", rep.Start, want)
	}
	if _, ok := e.hints()[subs[1].customer]; !ok {
		t.Errorf("the change after the stop was not hinted: %+v", rep)
	}
	if ci := e.cursorInfo(); !ci.Newest.After(t0.Add(40 * 24 * time.Hour)) {
		t.Errorf("cursor %+v did not follow", ci)
	}
}

// TestDedupWithoutIDs: records without an id (the 2017 documented shape)
// are deduplicated by their content.
func TestDedupWithoutIDs(t *testing.T) {
	e := newEnv(t, 4, pcsim.AuditConfig{OmitIDs: true})
	for _, s := range e.active(3) {
		must(t, e.sim.IncreaseSeats(s.customer, s.id, 1))
		e.clk.Advance(time.Second)
	}
	if rep := e.poll(e.tail(nil)); rep.Relevant != 3 {
		t.Fatalf("first poll %+v", rep)
	}
	e.clk.Advance(time.Hour)
	rep := e.poll(e.tail(nil))
	if rep.New != 0 || rep.Skipped[activity.SkipDuplicate] != 3 || e.hintCount() != 3 {
		t.Errorf("re-read without ids: %+v, hints of %d records; want 3 duplicates, 3 records", rep, e.hintCount())
	}
}
