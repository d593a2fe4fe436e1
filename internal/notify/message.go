package notify

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"path"
	"strconv"
	"strings"
	"text/template"
	"time"
	"unicode/utf8"

	"github.com/pcwatch/pcwatch/internal/cli"
	"github.com/pcwatch/pcwatch/internal/events"
)

type templateT = template.Template

// Limits of rendered messages.
const (
	maxTitle        = 250  // characters of a title
	maxTextBytes    = 8000 // bytes of a text
	maxTemplateOut  = 64 << 10
	maxChangesShown = 200 // changes handed to templates; the rest are counted
	maxValueLen     = 200 // characters of one rendered old/new value
)

// TemplateData is what title, text, email and subject templates see. The
// raw event and its decoded data are there in full; the other fields are
// ready-made text.
type TemplateData struct {
	Event *events.Event // the CloudEvent
	Data  *events.Data  // its decoded data
	Info  events.Info   // the catalog entry (Summary, Meaning, Deadline...)

	ID      string    // event id (also the webhook-id and Message-ID seed)
	Type    string    // type without "io.pcwatch.", e.g. subscription.quantity-changed
	Time    time.Time // when the watcher detected it
	Channel string    // the channel rendering it

	CustomerID     string
	CustomerName   string // the customer's name, or its id when unknown
	SubscriptionID string
	// Product names what the event is about: the offer (or friendly) name
	// of a subscription, the name or title of another entity, or its id.
	Product string
	Old     string // data.old as text ("12", "active", "on")
	New     string // data.new as text
	Delta   string // quantity delta with its sign, "+2" or "-2"

	Deadline  string // "2026-11-22 14:00 UTC"
	Remaining string // "3h58m", "6d23h"
	Threshold string // "72h"
	// Timing is data.timing: "on-time", "first-seen-inside" (pcwatch first
	// saw the deadline after its threshold had passed: this is its first
	// warning) or "late" (pcwatch knew the deadline but was down when the
	// threshold passed); "" for events of watchers before timing.
	Timing string
	// FirstSeenInside is Timing == "first-seen-inside".
	FirstSeenInside bool
	// Late: the alert fired late because pcwatch was down (Timing ==
	// "late"). For an event of a watcher before timing, any alert fired
	// after its threshold had passed (Timing is "").
	Late bool

	Facts       []Fact       // label/value pairs for cards and mails
	Changes     []ChangeLine // field-level changes, at most 200
	MoreChanges int          // changes not in Changes

	Title    string // the rendered title (empty while the title renders)
	Text     string // the rendered text (empty while title and text render)
	Footer   string // "pcwatch · <type> · event <id> · <time>"
	Severity string // info, warning or critical
	// Notice is "" for the first message of an event, else what kind of
	// follow-up this is: reminder, resolved, released (held by a silence
	// until it ended) or override (sent before its deadline although a
	// silence still holds).
	Notice string
	// Group is set on a grouped message (a route's group_by): one row per
	// event. Title, Text and Footer then speak of the group.
	Group []GroupRow
}

// Fact is one label/value pair.
type Fact struct{ Name, Value string }

// ChangeLine is one field-level change as text.
type ChangeLine struct{ Field, Old, New string }

var funcs = template.FuncMap{
	"short":  shortID,
	"when":   when,
	"date":   date,
	"value":  valueText,
	"onoff":  onOff,
	"dur":    humanDuration,
	"signed": func(n int) string { return fmt.Sprintf("%+d", n) },
	"join": func(sep string, v any) string {
		switch l := v.(type) {
		case []string:
			return strings.Join(l, sep)
		case []any:
			s := make([]string, len(l))
			for i, x := range l {
				s[i] = fmt.Sprint(x)
			}
			return strings.Join(s, sep)
		}
		return fmt.Sprint(v)
	},
	"percent": func(f float64) string { return fmt.Sprintf("%.0f%%", f*100) },
	"term":    isoTerm,
	"upper":   strings.ToUpper,
	"lower":   strings.ToLower,
	"trunc":   truncate,
	"plural":  func(n int, one, many string) string { return plural(n, one, many) },
	"default": func(def string, v any) string {
		if s := fmt.Sprint(v); v != nil && s != "" && s != "<nil>" {
			return s
		}
		return def
	},
	"deref": func(v any) any {
		switch p := v.(type) {
		case *int:
			if p != nil {
				return *p
			}
		case *bool:
			if p != nil {
				return *p
			}
		case *int64:
			if p != nil {
				return *p
			}
		case *time.Time:
			if p != nil {
				return *p
			}
		}
		return nil
	},
}

func parseTemplate(name, text string) (*template.Template, error) {
	t, err := template.New(name).Funcs(funcs).Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, fmt.Errorf("bad template: %w", err)
	}
	return t, nil
}

// limitedBuffer keeps the first limit bytes a template writes and drops
// the rest: a template over a huge value (a 1 MB friendly name from
// Partner Center) renders a cut message instead of failing, which would
// dead-letter the event. Memory stays bounded either way.
type limitedBuffer struct {
	bytes.Buffer
	limit int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.limit - b.Len(); len(p) > room {
		if room > 0 {
			b.Buffer.Write(p[:room])
		}
		return len(p), nil
	}
	return b.Buffer.Write(p)
}

// String is what was kept, cut on a rune boundary.
func (b *limitedBuffer) String() string {
	return strings.ToValidUTF8(b.Buffer.String(), "")
}

func execTemplate(t *template.Template, data *TemplateData) (string, error) {
	b := &limitedBuffer{limit: maxTemplateOut}
	if err := t.Execute(b, data); err != nil {
		return "", fmt.Errorf("template %s: %w", t.Name(), err)
	}
	return b.String(), nil
}

// RenderError is a template that failed on a particular event.
type RenderError struct {
	Type events.Type
	Err  error
}

func (e *RenderError) Error() string {
	return fmt.Sprintf("rendering %s: %v", shortType(e.Type), e.Err)
}
func (e *RenderError) Unwrap() error { return e.Err }

// channelMessage is what a channel of kind needs rendered of an event. A
// webhook sends the event itself, byte for byte, and renders nothing (nil),
// so no limit on rendered text can stop a large event from reaching it. A
// nats channel republishes the event too and needs only the template data
// for its subject template. Slack, Teams and email show a title and a text:
// renderMessage.
func channelMessage(kind string, ev *events.Event, d *events.Data, ov []compiledOverride, channel string) (*TemplateData, error) {
	switch kind {
	case KindWebhook:
		return nil, nil
	case KindNATS:
		return newTemplateData(ev, d, channel), nil
	}
	return renderMessage(ev, d, ov, channel)
}

// renderMessage builds the template data of an event and renders its title
// and text: the first override (in file order) whose glob matches wins,
// then the built-in default of the type, then a generic one.
func renderMessage(ev *events.Event, d *events.Data, ov []compiledOverride, channel string) (*TemplateData, error) {
	td := newTemplateData(ev, d, channel)
	st := shortType(ev.Type)
	def := genericTemplate
	if p, ok := presentations[ev.Type]; ok {
		def = p.titleText
	}
	title, text := def.title, def.text
	var haveTitle, haveText bool
	for _, o := range ov {
		if m, _ := path.Match(o.glob, st); !m {
			continue
		}
		if o.title != nil && !haveTitle {
			title, haveTitle = o.title, true
		}
		if o.text != nil && !haveText {
			text, haveText = o.text, true
		}
	}
	s, err := execTemplate(title, td)
	if err != nil {
		return nil, &RenderError{Type: ev.Type, Err: err}
	}
	td.Title = truncate(maxTitle, cli.OneLine(s))
	if td.Title == "" {
		td.Title = fmt.Sprintf("%s: %s", td.CustomerName, st)
	}
	s, err = execTemplate(text, td)
	if err != nil {
		return nil, &RenderError{Type: ev.Type, Err: err}
	}
	td.Text = truncateBytes(strings.TrimSpace(s), maxTextBytes)
	if td.Text == "" {
		td.Text = td.Title
	}
	return td, nil
}

func newTemplateData(ev *events.Event, d *events.Data, channel string) *TemplateData {
	info, ok := events.Lookup(ev.Type)
	if !ok {
		res, change, _ := strings.Cut(shortType(ev.Type), ".")
		info = events.Info{Type: ev.Type, Resource: events.Resource(res), Change: change, Summary: "An event pcwatch's notifier does not know yet."}
	}
	td := &TemplateData{
		Event: ev, Data: d, Info: info, ID: ev.ID, Type: shortType(ev.Type), Time: ev.Time.UTC(), Channel: channel,
		CustomerID: d.CustomerID, SubscriptionID: d.SubscriptionID,
	}
	v := d.After
	if v == nil {
		v = d.Before
	}
	td.CustomerName = d.CustomerName
	if td.CustomerName == "" && v != nil && v.CompanyName != "" {
		td.CustomerName = v.CompanyName
	}
	if td.CustomerName == "" {
		td.CustomerName = d.CustomerID
	}
	if td.CustomerName == "" {
		td.CustomerName = "pcwatch"
	}
	switch {
	case v != nil && v.OfferName != "":
		td.Product = v.OfferName
	case v != nil && v.FriendlyName != "":
		td.Product = v.FriendlyName
	case v != nil && v.Name != "":
		td.Product = v.Name
	case v != nil && v.Title != "":
		td.Product = v.Title
	case d.SubscriptionID != "":
		td.Product = "subscription " + shortID(d.SubscriptionID)
	default:
		_, td.Product = d.Named()
	}
	// Names come from Partner Center and can be any size: the ready-made
	// fields are cut (the full values stay in .Data).
	td.CustomerName, td.Product = truncate(maxValueLen, td.CustomerName), truncate(maxValueLen, td.Product)
	td.Old, td.New = valueText(d.Old), valueText(d.New)
	if ev.Type == events.SubscriptionAutoRenewChanged {
		td.Old, td.New = onOff(d.Old), onOff(d.New)
	}
	if d.Delta != nil {
		td.Delta = fmt.Sprintf("%+d", *d.Delta)
	}
	if d.Deadline != nil {
		td.Deadline = when(*d.Deadline)
	}
	if left, ok := remaining(ev, d); ok && d.RemainingSeconds != nil || ok && left > 0 {
		td.Remaining = humanDuration(left)
	}
	td.Threshold = d.Threshold
	if td.Threshold == "" && d.ThresholdSeconds > 0 {
		td.Threshold = humanDuration(time.Duration(d.ThresholdSeconds) * time.Second)
	}
	td.Timing = string(d.Timing)
	td.FirstSeenInside = d.Timing == events.TimingFirstSeenInside
	td.Late = d.Timing == events.TimingLate || d.Timing == "" && d.Late != nil && *d.Late
	td.Severity = severity(info, td.Late)
	td.Footer = fmt.Sprintf("pcwatch · %s · event %s · detected %s", td.Type, ev.ID, when(ev.Time))
	td.Facts = facts(td, d)
	for i, c := range d.Changes {
		if i >= maxChangesShown {
			td.MoreChanges = len(d.Changes) - maxChangesShown
			break
		}
		td.Changes = append(td.Changes, ChangeLine{Field: fieldName(c.Path), Old: valueText(c.Old), New: valueText(c.New)})
	}
	return td
}

// severity is info, warning or critical: critical when late, a warning
// for a deadline, else as the type's presentation says.
func severity(info events.Info, late bool) string {
	switch {
	case late:
		return "critical"
	case info.Deadline:
		return "warning"
	}
	if p := presentations[info.Type]; p.severity != "" {
		return p.severity
	}
	return "info"
}

func facts(td *TemplateData, d *events.Data) []Fact {
	var f []Fact
	add := func(name, value string) {
		if value != "" {
			f = append(f, Fact{name, value})
		}
	}
	if d.CustomerID != "" {
		add("Customer", fmt.Sprintf("%s (%s)", td.CustomerName, d.CustomerID))
	}
	v := d.After
	if v == nil {
		v = d.Before
	}
	if d.SubscriptionID != "" {
		add("Subscription", fmt.Sprintf("%s (%s)", td.Product, d.SubscriptionID))
	}
	if v != nil {
		if v.Quantity != nil {
			add("Seats", strconv.Itoa(*v.Quantity))
		}
		add("Status", v.Status)
		add("Term", termText(v.TermDuration, v.BillingCycle))
		if v.CommitmentEndDate != nil {
			add("Commitment end", when(*v.CommitmentEndDate))
		}
		if v.AutoRenewEnabled != nil {
			add("Auto-renew", onOffBool(*v.AutoRenewEnabled))
		}
		add("Reseller (MPN id)", v.PartnerID)
		if r, _ := d.Named(); resourceFacts[r] != nil {
			f := resourceFacts[r](td, d, v)
			add(f.Name, f.Value)
		}
	}
	add("Catalog view", d.TargetView)
	add("Deadline", td.Deadline)
	add("Time left", td.Remaining)
	add("Alert threshold", td.Threshold)
	if d.Quantity != nil {
		add("Seats in batch", strconv.Itoa(*d.Quantity))
	}
	switch {
	case td.Timing == string(events.TimingLate):
		add("Late", "yes: pcwatch knew this deadline but was down when the threshold passed")
	case td.Late:
		add("Late", "yes: the threshold had passed when pcwatch noticed")
	case td.FirstSeenInside:
		add("First seen", "inside the threshold: pcwatch learned of this deadline after the warning point had passed")
	}
	if c := d.Cycle; c != nil {
		add("Cycle", strconv.FormatUint(c.Number, 10))
		add("Customers", fmt.Sprintf("%d ok, %d failed of %d", c.CustomersOK, c.CustomersFailed, c.CustomersTotal))
		add("Events emitted", strconv.Itoa(c.EventsEmitted))
		add("Duration", humanDuration(time.Duration(c.DurationSeconds*float64(time.Second))))
		add("API requests", fmt.Sprintf("%d (%d throttled, %d retries)", c.APIRequests, c.Throttled, c.Retries))
	}
	if p := d.Failure; p != nil {
		add("Consecutive failures", strconv.Itoa(p.ConsecutiveFailures))
		add("Failing since", when(p.FirstFailedAt))
		add("Last error", truncate(300, p.LastError))
	}
	if h := d.Hold; h != nil {
		add("Missing", fmt.Sprintf("%d of %d %s", h.Missing, h.Total, plural(h.Total, h.Resource, h.Resource+"s")))
		add("Share", fmt.Sprintf("%.0f%% (threshold %.0f%%)", h.Share*100, h.Threshold*100))
	}
	return f
}

func paren(s string) string {
	if s == "" {
		return ""
	}
	return "(" + s + ")"
}

func termText(term, billing string) string {
	t := isoTerm(term)
	if billing != "" {
		if t != "" {
			return t + ", billed " + billing
		}
		return "billed " + billing
	}
	return t
}

// isoTerm turns P1M, P1Y, P3Y into words.
func isoTerm(s string) string {
	switch s {
	case "P1M":
		return "1 month"
	case "P1Y":
		return "1 year"
	case "P3Y":
		return "3 years"
	}
	return s
}

// fieldName turns a JSON Pointer into a dotted field name.
func fieldName(p string) string {
	p = strings.TrimPrefix(p, "/")
	parts := strings.Split(p, "/")
	for i, s := range parts {
		parts[i] = strings.ReplaceAll(strings.ReplaceAll(s, "~1", "/"), "~0", "~")
	}
	return strings.Join(parts, ".")
}

// shortID shortens a GUID-like id to its first 8 characters and an ellipsis.
func shortID(id string) string {
	if utf8.RuneCountInString(id) <= 12 {
		return id
	}
	return string([]rune(id)[:8]) + "…"
}

// when formats an instant as "2006-01-02 15:04 UTC"; it accepts a
// time.Time, a *time.Time or an RFC 3339 string.
func when(v any) string {
	switch t := v.(type) {
	case time.Time:
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04 UTC")
	case *time.Time:
		if t == nil {
			return ""
		}
		return when(*t)
	case string:
		if p, err := time.Parse(time.RFC3339Nano, t); err == nil {
			return when(p)
		}
		return t
	case json.RawMessage:
		var s string
		if json.Unmarshal(t, &s) == nil {
			return when(s)
		}
		return valueText(t)
	}
	return fmt.Sprint(v)
}

// date formats an instant as "2006-01-02".
func date(v any) string {
	s := when(v)
	if len(s) >= 10 && strings.HasSuffix(s, " UTC") {
		return s[:10]
	}
	return s
}

// valueText renders a JSON value for people: strings without quotes,
// instants as dates, objects compactly, null as "(none)".
func valueText(v any) string {
	var raw json.RawMessage
	switch x := v.(type) {
	case json.RawMessage:
		raw = x
	case []byte:
		raw = x
	case nil:
		return ""
	default:
		return fmt.Sprint(v)
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "(none)"
	}
	switch raw[0] {
	case '"':
		var s string
		if json.Unmarshal(raw, &s) != nil {
			break
		}
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			return when(t)
		}
		return truncate(maxValueLen, cli.OneLine(s))
	case 'n':
		return "(none)"
	case '{', '[':
		var b bytes.Buffer
		if json.Compact(&b, raw) == nil {
			return truncate(maxValueLen, b.String())
		}
	}
	return truncate(maxValueLen, cli.OneLine(string(raw)))
}

func onOff(v any) string {
	switch x := v.(type) {
	case bool:
		return onOffBool(x)
	case *bool:
		if x != nil {
			return onOffBool(*x)
		}
		return ""
	case json.RawMessage:
		var b bool
		if json.Unmarshal(x, &b) == nil {
			return onOffBool(b)
		}
		return valueText(x)
	}
	return fmt.Sprint(v)
}

func onOffBool(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// humanDuration renders a duration for people: "45s", "3h58m", "28h",
// "6d23h". It accepts a time.Duration or seconds (int, int64, *int64).
func humanDuration(v any) string {
	var d time.Duration
	switch x := v.(type) {
	case time.Duration:
		d = x
	case int:
		d = time.Duration(x) * time.Second
	case int64:
		d = time.Duration(x) * time.Second
	case *int64:
		if x == nil {
			return ""
		}
		d = time.Duration(*x) * time.Second
	case float64:
		d = time.Duration(x * float64(time.Second))
	default:
		return fmt.Sprint(v)
	}
	if d < 0 {
		if d == math.MinInt64 {
			d++ // -d would overflow
		}
		return "-" + humanDuration(-d)
	}
	switch {
	case d >= 48*time.Hour:
		days, hours := d/(24*time.Hour), d%(24*time.Hour)/time.Hour
		if hours == 0 {
			return fmt.Sprintf("%dd", days)
		}
		return fmt.Sprintf("%dd%dh", days, hours)
	case d >= time.Hour:
		return events.FormatDuration(d.Truncate(time.Minute))
	case d >= 10*time.Minute:
		return events.FormatDuration(d.Round(time.Minute))
	}
	return events.FormatDuration(d)
}

// truncate shortens s to n characters, ending with an ellipsis.
func truncate(n int, s string) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	if n < 1 {
		return ""
	}
	return string(r[:n-1]) + "…"
}

// truncateBytes shortens s to at most n bytes on a rune boundary.
func truncateBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
