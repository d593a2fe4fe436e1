package events

import (
	"encoding/json"
	"testing"
	"time"
)

// FuzzDecode feeds arbitrary bytes to the decoder consumers (the notifier)
// use on message bodies: no panics, and anything accepted decodes its data
// or fails with an error.
func FuzzDecode(f *testing.F) {
	d := &Data{CustomerID: "c", SubscriptionID: "s", Old: JSONValue(1), New: JSONValue(2), Delta: new(int),
		After: &View{ID: "s", OfferName: "M365"}, Changes: []Change{{Path: "/quantity", Old: JSONValue(1), New: JSONValue(2)}}}
	_, ev, _ := New("src", SubscriptionQuantityChanged, IDKey{Entity: "subscription/c/s", Revision: 2}, time.Unix(0, 0), d)
	b, _ := json.Marshal(ev)
	f.Add(b)
	f.Add([]byte(`{"specversion":"1.0","id":"x","source":"s","type":"io.pcwatch.ops.cycle-completed","data":{"cycle":{"number":1}}}`))
	f.Add([]byte(`{"specversion":"0.3"}`))
	f.Add([]byte(`{"specversion":"1.0","id":"x","source":"s","type":"t","data":[]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := Decode(b)
		if err != nil {
			return
		}
		if ev.ID == "" || ev.Type == "" {
			t.Fatalf("accepted an event without id or type: %s", b)
		}
		_, _ = ev.DecodeData()
	})
}
