package state

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/pcwatch/pcwatch/internal/events"
)

func hintsOf(t *testing.T, s *Store) map[string]Hint {
	t.Helper()
	out := map[string]Hint{}
	if err := s.View(func(r *ReadTx) error {
		return r.Hints(func(h Hint) error { out[h.CustomerID] = h; return nil })
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// Hints of one customer coalesce into one durable record; a refresh that
// covered them removes them, but not a hint merged while it ran.
func TestHintsCoalesceAndFinish(t *testing.T) {
	s := openTest(t)
	t0 := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	alice := &events.Actor{UserPrincipalName: "alice@contoso.example", OperationType: "update_subscription"}
	commit := func(c *Change) {
		t.Helper()
		if err := s.Commit(c); err != nil {
			t.Fatal(err)
		}
	}
	commit(&Change{Hints: []Hint{
		{CustomerID: "c1", Subscriptions: []string{"s1"}, FirstAt: t0, LastAt: t0, Origin: "activity-log", Actors: map[string]*events.Actor{"s1": alice}},
		{CustomerID: "c2", FirstAt: t0, LastAt: t0},
	}})
	commit(&Change{Hints: []Hint{{CustomerID: "c1", Subscriptions: []string{"s2", "s1"}, FirstAt: t0.Add(time.Minute), LastAt: t0.Add(time.Minute)}}})
	hs := hintsOf(t, s)
	c1 := hs["c1"]
	if len(hs) != 2 || c1.Count != 2 || c1.Seq != 2 || !slices.Equal(c1.Subscriptions, []string{"s1", "s2"}) ||
		!c1.FirstAt.Equal(t0) || !c1.LastAt.Equal(t0.Add(time.Minute)) || c1.Actors["s1"].UserPrincipalName != alice.UserPrincipalName {
		t.Fatalf("coalesced hint %+v (all %v)", c1, hs)
	}
	// A refresh took c1 at seq 2; a new hint arrives before it finishes.
	commit(&Change{Hints: []Hint{{CustomerID: "c1", Subscriptions: []string{"s3"}, FirstAt: t0.Add(2 * time.Minute), LastAt: t0.Add(2 * time.Minute)}}})
	commit(&Change{HintsDone: []HintDone{{"c1", c1.Seq}, {"c2", hs["c2"].Seq}}})
	hs = hintsOf(t, s)
	if _, ok := hs["c2"]; ok {
		t.Errorf("c2's hint survived the refresh that covered it: %+v", hs["c2"])
	}
	if h, ok := hs["c1"]; !ok || h.Seq != 3 {
		t.Fatalf("the hint merged during the refresh was lost: %+v", hs)
	}
	commit(&Change{HintsDone: []HintDone{{"c1", 3}}})
	commit(&Change{ForgetCustomers: []string{"c9"}})
	if hs := hintsOf(t, s); len(hs) != 0 {
		t.Errorf("hints left: %v", hs)
	}
	commit(&Change{Hints: []Hint{{CustomerID: "c4", FirstAt: t0}}})
	commit(&Change{ForgetCustomers: []string{"c4"}})
	if hs := hintsOf(t, s); len(hs) != 0 {
		t.Errorf("a removed customer's hint survived: %v", hs)
	}
	if err := s.Commit(&Change{Hints: []Hint{{FirstAt: t0}}}); err == nil {
		t.Error("a hint without a customer id was accepted")
	}
}

// However many hints name however many subscriptions, one customer's hint
// stays bounded.
func TestHintMergeIsBounded(t *testing.T) {
	var h Hint
	for i := range 10 * MaxHintSubscriptions {
		id := fmt.Sprintf("s%d", i)
		h = h.Merge(Hint{CustomerID: "c1", Subscriptions: []string{id}, Actors: map[string]*events.Actor{id: {ApplicationID: "app"}}})
	}
	if len(h.Subscriptions) != MaxHintSubscriptions || !h.Overflow || len(h.Actors) > MaxHintSubscriptions+1 || h.Count != 10*MaxHintSubscriptions {
		t.Errorf("%d subscriptions (overflow %v), %d actors, count %d", len(h.Subscriptions), h.Overflow, len(h.Actors), h.Count)
	}
}

func TestCursors(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(&Change{Cursors: map[string][]byte{"audit": []byte(`{"day":"2026-12-01"}`)}}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var got []byte
	_ = s.View(func(r *ReadTx) error { got = r.Cursor("audit"); return nil })
	if string(got) != `{"day":"2026-12-01"}` {
		t.Fatalf("cursor after reopening: %q", got)
	}
	if err := s.Commit(&Change{Cursors: map[string][]byte{"audit": nil}}); err != nil {
		t.Fatal(err)
	}
	_ = s.View(func(r *ReadTx) error { got = r.Cursor("audit"); return nil })
	if got != nil {
		t.Errorf("deleted cursor reads %q", got)
	}
}

// A file of a release before hints and cursors opens read-only with none,
// and read-write gains their buckets.
func TestOlderFileGainsHintAndCursorBuckets(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		for _, b := range later {
			if err := tx.DeleteBucket(b); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	ro, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("read-only: %v", err)
	}
	if err := ro.View(func(r *ReadTx) error {
		if _, ok, err := r.Hint("c1"); ok || err != nil {
			t.Errorf("hint in a file without hints: %v %v", ok, err)
		}
		if r.Cursor("audit") != nil {
			t.Error("a cursor in a file without cursors")
		}
		return r.Hints(func(Hint) error { t.Error("a hint"); return nil })
	}); err != nil {
		t.Fatal(err)
	}
	ro.Close()
	s, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	checkInvariants(t, s)
	if err := s.Commit(&Change{Hints: []Hint{{CustomerID: "c1"}}, Cursors: map[string][]byte{"audit": []byte("x")}}); err != nil {
		t.Fatalf("writing hints to an upgraded file: %v", err)
	}
}

// Records can appear in the activity log late: the actor kept for an
// entity is that of its latest change, not of the record merged last.
func TestHintKeepsTheLatestActor(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	newer := &events.Actor{UserPrincipalName: "bob@partner.example", OperationDate: t0.Add(time.Hour)}
	older := &events.Actor{UserPrincipalName: "alice@partner.example", OperationDate: t0}
	h := Hint{}.Merge(Hint{CustomerID: "c1", Actors: map[string]*events.Actor{"s1": newer}})
	h = h.Merge(Hint{CustomerID: "c1", Actors: map[string]*events.Actor{"s1": older}})
	if h.Actors["s1"] != newer {
		t.Errorf("actor %+v, want the later change's %+v", h.Actors["s1"], newer)
	}
	h = h.Merge(Hint{CustomerID: "c1", Actors: map[string]*events.Actor{"s1": {UserPrincipalName: "carol@partner.example", OperationDate: t0.Add(2 * time.Hour)}}})
	if h.Actors["s1"].UserPrincipalName != "carol@partner.example" {
		t.Errorf("a later change's actor did not replace: %+v", h.Actors["s1"])
	}
}
