package activity_test

import (
	"context"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/pcwatch/pcwatch/internal/activity"
	"github.com/pcwatch/pcwatch/internal/clock"
	pc "github.com/pcwatch/pcwatch/internal/partnercenter"
	"github.com/pcwatch/pcwatch/internal/pcsim"
	"github.com/pcwatch/pcwatch/internal/state"
)

// t0 is the business time every test starts at: a Monday morning.
var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// env is the real thing in one process: the simulator over HTTP, the
// client, a bbolt state file.
type env struct {
	t       *testing.T
	sim     *pcsim.Sim
	clk     *clock.Fake
	client  *pc.Client
	dir     string
	store   *state.Store
	known   map[string]bool // customers the watcher knows (lower case)
	metrics *metrics
}

func newEnv(t *testing.T, customers int, audit pcsim.AuditConfig) *env {
	t.Helper()
	return newEnvAt(t, t0, customers, audit, t.TempDir())
}

// newEnvAt builds the environment at business time at with the state file
// in dir: the same arguments give the same simulator, record ids
// included (the crash test's child and parent rely on it).
func newEnvAt(t *testing.T, at time.Time, customers int, audit pcsim.AuditConfig, dir string) *env {
	t.Helper()
	e := &env{t: t, clk: clock.NewFake(at), dir: dir, known: map[string]bool{}, metrics: newMetrics()}
	e.sim = pcsim.New(pcsim.Options{Seed: 13, Customers: customers, Clock: e.clk, Token: "tok", Audit: audit})
	srv := httptest.NewServer(e.sim)
	t.Cleanup(srv.Close)
	var err error
	e.client, err = pc.New(pc.Options{BaseURL: srv.URL, HTTPClient: srv.Client(), RequestsPerMinute: 1e6, Burst: 1000,
		RetryBudget: 200 * time.Millisecond, RetryInitial: time.Millisecond, RetryMax: 5 * time.Millisecond,
		TokenSource: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "tok"})})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range e.sim.State().Customers {
		e.known[strings.ToLower(c.ID)] = true
	}
	e.open()
	return e
}

// open (re)opens the state file, as a restarted watcher does.
func (e *env) open() {
	e.t.Helper()
	if e.store != nil {
		if err := e.store.Close(); err != nil {
			e.t.Fatal(err)
		}
	}
	st, err := state.Open(filepath.Join(e.dir, state.FileName), state.Options{})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { st.Close() })
	e.store = st
}

func (e *env) tail(mod func(*activity.Options)) *activity.Tail {
	e.t.Helper()
	o := activity.Options{Client: e.client, Store: e.store, Clock: e.clk, Metrics: e.metrics,
		Known: func(id string) bool { return e.known[strings.ToLower(id)] }}
	if mod != nil {
		mod(&o)
	}
	tl, err := activity.New(o)
	if err != nil {
		e.t.Fatal(err)
	}
	return tl
}

func (e *env) poll(tl *activity.Tail) activity.PollReport {
	e.t.Helper()
	rep, err := tl.Poll(context.Background())
	if err != nil {
		e.t.Fatalf("poll: %v (report %+v)", err, rep)
	}
	return rep
}

// hints returns the pending hints by customer id.
func (e *env) hints() map[string]state.Hint {
	e.t.Helper()
	out := map[string]state.Hint{}
	err := e.store.View(func(r *state.ReadTx) error {
		return r.Hints(func(h state.Hint) error { out[h.CustomerID] = h; return nil })
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// hintCount is the number of records the pending hints coalesce.
func (e *env) hintCount() int {
	n := 0
	for _, h := range e.hints() {
		n += h.Count
	}
	return n
}

// cursor returns the stored cursor's bytes.
func (e *env) cursor() []byte {
	e.t.Helper()
	var b []byte
	if err := e.store.View(func(r *state.ReadTx) error { b = r.Cursor(activity.CursorName); return nil }); err != nil {
		e.t.Fatal(err)
	}
	return b
}

func (e *env) cursorInfo() activity.CursorInfo {
	e.t.Helper()
	ci, err := activity.DecodeCursor(e.cursor())
	if err != nil {
		e.t.Fatal(err)
	}
	return ci
}

// sub is a subscription the tests change.
type sub struct{ customer, id string }

// active returns n subscriptions of distinct customers that are active and
// not trials (renamable, their seats can go up).
func (e *env) active(n int) []sub {
	e.t.Helper()
	var out []sub
	for _, c := range e.sim.State().Customers {
		for _, s := range c.Subscriptions {
			if s.Status == "active" && !s.IsTrial && s.ParentSubscriptionID == "" && s.Kind != pcsim.KindAzurePlan {
				out = append(out, sub{c.ID, s.ID})
				break
			}
		}
		if len(out) == n {
			return out
		}
	}
	e.t.Fatalf("the dataset has fewer than %d customers with an active subscription", n)
	return nil
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// relevantRecords counts the records of the simulator's activity log
// that the tail must hint: visible now, of a relevant operation type, for
// a known customer, with an operationDate after from.
func (e *env) relevantRecords(from time.Time) int {
	n := 0
	ops := activity.RelevantOperations()
	for _, r := range e.sim.AuditLog(0) {
		if r.VisibleAt.After(e.clk.Now()) || !r.OperationDate.After(from) {
			continue
		}
		if _, ok := ops[r.OperationType]; ok && e.known[strings.ToLower(r.CustomerID)] {
			n++
		}
	}
	return n
}

// metrics records what the tail reports.
type metrics struct {
	mu       sync.Mutex
	read     int
	skipped  map[string]int
	queued   int
	failed   int
	ok       []time.Time
	lag      []time.Duration
	badLabel []string // skip reasons outside activity.SkipReasons
}

func newMetrics() *metrics { return &metrics{skipped: map[string]int{}} }

func (m *metrics) RecordsRead(n int) { m.mu.Lock(); m.read += n; m.mu.Unlock() }
func (m *metrics) RecordSkipped(r string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.skipped[r]++
	for _, x := range activity.SkipReasons {
		if x == r {
			return
		}
	}
	m.badLabel = append(m.badLabel, r)
}
func (m *metrics) HintsQueued(n int)          { m.mu.Lock(); m.queued += n; m.mu.Unlock() }
func (m *metrics) PollFailed()                { m.mu.Lock(); m.failed++; m.mu.Unlock() }
func (m *metrics) PollSucceeded(at time.Time) { m.mu.Lock(); m.ok = append(m.ok, at); m.mu.Unlock() }
func (m *metrics) CursorLag(d time.Duration)  { m.mu.Lock(); m.lag = append(m.lag, d); m.mu.Unlock() }
func (m *metrics) skips(reason string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.skipped[reason]
}
func (m *metrics) failures() int { m.mu.Lock(); defer m.mu.Unlock(); return m.failed }
func (m *metrics) lastLag() time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lag[len(m.lag)-1]
}
func (m *metrics) labelsOutsideTheSet() []string { m.mu.Lock(); defer m.mu.Unlock(); return m.badLabel }
