package bench

import (
	"context"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"time"

	"golang.org/x/oauth2"

	pc "github.com/pcwatch/pcwatch/internal/partnercenter"
	"github.com/pcwatch/pcwatch/internal/pcsim"
	"github.com/pcwatch/pcwatch/internal/poller"
	"github.com/pcwatch/pcwatch/internal/resource"
	"github.com/pcwatch/pcwatch/internal/state"
)

// PollOptions size figure 5.
type PollOptions struct {
	Customers   int           // default 300
	Latency     time.Duration // added by the simulator to every request; default 100ms
	Rate        float64       // requests per minute allowed; default 3000
	Concurrency int           // default 16
	Dir         string
}

// PollResult is figure 5: the wall time of a poll cycle against a slow,
// rate-limited Partner Center, next to its floor (requests / allowed
// rate), and the same cycle with one worker.
type PollResult struct {
	Customers   int
	Requests    uint64
	Latency     time.Duration
	Rate        float64
	Concurrency int
	Wall        time.Duration
	Floor       time.Duration
	Ratio       float64
	Serial      time.Duration // concurrency 1
	SerialFloor time.Duration // requests x latency
	SerialRatio float64
}

// PollCycle measures figure 5.
func PollCycle(o PollOptions) (*PollResult, error) {
	if o.Customers == 0 {
		o.Customers = 300
	}
	if o.Latency == 0 {
		o.Latency = 100 * time.Millisecond
	}
	if o.Rate == 0 {
		o.Rate = 3000
	}
	if o.Concurrency == 0 {
		o.Concurrency = 16
	}
	res := &PollResult{Customers: o.Customers, Latency: o.Latency, Rate: o.Rate, Concurrency: o.Concurrency}
	cycle := func(conc int, rate float64, name string) (time.Duration, uint64, error) {
		sim := pcsim.New(pcsim.Options{Seed: 4, Customers: o.Customers, Token: "bench"})
		srv := httptest.NewServer(sim)
		defer srv.Close()
		burst := 1
		c, err := pc.New(pc.Options{BaseURL: srv.URL, RequestsPerMinute: rate, Burst: burst,
			TokenSource: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "bench"})})
		if err != nil {
			return 0, 0, err
		}
		st, err := state.Open(filepath.Join(o.Dir, name+".db"), state.Options{})
		if err != nil {
			return 0, 0, err
		}
		defer st.Close()
		p, err := poller.New(poller.Options{Client: c, Store: st, Source: "bench", Concurrency: conc,
			Kinds: []*resource.Kind{resource.Subscriptions}, RefundFetchBudget: -1})
		if err != nil {
			return 0, 0, err
		}
		// A first cycle builds the baseline; the measured one is a steady-
		// state cycle.
		if _, err := p.Cycle(context.Background()); err != nil {
			return 0, 0, err
		}
		sim.SetFaults(pcsim.Faults{Latency: o.Latency})
		t0 := time.Now()
		rep, err := p.Cycle(context.Background())
		if err != nil {
			return 0, 0, err
		}
		if !rep.Complete() {
			return 0, 0, fmt.Errorf("cycle incomplete: %+v", rep.Failures)
		}
		return time.Since(t0), rep.APIRequests, nil
	}
	var err error
	if res.Wall, res.Requests, err = cycle(o.Concurrency, o.Rate, "rated"); err != nil {
		return nil, err
	}
	// The floor: every request after the first (the burst) waits for its
	// turn at the allowed rate, and the last one still takes its latency.
	res.Floor = time.Duration(float64(res.Requests-1)/(o.Rate/60)*float64(time.Second)) + o.Latency
	res.Ratio = res.Wall.Seconds() / res.Floor.Seconds()
	// One worker, no rate limit binding: each request waits for the one
	// before, as a script polling one request at a time does.
	var n uint64
	if res.Serial, n, err = cycle(1, 1e7, "serial"); err != nil {
		return nil, err
	}
	res.SerialFloor = time.Duration(n) * o.Latency
	res.SerialRatio = res.Serial.Seconds() / res.SerialFloor.Seconds()
	return res, nil
}
