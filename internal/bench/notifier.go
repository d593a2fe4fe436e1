package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcwatch/pcwatch/internal/events"
	"github.com/pcwatch/pcwatch/internal/natsconn"
	"github.com/pcwatch/pcwatch/internal/notify"
	"github.com/pcwatch/pcwatch/internal/stream"
)

// NotifierOptions size figure 7.
type NotifierOptions struct {
	Events int    // burst size; default 5,000
	Dir    string // scratch; required
	// FloorProfile and Profile, when set, receive CPU profiles of the
	// floor's burst and of the notifier's (pprof format).
	FloorProfile, Profile io.Writer
}

// NotifierResult is figure 7: webhook deliveries per second and
// publish-to-receipt latency, next to a floor consumer that only fetches
// each event, POSTs it and acks it (no routing, no delivery records, no
// signature), at the same concurrency, from the same server.
type NotifierResult struct {
	Events        int
	Concurrency   int
	EPS, FloorEPS float64
	Ratio         float64
	// CPU and FloorCPU are the CPU time of the whole process (publisher,
	// server, consumer, receiver) per event during each burst.
	CPU, FloorCPU    time.Duration
	P50, P99         time.Duration // burst: includes queueing behind the burst
	IdleP50, IdleP99 time.Duration // one event at a time
}

type recorder struct {
	mu   sync.Mutex
	at   map[string]time.Time
	want int
	all  chan struct{}
	one  chan struct{}
}

func newRecorder(want int) *recorder {
	return &recorder{at: map[string]time.Time{}, want: want, all: make(chan struct{}), one: make(chan struct{}, 1)}
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	io.Copy(io.Discard, req.Body)
	id := req.Header.Get("webhook-id")
	now := time.Now()
	r.mu.Lock()
	if _, ok := r.at[id]; !ok {
		r.at[id] = now
		if len(r.at) == r.want {
			close(r.all)
		}
		select {
		case r.one <- struct{}{}:
		default:
		}
	}
	r.mu.Unlock()
}

// Notifier measures figure 7 with the real notifier (notify.Run) on an
// embedded nats-server.
func Notifier(o NotifierOptions) (*NotifierResult, error) {
	if o.Events == 0 {
		o.Events = 5000
	}
	idle := min(300, o.Events)
	res := &NotifierResult{Events: o.Events, Concurrency: notify.DefaultConcurrency}
	s, err := startServer(filepath.Join(o.Dir, "notify"))
	if err != nil {
		return nil, err
	}
	defer s.close()
	js, srv := s.js, s.srv
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// The floor first: a bare consumer on the same stream.
	floorRec := newRecorder(o.Events)
	floorSrv := httptest.NewServer(floorRec)
	defer floorSrv.Close()
	cons, err := js.CreateOrUpdateConsumer(ctx, stream.Name, jetstream.ConsumerConfig{Durable: "bench-floor",
		AckPolicy: jetstream.AckExplicitPolicy, DeliverPolicy: jetstream.DeliverNewPolicy, MaxAckPending: notify.DefaultMaxAckPending})
	if err != nil {
		return nil, err
	}
	it, err := cons.Messages()
	if err != nil {
		return nil, err
	}
	var wg sync.WaitGroup
	for w := 0; w < res.Concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				m, err := it.Next()
				if err != nil {
					return
				}
				id := m.Headers().Get(jetstream.MsgIDHeader)
				req, _ := http.NewRequest("POST", floorSrv.URL, bytes.NewReader(m.Data()))
				req.Header.Set("webhook-id", id)
				if resp, err := http.DefaultClient.Do(req); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				m.DoubleAck(ctx)
			}
		}()
	}
	stopProf := startProfile(o.FloorProfile)
	cpu0 := cpuTime()
	floorStart, err := publishBurst(js, o.Events, "floor")
	if err != nil {
		return nil, err
	}
	select {
	case <-floorRec.all:
	case <-time.After(5 * time.Minute):
		return nil, fmt.Errorf("floor consumer delivered %d of %d", len(floorRec.at), o.Events)
	}
	res.FloorEPS = float64(o.Events) / lastOf(floorRec).Sub(floorStart).Seconds()
	res.FloorCPU = (cpuTime() - cpu0) / time.Duration(o.Events)
	stopProf()
	it.Stop()
	wg.Wait()
	js.DeleteConsumer(ctx, stream.Name, "bench-floor")

	// The notifier.
	rec := newRecorder(o.Events)
	hook := httptest.NewServer(rec)
	defer hook.Close()
	cfg, err := notify.ParseConfig([]byte(`
channels:
  hook: {kind: webhook, url: "`+hook.URL+`", secret_env: S, timeout: 10s}
default: {channels: [hook]}
delivery: {start: new} # not the floor's events, already in the stream
`), notify.ParseOptions{LookupEnv: func(string) (string, bool) { return "bench-secret", true }})
	if err != nil {
		return nil, err
	}
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- notify.Run(ctx, notify.Options{Config: cfg, NATS: natsconn.Options{URL: srv.ClientURL()}, Listen: "127.0.0.1:0",
			Ready: func(notify.ReadyInfo) { close(ready) }})
	}()
	select {
	case <-ready:
	case err := <-done:
		return nil, fmt.Errorf("notifier: %v", err)
	}
	// Unloaded latency: one event at a time.
	var idleLat []time.Duration
	idleRec := rec
	idleRec.want = idle + o.Events
	for i := 0; i < idle; i++ {
		t0 := time.Now()
		if _, err := publishBurst(js, 1, fmt.Sprintf("idle%d", i)); err != nil {
			return nil, err
		}
		select {
		case <-rec.one:
		case <-time.After(time.Minute):
			return nil, fmt.Errorf("event %d not delivered", i)
		}
		idleLat = append(idleLat, time.Since(t0))
	}
	res.IdleP50, res.IdleP99 = pct(idleLat, 50), pct(idleLat, 99)

	sent := map[string]time.Time{}
	stopProf = startProfile(o.Profile)
	cpu0 = cpuTime()
	start, err := publishBurstTimes(js, o.Events, "burst", sent)
	if err != nil {
		return nil, err
	}
	select {
	case <-rec.all:
	case <-time.After(5 * time.Minute):
		return nil, fmt.Errorf("notifier delivered %d of %d", len(rec.at)-idle, o.Events)
	}
	res.EPS = float64(o.Events) / lastOf(rec).Sub(start).Seconds()
	res.CPU = (cpuTime() - cpu0) / time.Duration(o.Events)
	stopProf()
	var lat []time.Duration
	rec.mu.Lock()
	for id, at := range sent {
		lat = append(lat, rec.at[id].Sub(at))
	}
	rec.mu.Unlock()
	res.P50, res.P99 = pct(lat, 50), pct(lat, 99)
	res.Ratio = res.EPS / res.FloorEPS
	cancel()
	<-done
	return res, nil
}

// startProfile starts a CPU profile to w (nil: none) and returns its stop.
func startProfile(w io.Writer) func() {
	if w == nil || pprof.StartCPUProfile(w) != nil {
		return func() {}
	}
	return pprof.StopCPUProfile
}

func benchEvent(i int, tag string) (events.Envelope, error) {
	d := &events.Data{CustomerID: fmt.Sprintf("c%04d", i%500), CustomerName: "Contoso", SubscriptionID: fmt.Sprintf("%s-%d", tag, i), Revision: 2,
		Old: events.JSONValue(1), New: events.JSONValue(2), Delta: new(int), After: &events.View{ID: "x", OfferName: "Microsoft 365 E3"}}
	*d.Delta = 1
	env, _, err := events.New("bench", events.SubscriptionQuantityChanged,
		events.IDKey{Entity: "subscription/" + tag + fmt.Sprint(i), Revision: 2}, time.Now(), d)
	return env, err
}

func publishBurst(js jetstream.JetStream, n int, tag string) (time.Time, error) {
	return publishBurstTimes(js, n, tag, nil)
}

func publishBurstTimes(js jetstream.JetStream, n int, tag string, sent map[string]time.Time) (time.Time, error) {
	envs := make([]events.Envelope, n)
	for i := range envs {
		var err error
		if envs[i], err = benchEvent(i, tag); err != nil {
			return time.Time{}, err
		}
	}
	start := time.Now()
	for _, e := range envs {
		m := nats.NewMsg(e.Subject)
		m.Data = e.Body
		m.Header.Set("Content-Type", events.ContentType)
		if sent != nil {
			sent[e.ID] = time.Now()
		}
		if _, err := js.PublishMsgAsync(m, jetstream.WithMsgID(e.ID), jetstream.WithStallWait(time.Minute)); err != nil {
			return start, err
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		return start, fmt.Errorf("publishing did not complete")
	}
	return start, nil
}

func lastOf(r *recorder) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	var last time.Time
	for _, t := range r.at {
		if t.After(last) {
			last = t
		}
	}
	return last
}

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, len(s)*p/100)]
}
