package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/pcwatch/pcwatch/internal/clock"
	"github.com/pcwatch/pcwatch/internal/diff"
	pc "github.com/pcwatch/pcwatch/internal/partnercenter"
	"github.com/pcwatch/pcwatch/internal/pcsim"
	"github.com/pcwatch/pcwatch/internal/resource"
	"github.com/pcwatch/pcwatch/internal/state"
)

// CycleOptions size the cycle measurement.
type CycleOptions struct {
	Customers       int     // default 10,000
	SubsPerCustomer int     // default 10
	Changed         float64 // share of subscriptions changed; default 0.01
	Repeat          int     // measurements per figure (median); default 3
	Workers         int     // diff/commit workers, as the poller's pool; default 8
	Dir             string  // scratch directory (state files); required
}

// CycleResult are figures 1 and 2 and the peak heap.
type CycleResult struct {
	Customers, Subscriptions, Changed int
	JSONBytes                         int64
	DecodeCPU                         time.Duration // floor: decoding the same bytes alone
	PipelineCPU                       time.Duration // split + diff (decoding what changed) + persist
	Ratio                             float64       // PipelineCPU / DecodeCPU
	Events                            int           // events the changed cycle emitted
	Decoded                           int           // subscriptions the changed cycle decoded (new or changed bytes, open refund windows)
	UnchangedBytes                    int64         // written by an unchanged cycle's diff and commits
	UnchangedCommits                  int64
	MetaBytes                         int64 // the per-cycle bookkeeping (cycle counter, last-success batch)
	PeakHeap                          uint64
}

type body struct {
	id   string
	name string
	b    []byte // set while rendering; the measured runs read from the file
	off  int64
	n    int
}

// spill writes the bodies to a file and drops them from memory, so the
// measured heap is the pipeline's, not the fixture's: in production the
// bytes arrive from the network one customer at a time.
func spill(path string, bodies []body) (*os.File, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	var off int64
	for i := range bodies {
		if _, err := f.Write(bodies[i].b); err != nil {
			f.Close()
			return nil, err
		}
		bodies[i].off, bodies[i].n, bodies[i].b = off, len(bodies[i].b), nil
		off += int64(bodies[i].n)
	}
	return f, nil
}

func (b body) read(f *os.File) ([]byte, error) {
	if f == nil {
		return b.b, nil
	}
	buf := make([]byte, b.n)
	_, err := f.ReadAt(buf, b.off)
	return buf, err
}

// render returns each customer's subscription-list body as the simulator
// serves it.
func render(sim *pcsim.Sim, ids []pcsim.CustomerState) []body {
	out := make([]body, len(ids))
	for i, c := range ids {
		rr := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/v1/customers/"+c.ID+"/subscriptions", nil)
		req.Header.Set("Authorization", "Bearer t")
		sim.ServeHTTP(rr, req)
		out[i] = body{id: c.ID, name: c.CompanyName, b: rr.Body.Bytes()}
	}
	return out
}

// Cycle measures one poll cycle's CPU at scale, next to decoding alone.
func Cycle(o CycleOptions) (*CycleResult, error) {
	if o.Customers == 0 {
		o.Customers = 10000
	}
	if o.SubsPerCustomer == 0 {
		o.SubsPerCustomer = 10
	}
	if o.Changed == 0 {
		o.Changed = 0.01
	}
	if o.Repeat == 0 {
		o.Repeat = 3
	}
	if o.Workers == 0 {
		o.Workers = 8
	}
	clk := clock.NewFake(time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC))
	sim := pcsim.New(pcsim.Options{Seed: 1, Customers: o.Customers, SubscriptionsPerCustomer: o.SubsPerCustomer, Clock: clk, Token: "t"})
	custs := sim.State().Customers
	before := render(sim, custs)
	res := &CycleResult{Customers: len(custs)}
	for _, c := range custs {
		res.Subscriptions += len(c.Subscriptions)
	}

	// Change 1% of the subscriptions: one seat more on active ones, spread
	// over as many customers as possible.
	want := int(float64(res.Subscriptions) * o.Changed)
	for round := 0; res.Changed < want && round < o.SubsPerCustomer; round++ {
		for _, c := range custs {
			if res.Changed >= want {
				break
			}
			if round < len(c.Subscriptions) && c.Subscriptions[round].Status == "active" {
				if sim.IncreaseSeats(c.ID, c.Subscriptions[round].ID, 1) == nil {
					res.Changed++
				}
			}
		}
	}
	after := render(sim, custs)
	for _, b := range after {
		res.JSONBytes += int64(len(b.b))
	}
	sim, custs = nil, nil

	// The baseline state file, built from the "before" bodies.
	base := filepath.Join(o.Dir, "baseline.db")
	st, err := state.Open(base, state.Options{})
	if err != nil {
		return nil, err
	}
	if err := commitAll(st, before, 8, 1); err != nil {
		return nil, err
	}
	st.Close()
	before = nil
	f, err := spill(filepath.Join(o.Dir, "bodies"), after)
	if err != nil {
		return nil, err
	}
	defer f.Close()

	var decode, pipeline []time.Duration
	for r := 0; r < o.Repeat; r++ {
		runtime.GC()
		c0 := cpuTime()
		for _, b := range after {
			raw, err := b.read(f)
			if err != nil {
				return nil, err
			}
			var coll pc.Collection[pc.Subscription]
			if err := json.Unmarshal(raw, &coll); err != nil {
				return nil, err
			}
		}
		decode = append(decode, cpuTime()-c0)

		path := filepath.Join(o.Dir, fmt.Sprintf("run%d.db", r))
		if err := copyFile(base, path); err != nil {
			return nil, err
		}
		st, err := state.Open(path, state.Options{})
		if err != nil {
			return nil, err
		}
		runtime.GC()
		stop := sampleHeap(&res.PeakHeap)
		c0 = cpuTime()
		d0 := resource.Subscriptions.Decodes()
		evs, err := pipelineRun(st, f, after, o.Workers, 2)
		pipeline = append(pipeline, cpuTime()-c0)
		res.Decoded = int(resource.Subscriptions.Decodes() - d0)
		stop()
		if err != nil {
			return nil, err
		}
		res.Events = evs

		// The same listing again: nothing changed, nothing may be written.
		w0 := st.WriteStats()
		if _, err := pipelineRun(st, f, after, o.Workers, 3); err != nil {
			return nil, err
		}
		w1 := st.WriteStats()
		res.UnchangedBytes, res.UnchangedCommits = w1.Bytes()-w0.Bytes(), w1.Commits-w0.Commits
		// What every cycle writes regardless: the cycle counter and one
		// batch of last-success times.
		if _, err := st.NextCycle(); err != nil {
			return nil, err
		}
		ok := make(map[string]time.Time, len(after))
		for _, b := range after {
			ok[b.id] = clk.Now()
		}
		if err := st.SetLastOK(ok); err != nil {
			return nil, err
		}
		res.MetaBytes = st.WriteStats().Bytes() - w1.Bytes()
		st.Close()
		os.Remove(path)
	}
	res.DecodeCPU, res.PipelineCPU = median(decode), median(pipeline)
	res.Ratio = float64(res.PipelineCPU) / float64(res.DecodeCPU)
	return res, nil
}

// pipelineRun reads, diffs and commits every customer's body through a
// worker pool, as the poller does, and returns the events emitted.
func pipelineRun(st *state.Store, f *os.File, bodies []body, workers int, cycle uint64) (int, error) {
	var events atomic.Int64
	now := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(cycle) * time.Hour)
	err := parallel(len(bodies), workers, func(i int) error {
		b := bodies[i]
		raw, err := b.read(f)
		if err != nil {
			return err
		}
		// The poller's per-customer work, as the client's item listing
		// and the differ do it: the page validated and split into raw
		// items (pc.SplitCollection is what ListSubscriptionItems runs on
		// each page), the diff, which decodes only the new and changed
		// items (and picks the refund windows to read by id; those reads
		// are network, not measured here), and the commit.
		coll, err := pc.SplitCollection(raw)
		if err != nil {
			return err
		}
		res, err := diff.CommitCustomer(st, &diff.Listing{CustomerID: b.id, CustomerName: b.name,
			Kinds: []*resource.Kind{resource.Subscriptions}, Entities: resource.ItemEntities(resource.Subscriptions, "", coll.Items)},
			diff.Options{Source: "bench", Now: now, Cycle: cycle})
		if err != nil {
			return err
		}
		events.Add(int64(res.Events()))
		return nil
	})
	return int(events.Load()), err
}

// commitAll builds a state file from bodies in large transactions (set-up,
// not measured).
func commitAll(st *state.Store, bodies []body, chunk int, cycle uint64) error {
	_, err := pipelineRun(st, nil, bodies, chunk, cycle)
	return err
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// sampleHeap records the peak HeapInuse until the returned stop is called.
func sampleHeap(peak *uint64) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > *peak {
				*peak = ms.HeapInuse
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return func() { cancel(); <-done }
}
