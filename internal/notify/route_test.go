package notify

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pcwatch/pcwatch/internal/events"
)

const routingYAML = `
channels:
  ops:   {kind: webhook, url: "https://e.com/ops"}
  teams: {kind: teams, url: "https://e.com/teams"}
  sales: {kind: slack, url: "https://e.com/sales"}
  key:   {kind: webhook, url: "https://e.com/key"}
  fallback: {kind: webhook, url: "https://e.com/fallback"}
routes:
  - name: deadlines
    match:
      types: ["subscription.*-window-closing", "subscription.cancellation-window-closed"]
      remaining_under: 24h
    channels: [ops, teams]
    continue: true
  - name: big-changes
    match:
      types: [subscription.quantity-changed]
      offers: ["Microsoft 365*"]
      partner_ids: ["4847383"]
      min_quantity_delta: 5
    channels: [sales]
  - name: key-customer
    match:
      customers: [key-customer]
    channels: [key]
  - name: io-prefix-accepted
    match:
      types: [io.pcwatch.ops.mass-removal-held]
    channels: [ops]
default: {channels: [fallback]}
silences:
  - match: {customers: [offboarded]}
    until: 2026-12-31T00:00:00Z
    comment: customer offboarding
  - match: {customers: [was-silenced], types: ["subscription.*"]}
    until: 2026-01-01T00:00:00Z
    comment: expired
  - match: {types: [ops.cycle-completed]}
    until: 2030-01-01T00:00:00Z
`

// routeEvent builds an event with data d tweaked by f.
func routeEvent(t *testing.T, typ events.Type, f func(d *events.Data)) (*events.Event, *events.Data) {
	t.Helper()
	info, _ := events.Lookup(typ)
	d := sampleData(info, sampleTime)
	if f != nil {
		f(d)
	}
	_, ev, err := events.New("src", typ, events.IDKey{Entity: "x"}, sampleTime, d)
	if err != nil {
		t.Fatal(err)
	}
	dd, _ := ev.DecodeData()
	return ev, dd
}

func TestRouting(t *testing.T) {
	cfg := mustConfig(t, routingYAML, nil)
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	delta := func(old, new int) func(d *events.Data) {
		return func(d *events.Data) {
			dl := new - old
			d.Old, d.New, d.Delta = events.JSONValue(old), events.JSONValue(new), &dl
		}
	}
	secs := func(s int64) func(d *events.Data) { return func(d *events.Data) { d.RemainingSeconds = &s } }
	for _, tc := range []struct {
		name     string
		typ      events.Type
		f        func(d *events.Data)
		channels []string
		routes   []string
		silenced string
	}{
		{"deadline under 24h", events.SubscriptionCancellationClosing, nil, []string{"ops", "teams"}, []string{"deadlines"}, ""},
		{"deadline over 24h is not for the deadline route", events.SubscriptionCancellationClosing, secs(30 * 3600), []string{"fallback"}, []string{"default"}, ""},
		{"closed window: remaining from the deadline", events.SubscriptionCancellationClosed, nil, []string{"ops", "teams"}, []string{"deadlines"}, ""},
		{"refund window closing matches the glob", events.SubscriptionRefundClosing, secs(3600), []string{"ops", "teams"}, []string{"deadlines"}, ""},
		{"renewal is not a window event", events.SubscriptionRenewalApproaching, secs(3600), []string{"fallback"}, []string{"default"}, ""},
		{"deadline for a key customer: continue reaches key-customer", events.SubscriptionCancellationClosing, func(d *events.Data) { d.CustomerID = "key-customer" },
			[]string{"ops", "teams", "key"}, []string{"deadlines", "key-customer"}, ""},
		{"big negative change", events.SubscriptionQuantityChanged, delta(12, 2), []string{"sales"}, []string{"big-changes"}, ""},
		{"big positive change", events.SubscriptionQuantityChanged, delta(10, 15), []string{"sales"}, []string{"big-changes"}, ""},
		{"small change falls to the default", events.SubscriptionQuantityChanged, delta(12, 10), []string{"fallback"}, []string{"default"}, ""},
		{"other offer", events.SubscriptionQuantityChanged, func(d *events.Data) { delta(1, 50)(d); d.After.OfferName = "Dynamics 365 Sales" }, []string{"fallback"}, []string{"default"}, ""},
		{"offer matched on before", events.SubscriptionQuantityChanged, func(d *events.Data) {
			delta(1, 50)(d)
			d.Before, d.After = d.After, &events.View{ID: "x"}
		}, []string{"sales"}, []string{"big-changes"}, ""},
		{"other reseller", events.SubscriptionQuantityChanged, func(d *events.Data) { delta(1, 50)(d); d.After.PartnerID = "999" }, []string{"fallback"}, []string{"default"}, ""},
		{"no reseller", events.SubscriptionQuantityChanged, func(d *events.Data) { delta(1, 50)(d); d.After.PartnerID = "" }, []string{"fallback"}, []string{"default"}, ""},
		{"key customer, any type", events.CustomerUpdated, func(d *events.Data) { d.CustomerID = "key-customer" }, []string{"key"}, []string{"key-customer"}, ""},
		{"no route: default", events.ProductAdded, nil, []string{"fallback"}, []string{"default"}, ""},
		{"type with io.pcwatch. prefix in config", events.OpsMassRemovalHeld, nil, []string{"ops"}, []string{"io-prefix-accepted"}, ""},
		{"active silence", events.SubscriptionCancellationClosing, func(d *events.Data) { d.CustomerID = "offboarded" }, nil, nil, "customer offboarding"},
		{"expired silence does not mute", events.SubscriptionQuantityChanged, func(d *events.Data) { d.CustomerID = "was-silenced" }, []string{"fallback"}, []string{"default"}, ""},
		{"silence without comment", events.OpsCycleCompleted, nil, nil, nil, "silenced until 2030-01-01T00:00:00Z"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev, d := routeEvent(t, tc.typ, tc.f)
			got := cfg.Route(ev, d, now)
			ends := map[string]time.Time{"customer offboarding": time.Date(2026, 12, 31, 0, 0, 0, 0, time.UTC),
				"silenced until 2030-01-01T00:00:00Z": time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
			want := Decision{Channels: tc.channels, Routes: tc.routes, Silenced: tc.silenced != "", Silence: tc.silenced, SilenceEnd: ends[tc.silenced]}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("decision (-want +got):\n%s", diff)
			}
		})
	}
	// The silence lifts at its end.
	ev, d := routeEvent(t, events.SubscriptionCreated, func(d *events.Data) { d.CustomerID = "offboarded" })
	if dec := cfg.Route(ev, d, time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)); dec.Silenced || !slices.Equal(dec.Channels, []string{"fallback"}) {
		t.Errorf("after the silence: %+v", dec)
	}
}

func TestRouteWithoutDefault(t *testing.T) {
	cfg := mustConfig(t, "channels:\n  a: {kind: webhook, url: \"https://e.com\"}\nroutes:\n  - match: {types: [customer.*]}\n    channels: [a]\n", nil)
	ev, d := routeEvent(t, events.SubscriptionCreated, nil)
	if dec := cfg.Route(ev, d, sampleTime); len(dec.Channels) != 0 || len(dec.Routes) != 0 {
		t.Errorf("unrouted event: %+v", dec)
	}
	ev, d = routeEvent(t, events.CustomerAdded, nil)
	if dec := cfg.Route(ev, d, sampleTime); !slices.Equal(dec.Channels, []string{"a"}) || dec.Routes[0] != "routes[0]" {
		t.Errorf("routed event: %+v", dec)
	}
}

func TestFilterSubjects(t *testing.T) {
	y := `
channels:
  a: {kind: webhook, url: "https://e.com"}
  b: {kind: webhook, url: "https://e.com"}
  c: {kind: webhook, url: "https://e.com"}
  d: {kind: webhook, url: "https://e.com"}
  e: {kind: webhook, url: "https://e.com"}
routes:
  - match: {types: ["subscription.*-window-closing", "subscription.cancellation-window-closed"]}
    channels: [a]
  - match: {types: [customer.added, subscription.created, "ops.*", ops.cycle-completed, "*.removed", "managed-service.*"]}
    channels: [b]
  - match: {types: [subscription.quantity-changed, subscription.status-changed]}
    channels: [c]
  - match: {customers: [x]}
    channels: [d]
  - match: {types: [ops.cycle-completed]}
    channels: [e]
default: {channels: [d]}
`
	cfg := mustConfig(t, y, nil)
	for ch, want := range map[string][]string{
		"a": {"pcwatch.events.subscription.>"},
		"b": {"pcwatch.events.>", "pcwatch.ops.>"},
		"c": {"pcwatch.events.subscription.quantity-changed.>", "pcwatch.events.subscription.status-changed.>"},
		"d": {"pcwatch.events.>", "pcwatch.ops.>"},
		"e": {"pcwatch.ops.cycle-completed"},
	} {
		if diff := cmp.Diff(want, cfg.FilterSubjects(ch)); diff != "" {
			t.Errorf("channel %s (-want +got):\n%s", ch, diff)
		}
	}
}

func TestSubjectsForGlob(t *testing.T) {
	for g, want := range map[string][]string{
		"subscription.quantity-changed": {"pcwatch.events.subscription.quantity-changed.>"},
		"subscription.*":                {"pcwatch.events.subscription.>"},
		"ops.mass-removal-held":         {"pcwatch.ops.mass-removal-held"},
		"ops.*":                         {"pcwatch.ops.>"},
		"*.removed":                     {"pcwatch.events.>"},
		"*":                             {"pcwatch.events.>", "pcwatch.ops.>"},
		"*.*-failed":                    {"pcwatch.ops.>"},
	} {
		if diff := cmp.Diff(want, subjectsForGlob(g)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", g, diff)
		}
	}
}

func TestSubjectCovers(t *testing.T) {
	for _, tc := range []struct {
		t, s string
		want bool
	}{
		{"a.>", "a.b", true},
		{"a.>", "a.b.>", true},
		{"a.>", "a", false},
		{"a.*", "a.b", true},
		{"a.*", "a.>", false},
		{"a.*", "a.b.c", false},
		{"a.b", "a.b", true},
		{"a.b", "a.c", false},
		{"pcwatch.events.>", "pcwatch.events.subscription.>", true},
		{"pcwatch.events.subscription.>", "pcwatch.events.>", false},
	} {
		if got := subjectCovers(tc.t, tc.s); got != tc.want {
			t.Errorf("subjectCovers(%q, %q) = %v", tc.t, tc.s, got)
		}
	}
}

func TestPartitionKeepsEntityTogether(t *testing.T) {
	a := partition("pcwatch.events.subscription.quantity-changed.c1.s1", 8)
	b := partition("pcwatch.events.subscription.status-changed.c1.s1", 8)
	if a != b {
		t.Errorf("events of one subscription go to senders %d and %d", a, b)
	}
	spread := map[int]bool{}
	for i := range 64 {
		spread[partition(quantitySubject(i), 4)] = true
	}
	if len(spread) != 4 {
		t.Errorf("64 subscriptions use %d of 4 senders", len(spread))
	}
}

func quantitySubject(i int) string {
	return "pcwatch.events.subscription.quantity-changed.c." + string(rune('a'+i%26)) + string(rune('a'+i/26))
}

// The monthly subscription.updated that only moves /billingCycleEndDate is
// dropped; the same type changing anything else still goes out, and
// include/exclude read JSON Pointers with globs and subtrees.
func TestRouteOnChangedFields(t *testing.T) {
	y := `
channels:
  ops:   {kind: webhook, url: "https://e.com/ops"}
  terms: {kind: webhook, url: "https://e.com/terms"}
routes:
  - name: terms
    match:
      changed: {include: ["/scheduledNextTermInstructions", "/term*"]}
    channels: [terms]
    continue: true
  - name: billing-date-only
    match:
      types: [subscription.updated]
      changed: {exclude: [/billingCycleEndDate, /refundableQuantity/*]}
    channels: [ops]
  - name: drop-the-rest-of-updated
    match: {types: [subscription.updated]}
    drop: true
default: {channels: [ops]}
`
	cfg := mustConfig(t, y, nil)
	changes := func(paths ...string) func(d *events.Data) {
		return func(d *events.Data) {
			d.Changes = nil
			for _, p := range paths {
				d.Changes = append(d.Changes, events.Change{Path: p, Old: events.JSONValue(1), New: events.JSONValue(2)})
			}
		}
	}
	for _, tc := range []struct {
		name     string
		typ      events.Type
		f        func(d *events.Data)
		channels []string
		routes   []string
		dropped  bool
	}{
		{"billing date only: dropped", events.SubscriptionUpdated, changes("/billingCycleEndDate"), nil, []string{"drop-the-rest-of-updated"}, true},
		{"billing date and a refundable batch below an excluded glob: dropped", events.SubscriptionUpdated,
			changes("/billingCycleEndDate", "/refundableQuantity/0"), nil, []string{"drop-the-rest-of-updated"}, true},
		{"billing date and something else: sent", events.SubscriptionUpdated, changes("/billingCycleEndDate", "/friendlyName"),
			[]string{"ops"}, []string{"billing-date-only"}, false},
		{"a subtree change matches its parent's include", events.SubscriptionUpdated, changes("/scheduledNextTermInstructions/product/skuId"),
			[]string{"terms", "ops"}, []string{"terms", "billing-date-only"}, false},
		{"an include glob stops at a /", events.SubscriptionUpdated, changes("/renewal/termDuration"),
			[]string{"ops"}, []string{"billing-date-only"}, false},
		{"a glob matches below what it names", events.SubscriptionUpdated, changes("/termDuration/x"),
			[]string{"terms", "ops"}, []string{"terms", "billing-date-only"}, false},
		{"no changes: the changed condition does not match", events.SubscriptionUpdated, changes(), nil, []string{"drop-the-rest-of-updated"}, true},
		{"other types are not dropped", events.SubscriptionQuantityChanged, changes("/billingCycleEndDate"), []string{"ops"}, []string{"default"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev, d := routeEvent(t, tc.typ, tc.f)
			got := cfg.Route(ev, d, sampleTime)
			want := Decision{Channels: tc.channels, Routes: tc.routes, Dropped: tc.dropped}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("decision (-want +got):\n%s", diff)
			}
		})
	}
}

func TestChangedAndDropValidation(t *testing.T) {
	base := "channels:\n  a: {kind: webhook, url: \"https://e.com\"}\nroutes:\n"
	for _, tc := range []struct{ route, want string }{
		{"  - {match: {changed: {}}, channels: [a]}", "routes[0].match.changed: empty"},
		{"  - {match: {changed: {include: [billingCycleEndDate]}}, channels: [a]}", "routes[0].match.changed.include[0]: \"billingCycleEndDate\" is not a JSON Pointer"},
		{"  - {match: {changed: {exclude: [\"/a[\"]}}, channels: [a]}", "routes[0].match.changed.exclude[0]: bad glob"},
		{"  - {match: {types: [subscription.updated]}, drop: true, channels: [a]}", "routes[0]: drop: true sends what the route matches nowhere"},
		{"  - {drop: true}\n  - {channels: [a]}", "routes[0].match: empty: a drop route needs at least one condition"},
	} {
		_, err := ParseConfig([]byte(base+tc.route+"\n"), ParseOptions{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.route, err, tc.want)
		}
	}
}
