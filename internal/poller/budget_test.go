package poller_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/oauth2"

	"github.com/pcwatch/pcwatch/internal/clock"
	pc "github.com/pcwatch/pcwatch/internal/partnercenter"
	"github.com/pcwatch/pcwatch/internal/pcsim"
	"github.com/pcwatch/pcwatch/internal/poller"
	"github.com/pcwatch/pcwatch/internal/resource"
	"github.com/pcwatch/pcwatch/internal/state"
)

// simTransport sends requests to the simulator's handler in-process, so
// that a run of minutes on synctest's clock costs no wall time, and notes
// when each customer's subscriptions were listed successfully.
type simTransport struct {
	h      http.Handler
	mu     sync.Mutex
	listed map[string][]time.Time
}

func (s *simTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	s.h.ServeHTTP(rec, r)
	resp := rec.Result()
	resp.Request = r
	if parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/"); resp.StatusCode == http.StatusOK &&
		len(parts) == 4 && parts[1] == "customers" && parts[3] == "subscriptions" {
		s.mu.Lock()
		s.listed[parts[2]] = append(s.listed[parts[2]], time.Now())
		s.mu.Unlock()
	}
	return resp, nil
}

type budgetRun struct {
	rate         float64       // the watcher's budget, requests/minute
	maxStaleness time.Duration // poller.Options.MaxStaleness
	throttled    int64         // the simulator's 429s
	hinted       int           // hinted refreshes that succeeded
	worstGap     time.Duration // longest time a customer outside the flood went without a listing
	worst        string
}

// runBudget runs, for three minutes of synctest time, a poller that sweeps
// 100 customers every 20s (spread over 16s) against a simulator that
// answers 429 beyond 500 requests a minute (50 per 6s), while a flood of
// hints for 30 of the customers asks for ten refreshes a second — more
// than the whole budget.
func runBudget(t *testing.T, dir string, r *budgetRun) {
	synctest.Test(t, func(t *testing.T) {
		const customers, flooded, interval, run = 100, 30, 20 * time.Second, 3 * time.Minute
		sim := pcsim.New(pcsim.Options{Seed: 3, Customers: customers, SubscriptionsPerCustomer: 2,
			Clock: clock.Real{}, Wall: clock.Real{}, Token: "tok"})
		sim.SetFaults(pcsim.Faults{RateLimit: pcsim.RateLimit{Requests: 50, Per: 6 * time.Second}})
		tr := &simTransport{h: sim, listed: map[string][]time.Time{}}
		client, err := pc.New(pc.Options{BaseURL: "http://pcsim.test", HTTPClient: &http.Client{Transport: tr},
			RequestsPerMinute: r.rate, Burst: 8, TokenSource: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "tok"})})
		if err != nil {
			t.Fatal(err)
		}
		st, err := state.Open(filepath.Join(dir, fmt.Sprintf("state-%g-%s.db", r.rate, r.maxStaleness)), state.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		p, err := poller.New(poller.Options{Client: client, Store: st, Source: "https://pc.test", Concurrency: 8,
			Kinds: []*resource.Kind{resource.Subscriptions}, Spread: interval * 4 / 5, MaxStaleness: r.maxStaleness})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), run)
		defer cancel()
		var wg sync.WaitGroup
		wg.Go(func() { // the poll loop, paced
			for ctx.Err() == nil {
				began := time.Now()
				if _, err := p.Cycle(ctx); err != nil && ctx.Err() == nil {
					t.Error(err)
				}
				_ = clock.Sleep(ctx, interval-time.Since(began))
			}
		})
		kick := make(chan struct{}, 1)
		var mu sync.Mutex
		wg.Go(func() {
			_ = p.RunHints(ctx, poller.HintOptions{Kick: kick, Refreshed: func(rf poller.Refreshed) {
				if rf.Result == "ok" {
					mu.Lock()
					r.hinted++
					mu.Unlock()
				}
			}})
		})
		var ids []string
		for _, c := range sim.State().Customers {
			ids = append(ids, c.ID)
		}
		wg.Go(func() { // the flood: ten hints a second for the first 30 customers
			rnd := rand.New(rand.NewPCG(1, 2))
			for clock.Sleep(ctx, time.Second) == nil {
				var hs []state.Hint
				for range 10 {
					now := time.Now()
					hs = append(hs, state.Hint{CustomerID: ids[rnd.IntN(flooded)], FirstAt: now, LastAt: now, Origin: "test"})
				}
				if err := st.Commit(&state.Change{Hints: hs}); err != nil {
					t.Error(err)
					return
				}
				select {
				case kick <- struct{}{}:
				default:
				}
			}
		})
		start := time.Now()
		wg.Wait()
		end := time.Now()
		r.throttled = sim.Stats().Throttled
		tr.mu.Lock()
		defer tr.mu.Unlock()
		for _, id := range ids[flooded:] {
			at := append(append([]time.Time{start}, tr.listed[id]...), end)
			for i := 1; i < len(at); i++ {
				if gap := at[i].Sub(at[i-1]); gap > r.worstGap {
					r.worstGap, r.worst = gap, id
				}
			}
		}
	})
}

// One request budget for the sweep and the hinted refreshes: within it,
// the simulator (500 requests a minute) never answers 429, however many
// hints arrive; hints are served first, yet every customer is listed at
// least once per MaxStaleness, because its sweep requests become overdue.
// The controls show what the test would catch: a budget over the limit
// gets 429s, and without the staleness bound the flood starves the sweep.
func TestSchedulerStaysInBudget(t *testing.T) {
	dir := t.TempDir()
	primeCodec(t)
	within := &budgetRun{rate: 480, maxStaleness: time.Minute}
	runBudget(t, dir, within)
	if within.throttled != 0 {
		t.Errorf("at 480 requests/minute the simulator answered %d 429s", within.throttled)
	}
	if within.hinted < 100 {
		t.Errorf("only %d hinted refreshes in three minutes of a flood", within.hinted)
	}
	if within.worstGap > within.maxStaleness {
		t.Errorf("customer %s went %s without a listing, over the %s bound", within.worst, within.worstGap, within.maxStaleness)
	}
	t.Logf("within budget: %d hinted refreshes, worst gap %s, %d 429s", within.hinted, within.worstGap, within.throttled)

	over := &budgetRun{rate: 600, maxStaleness: time.Minute}
	runBudget(t, dir, over)
	if over.throttled == 0 {
		t.Error("control: at 600 requests/minute the simulator answered no 429: the limit is not enforced and the test proves nothing")
	}
	unbounded := &budgetRun{rate: 480}
	runBudget(t, dir, unbounded)
	if unbounded.worstGap <= time.Minute {
		t.Errorf("control: without a staleness bound the flood did not starve the sweep (worst gap %s): the test proves nothing", unbounded.worstGap)
	}
	t.Logf("controls: %d 429s over budget; worst gap without the bound %s", over.throttled, unbounded.worstGap)
}
