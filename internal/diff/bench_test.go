package diff

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/pcwatch/pcwatch/internal/deadline"
	pc "github.com/pcwatch/pcwatch/internal/partnercenter"
	"github.com/pcwatch/pcwatch/internal/resource"
	"github.com/pcwatch/pcwatch/internal/state"
)

// BenchmarkCustomerUnchanged measures the diff's hot path: a customer of
// 500 subscriptions listed again unchanged, which must cost one hash
// compare per subscription and write nothing.
func BenchmarkCustomerUnchanged(b *testing.B) {
	var subs []pc.Subscription
	for i := range 500 {
		raw := strings.Replace(legacyJSON, `"83ef9d05-4169-4ef9-9657-0e86b1eab1de"`, fmt.Sprintf(`"sub-%04d"`, i), 1)
		var s pc.Subscription
		if err := s.UnmarshalJSON([]byte(raw)); err != nil {
			b.Fatal(err)
		}
		subs = append(subs, s)
	}
	snap := &state.Snapshot{CustomerID: "c1", Records: map[*resource.Kind]map[string]state.Record{resource.Subscriptions: {}},
		Pending: map[*resource.Kind]map[string]state.Pending{resource.Subscriptions: {}}, Baselined: map[*resource.Kind]bool{resource.Subscriptions: true}}
	for i := range subs {
		f := deadline.FactsOf(&subs[i], nil, now)
		snap.Records[resource.Subscriptions][subs[i].ID] = state.Record{Hash: state.HashOf(subs[i].Raw), Rev: 1, Raw: subs[i].Raw, Meta: f.Encode()}
	}
	b.ReportAllocs()
	for b.Loop() {
		l := &Listing{CustomerID: "c1", CustomerName: "Contoso", Kinds: []*resource.Kind{resource.Subscriptions}, Entities: resource.SubscriptionEntities(subs)}
		res, err := Customer(snap, l, Options{Source: "bench", Now: now})
		if err != nil || res.Events() != 0 || !res.Change.Empty() {
			b.Fatalf("unchanged listing: %v, %d events", err, res.Events())
		}
	}
}

// BenchmarkCustomerUnchangedItems is BenchmarkCustomerUnchanged for an
// item listing (undecoded entities), the poller's path: the split page is
// matched against the stored hashes and nothing is decoded. The
// difference to BenchmarkCustomerUnchanged plus
// partnercenter.BenchmarkDecodeSubscriptions is what lazy decoding saves.
func BenchmarkCustomerUnchangedItems(b *testing.B) {
	var raws []json.RawMessage
	snap := &state.Snapshot{CustomerID: "c1", Records: map[*resource.Kind]map[string]state.Record{resource.Subscriptions: {}},
		Pending: map[*resource.Kind]map[string]state.Pending{resource.Subscriptions: {}}, Baselined: map[*resource.Kind]bool{resource.Subscriptions: true}}
	for i := range 500 {
		raw := []byte(strings.Replace(legacyJSON, `"83ef9d05-4169-4ef9-9657-0e86b1eab1de"`, fmt.Sprintf(`"sub-%04d"`, i), 1))
		var s pc.Subscription
		if err := s.UnmarshalJSON(raw); err != nil {
			b.Fatal(err)
		}
		f := deadline.FactsOf(&s, nil, now)
		snap.Records[resource.Subscriptions][s.ID] = state.Record{Hash: state.HashOf(raw), Rev: 1, Raw: raw, Meta: f.Encode()}
		raws = append(raws, raw)
	}
	d0 := resource.Subscriptions.Decodes()
	b.ReportAllocs()
	for b.Loop() {
		l := &Listing{CustomerID: "c1", CustomerName: "Contoso", Kinds: []*resource.Kind{resource.Subscriptions},
			Entities: resource.ItemEntities(resource.Subscriptions, "", raws)}
		res, err := Customer(snap, l, Options{Source: "bench", Now: now})
		if err != nil || res.Events() != 0 || !res.Change.Empty() {
			b.Fatalf("unchanged listing: %v, %d events", err, res.Events())
		}
	}
	if n := resource.Subscriptions.Decodes() - d0; n != 0 {
		b.Fatalf("decoded %d unchanged items", n)
	}
}
