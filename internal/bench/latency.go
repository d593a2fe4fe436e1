package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/oauth2"

	"github.com/pcwatch/pcwatch/internal/events"
	"github.com/pcwatch/pcwatch/internal/pcsim"
	"github.com/pcwatch/pcwatch/internal/poller"
	"github.com/pcwatch/pcwatch/internal/watcher"
)

// LatencyOptions size figure 6: one dataset and one schedule of seat
// increases, applied at the same instants to two simulators, each watched
// by its own in-process watcher with the same interval and request budget:
// one only sweeps (hints off), the other also tails the activity log and
// refreshes the customers it names (hints on).
type LatencyOptions struct {
	Customers int           // default 2000
	Interval  time.Duration // both watchers' --interval; default 1m
	Rate      float64       // both watchers' --rate, requests per minute; default 640
	// AuditLag is the simulators' activity-log lag (pcsim.AuditConfig.Lag,
	// on the business clock, which here is the wall clock); default 10s.
	AuditLag time.Duration
	// AuditInterval is the hints-on watcher's --audit-interval; default 5s.
	AuditInterval time.Duration
	// Window is how long mutations are made; default one sweep-only period
	// as estimated from the budget (Interval + SweepEstimate), so that the
	// mutations fall at every phase of the sweep.
	Window  time.Duration
	MeanGap time.Duration // mean time between mutations (Poisson); default 1s
	// MaxStaleness is both watchers' --max-staleness; default 10m, so
	// that at this budget (a sweep of about 3.5 intervals) the bound does
	// not bind and hints keep their priority over the sweep.
	MaxStaleness time.Duration
	Dir          string
	// HintsLog receives the hints-on watcher's debug log (JSON; its
	// baseline run's too), to see where a hint's time goes (every Partner
	// Center request is logged); nil discards it.
	HintsLog io.Writer
}

// LatencyResult is figure 6: time from a change in Partner Center to the
// receipt of its event from JetStream, sweep only and with hints, measured
// side by side on the same mutations.
type LatencyResult struct {
	Customers     int
	Interval      time.Duration
	Rate          float64 // the watchers' budget, requests/minute
	SimLimit      int     // the simulators' 429 limit, requests/minute (SimLimit)
	AuditLag      time.Duration
	AuditInterval time.Duration
	MaxStaleness  time.Duration
	Window        time.Duration // mutations were made for this long
	MeanGap       time.Duration // ... one every MeanGap on average
	SweepOnly     LatencyRow    // hints off
	Hints         LatencyRow    // hints on
}

// LatencyRow is one watcher's share of figure 6.
type LatencyRow struct {
	CycleWall        time.Duration // median duration of the sweeps during the run
	Cycles           int           // sweeps completed during the run
	RequestsPerCycle uint64        // of the last sweep
	Mutations        int           // seat increases made
	Matched          int           // ... whose event was received
	// FoundBySweep counts the matched changes whose first event carries no
	// data.actor: a sweep found them, not a hinted refresh.
	FoundBySweep  int
	P50, P99, Max time.Duration
	// FloorP50 and FloorP99: see SweepFloors and HintFloors.
	FloorP50, FloorP99 time.Duration
	Requests           int64   // /v1 requests the simulator answered during the run
	RequestsPerMinute  float64 // Requests over the run's wall time
	Throttled          int64   // 429s the simulator sent
}

// SweepRequests is the cost of one sweep that polls subscriptions only:
// one customer-list request per page of 500, one subscriptions request per
// customer.
func SweepRequests(customers int) int {
	return (customers+pcsim.MaxPageSize-1)/pcsim.MaxPageSize + customers
}

// SweepEstimate is how long one sweep of customers takes at rate
// requests/minute.
func SweepEstimate(customers int, rate float64) time.Duration {
	return time.Duration(float64(SweepRequests(customers)) / rate * float64(time.Minute))
}

// SimLimit is the simulators' rate limit for a watcher budget of rate
// requests/minute: Partner Center's documented 500/minute is to the
// watcher's default budget (300/minute) what SimLimit is to rate, so a 429
// means the watcher spent more than its budget plus that margin.
func SimLimit(rate float64) int {
	return int(math.Ceil(rate * 500 / 300))
}

// SweepFloors are the expected p50 and p99 of a change's wait for a
// watcher that only sweeps: a change made at a uniformly random instant
// waits for its customer's next listing, uniform over one period, so half
// of it and 0.99 of it. The watcher's paced loop (--sweep spread) starts a
// cycle every interval, or at once after one that overran it: the period
// is the longer of the interval and the cycle.
func SweepFloors(interval, cycle time.Duration) (p50, p99 time.Duration) {
	period := max(interval, cycle)
	return period / 2, period * 99 / 100
}

// HintFloors are p50 and p99 of a change's wait when its activity-log
// record triggers the refresh: the record appears lag after the change and
// is read at the next poll, uniform over one audit interval, so lag plus
// half of it and lag plus all of it (the refresh's own request and the
// publish come on top). A sweep that lists the customer first can beat
// them.
func HintFloors(lag, auditInterval time.Duration) (p50, p99 time.Duration) {
	return lag + auditInterval/2, lag + auditInterval
}

// Percentiles returns the nearest-rank p50 and p99 and the maximum of
// lat, which it sorts; zeros for an empty sample.
func Percentiles(lat []time.Duration) (p50, p99, maxv time.Duration) {
	if len(lat) == 0 {
		return 0, 0, 0
	}
	slices.Sort(lat)
	rank := func(p float64) time.Duration {
		i := int(math.Ceil(p*float64(len(lat)))) - 1
		return lat[min(max(i, 0), len(lat)-1)]
	}
	return rank(0.50), rank(0.99), lat[len(lat)-1]
}

// receipt is one quantity-changed event as the subscriber got it.
type receipt struct {
	qty   int
	at    time.Time
	actor bool // data.actor present: a hinted refresh found it
}

// firstReceipt is the earliest receipt of sub's events that shows at least
// qty seats (seat increases only grow the quantity, so a later increase
// listed together with this one still shows it).
func firstReceipt(rs []receipt, qty int) (receipt, bool) {
	var best receipt
	found := false
	for _, r := range rs {
		if r.qty >= qty && (!found || r.at.Before(best.at)) {
			best, found = r, true
		}
	}
	return best, found
}

// latencyRun is one simulator and the watcher that watches it.
type latencyRun struct {
	sim      *pcsim.Sim
	srv      *httptest.Server
	done     chan error
	start    time.Time
	mu       sync.Mutex
	cycles   []*poller.Report
	receipts map[string][]receipt // by subscription id
	sub      *nats.Subscription
	muts     []mutation
}

type mutation struct {
	sub string
	qty int
	at  time.Time
}

func (o *LatencyOptions) defaults() {
	if o.Customers == 0 {
		o.Customers = 2000
	}
	if o.Interval == 0 {
		o.Interval = time.Minute
	}
	if o.Rate == 0 {
		o.Rate = 640
	}
	if o.AuditLag == 0 {
		o.AuditLag = 10 * time.Second
	}
	if o.AuditInterval == 0 {
		o.AuditInterval = 5 * time.Second
	}
	if o.Window == 0 {
		o.Window = o.Interval + SweepEstimate(o.Customers, o.Rate)
	}
	if o.MeanGap == 0 {
		o.MeanGap = time.Second
	}
	if o.MaxStaleness == 0 {
		o.MaxStaleness = 10 * time.Minute
	}
}

// DetectionLatency runs figure 6: two watchers in-process, each against
// its own simulator (same seed, same dataset, same activity-log lag, rate
// limit SimLimit), hints off and on. After a baseline sweep at full speed
// (a --once run, so the measured run starts in steady state) each watcher
// runs with the budget; seat increases are made on both simulators at the
// same Poisson instants for o.Window, and the run ends when every change
// has been received by a NATS subscriber of each watcher (or after two
// more periods).
func DetectionLatency(o LatencyOptions) (*LatencyResult, error) {
	o.defaults()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runs := [2]*latencyRun{}
	errs := [2]error{}
	var wg sync.WaitGroup
	for i, ai := range []time.Duration{0, o.AuditInterval} {
		wg.Go(func() {
			runs[i], errs[i] = startLatencyRun(ctx, o, filepath.Join(o.Dir, fmt.Sprintf("latency-%d", i)), ai)
		})
	}
	wg.Wait()
	defer func() {
		cancel()
		for _, r := range runs {
			if r != nil {
				<-r.done
				r.srv.Close()
			}
		}
	}()
	if err := errors.Join(errs[:]...); err != nil {
		return nil, err
	}

	// The mutation schedule: the same subscription, the same instant (to
	// microseconds), on both simulators.
	r := rand.New(rand.NewPCG(6, 6))
	var active []pcsim.SubscriptionState
	custOf := map[string]string{}
	for _, cs := range runs[0].sim.State().Customers {
		for _, s := range cs.Subscriptions {
			if s.Status == "active" {
				active = append(active, s)
				custOf[s.ID] = cs.ID
			}
		}
	}
	if len(active) == 0 {
		return nil, fmt.Errorf("the simulator has no active subscription to change")
	}
	qty := [2]map[string]int{{}, {}}
	for _, s := range active {
		qty[0][s.ID], qty[1][s.ID] = s.Quantity, s.Quantity
	}
	end := time.Now().Add(o.Window)
	for time.Now().Before(end) {
		time.Sleep(time.Duration(r.ExpFloat64() * float64(o.MeanGap)))
		// A subscription whose seats cannot change (a trial, a
		// license-based offer, ...) leaves the pool: draw another.
		for len(active) > 0 {
			k := r.IntN(len(active))
			s := active[k]
			at := time.Now()
			if err := runs[0].sim.IncreaseSeats(custOf[s.ID], s.ID, 1); err != nil {
				active = slices.Delete(active, k, k+1)
				continue
			}
			qty[0][s.ID]++
			runs[0].muts = append(runs[0].muts, mutation{s.ID, qty[0][s.ID], at})
			at = time.Now()
			if err := runs[1].sim.IncreaseSeats(custOf[s.ID], s.ID, 1); err == nil {
				qty[1][s.ID]++
				runs[1].muts = append(runs[1].muts, mutation{s.ID, qty[1][s.ID], at})
			}
			break
		}
	}
	if len(runs[0].muts) == 0 {
		return nil, fmt.Errorf("no seat increase was accepted by the simulator")
	}
	// Every change waits at most one period (plus the hint refreshes'
	// share of the budget); give up after two.
	period := max(o.Interval, SweepEstimate(o.Customers, o.Rate)) + time.Minute
	deadline := time.Now().Add(2*period + 30*time.Second)
	for time.Now().Before(deadline) && !(runs[0].allSeen() && runs[1].allSeen()) {
		time.Sleep(250 * time.Millisecond)
	}

	res := &LatencyResult{Customers: o.Customers, Interval: o.Interval, Rate: o.Rate, SimLimit: SimLimit(o.Rate), MaxStaleness: o.MaxStaleness,
		AuditLag: o.AuditLag, AuditInterval: o.AuditInterval, Window: o.Window, MeanGap: o.MeanGap,
		SweepOnly: runs[0].row(), Hints: runs[1].row()}
	if res.SweepOnly.Matched == 0 || res.Hints.Matched == 0 {
		return nil, fmt.Errorf("no change was received (sweep only: %d/%d, hints: %d/%d)",
			res.SweepOnly.Matched, res.SweepOnly.Mutations, res.Hints.Matched, res.Hints.Mutations)
	}
	res.SweepOnly.FloorP50, res.SweepOnly.FloorP99 = SweepFloors(o.Interval, res.SweepOnly.CycleWall)
	res.Hints.FloorP50, res.Hints.FloorP99 = HintFloors(o.AuditLag, o.AuditInterval)
	return res, nil
}

// startLatencyRun builds a simulator, runs a baseline sweep over it at
// full speed, then turns on its rate limit and starts the measured watcher
// (activity-log tail every auditInterval; 0 = off) with a subscriber to
// quantity-changed events.
func startLatencyRun(ctx context.Context, o LatencyOptions, dir string, auditInterval time.Duration) (*latencyRun, error) {
	sim := pcsim.New(pcsim.Options{Seed: 6, Customers: o.Customers, Token: "bench", Audit: pcsim.AuditConfig{Lag: o.AuditLag}})
	run := &latencyRun{sim: sim, srv: httptest.NewServer(sim), done: make(chan error, 1), receipts: map[string][]receipt{}}
	fail := func(err error) (*latencyRun, error) {
		run.srv.Close()
		return nil, err
	}
	c := watcher.Default()
	c.PCURL, c.DataDir, c.NATSPort, c.Listen = run.srv.URL, dir, -1, ""
	c.Interval, c.Concurrency, c.AuditInterval, c.MaxStaleness = o.Interval, 8, auditInterval, o.MaxStaleness
	if auditInterval == 0 {
		// Sweep only: no hot refresher either (it would find recently
		// changed customers' next changes between sweeps).
		c.HotInterval = 0
	}
	ts := oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "bench"})
	logger := watcher.NewLogger(io.Discard, "text", "error")
	if auditInterval > 0 && o.HintsLog != nil {
		logger = watcher.NewLogger(o.HintsLog, "json", "debug")
	}

	base := c
	base.Once, base.Rate = true, 100000
	if err := watcher.Run(ctx, watcher.Options{Config: base, Logger: logger, TokenSource: ts}); err != nil {
		return fail(fmt.Errorf("baseline sweep: %w", err))
	}
	sim.SetFaults(pcsim.Faults{RateLimit: pcsim.RateLimit{Requests: SimLimit(o.Rate), Per: time.Minute}})
	sim.ResetStats()

	c.Rate = o.Rate
	started := make(chan *watcher.Runtime, 1)
	run.start = time.Now()
	go func() {
		run.done <- watcher.Run(ctx, watcher.Options{Config: c, Logger: logger, TokenSource: ts,
			Started: func(rt *watcher.Runtime) { started <- rt },
			Cycled: func(r *poller.Report) {
				run.mu.Lock()
				run.cycles = append(run.cycles, r)
				run.mu.Unlock()
			}})
	}()
	var rt *watcher.Runtime
	select {
	case rt = <-started:
	case err := <-run.done:
		return fail(fmt.Errorf("watcher: %v", err))
	}
	var err error
	run.sub, err = rt.Conn.Subscribe("pcwatch.events.subscription.quantity-changed.>", func(m *nats.Msg) {
		at := time.Now()
		ev, err := events.Decode(m.Data)
		if err != nil {
			return
		}
		d, err := ev.DecodeData()
		if err != nil || d.After == nil || d.After.Quantity == nil {
			return
		}
		run.mu.Lock()
		run.receipts[d.SubscriptionID] = append(run.receipts[d.SubscriptionID], receipt{*d.After.Quantity, at, d.Actor != nil})
		run.mu.Unlock()
	})
	if err != nil {
		// The caller stops the watcher that runs.
		return run, fmt.Errorf("subscribing to quantity-changed events: %w", err)
	}
	return run, nil
}

func (r *latencyRun) allSeen() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range r.muts {
		if _, ok := firstReceipt(r.receipts[m.sub], m.qty); !ok {
			return false
		}
	}
	return true
}

// row summarizes the run so far.
func (r *latencyRun) row() LatencyRow {
	st := r.sim.Stats()
	r.mu.Lock()
	defer r.mu.Unlock()
	row := LatencyRow{Mutations: len(r.muts), Requests: st.Total, Throttled: st.Throttled, Cycles: len(r.cycles)}
	row.RequestsPerMinute = float64(st.Total) / time.Since(r.start).Minutes()
	var lat []time.Duration
	for _, m := range r.muts {
		if rc, ok := firstReceipt(r.receipts[m.sub], m.qty); ok {
			lat = append(lat, rc.at.Sub(m.at))
			if !rc.actor {
				row.FoundBySweep++
			}
		}
	}
	row.Matched = len(lat)
	row.P50, row.P99, row.Max = Percentiles(lat)
	var walls []time.Duration
	for _, c := range r.cycles {
		walls = append(walls, c.Duration)
		row.RequestsPerCycle = c.APIRequests
	}
	if len(walls) > 0 {
		row.CycleWall = median(walls)
	}
	return row
}
