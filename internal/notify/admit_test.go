package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	"github.com/pcwatch/pcwatch/internal/events"
)

// forge rewrites a real envelope as an attacker with publish rights would:
// another type and/or source, the subject to match, a fresh id.
func forge(t testing.TB, env events.Envelope, typ events.Type, source, id string) events.Envelope {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(env.Body, &m); err != nil {
		t.Fatal(err)
	}
	m["id"], m["type"], m["source"] = id, string(typ), source
	body, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	subject := "pcwatch.events." + shortType(typ) + ".c1.sub-1"
	return events.Envelope{ID: id, Subject: subject, Entity: env.Entity, Body: body}
}

// An event whose type is not in the catalog is dead-lettered (unknown_type)
// instead of being signed and sent; with accept.sources set, one from
// another source is dead-lettered too (foreign_source); a real event is
// delivered. Replaying the dead letters delivers nothing. Before the type
// check existed the forged type was signed and delivered.
func TestForgedEventsAreDeadLettered(t *testing.T) {
	for _, tc := range []struct {
		name    string
		accept  string
		foreign string // the result for an event from a foreign source
	}{
		{"with a source allow-list", "accept: {sources: [\"https://pc.example/*\"]}\n", ResultDLQ},
		{"without", "", ResultDelivered},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			rc := newReceiver(t, nil)
			rec := newRecorder()
			cfg := mustConfig(t, fmt.Sprintf(`
channels:
  hook: {kind: webhook, url: "%s/hook", secret_env: S}
default: {channels: [hook]}
%s`, rc.URL, tc.accept), map[string]string{"S": testSecret})
			startNotifier(t, cfg, e.url, rec.hooks())

			real := quantityEvent(t, "c1", 1, 1, 1, 2) // source https://pc.example/partner
			unknown := forge(t, real, events.TypePrefix+"subscription.teleported", "https://pc.example/partner", "forged-type")
			foreign := forge(t, real, events.SubscriptionQuantityChanged, "https://evil.example/tenants/x", "forged-source")
			for _, ev := range []events.Envelope{unknown, foreign, real} {
				publish(t, e.js, ev, "")
			}
			done := func(id string) bool { return len(rec.get("hook", id)) > 0 }
			waitFor(t, "all three handled", func() bool { return done(real.ID) && done(unknown.ID) && done(foreign.ID) }, rec.changed)
			for id, want := range map[string]string{real.ID: ResultDelivered, unknown.ID: ResultDLQ, foreign.ID: tc.foreign} {
				if got := rec.get("hook", id); !slices.Equal(got, []string{want}) {
					t.Errorf("event %s: results %v, want [%s]", id, got, want)
				}
			}
			wantSent := []string{real.ID}
			wantDLQ := map[string]string{unknown.ID: ReasonUnknownType}
			if tc.foreign == ResultDLQ {
				wantDLQ[foreign.ID] = ReasonForeignSource
			} else {
				wantSent = append(wantSent, foreign.ID)
			}
			var sent []string
			for id := range rc.accepted() {
				sent = append(sent, id)
			}
			slices.Sort(sent)
			slices.Sort(wantSent)
			if !slices.Equal(sent, wantSent) {
				t.Errorf("receiver got %v, want %v", sent, wantSent)
			}
			l, err := ListDLQ(context.Background(), e.js, "hook")
			if err != nil || len(l) != len(wantDLQ) {
				t.Fatalf("DLQ %+v %v, want %v", l, err, wantDLQ)
			}
			for _, en := range l {
				if en.Reason != wantDLQ[en.EventID] || en.Error == "" || en.Attempts != 1 {
					t.Errorf("DLQ entry %s: reason %q error %q attempts %d, want reason %q", en.EventID, en.Reason, en.Error, en.Attempts, wantDLQ[en.EventID])
				}
			}
			// Replaying applies the same checks: nothing is sent, the
			// entries stay.
			res, err := ReplayDLQ(context.Background(), ReplayOptions{Config: cfg, Conn: e.nc})
			if err != nil || len(res) != len(wantDLQ) {
				t.Fatalf("replay %+v %v", res, err)
			}
			for _, r := range res {
				if r.Delivered || r.Err == nil {
					t.Errorf("replay of %s: delivered %v err %v", r.Entry.EventID, r.Delivered, r.Err)
				}
			}
			if l, _ := ListDLQ(context.Background(), e.js, "hook"); len(l) != len(wantDLQ) {
				t.Errorf("after replay the DLQ holds %d entries, want %d", len(l), len(wantDLQ))
			}
			if n := len(rc.requests()); n != len(wantSent) {
				t.Errorf("receiver saw %d requests, want %d", n, len(wantSent))
			}
		})
	}
}

func TestAdmit(t *testing.T) {
	cfg := mustConfig(t, "channels:\n  hook: {kind: webhook, url_env: U}\ndefault: {channels: [hook]}\naccept:\n  sources: [\"https://api.partnercenter.microsoft.com/tenants/*\", pcwatch-demo]\n",
		map[string]string{"U": "https://e.com"})
	for _, tc := range []struct {
		typ    events.Type
		source string
		reason string // "" admitted
	}{
		{events.SubscriptionQuantityChanged, "https://api.partnercenter.microsoft.com/tenants/abc", ""},
		{events.SubscriptionQuantityChanged, "pcwatch-demo", ""},
		{events.SubscriptionQuantityChanged, "https://api.partnercenter.microsoft.com/tenants/abc/extra", ReasonForeignSource},
		{events.SubscriptionQuantityChanged, "https://api.partnercenter.microsoft.com", ReasonForeignSource},
		{events.SubscriptionQuantityChanged, "https://evil.example/tenants/abc", ReasonForeignSource},
		{events.TypePrefix + "subscription.teleported", "pcwatch-demo", ReasonUnknownType},
		{"subscription.quantity-changed", "pcwatch-demo", ReasonUnknownType}, // without the prefix
	} {
		se := cfg.admit("hook", &events.Event{Type: tc.typ, Source: tc.source})
		got := ""
		if se != nil {
			got = se.Reason
			if !se.Permanent || se.Channel != "hook" {
				t.Errorf("%s from %s: %+v is not a permanent error of the channel", tc.typ, tc.source, se)
			}
		}
		if got != tc.reason {
			t.Errorf("%s from %s: reason %q, want %q", tc.typ, tc.source, got, tc.reason)
		}
	}
}
