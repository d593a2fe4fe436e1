package notify

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/pcwatch/pcwatch/internal/events"
)

func renderSample(t *testing.T, typ events.Type, f func(d *events.Data), ov []compiledOverride) *TemplateData {
	t.Helper()
	ev, d := routeEvent(t, typ, f)
	td, err := renderMessage(ev, d, ov, "test")
	if err != nil {
		t.Fatal(err)
	}
	return td
}

func TestEveryCatalogTypeHasDefaults(t *testing.T) {
	for _, in := range events.Catalog() {
		if _, ok := presentations[in.Type]; !ok {
			t.Errorf("no default template for %s", in.Type)
		}
	}
	if len(presentations) != len(events.Catalog()) {
		t.Errorf("%d default templates for %d catalog types", len(presentations), len(events.Catalog()))
	}
}

func TestTemplatesForEveryCatalogType(t *testing.T) {
	for _, in := range events.Catalog() {
		t.Run(shortType(in.Type), func(t *testing.T) {
			ev, d := routeEvent(t, in.Type, nil)
			td, err := renderMessage(ev, d, nil, "test")
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("title: %s\ntext: %s", td.Title, td.Text)
			if strings.TrimSpace(td.Title) == "" || strings.TrimSpace(td.Text) == "" {
				t.Fatalf("empty title or text: %+v", td)
			}
			for _, s := range []string{td.Title, td.Text} {
				if strings.Contains(s, "<no value>") || strings.Contains(s, "%!") || strings.Contains(s, "<nil>") || strings.Contains(s, "  ") {
					t.Errorf("rendering artefact in %q", s)
				}
			}
			if d.CustomerID != "" {
				if !strings.Contains(td.Title, sampleCustomerName) && !strings.Contains(td.Text, sampleCustomerName) {
					t.Errorf("the customer's name is not mentioned")
				}
				if !strings.Contains(td.Text, d.CustomerID) {
					t.Errorf("the text does not give the customer id %s", d.CustomerID)
				}
			}
			if d.SubscriptionID != "" && !strings.Contains(td.Text, d.SubscriptionID) {
				t.Errorf("the text does not give the subscription id")
			}
			if in.Deadline {
				if !strings.Contains(td.Text, td.Deadline) || td.Deadline == "" {
					t.Errorf("deadline %q not in the text", td.Deadline)
				}
				if d.RemainingSeconds != nil && (td.Remaining == "" || !strings.Contains(td.Text, td.Remaining) || !strings.Contains(td.Title, td.Remaining)) {
					t.Errorf("remaining %q not in the title and text", td.Remaining)
				}
			}
			if !strings.Contains(td.Footer, ev.ID) {
				t.Errorf("footer %q lacks the event id", td.Footer)
			}
			// Every channel renders it.
			if _, err := teamsPayload(td); err != nil {
				t.Error(err)
			}
			_ = slackPayload(td)
		})
	}
}

func TestQuantityChangedText(t *testing.T) {
	td := renderSample(t, events.SubscriptionQuantityChanged, nil, nil)
	if want := "Contoso Ltd: Microsoft 365 Business Basic (sub 1234abcd…) seats 12 -> 10 (-2)"; td.Title != want {
		t.Errorf("title\n  %s\nwant\n  %s", td.Title, want)
	}
	if want := "Seats of Microsoft 365 Business Basic for Contoso Ltd (customer 3f2b9c1e-5a7d-4e8f-9b0a-1c2d3e4f5a6b, subscription 1234abcd-9f8e-4d7c-8b6a-5e4f3d2c1b0a) changed from 12 to 10 (-2)."; td.Text != want {
		t.Errorf("text\n  %s\nwant\n  %s", td.Text, want)
	}
	up := renderSample(t, events.SubscriptionQuantityChanged, func(d *events.Data) {
		d.Old, d.New, d.Delta = events.JSONValue(10), events.JSONValue(14), ptr(4)
	}, nil)
	if !strings.Contains(up.Title, "seats 10 -> 14 (+4)") || !strings.Contains(up.Text, "refund within 7 days") {
		t.Errorf("increase: %s / %s", up.Title, up.Text)
	}
}

func TestDeadlineTexts(t *testing.T) {
	td := renderSample(t, events.SubscriptionCancellationClosing, nil, nil)
	want := "Cancellation window for Microsoft 365 E3 closes in 3h58m (2026-11-22 14:00 UTC). Cancel or reduce seats in Partner Center before then for a full refund."
	if !strings.HasPrefix(td.Text, want) {
		t.Errorf("text\n  %s\nwant prefix\n  %s", td.Text, want)
	}
	if td.Title != "Contoso Ltd: cancellation window for Microsoft 365 E3 closes in 3h58m" || td.Severity != "warning" {
		t.Errorf("title %q severity %s", td.Title, td.Severity)
	}
	if td.Timing != "on-time" || td.Late || td.FirstSeenInside || strings.Contains(td.Title, "(first seen") || strings.Contains(td.Text, "late") {
		t.Errorf("on time: timing %q late %v first seen inside %v: %q / %q", td.Timing, td.Late, td.FirstSeenInside, td.Title, td.Text)
	}
	late := renderSample(t, events.SubscriptionCancellationClosing, func(d *events.Data) { d.Timing, d.Late = events.TimingLate, ptr(true) }, nil)
	if !strings.HasPrefix(late.Title, "[LATE: watcher was down] ") || !strings.Contains(late.Text, "This alert is late: pcwatch knew this deadline but was not running when the 4h warning point passed.") ||
		late.Severity != "critical" || !late.Late || late.FirstSeenInside {
		t.Errorf("late: %q / %q / %s", late.Title, late.Text, late.Severity)
	}
	// Issue 15: first seen inside the threshold is not late.
	seen := renderSample(t, events.SubscriptionCancellationClosing, func(d *events.Data) {
		d.Timing, d.Late, d.Threshold, d.ThresholdSeconds = events.TimingFirstSeenInside, ptr(false), "72h", 72*3600
	}, nil)
	if seen.Title != "Contoso Ltd: cancellation window for Microsoft 365 E3 closes in 3h58m (first seen inside the 3d window)" ||
		!strings.Contains(seen.Text, "pcwatch first saw this deadline only after the 72h warning point had passed: this is the first warning it could give.") ||
		strings.Contains(seen.Title+seen.Text, "LATE") || strings.Contains(seen.Text, "is late") || seen.Severity != "warning" || seen.Late || !seen.FirstSeenInside {
		t.Errorf("first seen inside: %q / %q / %s", seen.Title, seen.Text, seen.Severity)
	}
	trial := renderSample(t, events.SubscriptionTrialEnding, func(d *events.Data) {
		d.Timing, d.Threshold, d.ThresholdSeconds = events.TimingFirstSeenInside, "168h", 7*24*3600
	}, nil)
	if !strings.HasSuffix(trial.Title, "(first seen inside the 7d window)") {
		t.Errorf("trial first seen inside: %q", trial.Title)
	}
	// An event of a watcher before timing: late, cause unknown.
	old := renderSample(t, events.SubscriptionCancellationClosing, func(d *events.Data) { d.Timing, d.Late = "", ptr(true) }, nil)
	if !strings.HasPrefix(old.Title, "[LATE] ") || !strings.Contains(old.Text, "This alert is late: the 4h warning point had already passed when pcwatch noticed.") ||
		old.Severity != "critical" || !old.Late || old.Timing != "" {
		t.Errorf("late without timing: %q / %q / %s", old.Title, old.Text, old.Severity)
	}
	closed := renderSample(t, events.SubscriptionCancellationClosed, func(d *events.Data) { d.Timing, d.Late = events.TimingLate, ptr(true) }, nil)
	if !strings.HasPrefix(closed.Title, "[LATE: watcher was down] ") || !strings.Contains(closed.Text, "pcwatch knew this window but was not running when it closed.") {
		t.Errorf("closed late: %q / %q", closed.Title, closed.Text)
	}
	closedSeen := renderSample(t, events.SubscriptionCancellationClosed, func(d *events.Data) { d.Timing = events.TimingFirstSeenInside }, nil)
	if !strings.HasSuffix(closedSeen.Title, "closed (first seen just before it closed)") || strings.Contains(closedSeen.Text, "late") {
		t.Errorf("closed first seen inside: %q / %q", closedSeen.Title, closedSeen.Text)
	}
	r := renderSample(t, events.SubscriptionRenewalApproaching, nil, nil)
	if !strings.Contains(r.Title, "renews in 6d23h") || !strings.Contains(r.Text, "renews automatically in 6d23h (2026-11-29 09:02 UTC) for another term of 1 year") {
		t.Errorf("renewal: %q / %q", r.Title, r.Text)
	}
	exp := renderSample(t, events.SubscriptionRenewalApproaching, func(d *events.Data) { d.AutoRenewEnabled = ptr(false) }, nil)
	if !strings.Contains(exp.Title, "expires in") || !strings.Contains(exp.Text, "because auto-renew is off") {
		t.Errorf("expiry: %q / %q", exp.Title, exp.Text)
	}
	refund := renderSample(t, events.SubscriptionRefundClosing, nil, nil)
	if !strings.Contains(refund.Text, "3 seats added to Microsoft 365 Business Basic can be reduced for a refund only until 2026-11-24 08:12 UTC (in 46h10m)") {
		t.Errorf("refund: %q", refund.Text)
	}
}

func TestOverridesInFileOrder(t *testing.T) {
	cfg := mustConfig(t, `
channels:
  a: {kind: webhook, url: "https://e.com"}
default: {channels: [a]}
templates:
  "subscription.quantity-changed": {title: "Q {{.Delta}}"}
  "subscription.*": {title: "S {{.Type}}", text: "generic {{.CustomerName}}"}
`, nil)
	q := renderSample(t, events.SubscriptionQuantityChanged, nil, cfg.overrides)
	if q.Title != "Q -2" || q.Text != "generic Contoso Ltd" {
		t.Errorf("quantity: %q / %q", q.Title, q.Text)
	}
	s := renderSample(t, events.SubscriptionStatusChanged, nil, cfg.overrides)
	if s.Title != "S subscription.status-changed" {
		t.Errorf("status: %q", s.Title)
	}
	c := renderSample(t, events.CustomerAdded, nil, cfg.overrides)
	if c.Title != "New customer: Contoso Ltd" {
		t.Errorf("customer (default): %q", c.Title)
	}
}

func TestUnknownTypeRendersGenerically(t *testing.T) {
	ev := &events.Event{ID: "id-1", Type: "io.pcwatch.subscription.teleported", Time: sampleTime}
	d := &events.Data{CustomerID: "c1", CustomerName: "Fabrikam", SubscriptionID: "s1"}
	td, err := renderMessage(ev, d, nil, "x")
	if err != nil {
		t.Fatal(err)
	}
	if td.Title != "Fabrikam: subscription.teleported — subscription s1" || !strings.Contains(td.Text, "Fabrikam (customer c1)") {
		t.Errorf("%q / %q", td.Title, td.Text)
	}
}

func TestValueAndDurationHelpers(t *testing.T) {
	for in, want := range map[string]string{
		`"active"`: "active", `12`: "12", `true`: "true", `null`: "(none)", ``: "(none)",
		`"2026-11-22T14:00:00Z"`: "2026-11-22 14:00 UTC", `{"a": 1,  "b": [1, 2]}`: `{"a":1,"b":[1,2]}`,
	} {
		if got := valueText([]byte(in)); got != want {
			t.Errorf("valueText(%s) = %q, want %q", in, got, want)
		}
	}
	for d, want := range map[time.Duration]string{
		45 * time.Second: "45s", 3*time.Hour + 58*time.Minute + 12*time.Second: "3h58m", 28 * time.Hour: "28h",
		72 * time.Hour: "3d", 6*24*time.Hour + 23*time.Hour + 5*time.Minute: "6d23h", 12*time.Minute + 31*time.Second: "13m",
	} {
		if got := humanDuration(d); got != want {
			t.Errorf("humanDuration(%s) = %q, want %q", d, got, want)
		}
	}
	if shortID("1234abcd-9f8e-4d7c-8b6a-5e4f3d2c1b0a") != "1234abcd…" || shortID("short") != "short" {
		t.Error("shortID")
	}
	if fieldName("/companyProfile/a~1b") != "companyProfile.a/b" {
		t.Error("fieldName")
	}
}

func TestTitleIsOneLineAndBounded(t *testing.T) {
	cfg := mustConfig(t, `
channels:
  a: {kind: webhook, url: "https://e.com"}
default: {channels: [a]}
templates:
  "ops.mass-removal-held": {title: "line one\n\nline two {{range $i, $e := .Data.Hold.IDs}}{{$e}} {{end}}"}
`, nil)
	td := renderSample(t, events.OpsMassRemovalHeld, nil, cfg.overrides)
	if strings.Contains(td.Title, "\n") || len([]rune(td.Title)) > maxTitle || !strings.HasPrefix(td.Title, "line one line two") {
		t.Errorf("title %q", td.Title)
	}
}

func TestExtremeDurations(t *testing.T) {
	ev, d := routeEvent(t, events.SubscriptionCancellationClosing, func(d *events.Data) {
		d.RemainingSeconds = nil
		far := time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
		d.Deadline = &far
	})
	ev.Time = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := renderMessage(ev, d, nil, "x"); err != nil {
		t.Fatal(err)
	}
	if got := humanDuration(time.Duration(math.MinInt64)); !strings.HasPrefix(got, "-") {
		t.Errorf("humanDuration(min) = %q", got)
	}
}
