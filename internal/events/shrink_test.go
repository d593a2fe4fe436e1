package events_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/pcwatch/pcwatch/internal/events"
)

// eventSchema compiles docs/events.schema.json.
func eventSchema(t testing.TB) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "docs", "events.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	if err := c.AddResource(events.SchemaBase, doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile(events.SchemaBase)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func validate(t testing.TB, s *jsonschema.Schema, body []byte) {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(v); err != nil {
		t.Errorf("event fails docs/events.schema.json: %v\n%.2000s", err, body)
	}
}

const subEntity = "subscription/c1/sub-1"

// renameEvent is subscription sub-1's friendly name changing to n bytes at
// revision rev: the name is in after and in the change's new value. It is
// made of characters JSON escapes (<, &, >) and of multi-byte ones.
func renameEvent(t testing.TB, rev uint64, n int) events.Envelope {
	return renameSub(t, "c1", 1, rev, strings.Repeat("Ab<&>é", n/7+1)[:n])
}

// renameSub is customer c's subscription sub-<sub> renamed to name.
func renameSub(t testing.TB, c string, sub int, rev uint64, name string) events.Envelope {
	t.Helper()
	id := fmt.Sprintf("sub-%d", sub)
	d := &events.Data{CustomerID: c, CustomerName: "Contoso", SubscriptionID: id, Revision: rev,
		After:   &events.View{ID: id, OfferName: "Microsoft 365 E3", FriendlyName: name, Status: "active"},
		Changes: []events.Change{{Path: "/friendlyName", Old: events.JSONValue("Sales"), New: events.JSONValue(name)}}}
	env, _, err := events.New("https://pc.example", events.SubscriptionUpdated,
		events.IDKey{Entity: fmt.Sprintf("subscription/%s/%s", c, id), Revision: rev}, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), d)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// manyFieldsEvent is sub-1 gaining n fields with long names: nothing of it
// may be cut (paths are identities), so it cannot be shrunk.
func manyFieldsEvent(t testing.TB, rev uint64, n int) events.Envelope {
	t.Helper()
	d := &events.Data{CustomerID: "c1", SubscriptionID: "sub-1", Revision: rev, After: &events.View{ID: "sub-1"}}
	for i := range n {
		d.Changes = append(d.Changes, events.Change{Path: fmt.Sprintf("/extension%04d%s", i, strings.Repeat("x", 100)), New: events.JSONValue(i)})
	}
	env, _, err := events.New("https://pc.example", events.SubscriptionUpdated, events.IDKey{Entity: subEntity, Revision: rev},
		time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), d)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// seatsEvent is a small, complete quantity-changed event of customer c's
// subscription sub-<sub> (makeEvent's entity) at revision rev.
func seatsEvent(t testing.TB, c string, sub int, rev uint64) events.Envelope {
	t.Helper()
	id := fmt.Sprintf("sub-%d", sub)
	old, now, delta := int(rev), int(rev)+1, 1
	d := &events.Data{CustomerID: c, SubscriptionID: id, Revision: rev, After: &events.View{ID: id, Quantity: &now},
		Changes: []events.Change{{Path: "/quantity", Old: events.JSONValue(old), New: events.JSONValue(now)}},
		Old:     events.JSONValue(old), New: events.JSONValue(now), Delta: &delta}
	env, _, err := events.New("https://pc.example", events.SubscriptionQuantityChanged,
		events.IDKey{Entity: fmt.Sprintf("subscription/%s/%s", c, id), Revision: rev}, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), d)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// quantityEvent is a small event of sub-1.
func quantityEvent(t testing.TB, rev uint64) events.Envelope { return seatsEvent(t, "c1", 1, rev) }

// TestShrinkEvent checks the shrinker directly, table-driven.
func TestShrinkEvent(t *testing.T) {
	schema := eventSchema(t)
	obj := map[string]string{}
	for i := range 200 {
		obj[fmt.Sprintf("k%03d", i)] = strings.Repeat("v", 50)
	}
	instr := events.JSONValue(obj)
	sched := func() events.Envelope {
		d := &events.Data{CustomerID: "c1", SubscriptionID: "sub-1", Revision: 3, After: &events.View{ID: "sub-1"}, New: instr,
			Changes: []events.Change{{Path: "/scheduledNextTermInstructions", New: instr}}}
		env, _, err := events.New("https://pc.example", events.SubscriptionScheduledChangeSet, events.IDKey{Entity: subEntity, Revision: 3}, time.Unix(0, 0), d)
		if err != nil {
			t.Fatal(err)
		}
		return env
	}()
	for _, tc := range []struct {
		name    string
		env     events.Envelope
		limit   int
		paths   []string // truncated, in order
		wantErr error
	}{
		{"fits: unchanged", quantityEvent(t, 1), 1 << 20, nil, nil},
		// Two equal strings: the one with the shorter path saves more.
		{"one long string cut where it saves most", renameEvent(t, 2, 4000), 20000, []string{"/changes/0/new"}, nil},
		{"both copies cut when needed", renameEvent(t, 2, 4000), 2000, []string{"/after/friendlyName", "/changes/0/new"}, nil},
		{"objects become size and hash", sched, 2000, []string{"/changes/0/new", "/new"}, nil},
		{"nothing long enough to cut", manyFieldsEvent(t, 2, 50), 2000, nil, events.ErrEventTooLarge},
		{"not an event", events.Envelope{Body: bytes.Repeat([]byte("x"), 100)}, 50, nil, events.ErrNotCloudEvent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, cuts, err := events.ShrinkEvent(tc.env.Body, tc.limit)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if len(out) > tc.limit {
				t.Errorf("%d bytes, over the limit %d", len(out), tc.limit)
			}
			var got []string
			for _, c := range cuts {
				got = append(got, c.Path)
			}
			if strings.Join(got, " ") != strings.Join(tc.paths, " ") {
				t.Errorf("cut %v, want %v", got, tc.paths)
			}
			if tc.paths == nil && !bytes.Equal(out, tc.env.Body) {
				t.Errorf("an event that fits was rewritten")
			}
			validate(t, schema, out)
			again, _, _ := events.ShrinkEvent(tc.env.Body, tc.limit)
			if !bytes.Equal(out, again) {
				t.Errorf("not deterministic")
			}
			ev, _ := events.Decode(out)
			var d struct {
				Truncated []events.Truncation `json:"truncated"`
				New       json.RawMessage     `json:"new"`
			}
			_ = json.Unmarshal(ev.Data, &d)
			if len(d.Truncated) != len(tc.paths) {
				t.Errorf("data.truncated has %d entries, want %d", len(d.Truncated), len(tc.paths))
			}
			if tc.name == "objects become size and hash" && !strings.HasPrefix(string(d.New), `{"size":`+fmt.Sprint(len(instr))) {
				t.Errorf("new = %s, want {size, sha256} of the %d-byte object", d.New, len(instr))
			}
		})
	}
}
