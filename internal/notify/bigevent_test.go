package notify

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pcwatch/pcwatch/internal/events"
)

// bigEvent is a subscription.updated event of about 900 KB: edit puts a
// long value of n bytes where a case wants it.
func bigEvent(t testing.TB, n int, edit func(d *events.Data, long string)) events.Envelope {
	t.Helper()
	long := strings.Repeat("Contoso HQ Sales ", n/17+1)[:n]
	d := &events.Data{CustomerID: "c1", CustomerName: "Contoso", SubscriptionID: "sub-1", Revision: 2,
		After:   &events.View{ID: "sub-1", OfferName: "Microsoft 365 E3", FriendlyName: "HQ"},
		Changes: []events.Change{{Path: "/friendlyName", Old: events.JSONValue("Sales"), New: events.JSONValue("HQ")}}}
	edit(d, long)
	env, _, err := events.New("https://pc.example/partner", events.SubscriptionUpdated,
		events.IDKey{Entity: "subscription/c1/sub-1", Revision: 2}, time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC), d)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// TestWebhookDeliversBigEvents: a 900 KB event used to be dead-lettered
// by the limit on rendered text (the title template's output) although a
// webhook sends the event itself and renders nothing. It is delivered,
// byte for byte and signed; so is its republish by a nats channel, which
// renders only its subject.
func TestWebhookDeliversBigEvents(t *testing.T) {
	for _, tc := range []struct {
		name string
		n    int
		edit func(d *events.Data, long string)
	}{
		{"long customer name", 900 << 10, func(d *events.Data, long string) { d.CustomerName = long }},
		{"long offer name", 450 << 10, func(d *events.Data, long string) {
			d.After.OfferName = long
			d.Changes[0] = events.Change{Path: "/offerName", Old: events.JSONValue("E3"), New: events.JSONValue(long)}
		}},
		{"long friendly name", 450 << 10, func(d *events.Data, long string) {
			d.After.OfferName, d.After.FriendlyName = "", long
			d.Changes[0].New = events.JSONValue(long)
		}},
		{"many changes", 0, func(d *events.Data, _ string) {
			for i := range 9000 {
				d.Changes = append(d.Changes, events.Change{Path: fmt.Sprintf("/extension%05d", i), New: events.JSONValue(strings.Repeat("v", 60))})
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			rc := newReceiver(t, nil)
			rec := newRecorder()
			sub, err := e.nc.SubscribeSync("workflows.pcwatch.>")
			if err != nil {
				t.Fatal(err)
			}
			cfg := mustConfig(t, fmt.Sprintf(`
channels:
  hook: {kind: webhook, url: "%s/hook", secret_env: S, timeout: 5s}
  wf: {kind: nats, subject: "workflows.pcwatch.{{.Type}}"}
default: {channels: [hook, wf]}
`, rc.URL), map[string]string{"S": testSecret})
			startNotifier(t, cfg, e.url, rec.hooks())
			ev := bigEvent(t, tc.n, tc.edit)
			if len(ev.Body) < 800<<10 {
				t.Fatalf("the event is only %d bytes", len(ev.Body))
			}
			publish(t, e.js, ev, "")
			waitFor(t, "a result on both channels", func() bool { return len(rec.get("hook", ev.ID)) > 0 && len(rec.get("wf", ev.ID)) > 0 }, rec.changed)
			for _, ch := range []string{"hook", "wf"} {
				if got := rec.get(ch, ev.ID); !slices.Equal(got, []string{ResultDelivered}) {
					t.Fatalf("channel %s: results %v, want delivered", ch, got)
				}
			}
			m, err := sub.NextMsg(testTimeout)
			if err != nil {
				t.Fatalf("nats channel: %v", err)
			}
			if m.Subject != "workflows.pcwatch.subscription.updated" || !bytes.Equal(m.Data, ev.Body) {
				t.Errorf("nats channel republished on %s; body equal %v", m.Subject, bytes.Equal(m.Data, ev.Body))
			}
			reqs := rc.requests()
			if len(reqs) != 1 || !bytes.Equal(reqs[0].body, ev.Body) {
				t.Fatalf("%d requests; body is not the event as published", len(reqs))
			}
			if err := verifyStandardWebhook(testSecret, reqs[0].header, reqs[0].body, time.Now()); err != nil {
				t.Error(err)
			}
		})
	}
}

// Slack, Teams and email render a title and a text: an event with a huge
// customer or offer name used to fail rendering (the template output cap)
// and be dead-lettered. Names are cut in the ready-made fields, and a
// template over the raw value is cut at the cap instead of failing.
func TestRenderingBigEventsCutsInsteadOfFailing(t *testing.T) {
	cfg := mustConfig(t, `channels:
  chat: {kind: slack, url: "https://hooks.slack.com/services/T/B/X"}
routes:
  - channels: [chat]
templates:
  "subscription.updated": {text: "raw: {{.Data.CustomerName}} / {{.Data.After.OfferName}}"}
`, nil)
	for name, edit := range map[string]func(d *events.Data, long string){
		"long customer name": func(d *events.Data, long string) { d.CustomerName = long },
		"long offer name":    func(d *events.Data, long string) { d.After.OfferName = long },
	} {
		env := bigEvent(t, 900<<10, edit)
		ev, err := events.Decode(env.Body)
		if err != nil {
			t.Fatal(err)
		}
		d, _ := ev.DecodeData()
		td, err := renderMessage(ev, d, cfg.overrides, "chat")
		if err != nil {
			t.Fatalf("%s: rendering failed: %v", name, err)
		}
		if n := len([]rune(td.Title)); n > maxTitle || n == 0 {
			t.Errorf("%s: title of %d characters", name, n)
		}
		if len(td.Text) > maxTextBytes || !strings.HasPrefix(td.Text, "raw: ") {
			t.Errorf("%s: text of %d bytes starting %q", name, len(td.Text), td.Text[:min(20, len(td.Text))])
		}
		if len(td.CustomerName) > 4*maxValueLen || len(td.Product) > 4*maxValueLen {
			t.Errorf("%s: ready-made fields not cut: %d, %d bytes", name, len(td.CustomerName), len(td.Product))
		}
	}
}
