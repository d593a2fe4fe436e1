package state_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/pcwatch/pcwatch/internal/clock"
	"github.com/pcwatch/pcwatch/internal/deadline"
	"github.com/pcwatch/pcwatch/internal/events"
	"github.com/pcwatch/pcwatch/internal/resource"
	"github.com/pcwatch/pcwatch/internal/state"
)

// These tests damage real state files written by the store, the ways
// disks, copies and people damage files, and check that Open refuses each
// with ErrCorrupt naming the file, the damage and the fix — or, for damage
// it cannot see, that the readers name the damaged record and go on with
// the others — and that nothing ever panics.

var corpusNow = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

const corpusCustomers, corpusSubsPerCustomer = 24, 25

func subKey(c, s int) string { return fmt.Sprintf("c%04d/s%04d", c, s) }

// buildCorpus writes a state file like a watcher's after some weeks:
// customers and their NCE subscriptions (JSON and deadline facts, some
// windows closing within days), pending removals, tombstones, outbox
// events, ledger entries, failure streaks, last-success times, and free
// pages left by removals.
func buildCorpus(t testing.TB, path string) {
	t.Helper()
	st, err := state.Open(path, state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for c := 0; c < corpusCustomers; c++ {
		cust := []byte(fmt.Sprintf(`{"id":"c%04d","companyProfile":{"tenantId":"t%04d","domain":"c%04d.onmicrosoft.com","companyName":"Customer %d"},"relationshipToPartner":"reseller","attributes":{"objectType":"Customer"}}`, c, c, c, c))
		ch := &state.Change{Puts: []state.Put{{Kind: resource.Customers, Key: fmt.Sprintf("c%04d", c),
			Record: state.Record{Hash: state.HashOf(cust), Rev: 1, FirstSeen: corpusNow, Updated: corpusNow, Raw: cust}}}}
		for s := 0; s < corpusSubsPerCustomer; s++ {
			cancelBy := corpusNow.Add(time.Duration(1+(c*corpusSubsPerCustomer+s)%240) * time.Hour)
			f := deadline.Facts{NCE: true, Status: "active", Quantity: 1 + s, AutoRenew: true, Term: "P1Y",
				CancelBy: cancelBy, CancelSeenOpen: cancelBy, CommitmentEnd: cancelBy.AddDate(1, 0, -7)}
			raw := []byte(fmt.Sprintf(`{"id":"s%04d","offerId":"CFQ7TTC0LH18:0001:CFQ7TTC0P0WS","offerName":"Microsoft 365 Business Basic","friendlyName":"Seats for team %d","productType":{"id":"OnlineServicesNCE","displayName":"OnlineServicesNCE"},"quantity":%d,"unitType":"Licenses","status":"active","autoRenewEnabled":true,"termDuration":"P1Y","billingCycle":"monthly","cancellationAllowedUntilDate":"%s","commitmentEndDate":"%s","attributes":{"objectType":"Subscription"}}`,
				s, s, f.Quantity, cancelBy.Format(time.RFC3339), f.CommitmentEnd.Format(time.RFC3339)))
			ch.Puts = append(ch.Puts, state.Put{Kind: resource.Subscriptions, Key: subKey(c, s),
				Record: state.Record{Hash: state.HashOf(raw), Rev: 1, FirstSeen: corpusNow, Updated: corpusNow, Watch: cancelBy, Raw: raw, Meta: f.Encode()}})
		}
		ch.Events = []events.Envelope{{ID: fmt.Sprintf("ev-%d", c), Subject: "pcwatch.events.customer.added", Entity: fmt.Sprintf("customer/c%04d", c), Body: cust}}
		ch.Ledger = []string{fmt.Sprintf("subscription/c%04d/s0000|cancellation|%d|259200", c, corpusNow.Unix())}
		if c == 0 {
			// c0000/s0000's window closes an hour after corpusNow; its
			// closed event was fired (TestDamageWhileOpen damages it).
			ch.Ledger = append(ch.Ledger, deadline.LedgerKey("subscription/c0000/s0000", deadline.CancellationClosed, corpusNow.Add(time.Hour), 0))
		}
		ch.Baselines = []state.Ref{{Kind: resource.Subscriptions, Key: fmt.Sprintf("c%04d", c)}}
		if c%7 == 0 {
			ch.PendingPuts = []state.PendingPut{{Ref: state.Ref{Kind: resource.Subscriptions, Key: subKey(c, 1)},
				Pending: state.Pending{Since: corpusNow, Cycle: 3, Misses: 1}}}
			ch.Failures = map[string]*state.Failure{fmt.Sprintf("c%04d", c): {Count: 2, FirstAt: corpusNow, LastAt: corpusNow, LastError: "HTTP 503"}}
		}
		if err := st.Commit(ch); err != nil {
			t.Fatal(err)
		}
	}
	// Removals leave tombstones, and free pages in the file.
	var del state.Change
	for c := 0; c < corpusCustomers; c += 5 {
		for s := corpusSubsPerCustomer - 3; s < corpusSubsPerCustomer; s++ {
			del.Deletes = append(del.Deletes, state.Ref{Kind: resource.Subscriptions, Key: subKey(c, s)})
		}
	}
	if err := st.Commit(&del); err != nil {
		t.Fatal(err)
	}
	last := map[string]time.Time{}
	for c := 0; c < corpusCustomers; c++ {
		last[fmt.Sprintf("c%04d", c)] = corpusNow
	}
	if err := st.SetLastOK(last); err != nil {
		t.Fatal(err)
	}
}

var (
	corpusOnce  sync.Once
	corpusBytes []byte
	corpusErr   error
)

// corpus returns the bytes of one corpus file, built once per test binary.
func corpus(t testing.TB) []byte {
	t.Helper()
	corpusOnce.Do(func() {
		dir, err := os.MkdirTemp("", "pcwatch-corpus")
		if err != nil {
			corpusErr = err
			return
		}
		defer os.RemoveAll(dir)
		path := filepath.Join(dir, state.FileName)
		buildCorpus(t, path)
		corpusBytes, corpusErr = os.ReadFile(path)
	})
	if corpusErr != nil {
		t.Fatal(corpusErr)
	}
	return corpusBytes
}

// layout is where things are in the corpus file.
type layout struct {
	pageSize, hwm int               // bytes per page, pages below the high-water mark
	pages         map[string][]int  // page ids by type: meta, freelist, free, branch, leaf
	values        map[string][2]int // subscription key -> offset and length of its stored value
	leafOf        map[string]int    // subscription key -> the leaf page holding it
}

func layoutOf(t *testing.T, b []byte) layout {
	t.Helper()
	path := filepath.Join(t.TempDir(), "layout.db")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, PreLoadFreelist: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	l := layout{pages: map[string][]int{}, values: map[string][2]int{}, leafOf: map[string]int{}}
	err = db.View(func(tx *bolt.Tx) error {
		l.pageSize = db.Info().PageSize
		l.hwm = int(tx.Size()) / l.pageSize
		for id := 0; id < l.hwm; id++ {
			pi, err := tx.Page(id)
			if err != nil {
				return err
			}
			if pi != nil {
				l.pages[pi.Type] = append(l.pages[pi.Type], id)
			}
		}
		return tx.Bucket([]byte("subscriptions")).ForEach(func(k, v []byte) error {
			kv := append(append([]byte(nil), k...), v...)
			i := bytes.Index(b, kv)
			if i < 0 {
				return fmt.Errorf("record %s not found in the file", k)
			}
			l.values[string(k)] = [2]int{i + len(k), len(v)}
			l.leafOf[string(k)] = i / l.pageSize
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.pages["branch"]) == 0 || len(l.pages["leaf"]) < 10 || len(l.pages["freelist"]) == 0 || len(l.pages["free"]) == 0 {
		t.Fatalf("the corpus lacks page types the tests need: %v", l.pages)
	}
	return l
}

// branchOfSubscriptions returns a branch page of the subscriptions bucket:
// one that refers to the leaf holding c0000/s0000.
func (l layout) branchOf(t *testing.T, b []byte, leaf int) int {
	t.Helper()
	for _, id := range l.pages["branch"] {
		p := b[id*l.pageSize : (id+1)*l.pageSize]
		count := int(p[10]) | int(p[11])<<8
		for i := 0; i < count; i++ {
			e := p[16+16*i:]
			child := 0
			for j := 7; j >= 0; j-- {
				child = child<<8 | int(e[8+j])
			}
			if child == leaf {
				return id
			}
		}
	}
	t.Fatalf("no branch page refers to leaf %d", leaf)
	return 0
}

func zero(b []byte, from, n int) {
	for i := from; i < from+n && i < len(b); i++ {
		b[i] = 0
	}
}

// TestOpenRefusesDamagedFiles damages copies of a real state file and
// opens each, for writing and read-only: a damaged file gives ErrCorrupt
// naming the file, the damage and the fix, and is left as it was; damage
// bbolt recovers from (a lost header page, a lost free page, slack after
// the last page) opens.
func TestOpenRefusesDamagedFiles(t *testing.T) {
	pristine := corpus(t)
	l := layoutOf(t, pristine)
	key := subKey(3, 4)
	val := l.values[key]
	leaf := l.leafOf[key]
	ps, end := l.pageSize, l.hwm*l.pageSize
	tests := []struct {
		name   string
		damage func(b []byte) []byte
		want   error    // nil: opens
		says   []string // in the error message
	}{
		{"empty file", func(b []byte) []byte { return nil }, state.ErrCorrupt, []string{"empty (0 bytes)"}},
		{"truncated to 100 bytes", func(b []byte) []byte { return b[:100] }, state.ErrCorrupt, []string{"truncated"}},
		{"truncated inside the second header page", func(b []byte) []byte { return b[:ps+100] }, state.ErrCorrupt, []string{"truncated"}},
		{"truncated after the header pages", func(b []byte) []byte { return b[:2*ps] }, state.ErrCorrupt, []string{"truncated"}},
		{"truncated to half", func(b []byte) []byte { return b[:end/2] }, state.ErrCorrupt, []string{"truncated"}},
		{"truncated by one page", func(b []byte) []byte { return b[:end-ps] }, state.ErrCorrupt, []string{"truncated"}},
		{"truncated by one byte", func(b []byte) []byte { return b[:end-1] }, state.ErrCorrupt, []string{"truncated"}},
		{"slack after the last page cut", func(b []byte) []byte { return b[:end] }, nil, nil},
		{"first header page zeroed", func(b []byte) []byte { zero(b, 0, ps); return b }, state.ErrCorrupt, []string{"header page 0 is overwritten"}},
		{"second header page zeroed", func(b []byte) []byte { zero(b, ps, ps); return b }, state.ErrCorrupt, []string{"header page 1 is overwritten"}},
		// A crash while bbolt writes a header leaves one that fails its
		// checksum: bbolt uses the other, the previous commit.
		{"first header torn", func(b []byte) []byte { b[16+40] ^= 0xff; return b }, nil, nil},
		{"second header torn", func(b []byte) []byte { b[ps+16+40] ^= 0xff; return b }, nil, nil},
		{"both header pages zeroed", func(b []byte) []byte { zero(b, 0, 2*ps); return b }, state.ErrCorrupt, []string{"header", "pcwatch data"}},
		{"freelist page zeroed", func(b []byte) []byte { zero(b, l.pages["freelist"][0]*ps, ps); return b }, state.ErrCorrupt, []string{"freelist"}},
		{"a free page zeroed", func(b []byte) []byte { zero(b, l.pages["free"][0]*ps, ps); return b }, nil, nil},
		{"a leaf page zeroed", func(b []byte) []byte { zero(b, leaf*ps, ps); return b }, state.ErrCorrupt, []string{fmt.Sprintf("page %d identifies itself as page 0", leaf)}},
		{"a branch page zeroed", func(b []byte) []byte { zero(b, l.branchOf(t, b, leaf)*ps, ps); return b }, state.ErrCorrupt, []string{"identifies itself as page 0"}},
		{"a leaf page's element sizes flipped", func(b []byte) []byte {
			b[leaf*ps+16+8+3] ^= 0x7f // the first element's key size, high byte
			return b
		}, state.ErrCorrupt, []string{"runs past the page"}},
		{"a leaf page's keys flipped", func(b []byte) []byte {
			b[val[0]-len(key)+1] ^= 0x40 // "c0003/..." becomes "c p003/..."
			return b
		}, state.ErrCorrupt, nil},
		{"a record value flipped", func(b []byte) []byte { b[val[0]+val[1]/2] ^= 0x10; return b }, state.ErrCorrupt,
			[]string{"subscription " + key, "checksum mismatch"}},
		{"a record value's last byte flipped", func(b []byte) []byte { b[val[0]+val[1]-1] ^= 0x01; return b }, state.ErrCorrupt,
			[]string{"subscription " + key}},
		{"random bytes", func(b []byte) []byte {
			r := rand.New(rand.NewPCG(9, 9))
			for i := range b {
				b[i] = byte(r.Uint32())
			}
			return b
		}, state.ErrNotPcwatch, []string{"not a bbolt database"}},
	}
	for _, tt := range tests {
		for _, ro := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/readonly=%v", tt.name, ro), func(t *testing.T) {
				damaged := tt.damage(append([]byte(nil), pristine...))
				path := filepath.Join(t.TempDir(), state.FileName)
				if err := os.WriteFile(path, damaged, 0o600); err != nil {
					t.Fatal(err)
				}
				st, err := state.Open(path, state.Options{ReadOnly: ro})
				if tt.want == nil {
					if err != nil {
						t.Fatalf("Open = %v; want it to open", err)
					}
					defer st.Close()
					exercise(t, st)
					return
				}
				if err == nil {
					st.Close()
					t.Fatalf("Open accepted the damaged file; want %v", tt.want)
				}
				var oe *state.OpenError
				if !errors.As(err, &oe) || !errors.Is(err, tt.want) {
					t.Fatalf("Open = %v (%T); want an *OpenError matching %v", err, err, tt.want)
				}
				msg := err.Error()
				for _, s := range append([]string{path, "backup", "mv " + path, "fresh baseline", "deadline ledger"}, tt.says...) {
					if !strings.Contains(msg, s) {
						t.Errorf("the error does not say %q:\n%s", s, msg)
					}
				}
				if after, _ := os.ReadFile(path); !bytes.Equal(after, damaged) {
					t.Error("Open changed the damaged file")
				}
			})
		}
	}
}

// exercise reads everything an open store holds, as the watcher does, and
// requires that nothing panics and that every error names damage.
func exercise(t *testing.T, st *state.Store) {
	t.Helper()
	ok := func(what string, err error) {
		t.Helper()
		if err != nil && !errors.Is(err, state.ErrCorrupt) && !errors.Is(err, state.ErrClosed) {
			t.Errorf("%s: %v (an error that does not name damage)", what, err)
		}
	}
	ok("view", st.View(func(r *state.ReadTx) error {
		for _, k := range resource.All() {
			ok("ForEach", r.ForEach(k, func(key string, rec state.Record) error {
				_, err1 := rec.JSON()
				_, err2 := rec.MetaJSON()
				ok("JSON", errors.Join(err1, err2))
				return nil
			}))
			ok("PendingAll", r.PendingAll(k, func(string, state.Pending) error { return nil }))
			ok("TombsAll", r.TombsAll(k, func(string, uint64) error { return nil }))
		}
		for c := 0; c < corpusCustomers; c++ {
			_, err := r.Customer(fmt.Sprintf("c%04d", c), resource.Customers, resource.Subscriptions)
			ok("Customer", err)
			r.Failure(fmt.Sprintf("c%04d", c))
		}
		return r.LedgerForEach(func(string) error { return nil })
	}))
	_, err := st.OutboxRead(1000)
	ok("OutboxRead", err)
	_, err = st.Counts()
	ok("Counts", err)
	_, err = st.LastOK()
	ok("LastOK", err)
	ev := &deadline.Evaluator{Store: st, Clock: clock.NewFake(corpusNow.Add(100 * time.Hour)), Source: "https://pc.test"}
	_, err = ev.EvaluateOnce(context.Background())
	if err != nil && !errors.Is(err, state.ErrCorrupt) && !strings.Contains(err.Error(), "read-only") {
		t.Errorf("EvaluateOnce: %v", err)
	}
}

// TestRandomFlipsNeverPanic flips one random byte anywhere in a real state
// file, many times over: Open refuses the file with an *OpenError or opens
// it, and then every reader, and a deadline evaluation, works or names the
// damage. None of it may panic or fault (that would kill the test binary).
func TestRandomFlipsNeverPanic(t *testing.T) {
	pristine := corpus(t)
	n := 300
	if testing.Short() || raceEnabled {
		n = 80
	}
	r := rand.New(rand.NewPCG(2026, 11))
	dir := t.TempDir()
	refused, opened := 0, 0
	for i := 0; i < n; i++ {
		b := append([]byte(nil), pristine...)
		off := r.IntN(len(b))
		b[off] ^= byte(1 + r.IntN(255))
		path := filepath.Join(dir, fmt.Sprintf("flip%d.db", i))
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		st, err := state.Open(path, state.Options{})
		if err != nil {
			var oe *state.OpenError
			if !errors.As(err, &oe) || oe.Kind == nil {
				t.Fatalf("flip at %d: Open = %v; want an *OpenError naming the damage", off, err)
			}
			refused++
		} else {
			opened++
			exercise(t, st)
			st.Close()
		}
		os.Remove(path)
	}
	t.Logf("%d flips: %d files refused, %d opened (the flip hit unused bytes or a header page bbolt recovers from)", n, refused, opened)
	if refused == 0 || opened == 0 {
		t.Errorf("the flips never exercised one outcome (refused %d, opened %d)", refused, opened)
	}
}

// FuzzOpenFlip is TestRandomFlipsNeverPanic under the fuzzer: one byte of
// a real state file xored with a value.
//
//	go test -run=NONE -fuzz=FuzzOpenFlip ./internal/state/
func FuzzOpenFlip(f *testing.F) {
	f.Add(uint32(0), byte(1))
	f.Add(uint32(4096+16), byte(0xff))
	f.Add(uint32(5*4096+20), byte(0x80))
	f.Fuzz(func(t *testing.T, off uint32, x byte) {
		b := append([]byte(nil), corpus(t)...)
		b[int(off)%len(b)] ^= x
		path := filepath.Join(t.TempDir(), state.FileName)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		st, err := state.Open(path, state.Options{})
		if err != nil {
			var oe *state.OpenError
			if !errors.As(err, &oe) {
				t.Fatalf("Open = %v (%T), want an *OpenError", err, err)
			}
			return
		}
		defer st.Close()
		exercise(t, st)
	})
}

// TestDamageWhileOpen damages one subscription record under a running
// store (as a failing disk would): the readers skip and name it, a customer
// holding it is refused (a diff against a partial snapshot would read the
// record as new), everyone else is read, and the deadline evaluation fires
// for every other subscription, reports the damaged one, and keeps its
// ledger entries. Reopening refuses the file, naming the record.
func TestDamageWhileOpen(t *testing.T) {
	pristine := corpus(t)
	l := layoutOf(t, pristine)
	path := filepath.Join(t.TempDir(), state.FileName)
	if err := os.WriteFile(path, pristine, 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := state.Open(path, state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	bad := subKey(0, 0) // its window closes first, with a ledger entry
	val := l.values[bad]
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{pristine[val[0]+val[1]/2] ^ 0x20}, int64(val[0]+val[1]/2)); err != nil {
		t.Fatal(err)
	}
	f.Close()

	seen := 0
	err = st.View(func(r *state.ReadTx) error {
		return r.ForEach(resource.Subscriptions, func(string, state.Record) error { seen++; return nil })
	})
	var de *state.DamagedError
	if !errors.As(err, &de) || de.Count != 1 || de.Records[0].Key != bad || de.Records[0].Kind != "subscription" {
		t.Fatalf("ForEach = %v; want a *DamagedError naming subscription %s", err, bad)
	}
	if want := len(l.values) - 1; seen != want {
		t.Errorf("ForEach read %d records past the damaged one, want %d", seen, want)
	}
	for _, s := range []string{path, "subscription " + bad, "checksum mismatch", "fresh baseline"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("the error does not say %q: %v", s, err)
		}
	}
	err = st.View(func(r *state.ReadTx) error {
		if snap, err := r.Customer("c0000", resource.Subscriptions); snap != nil || !errors.Is(err, state.ErrCorrupt) {
			t.Errorf("Customer(c0000) = %v, %v; want no snapshot and ErrCorrupt", snap, err)
		}
		if _, ok, err := r.Get(resource.Subscriptions, bad); !ok || !errors.Is(err, state.ErrCorrupt) {
			t.Errorf("Get(%s) = %v, %v; want present and damaged", bad, ok, err)
		}
		snap, err := r.Customer("c0001", resource.Subscriptions)
		if err != nil || len(snap.Records[resource.Subscriptions]) != corpusSubsPerCustomer {
			t.Errorf("Customer(c0001) = %v; want its %d subscriptions", err, corpusSubsPerCustomer)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// Every window has closed 241 hours later: cancellation-window-closed
	// fires for each subscription but the damaged one.
	gauge := &damageGauge{}
	clk := clock.NewFake(corpusNow.Add(241 * time.Hour))
	ev := &deadline.Evaluator{Store: st, Clock: clk, Source: "https://pc.test", Metrics: gauge}
	n, err := ev.EvaluateOnce(context.Background())
	if !errors.Is(err, state.ErrCorrupt) || !strings.Contains(err.Error(), bad) {
		t.Errorf("EvaluateOnce error = %v; want one naming %s", err, bad)
	}
	if want := len(l.values) - 1; n != want {
		t.Errorf("EvaluateOnce fired %d events, want %d (one per readable subscription)", n, want)
	}
	if gauge.damaged != 1 {
		t.Errorf("damaged-records gauge = %d, want 1", gauge.damaged)
	}
	// Long after the damaged subscription's deadlines, the ledger keeps its
	// closed entry: the record cannot be read, so whether it could fire
	// again cannot be known.
	badKey := deadline.LedgerKey("subscription/c0000/s0000", deadline.CancellationClosed, corpusNow.Add(time.Hour), 0)
	clk.Advance(400 * 24 * time.Hour)
	ev = &deadline.Evaluator{Store: st, Clock: clk, Source: "https://pc.test"}
	if _, err := ev.EvaluateOnce(context.Background()); !errors.Is(err, state.ErrCorrupt) {
		t.Errorf("later EvaluateOnce = %v", err)
	}
	st.View(func(r *state.ReadTx) error {
		if !r.LedgerHas(badKey) {
			t.Errorf("ledger entry %s of the damaged subscription was collected", badKey)
		}
		return nil
	})
	st.Close()
	if _, err := state.Open(path, state.Options{}); !errors.Is(err, state.ErrCorrupt) || !strings.Contains(err.Error(), "subscription "+bad) {
		t.Errorf("reopening = %v; want ErrCorrupt naming %s", err, bad)
	}
}

type damageGauge struct{ ledger, damaged int }

func (g *damageGauge) LedgerSize(n int)     { g.ledger = n }
func (g *damageGauge) RecordsDamaged(n int) { g.damaged = n }

// TestLegacyRecordDamagedAtRead: a record written before the record
// checksum (version 3) whose compressed metadata is damaged passes Open's
// check (its payloads are checked when decompressed, not at start-up), and
// then fails where it is read, naming the record, while the evaluation of
// every other subscription goes on.
func TestLegacyRecordDamagedAtRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), state.FileName)
	st, err := state.Open(path, state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cancelBy := corpusNow.Add(2 * time.Hour)
	f := deadline.Facts{NCE: true, Status: "active", Quantity: 3, Term: "P1Y", CancelBy: cancelBy, CancelSeenOpen: cancelBy}
	rec := func(id string) state.Record {
		raw := []byte(`{"id":"` + id + `","quantity":3,"status":"active"}`)
		return state.Record{Hash: state.HashOf(raw), Rev: 1, Raw: raw, Meta: f.Encode()}
	}
	var ch state.Change
	for _, id := range []string{"s1", "s2", "s4"} {
		ch.Puts = append(ch.Puts, state.Put{Kind: resource.Subscriptions, Key: "c1/" + id, Record: rec(id)})
	}
	if err := st.Commit(&ch); err != nil {
		t.Fatal(err)
	}
	if err := state.PutLegacyDamaged(st, "c1/s3", rec("s3")); err != nil {
		t.Fatal(err)
	}
	st.Close()
	if st, err = state.Open(path, state.Options{}); err != nil {
		t.Fatalf("Open = %v; a version 3 record's payload is checked when read", err)
	}
	defer st.Close()
	err = st.View(func(r *state.ReadTx) error {
		return r.ForEach(resource.Subscriptions, func(key string, rec state.Record) error {
			_, err := rec.MetaJSON()
			var re *state.RecordError
			switch {
			case key == "c1/s3" && (!errors.As(err, &re) || re.Key != key || re.Kind != "subscription" || !errors.Is(err, state.ErrCorrupt)):
				t.Errorf("MetaJSON of the damaged record = %v; want a *RecordError naming subscription c1/s3", err)
			case key != "c1/s3" && err != nil:
				t.Errorf("MetaJSON(%s) = %v", key, err)
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	gauge := &damageGauge{}
	ev := &deadline.Evaluator{Store: st, Clock: clock.NewFake(corpusNow), Source: "https://pc.test", Metrics: gauge}
	n, err := ev.EvaluateOnce(context.Background())
	if n != 3 || !errors.Is(err, state.ErrCorrupt) || !strings.Contains(err.Error(), "subscription c1/s3") || gauge.damaged != 1 {
		t.Errorf("EvaluateOnce = %d, %v (damaged gauge %d); want the 3 readable subscriptions' 4h warnings and an error naming c1/s3", n, err, gauge.damaged)
	}
	if n, _ := st.OutboxLen(); n != 3 {
		t.Errorf("outbox holds %d events, want 3", n)
	}
}

// TestTruncatedWhileOpen: a file cut short under the running process (a
// full disk being "cleaned", a bad restore) makes reads fault in bbolt's
// map; View returns that as ErrCorrupt instead of crashing the process.
func TestTruncatedWhileOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), state.FileName)
	if err := os.WriteFile(path, corpus(t), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := state.Open(path, state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := os.Truncate(path, 3*4096); err != nil {
		t.Fatal(err)
	}
	err = st.View(func(r *state.ReadTx) error {
		return r.ForEach(resource.Subscriptions, func(string, state.Record) error { return nil })
	})
	if !errors.Is(err, state.ErrCorrupt) || !strings.Contains(err.Error(), "truncated or overwritten while open") {
		t.Fatalf("View over a truncated file = %v; want ErrCorrupt", err)
	}
}
