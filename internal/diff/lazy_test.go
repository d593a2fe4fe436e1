package diff

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	pc "github.com/pcwatch/pcwatch/internal/partnercenter"
	"github.com/pcwatch/pcwatch/internal/resource"
	"github.com/pcwatch/pcwatch/internal/state"
)

// The lazy path (entities of item listings, decoded by the differ only
// when new or changed) must give exactly what the eager path (every item
// decoded by the client) gives.

var lazyKinds = []*resource.Kind{resource.Subscriptions, resource.ManagedServices, resource.Products}

var targetViews = []string{"OnlineServices", "Azure"}

// listingItems is one customer's listings as raw items: per kind, and for
// products per target view.
type listingItems struct {
	subs, services []json.RawMessage
	products       map[string][]json.RawMessage
}

// eagerListing decodes every item as the typed listings do; a kind with an
// item that does not decode is a failed listing, left out.
func eagerListing(t *testing.T, li listingItems) *Listing {
	t.Helper()
	l := &Listing{CustomerID: "c1", CustomerName: "Contoso", TargetViews: targetViews}
	decodeAll := func(items []json.RawMessage, newV func() any) ([]any, bool) {
		var out []any
		for _, it := range items {
			v := newV()
			if json.Unmarshal(it, v) != nil {
				return nil, false
			}
			out = append(out, v)
		}
		return out, true
	}
	if vs, ok := decodeAll(li.subs, func() any { return new(pc.Subscription) }); ok {
		var subs []pc.Subscription
		for _, v := range vs {
			subs = append(subs, *v.(*pc.Subscription))
		}
		l.Kinds, l.Entities = append(l.Kinds, resource.Subscriptions), append(l.Entities, resource.SubscriptionEntities(subs)...)
	}
	if vs, ok := decodeAll(li.services, func() any { return new(pc.ManagedService) }); ok {
		var ms []pc.ManagedService
		for _, v := range vs {
			ms = append(ms, *v.(*pc.ManagedService))
		}
		l.Kinds, l.Entities = append(l.Kinds, resource.ManagedServices), append(l.Entities, resource.ManagedServiceEntities(ms)...)
	}
	var prods []resource.Entity
	ok := true
	for _, tv := range targetViews {
		vs, good := decodeAll(li.products[tv], func() any { return new(pc.Product) })
		ok = ok && good
		var ps []pc.Product
		for _, v := range vs {
			ps = append(ps, *v.(*pc.Product))
		}
		prods = append(prods, resource.ProductEntities(tv, ps)...)
	}
	if ok {
		l.Kinds, l.Entities = append(l.Kinds, resource.Products), append(l.Entities, prods...)
	}
	return l
}

// lazyListing wraps the items undecoded, as the item listings do.
func lazyListing(li listingItems) *Listing {
	l := &Listing{CustomerID: "c1", CustomerName: "Contoso", TargetViews: targetViews, Kinds: lazyKinds}
	l.Entities = append(l.Entities, resource.ItemEntities(resource.Subscriptions, "", li.subs)...)
	l.Entities = append(l.Entities, resource.ItemEntities(resource.ManagedServices, "", li.services)...)
	for _, tv := range targetViews {
		l.Entities = append(l.Entities, resource.ItemEntities(resource.Products, tv, li.products[tv])...)
	}
	return l
}

// commitLazy commits a lazy listing as the poller does: a kind with an
// item that does not decode is dropped and the rest diffed again.
func commitLazy(st *state.Store, l *Listing, o Options) (*Result, []*resource.Kind, error) {
	var failed []*resource.Kind
	res, err := CommitCustomer(st, l, o)
	for de := (*resource.DecodeError)(nil); errors.As(err, &de) && slices.Contains(l.Kinds, de.Kind); {
		failed = append(failed, de.Kind)
		if l = l.Without(de.Kind); len(l.Kinds) == 0 {
			return nil, failed, nil
		}
		res, err = CommitCustomer(st, l, o)
	}
	return res, failed, err
}

// world is the random content of one customer's listings.
type lazyWorld struct {
	rng      *rand.Rand
	next     int
	subs     []map[string]any
	services []map[string]any
	products map[string][]map[string]any
}

func object(t *testing.T, raw string) map[string]any {
	var m map[string]any
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func (w *lazyWorld) newSub(t *testing.T) map[string]any {
	w.next++
	m := object(t, []string{nceJSON, legacyJSON, trialJSON, azureJSON}[w.rng.IntN(4)])
	m["id"] = fmt.Sprintf("sub-%03d", w.next)
	return m
}

func (w *lazyWorld) newProduct() map[string]any {
	w.next++
	return map[string]any{"id": fmt.Sprintf("P%03d", w.next), "title": "Product", "productType": map[string]any{"id": "OnlineServices"},
		"isMicrosoftProduct": w.rng.IntN(2) == 0, "attributes": map[string]any{"objectType": "Product"}}
}

// mutate changes one entity the way Partner Center does, or its volatile
// parts only (etag, links: changed bytes, no change).
func (w *lazyWorld) mutate(m map[string]any) {
	switch w.rng.IntN(10) {
	case 0:
		m["quantity"] = float64(1 + w.rng.IntN(40))
	case 1:
		m["status"] = []string{"active", "suspended", "deleted"}[w.rng.IntN(3)]
	case 2:
		m["autoRenewEnabled"] = w.rng.IntN(2) == 0
	case 3:
		m["attributes"] = map[string]any{"etag": fmt.Sprint("e", w.rng.IntN(1000)), "objectType": "Subscription"}
	case 4:
		m["links"] = map[string]any{"self": map[string]any{"uri": fmt.Sprint("/customers/c1/x", w.rng.IntN(1000))}}
	case 5:
		m["commitmentEndDate"] = fmt.Sprintf("2027-%02d-04T00:00:00Z", 1+w.rng.IntN(12))
	case 6:
		if _, ok := m["scheduledNextTermInstructions"]; ok {
			delete(m, "scheduledNextTermInstructions")
		} else {
			m["scheduledNextTermInstructions"] = map[string]any{"product": map[string]any{"productId": "X", "termDuration": "P1M"}, "quantity": 3}
		}
	case 7:
		m["friendlyName"] = fmt.Sprint("name ", w.rng.IntN(100))
	case 8:
		m["refundableQuantity"] = nil
	case 9:
		m["friendlyName"] = "a \"quoted\" name" // an escape in its bytes
	}
}

// step changes the world: entities added, removed (sometimes most of
// them: a mass removal) and changed.
func (w *lazyWorld) step(t *testing.T) {
	change := func(list []map[string]any, add func() map[string]any) []map[string]any {
		if w.rng.IntN(12) == 0 && len(list) > 4 {
			return list[:1] // most vanish
		}
		for range w.rng.IntN(3) {
			list = append(list, add())
		}
		if len(list) > 0 && w.rng.IntN(3) == 0 {
			i := w.rng.IntN(len(list))
			list = slices.Delete(list, i, i+1)
		}
		for _, m := range list {
			if w.rng.IntN(4) == 0 {
				w.mutate(m)
			}
		}
		return list
	}
	w.subs = change(w.subs, func() map[string]any { return w.newSub(t) })
	w.services = change(w.services, func() map[string]any {
		w.next++
		return map[string]any{"id": fmt.Sprint("svc-", w.next), "name": "Exchange", "groupName": "Office"}
	})
	for _, tv := range targetViews {
		w.products[tv] = change(w.products[tv], w.newProduct)
	}
	// The same product, byte for byte, in both views.
	if w.rng.IntN(3) == 0 && len(w.products["Azure"]) > 0 {
		p := w.products["Azure"][0]
		if !slices.ContainsFunc(w.products["OnlineServices"], func(m map[string]any) bool { return m["id"] == p["id"] }) {
			w.products["OnlineServices"] = append(w.products["OnlineServices"], p)
		}
	}
}

// items renders a kind's entities as a listing would, sometimes with the
// bytes of unchanged items laid out differently, duplicates (identical or
// not), a null item, an item that does not decode, or shuffled.
func (w *lazyWorld) items(t *testing.T, list []map[string]any, wrongType map[string]any) []json.RawMessage {
	var out []json.RawMessage
	for _, m := range list {
		var b []byte
		var err error
		if w.rng.IntN(25) == 0 {
			b, err = json.MarshalIndent(m, "", " ")
		} else {
			b, err = json.Marshal(m)
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	switch w.rng.IntN(16) {
	case 0:
		if len(out) > 0 {
			out = append(out, out[w.rng.IntN(len(out))])
		}
	case 1:
		if len(list) > 0 {
			m := cloneMap(list[0])
			w.mutate(m)
			b, _ := json.Marshal(m)
			out = append(out, b)
		}
	case 2:
		out = append(out, json.RawMessage(`null`))
	case 3:
		b, _ := json.Marshal(wrongType)
		out = append(out, b)
	case 4:
		w.rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	case 5:
		// Both: a conflicting copy, then an item that does not decode.
		if len(list) > 0 {
			m := cloneMap(list[0])
			m["friendlyName"] = "conflicting copy"
			b, _ := json.Marshal(m)
			bad, _ := json.Marshal(wrongType)
			out = append(out, b, bad)
		}
	}
	return out
}

func cloneMap(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func openStore(t *testing.T, name string) *state.Store {
	t.Helper()
	st, err := state.Open(filepath.Join(t.TempDir(), name), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// TestLazyEqualsEager is the property: for random listings and random
// mutations over many cycles, each cycle's result of the lazy path
// (events, puts, pending marks, deletes, refund candidates, duplicates,
// and which kinds fail) is exactly the eager path's, and both state files
// stay the same.
func TestLazyEqualsEager(t *testing.T) {
	seeds, cycles := 24, 14
	if testing.Short() {
		seeds = 4
	}
	var lazyDecodes, items, dups, failures int
	for seed := range seeds {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			w := &lazyWorld{rng: rand.New(rand.NewPCG(uint64(seed), 13)), products: map[string][]map[string]any{}}
			eager, lazy := openStore(t, "eager.db"), openStore(t, "lazy.db")
			o := Options{Source: "https://pc.test", CreatedOnFirstSighting: seed%2 == 0}
			at := now.Add(-72 * time.Hour)
			for cycle := range cycles {
				if cycle > 0 {
					w.step(t)
				} else {
					for range 3 + w.rng.IntN(6) {
						w.subs = append(w.subs, w.newSub(t))
					}
					for _, tv := range targetViews {
						w.products[tv] = []map[string]any{w.newProduct(), w.newProduct()}
					}
				}
				li := listingItems{
					subs:     w.items(t, w.subs, map[string]any{"id": "bad", "quantity": "seven"}),
					services: w.items(t, w.services, map[string]any{"id": "bad", "name": 7}),
					products: map[string][]json.RawMessage{},
				}
				for _, tv := range targetViews {
					li.products[tv] = w.items(t, w.products[tv], map[string]any{"id": "bad", "title": []int{1}})
				}
				at = at.Add(time.Duration(1+w.rng.IntN(30)) * time.Hour)
				o.Now, o.Cycle = at, uint64(cycle+1)

				el := eagerListing(t, li)
				var eres *Result
				var eerr error
				if len(el.Kinds) > 0 {
					eres, eerr = CommitCustomer(eager, el, o)
				}
				ll := lazyListing(li)
				d0 := resource.Subscriptions.Decodes() + resource.ManagedServices.Decodes() + resource.Products.Decodes()
				lres, failed, lerr := commitLazy(lazy, ll, o)
				lazyDecodes += int(resource.Subscriptions.Decodes() + resource.ManagedServices.Decodes() + resource.Products.Decodes() - d0)
				items += len(ll.Entities)

				var edup, ldup *DuplicateError
				if (eerr == nil) != (lerr == nil) || errors.As(eerr, &edup) != errors.As(lerr, &ldup) ||
					edup != nil && (edup.Kind != ldup.Kind || edup.ID != ldup.ID) {
					t.Fatalf("cycle %d: eager err %v, lazy err %v", cycle, eerr, lerr)
				}
				if eerr != nil && edup == nil {
					t.Fatalf("cycle %d: %v", cycle, eerr)
				}
				var efailed []*resource.Kind
				for _, k := range lazyKinds {
					if !slices.Contains(el.Kinds, k) {
						efailed = append(efailed, k)
					}
				}
				if edup != nil {
					dups++
				}
				failures += len(failed)
				if eerr == nil && !sameKinds(efailed, failed) {
					t.Fatalf("cycle %d: eager failed kinds %v, lazy %v", cycle, efailed, failed)
				}
				if !reflect.DeepEqual(eres, lres) {
					t.Fatalf("cycle %d: results differ:\neager %s\nlazy  %s", cycle, describe(eres), describe(lres))
				}
			}
			if !reflect.DeepEqual(dump(t, eager), dump(t, lazy)) {
				t.Fatal("the state files differ")
			}
		})
	}
	// Many entities change, every cycle, and the NCE and trial ones sit
	// in refund windows (decoded while they do): the economy is
	// TestUnchangedItemsAreNotDecoded's to show; here only that some
	// unchanged entities were not decoded.
	if lazyDecodes >= items {
		t.Errorf("the lazy path decoded %d of %d items", lazyDecodes, items)
	}
	t.Logf("the lazy path decoded %d of %d items; %d listings with conflicting duplicates, %d failed kind listings", lazyDecodes, items, dups, failures)
	if dups == 0 || failures == 0 {
		t.Error("the random listings never held a conflicting duplicate or an item that does not decode")
	}
}

func sameKinds(a, b []*resource.Kind) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	by := func(x, y *resource.Kind) int { return strings.Compare(x.Name(), y.Name()) }
	slices.SortFunc(a, by)
	slices.SortFunc(b, by)
	return slices.Equal(a, b)
}

func describe(r *Result) string {
	if r == nil {
		return "nil"
	}
	s := fmt.Sprintf("%d events, counts %v, refunds %v, duplicates %v, %d puts:", len(r.Change.Events), r.Counts, r.RefundCandidates, r.Duplicates, len(r.Change.Puts))
	for _, p := range r.Change.Puts {
		s += " " + p.Key
	}
	return s + fmt.Sprintf(" pending %v deletes %v", r.Change.PendingPuts, r.Change.Deletes)
}

// dump reads a state file's records of the lazy kinds.
func dump(t *testing.T, st *state.Store) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := st.View(func(r *state.ReadTx) error {
		for _, k := range lazyKinds {
			if err := r.ForEach(k, func(key string, rec state.Record) error {
				raw, err := rec.JSON()
				if err != nil {
					return err
				}
				meta, err := rec.MetaJSON()
				if err != nil {
					return err
				}
				out[k.Name()+" "+key] = fmt.Sprintf("%x %d %v %v %v %s %s", rec.Hash, rec.Rev, rec.FirstSeen, rec.Updated, rec.Watch, meta, raw)
				return nil
			}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestUnchangedItemsAreNotDecoded: of a listing read again, only the new
// and the changed items are decoded; a subscription inside a refund
// window is decoded too (its refund batches may be due a reading), and
// still named a refund candidate.
func TestUnchangedItemsAreNotDecoded(t *testing.T) {
	st := openStore(t, "state.db")
	o := Options{Source: "https://pc.test", Now: now}
	raws := func(ss ...string) []json.RawMessage {
		var out []json.RawMessage
		for _, s := range ss {
			out = append(out, json.RawMessage(s))
		}
		return out
	}
	legacy2 := mutate(t, legacyJSON, map[string]any{"id": "legacy-2"})
	azure2 := mutate(t, azureJSON, map[string]any{"id": "az-2"})
	listing := func(subs ...string) *Listing {
		return &Listing{CustomerID: "c1", Kinds: []*resource.Kind{resource.Subscriptions},
			Entities: resource.ItemEntities(resource.Subscriptions, "", raws(subs...))}
	}
	d0 := resource.Subscriptions.Decodes()
	if _, err := CommitCustomer(st, listing(legacyJSON, legacy2, azureJSON, azure2), o); err != nil {
		t.Fatal(err)
	}
	if n := resource.Subscriptions.Decodes() - d0; n != 4 {
		t.Fatalf("first sighting decoded %d of 4", n)
	}

	o.Now = now.Add(time.Hour)
	d0 = resource.Subscriptions.Decodes()
	changed := mutate(t, azure2, map[string]any{"quantity": 3})
	l := listing(legacyJSON, legacy2, azureJSON, changed, trialJSON)
	res, err := CommitCustomer(st, l, o)
	if err != nil {
		t.Fatal(err)
	}
	if n := resource.Subscriptions.Decodes() - d0; n != 2 {
		t.Errorf("decoded %d items; want 2 (the changed and the new one)", n)
	}
	if res.Counts["io.pcwatch.subscription.quantity-changed"] != 1 || len(res.Change.Puts) != 2 {
		t.Errorf("counts %v, %d puts", res.Counts, len(res.Change.Puts))
	}

	// The NCE subscriptions' cancellation window is open at now: listed
	// again unchanged, their stored facts say their batches are due a
	// reading, and they are named refund candidates, decoded only when
	// their bytes do not settle that the listing carries no batches.
	nullBatches := mutate(t, nceJSON, map[string]any{"id": "nce-null"})
	nullBatches = nullBatches[:len(nullBatches)-1] + `,"RefundableQuantity":null}`
	escaped := mutate(t, nceJSON, map[string]any{"id": "nce-escaped", "friendlyName": "a/b"})
	escaped = strings.Replace(escaped, "a/b", `a\/b`, 1)
	o.Now = now.Add(2 * time.Hour)
	if _, err := CommitCustomer(st, listing(nceJSON, nullBatches, escaped), o); err != nil {
		t.Fatal(err)
	}
	o.Now = now.Add(9 * time.Hour) // past RefundRefresh
	d0 = resource.Subscriptions.Decodes()
	res, err = CommitCustomer(st, listing(nceJSON, nullBatches, escaped, legacyJSON, legacy2), o)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"bbbb1b1b-cc2c-dd3d-ee4e-ffffff5f5f5f", "nce-null", "nce-escaped"}
	if n := resource.Subscriptions.Decodes() - d0; n != 2 || !slices.Equal(res.RefundCandidates, want) {
		t.Errorf("decoded %d (want 2: those whose bytes mention refundableQuantity or hold an escape), refund candidates %v (want %v)", n, res.RefundCandidates, want)
	}
}

func TestContainsFoldASCII(t *testing.T) {
	for _, tc := range []struct {
		b    string
		want bool
	}{
		{`{"refundableQuantity":1}`, true}, {`{"REFUNDABLEQUANTITY":1}`, true}, {`refundablequantity`, true},
		{`{"refundableQuantit":1}`, false}, {`refundable quantity`, false}, {``, false}, {`refundablequantit`, false},
		{"refundablequantitÙ", false}, // 0xd9|0x20 is not 'y'
	} {
		if got := containsFoldASCII([]byte(tc.b), "refundablequantity"); got != tc.want {
			t.Errorf("%q: %v", tc.b, got)
		}
	}
}
