package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcwatch/pcwatch/internal/events"
	"github.com/pcwatch/pcwatch/internal/relay"
	"github.com/pcwatch/pcwatch/internal/state"
)

// RelayOptions size figure 4.
type RelayOptions struct {
	Events int    // default 20,000
	Repeat int    // default 3 (median)
	Dir    string // scratch directory; required
}

// RelayResult is figure 4: the outbox relay next to raw JetStream async
// publishing of the same payloads on the same server.
type RelayResult struct {
	Events      int
	PayloadSize int
	RelayEPS    float64 // events per second, outbox to PubAck to delete
	RawEPS      float64 // events per second, PublishMsgAsync + PubAck
	Ratio       float64 // RelayEPS / RawEPS
}

// Relay measures figure 4. The server is the embedded one as the watcher
// runs it (file storage, SyncAlways), the stream PCWATCH_EVENTS.
func Relay(o RelayOptions) (*RelayResult, error) {
	if o.Events == 0 {
		o.Events = 20000
	}
	if o.Repeat == 0 {
		o.Repeat = 3
	}
	s, err := startServer(o.Dir)
	if err != nil {
		return nil, err
	}
	defer s.close()
	nc, js, evStream, ctx := s.nc, s.js, s.stream, context.Background()
	// Every repetition publishes fresh ids: purging a stream does not clear
	// its duplicate window, and ids seen before would be acknowledged
	// without being stored.
	makeEvents := func(rep int) ([]events.Envelope, error) {
		evs := make([]events.Envelope, o.Events)
		for i := range evs {
			q := i % 50
			d := &events.Data{CustomerID: fmt.Sprintf("c%05d", i/10), CustomerName: "Contoso Ltd", SubscriptionID: fmt.Sprintf("s%07d", i), Revision: 2,
				Old: events.JSONValue(q), New: events.JSONValue(q + 1), Delta: new(int),
				After:   &events.View{ID: fmt.Sprintf("s%07d", i), OfferID: "CFQ7TTC0LH18:0001:CFQ7TTC0P0WS", OfferName: "Microsoft 365 Business Basic", Status: "active"},
				Changes: []events.Change{{Path: "/quantity", Old: events.JSONValue(q), New: events.JSONValue(q + 1)}}}
			*d.Delta = 1
			var err error
			evs[i], _, err = events.New("bench", events.SubscriptionQuantityChanged,
				events.IDKey{Entity: "subscription/" + d.CustomerID + "/" + d.SubscriptionID, Revision: 2, Extra: fmt.Sprint(rep)}, time.Now(), d)
			if err != nil {
				return nil, err
			}
		}
		return evs, nil
	}
	first, err := makeEvents(0)
	if err != nil {
		return nil, err
	}
	res := &RelayResult{Events: o.Events, PayloadSize: len(first[0].Body)}
	var relayEPS, rawEPS []float64
	for r := 0; r < o.Repeat; r++ {
		evs := first
		if r > 0 {
			if evs, err = makeEvents(r); err != nil {
				return nil, err
			}
		}
		// Raw: the same payloads, async, at most 256 in flight, unique ids.
		if err := evStream.Purge(ctx); err != nil {
			return nil, err
		}
		t0 := time.Now()
		for i, e := range evs {
			m := nats.NewMsg(e.Subject)
			m.Data = e.Body
			m.Header.Set("Content-Type", events.ContentType)
			if _, err := js.PublishMsgAsync(m, jetstream.WithMsgID(fmt.Sprintf("raw-%d-%d", r, i)), jetstream.WithStallWait(time.Minute)); err != nil {
				return nil, err
			}
		}
		select {
		case <-js.PublishAsyncComplete():
		case <-time.After(5 * time.Minute):
			return nil, fmt.Errorf("raw publishing did not complete")
		}
		rawEPS = append(rawEPS, float64(o.Events)/time.Since(t0).Seconds())

		// Relay: the same events committed to a bbolt outbox, drained.
		if err := evStream.Purge(ctx); err != nil {
			return nil, err
		}
		st, err := state.Open(filepath.Join(o.Dir, fmt.Sprintf("relay%d.db", r)), state.Options{})
		if err != nil {
			return nil, err
		}
		for i := 0; i < len(evs); i += 1000 {
			if err := st.Commit(&state.Change{Events: evs[i:min(i+1000, len(evs))]}); err != nil {
				return nil, err
			}
		}
		rel, err := relay.New(relay.Options{Conn: nc, Outbox: st})
		if err != nil {
			return nil, err
		}
		t0 = time.Now()
		n, err := rel.Flush(ctx)
		el := time.Since(t0)
		st.Close()
		if err != nil {
			return nil, err
		}
		if n != o.Events {
			return nil, fmt.Errorf("relay published %d of %d", n, o.Events)
		}
		relayEPS = append(relayEPS, float64(o.Events)/el.Seconds())
	}
	res.RelayEPS, res.RawEPS = medianF(relayEPS), medianF(rawEPS)
	res.Ratio = res.RelayEPS / res.RawEPS
	return res, nil
}
