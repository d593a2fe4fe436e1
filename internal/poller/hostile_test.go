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
