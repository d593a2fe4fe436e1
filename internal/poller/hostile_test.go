package poller_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"testing"

	"github.com/pcwatch/pcwatch/internal/diff"
	"github.com/pcwatch/pcwatch/internal/events"
	"github.com/pcwatch/pcwatch/internal/pcsim"
	"github.com/pcwatch/pcwatch/internal/resource"
)

// customerPage reads the simulator's customer listing as raw items.
func customerPage(t *testing.T, e *env) []json.RawMessage {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.client.BaseURL()+"/v1/customers?size=500", nil)
	req.Header.Set("Authorization", "Bearer tok")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var coll struct {
		Items []json.RawMessage `json:"items"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&coll); err != nil {
		t.Fatal(err)
	}
	return coll.Items
}

func pageBody(t *testing.T, items []json.RawMessage) string {
	t.Helper()
	b, err := json.Marshal(map[string]any{"totalCount": len(items), "items": items, "attributes": map[string]string{"objectType": "Collection"}})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Defect 8 of issue 11: a customer listed twice used to abort the whole
// cycle, every cycle, polling nobody. Identical copies are kept once with a
// warning; conflicting copies fail the customer list (not diffed, nobody
// removed) and the customers already known are still polled.
func TestCustomerListedTwice(t *testing.T) {
	e := newEnv(t, 4)
	p := e.poller(nil)
	if rep := e.cycle(p); !rep.Complete() {
		t.Fatalf("baseline: %+v", rep)
	}
	items := customerPage(t, e)
	var first map[string]any
	if err := json.Unmarshal(items[0], &first); err != nil {
		t.Fatal(err)
	}
	first["companyProfile"].(map[string]any)["companyName"] = "Renamed while paging"
	changed, _ := json.Marshal(first)

	t.Run("identical copies", func(t *testing.T) {
		e.sim.Inject(pcsim.Rule{PathPrefix: "/v1/customers", Status: 200, Body: pageBody(t, append(slices.Clone(items), items[0]))})
		n := len(e.stream())
		rep, err := p.Cycle(context.Background())
		if err != nil {
			t.Fatalf("cycle failed: %v", err)
		}
		e.flush()
		if !rep.CustomerListOK || rep.OK != 4 || len(rep.Duplicates) != 1 {
			t.Fatalf("report: list ok %v, ok %d, duplicates %v", rep.CustomerListOK, rep.OK, rep.Duplicates)
		}
		if got := types(since(e.stream(), n)); len(got) != 0 {
			t.Errorf("identical duplicate produced %v", got)
		}
	})
	t.Run("conflicting copies", func(t *testing.T) {
		n := len(e.stream())
		for i := 0; i < 3; i++ { // every cycle, and more than the two listings a removal needs
			e.sim.Inject(pcsim.Rule{PathPrefix: "/v1/customers", Status: 200, Body: pageBody(t, append(slices.Clone(items[1:]), items[0], changed))})
			rep, err := p.Cycle(context.Background())
			if err != nil {
				t.Fatalf("cycle %d failed: %v", i, err)
			}
			var dup *diff.DuplicateError
			if rep.CustomerListOK || !errors.As(rep.CustomerList, &dup) {
				t.Fatalf("cycle %d: list ok %v, err %v; want a failed list naming the duplicate", i, rep.CustomerListOK, rep.CustomerList)
			}
			if rep.OK != 4 || rep.Customers != 4 {
				t.Fatalf("cycle %d: polled %d of %d; the known customers must still be polled", i, rep.OK, rep.Customers)
			}
		}
		e.flush()
		for _, g := range since(e.stream(), n) {
			if g.ev.Type != events.OpsCycleCompleted {
				t.Errorf("a conflicting duplicate produced %s", g.ev.Type)
			}
		}
	})
}

// Listings are decoded lazily (the differ decodes new and changed items
// only), so an item whose properties have the wrong types is met by the
// differ, not the client. It fails its kind's listing as an undecodable
// body does: that customer's subscriptions are not diffed (no event, no
// removal) and are read again next cycle; its other kinds and the other
// customers are diffed; the cycle goes on.
func TestUndecodableItemFailsItsListing(t *testing.T) {
	e := newEnv(t, 3)
	p := e.poller(nil)
	if rep := e.cycle(p); !rep.Complete() {
		t.Fatalf("baseline: %+v", rep)
	}
	cust := e.sim.State().Customers[0].ID
	path := "/v1/customers/" + cust + "/subscriptions"
	req, _ := http.NewRequest(http.MethodGet, e.client.BaseURL()+path, nil)
	req.Header.Set("Authorization", "Bearer tok")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var coll struct {
		Items []json.RawMessage `json:"items"`
	}
	err = json.NewDecoder(resp.Body).Decode(&coll)
	resp.Body.Close()
	if err != nil || len(coll.Items) < 2 {
		t.Fatalf("%d subscriptions, %v", len(coll.Items), err)
	}
	var first map[string]any
	if err := json.Unmarshal(coll.Items[0], &first); err != nil {
		t.Fatal(err)
	}
	first["quantity"] = "seven"
	bad, _ := json.Marshal(first)
	// One subscription unreadable, one gone: neither may be reported.
	e.sim.Inject(pcsim.Rule{PathPrefix: path, Status: 200, Body: pageBody(t, []json.RawMessage{bad})})
	if err := e.sim.AddManagedService(cust, "PowerBI"); err != nil {
		t.Fatal(err)
	}
	n := len(e.stream())
	rep, err := p.Cycle(context.Background())
	if err != nil {
		t.Fatalf("cycle failed: %v", err)
	}
	e.flush()
	var de *resource.DecodeError
	if len(rep.Failures) != 1 || rep.Failures[0].CustomerID != cust || !slices.Equal(rep.Failures[0].Kinds, []*resource.Kind{resource.Subscriptions}) ||
		!errors.As(rep.Failures[0].Err, &de) || rep.OK != 2 {
		t.Fatalf("report: ok %d, failures %+v", rep.OK, rep.Failures)
	}
	if got := types(since(e.stream(), n)); !slices.Equal(got, []string{"managed-service.added"}) {
		t.Errorf("events %v; want the managed service added only", got)
	}
	n = len(e.stream())
	if rep := e.cycle(p); !rep.Complete() {
		t.Fatalf("next cycle: %+v", rep)
	}
	if got := types(since(e.stream(), n)); len(got) != 0 {
		t.Errorf("next cycle, the listing readable again: events %v", got)
	}
}
