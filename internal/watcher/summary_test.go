package watcher

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/pcwatch/pcwatch/internal/resource"
)

// /api/state and `watcher state --format json` keep the members (and their
// order) of the release, whose summary had one field per kind: the counts
// now come from the kinds' descriptors. Members added since (changeFeed,
// issue 13) come after them.
func TestStateSummaryJSON(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	s := StateSummary{Cycle: 7, Records: map[*resource.Kind]int{resource.Customers: 2, resource.Subscriptions: 5, resource.ManagedServices: 1, resource.Products: 3},
		Pending: 4, LedgerEntries: 6, Outbox: 8,
		PerCustomer:     []CustomerStateRecord{{ID: "c1", Name: "Contoso", Subscriptions: 5, LastSuccess: &at}},
		EventsTruncated: 1, EventsDropped: 2, DamagedCount: 1, DamagedRecords: []string{"subscription c1/s9: damaged"}}
	// As the release wrote them (commit 18649a1), then changeFeed.
	const wantIndented = `{
  "cycle": 7,
  "customers": 2,
  "subscriptions": 5,
  "managedServices": 1,
  "products": 3,
  "pendingRemovals": 4,
  "deadlineLedgerEntries": 6,
  "outboxDepth": 8,
  "perCustomer": [
    {
      "id": "c1",
      "name": "Contoso",
      "subscriptions": 5,
      "lastSuccess": "2026-01-02T03:04:05Z"
    }
  ],
  "eventsTruncated": 1,
  "eventsDropped": 2,
  "damagedRecords": 1,
  "damagedRecordNames": [
    "subscription c1/s9: damaged"
  ],
  "changeFeed": {
    "cursorSeen": 0,
    "pendingHints": 0
  }
}
`
	const wantEmpty = `{"cycle":0,"customers":0,"subscriptions":0,"managedServices":0,"products":0,"pendingRemovals":0,"deadlineLedgerEntries":0,"outboxDepth":0,"perCustomer":null,"eventsTruncated":0,"eventsDropped":0,"changeFeed":{"cursorSeen":0,"pendingHints":0}}
`
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	if err := enc.Encode(s); err != nil {
		t.Fatal(err)
	}
	if b.String() != wantIndented {
		t.Errorf("indented:\n%s\nwant:\n%s", b.String(), wantIndented)
	}
	b.Reset()
	if err := json.NewEncoder(&b).Encode(StateSummary{}); err != nil {
		t.Fatal(err)
	}
	if b.String() != wantEmpty {
		t.Errorf("empty:\n%s\nwant:\n%s", b.String(), wantEmpty)
	}

	var back StateSummary
	if err := json.Unmarshal([]byte(wantIndented), &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, s) {
		t.Errorf("read back:\n%+v\nwant\n%+v", back, s)
	}
	if err := json.Unmarshal([]byte(`{"cycle":"x"}`), &back); err == nil {
		t.Error("a cycle that is not a number was read")
	}
}
