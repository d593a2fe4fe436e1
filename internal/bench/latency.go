package bench

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/oauth2"

	"github.com/pcwatch/pcwatch/internal/events"
	"github.com/pcwatch/pcwatch/internal/pcsim"
	"github.com/pcwatch/pcwatch/internal/poller"
	"github.com/pcwatch/pcwatch/internal/watcher"
)

// LatencyOptions size figure 6.
type LatencyOptions struct {
	Customers int           // default 500
	Interval  time.Duration // poll interval; default 10s
	Rate      float64       // requests per minute; default 6000
	Duration  time.Duration // how long mutations are made; default 90s
	MeanGap   time.Duration // mean time between mutations (Poisson); default 1s
	Dir       string
}

// LatencyResult is figure 6: time from a change in Partner Center to its
// event on JetStream.
type LatencyResult struct {
	Customers          int
	Interval           time.Duration
	Rate               float64
	CycleWall          time.Duration // median cycle duration
	RequestsPerCycle   uint64
	Mutations, Matched int
	P50, P99, Max      time.Duration
	// Floor: a change made at a uniformly random instant waits on average
	// half a period (interval + cycle) before the cycle that sees it starts
	// (we report the expected p50 of that wait, interval+cycle times 0.5,
	// and the expected p99, 0.99 times the period).
	FloorP50, FloorP99 time.Duration
}

// DetectionLatency runs the watcher in-process against the simulator and
// measures, for each seat increase made at a random instant, the time
// until its quantity-changed event is on JetStream.
func DetectionLatency(o LatencyOptions) (*LatencyResult, error) {
	if o.Customers == 0 {
		o.Customers = 500
	}
	if o.Interval == 0 {
		o.Interval = 10 * time.Second
	}
	if o.Rate == 0 {
		o.Rate = 6000
	}
	if o.Duration == 0 {
		o.Duration = 90 * time.Second
	}
	if o.MeanGap == 0 {
		o.MeanGap = time.Second
	}
	sim := pcsim.New(pcsim.Options{Seed: 6, Customers: o.Customers, Token: "bench"})
	srv := httptest.NewServer(sim)
	defer srv.Close()

	c := watcher.Default()
	c.PCURL, c.DataDir, c.NATSPort, c.Listen = srv.URL, filepath.Join(o.Dir, "latency"), -1, ""
	c.Interval, c.Rate, c.Concurrency = o.Interval, o.Rate, 8
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := make(chan *watcher.Runtime, 1)
	var mu sync.Mutex
	var cycles []*poller.Report
	cycled := make(chan struct{}, 1000)
	done := make(chan error, 1)
	go func() {
		done <- watcher.Run(ctx, watcher.Options{Config: c, Logger: watcher.NewLogger(io.Discard, "text", "error"),
			TokenSource: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "bench"}),
			Started:     func(rt *watcher.Runtime) { started <- rt },
			Cycled: func(r *poller.Report) {
				mu.Lock()
				cycles = append(cycles, r)
				mu.Unlock()
				cycled <- struct{}{}
			}})
	}()
	var rt *watcher.Runtime
	select {
	case rt = <-started:
	case err := <-done:
		return nil, fmt.Errorf("watcher: %v", err)
	}
	type key struct {
		sub string
		qty int
	}
	var seenMu sync.Mutex
	seen := map[key]time.Time{}
	sub, err := rt.Conn.Subscribe("pcwatch.events.subscription.quantity-changed.>", func(m *nats.Msg) {
		at := time.Now()
		ev, err := events.Decode(m.Data)
		if err != nil {
			return
		}
		d, err := ev.DecodeData()
		if err != nil || d.After == nil || d.After.Quantity == nil {
			return
		}
		seenMu.Lock()
		seen[key{d.SubscriptionID, *d.After.Quantity}] = at
		seenMu.Unlock()
	})
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe()
	<-cycled // the baseline

	type mutation struct {
		key
		at time.Time
	}
	var muts []mutation
	r := rand.New(rand.NewPCG(6, 6))
	var active []pcsim.SubscriptionState
	custOf := map[string]string{}
	for _, cs := range sim.State().Customers {
		for _, s := range cs.Subscriptions {
			if s.Status == "active" {
				active = append(active, s)
				custOf[s.ID] = cs.ID
			}
		}
	}
	qty := map[string]int{}
	for _, s := range active {
		qty[s.ID] = s.Quantity
	}
	end := time.Now().Add(o.Duration)
	for time.Now().Before(end) {
		time.Sleep(time.Duration(r.ExpFloat64() * float64(o.MeanGap)))
		s := active[r.IntN(len(active))]
		if err := sim.IncreaseSeats(custOf[s.ID], s.ID, 1); err != nil {
			continue
		}
		qty[s.ID]++
		muts = append(muts, mutation{key{s.ID, qty[s.ID]}, time.Now()})
	}
	// Two more cycles: every mutation has been listed at least once.
	mu.Lock()
	n := len(cycles)
	mu.Unlock()
	for {
		<-cycled
		mu.Lock()
		m := len(cycles)
		mu.Unlock()
		if m >= n+2 {
			break
		}
	}
	// Wait until the relay published everything, then until the
	// subscriber has received it.
	for {
		if n, _ := rt.Store.OutboxLen(); n == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	rt.Conn.Flush()
	sub.Unsubscribe()
	cancel()
	<-done

	res := &LatencyResult{Customers: o.Customers, Interval: o.Interval, Rate: o.Rate, Mutations: len(muts)}
	var lat []time.Duration
	seenMu.Lock()
	for _, m := range muts {
		if at, ok := seen[m.key]; ok {
			lat = append(lat, at.Sub(m.at))
		}
	}
	seenMu.Unlock()
	res.Matched = len(lat)
	if len(lat) == 0 {
		return nil, fmt.Errorf("no mutation was seen on JetStream")
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	res.P50, res.P99, res.Max = lat[len(lat)/2], lat[min(len(lat)-1, len(lat)*99/100)], lat[len(lat)-1]
	var walls []time.Duration
	mu.Lock()
	for _, c := range cycles[1:] {
		walls = append(walls, c.Duration)
		res.RequestsPerCycle = c.APIRequests
	}
	mu.Unlock()
	res.CycleWall = median(walls)
	period := o.Interval + res.CycleWall
	res.FloorP50, res.FloorP99 = period/2, period*99/100
	return res, nil
}
