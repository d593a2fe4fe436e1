package catalogtest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	ce "github.com/cloudevents/sdk-go/v2/event"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"

	"github.com/pcwatch/pcwatch/internal/events"
	"github.com/pcwatch/pcwatch/internal/state"
)

var update = flag.Bool("update", false, "rewrite docs/events.md from the events the scenario emits")

var (
	docPath    = filepath.Join("..", "..", "docs", "events.md")
	schemaPath = filepath.Join("..", "..", "docs", "events.schema.json")
)

// The scenario runs once per test binary; every test reads its outcome.
var (
	scenarioOnce sync.Once
	scenarioOut  *outcome
)

func scenario(t *testing.T) *outcome {
	t.Helper()
	scenarioOnce.Do(func() { scenarioOut = runScenario(t) })
	if scenarioOut == nil {
		t.Fatal("the scenario failed (see the first test that ran it)")
	}
	return scenarioOut
}

// emitted is one outbox record, decoded.
type emitted struct {
	rec  state.OutboxRecord
	ev   *events.Event
	info events.Info
	data *events.Data
	raw  map[string]json.RawMessage // data's members, for presence checks
}

func decodeAll(t *testing.T, recs []state.OutboxRecord) []emitted {
	t.Helper()
	out := make([]emitted, 0, len(recs))
	for _, rec := range recs {
		ev, err := events.Decode(rec.Body)
		if err != nil {
			t.Fatalf("outbox record %d: %v\n%s", rec.Seq, err, rec.Body)
		}
		info, ok := events.Lookup(ev.Type)
		if !ok {
			t.Fatalf("outbox record %d: type %q is not in the catalog", rec.Seq, ev.Type)
		}
		d, err := ev.DecodeData()
		if err != nil {
			t.Fatal(err)
		}
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(ev.Data, &raw); err != nil {
			t.Fatal(err)
		}
		out = append(out, emitted{rec: rec, ev: ev, info: info, data: d, raw: raw})
	}
	return out
}

// schemaSet is docs/events.schema.json, compiled.
type schemaSet struct {
	doc      map[string]any // as parsed, for reading definitions
	envelope *jsonschema.Schema
	data     map[events.Type]*jsonschema.Schema // by dataschema (the type's $anchor)
}

func loadSchema(t *testing.T) *schemaSet {
	t.Helper()
	f, err := os.Open(schemaPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatalf("%s: %v", schemaPath, err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	if err := c.AddResource(events.SchemaBase, doc); err != nil {
		t.Fatal(err)
	}
	s := &schemaSet{doc: doc.(map[string]any), data: map[events.Type]*jsonschema.Schema{}}
	// Compiling also validates the schema against the 2020-12 metaschema.
	if s.envelope, err = c.Compile(events.SchemaBase); err != nil {
		t.Fatalf("compiling %s: %v", schemaPath, err)
	}
	if got := s.doc["$id"]; got != events.SchemaBase {
		t.Errorf("schema $id = %v, want events.SchemaBase %s", got, events.SchemaBase)
	}
	for _, in := range events.Catalog() {
		// Every event's dataschema must resolve to its data schema.
		sch, err := c.Compile(events.SchemaBase + "#" + string(in.Type))
		if err != nil {
			t.Fatalf("dataschema of %s does not resolve in %s: %v", in.Type, schemaPath, err)
		}
		s.data[in.Type] = sch
	}
	return s
}

func instance(t *testing.T, b []byte) any {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestEventCatalog runs the scenario, checks every emitted event against
// the schema, the CloudEvents SDK and the documented invariants, and
// checks (or, with -update, rewrites) docs/events.md.
func TestEventCatalog(t *testing.T) {
	start := time.Now()
	out := scenario(t)
	all := decodeAll(t, out.records)
	schema := loadSchema(t)
	t.Logf("scenario: %d cycles, %d events in %v", out.cycles, len(all), time.Since(start).Round(time.Millisecond))

	byType := map[events.Type][]emitted{}
	ids := map[string]uint64{}
	for _, e := range all {
		byType[e.ev.Type] = append(byType[e.ev.Type], e)
		if prev, dup := ids[e.ev.ID]; dup {
			t.Errorf("event id %s used twice (outbox records %d and %d)", e.ev.ID, prev, e.rec.Seq)
		}
		ids[e.ev.ID] = e.rec.Seq

		if err := schema.envelope.Validate(instance(t, e.rec.Body)); err != nil {
			t.Errorf("%s (outbox %d) fails %s:\n%v\n%s", e.ev.Type, e.rec.Seq, schemaPath, err, e.rec.Body)
		}
		if err := schema.data[e.ev.Type].Validate(instance(t, e.ev.Data)); err != nil {
			t.Errorf("%s (outbox %d): data fails its dataschema %s: %v", e.ev.Type, e.rec.Seq, e.ev.DataSchema, err)
		}
		checkCloudEvent(t, e)
		// The subject patterns docs/events.md shows, filled in.
		if got := fillPattern(natsPattern(e.info), e.data, true); got != e.rec.Subject {
			t.Errorf("%s (outbox %d): NATS subject %s, the documented pattern gives %s", e.ev.Type, e.rec.Seq, e.rec.Subject, got)
		}
		if p := cePattern(e.info); (p == "" || e.data.CustomerID == "") != (e.ev.Subject == "") ||
			(p != "" && e.ev.Subject != "" && fillPattern(p, e.data, false) != e.ev.Subject) {
			t.Errorf("%s (outbox %d): CloudEvents subject %q does not follow the documented %q", e.ev.Type, e.rec.Seq, e.ev.Subject, p)
		}
		for _, p := range invariants(e) {
			t.Errorf("%s (outbox %d): %s\n%s", e.ev.Type, e.rec.Seq, p, e.rec.Body)
		}
	}
	checkEntityOrder(t, all)

	var missing []string
	for _, in := range events.Catalog() {
		if len(byType[in.Type]) == 0 {
			missing = append(missing, string(in.Type))
		}
	}
	if len(missing) > 0 {
		t.Fatalf("the scenario did not produce %d of the %d catalog types: %s", len(missing), len(events.Catalog()), strings.Join(missing, ", "))
	}

	examples := map[events.Type]emitted{}
	for _, in := range events.Catalog() {
		x, ok := out.examples[in.Type]
		if !ok {
			t.Fatalf("no example designated for %s", in.Type)
		}
		for _, e := range byType[in.Type] {
			if x.match(e.data) {
				examples[in.Type] = e
				break
			}
		}
		e, ok := examples[in.Type]
		if !ok {
			t.Fatalf("%s: none of the %d events emitted is the designated example (%s)", in.Type, len(byType[in.Type]), x.how)
		}
		if in.Deadline && e.data.Late != nil && *e.data.Late {
			t.Errorf("%s: the example fired late; the scenario should evaluate on time", in.Type)
		}
	}
	// The deadlines fired at the first cycle (t0) were all first seen then:
	// none is late (issue 15: first sightings were), those past their
	// threshold's grace are first-seen-inside. (Later the scenario jumps
	// days between cycles, as a watcher down in between: those may be late.)
	firstSeen := 0
	for _, in := range events.Catalog() {
		for _, e := range byType[in.Type] {
			if !in.Deadline || !e.ev.Time.Equal(t0) {
				continue
			}
			if e.data.Timing == events.TimingLate {
				t.Errorf("%s (outbox %d): late at the first sighting:\n%s", in.Type, e.rec.Seq, e.rec.Body)
			}
			if e.data.Timing == events.TimingFirstSeenInside {
				firstSeen++
			}
		}
	}
	if firstSeen == 0 {
		t.Error("no deadline event at the first cycle is first-seen-inside; the scenario should show one")
	}

	checkFields(t, schema, byType)
	checkFilters(t, out, all)

	got := renderDoc(out, examples, byType)
	if *update && t.Failed() {
		t.Fatalf("not writing %s: the events do not match the documentation", docPath)
	}
	if *update {
		if err := os.WriteFile(docPath, got, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s (%d bytes)", docPath, len(got))
		return
	}
	want, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatalf("%v (run: go test ./internal/catalogtest -run TestEventCatalog -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is out of date: %s\nrun: go test ./internal/catalogtest -run TestEventCatalog -update", docPath, firstDiff(want, got))
	}
}

// checkCloudEvent reads the event with the CloudEvents SDK and validates it.
func checkCloudEvent(t *testing.T, e emitted) {
	t.Helper()
	c := ce.New()
	if err := json.Unmarshal(e.rec.Body, &c); err != nil {
		t.Errorf("%s (outbox %d): the CloudEvents SDK cannot read it: %v", e.ev.Type, e.rec.Seq, err)
		return
	}
	if err := c.Validate(); err != nil {
		t.Errorf("%s (outbox %d): not a valid CloudEvent: %v", e.ev.Type, e.rec.Seq, err)
	}
	for _, x := range []struct{ name, got, want string }{
		{"specversion", c.SpecVersion(), ce.CloudEventsVersionV1},
		{"id", c.ID(), e.ev.ID},
		{"source", c.Source(), e.ev.Source},
		{"type", c.Type(), string(e.ev.Type)},
		{"subject", c.Subject(), e.ev.Subject},
		{"datacontenttype", c.DataContentType(), "application/json"},
		{"dataschema", c.DataSchema(), events.SchemaBase + "#" + string(e.ev.Type)},
		{"time", c.Time().UTC().Format(time.RFC3339Nano), e.ev.Time.UTC().Format(time.RFC3339Nano)},
	} {
		if x.got != x.want {
			t.Errorf("%s (outbox %d): CloudEvents %s = %q, want %q", e.ev.Type, e.rec.Seq, x.name, x.got, x.want)
		}
	}
	if ext := c.Extensions(); len(ext) > 0 {
		t.Errorf("%s (outbox %d): unexpected extension attributes %v", e.ev.Type, e.rec.Seq, ext)
	}
	var d map[string]any
	if err := c.DataAs(&d); err != nil || d == nil {
		t.Errorf("%s (outbox %d): data is not a JSON object to the SDK: %v", e.ev.Type, e.rec.Seq, err)
	}
}

// resourceID is the id an event's subjects name after the customer.
func resourceID(in events.Info, d *events.Data) string {
	switch in.Resource {
	case events.ResourceSubscription:
		return d.SubscriptionID
	case events.ResourceManagedService:
		return d.ManagedServiceID
	case events.ResourceProduct:
		return d.TargetView + "/" + d.ProductID
	}
	return ""
}

var ceCollection = map[events.Resource]string{
	events.ResourceSubscription:   "subscriptions",
	events.ResourceManagedService: "managedservices",
	events.ResourceProduct:        "products",
}

func isRemoval(t events.Type) bool { return strings.HasSuffix(string(t), ".removed") }
func isAddition(t events.Type) bool {
	return strings.HasSuffix(string(t), ".added") || t == events.SubscriptionCreated
}

// invariants checks what docs/events.md promises about one event.
func invariants(e emitted) []string {
	var p []string
	bad := func(format string, a ...any) { p = append(p, fmt.Sprintf(format, a...)) }
	in, d, ev := e.info, e.data, e.ev
	has := func(k string) bool { _, ok := e.raw[k]; return ok }

	if want := events.TypePrefix + string(in.Resource) + "." + in.Change; string(ev.Type) != want {
		bad("type %s is not io.pcwatch.<resource>.<change> (%s)", ev.Type, want)
	}
	if ev.Source != source {
		bad("source = %q, want %q", ev.Source, source)
	}
	if ev.DataContentType != events.DataContentType || ev.DataSchema != events.SchemaBase+"#"+string(ev.Type) {
		bad("datacontenttype %q / dataschema %q", ev.DataContentType, ev.DataSchema)
	}
	if ev.ID != e.rec.ID {
		bad("envelope id %s differs from the CloudEvent id %s", e.rec.ID, ev.ID)
	}
	if len(e.rec.Body) > 1<<20 {
		bad("%d bytes: more than NATS's default max_payload", len(e.rec.Body))
	}
	for _, c := range d.Truncated {
		if c.Size <= events.ShrinkKeep || len(c.SHA256) != 64 {
			bad("truncated entry %+v: a cut value is longer than what is kept and has a SHA-256", c)
		}
	}
	if ev.Time.Location() != time.UTC {
		bad("time %v is not UTC", ev.Time)
	}

	// Subjects.
	var natsWant, ceWant string
	if in.Resource == events.ResourceOps {
		natsWant = "pcwatch.ops." + in.Change
		if d.CustomerID != "" {
			ceWant = "customers/" + d.CustomerID
		}
	} else {
		natsWant = "pcwatch.events." + string(in.Resource) + "." + in.Change + "." + events.SubjectToken(d.CustomerID)
		ceWant = "customers/" + d.CustomerID
		if id := resourceID(in, d); id != "" {
			natsWant += "." + events.SubjectToken(id)
			ceWant += "/" + ceCollection[in.Resource] + "/"
			ceWant += id // products: <targetView>/<productId>
		}
	}
	if e.rec.Subject != natsWant || e.rec.Subject != events.NATSSubject(in, d) {
		bad("NATS subject %q, want %q", e.rec.Subject, natsWant)
	}
	if ev.Subject != ceWant {
		bad("CloudEvents subject %q, want %q", ev.Subject, ceWant)
	}

	// Who and what it is about.
	switch {
	case in.Type == events.OpsCycleCompleted:
		if d.CustomerID != "" || d.Cycle == nil {
			bad("cycle-completed must carry cycle and no customerId")
		} else if !ev.Time.Equal(d.Cycle.StartedAt) {
			bad("time %v differs from cycle.startedAt %v", ev.Time, d.Cycle.StartedAt)
		}
	case in.Type == events.OpsCustomerPollFailed:
		if d.CustomerID == "" || d.Failure == nil {
			bad("customer-poll-failed must carry customerId and failure")
		}
	case in.Type == events.OpsMassRemovalHeld:
		if d.Hold == nil || (d.Hold.Resource == "subscription" && d.CustomerID == "") {
			bad("mass-removal-held must carry hold, and customerId for a subscription hold")
		}
	case in.Type == events.OpsEventDropped:
		if d.Dropped == nil || d.Dropped.ID == "" || d.Dropped.Size <= d.Dropped.Limit {
			bad("event-dropped must say which event was dropped and that it exceeded the limit")
		}
	default:
		if d.CustomerID == "" {
			bad("customerId missing")
		}
		if in.Resource != events.ResourceCustomer && resourceID(in, d) == "" {
			bad("resource id missing")
		}
		if isChangeType(in) != has("changes") {
			bad("changes must be present exactly on change events")
		}
		switch {
		case isRemoval(in.Type):
			if d.Before == nil || d.After != nil {
				bad("a removal carries before and not after")
			}
		case d.After == nil || d.Before != nil:
			bad("carries after and not before")
		}
		id := resourceID(in, d)
		if in.Resource == events.ResourceCustomer {
			id = d.CustomerID
		}
		if in.Resource == events.ResourceProduct {
			id = d.ProductID
		}
		if v := d.After; v != nil && v.ID != id {
			bad("after.id %q, want %q", v.ID, id)
		}
		if v := d.Before; v != nil && v.ID != id {
			bad("before.id %q, want %q", v.ID, id)
		}
		switch {
		case in.Deadline:
			if d.Revision != 0 || len(d.Changes) != 0 {
				bad("deadline events carry no revision and no changes")
			}
		case isAddition(in.Type) || isRemoval(in.Type):
			if d.Revision == 0 || len(d.Changes) != 0 {
				bad("added/removed events carry a revision and empty changes")
			}
		default:
			if d.Revision == 0 || len(d.Changes) == 0 {
				bad("change events carry a revision and at least one change")
			}
		}
	}

	// Typed fields.
	switch in.Type {
	case events.SubscriptionQuantityChanged:
		var o, n int
		if json.Unmarshal(d.Old, &o) != nil || json.Unmarshal(d.New, &n) != nil || d.Delta == nil || *d.Delta != n-o || o == n {
			bad("quantity old %s new %s delta %v: want integers and delta = new - old", d.Old, d.New, d.Delta)
		}
		if d.After.Quantity == nil || *d.After.Quantity != n {
			bad("after.quantity differs from new")
		}
	case events.SubscriptionStatusChanged:
		var o, n string
		if json.Unmarshal(d.Old, &o) != nil || json.Unmarshal(d.New, &n) != nil || o == n || n != d.After.Status {
			bad("status old %s new %s: want two different strings, new = after.status", d.Old, d.New)
		}
	case events.SubscriptionAutoRenewChanged:
		var o, n bool
		if json.Unmarshal(d.Old, &o) != nil || json.Unmarshal(d.New, &n) != nil || o == n {
			bad("auto-renew old %s new %s: want two different booleans", d.Old, d.New)
		}
	case events.SubscriptionRenewed:
		var o, n time.Time
		if json.Unmarshal(d.Old, &o) != nil || json.Unmarshal(d.New, &n) != nil || !n.After(o) {
			bad("renewed old %s new %s: want two instants, new after old", d.Old, d.New)
		}
	case events.SubscriptionScheduledChangeSet:
		if len(d.New) == 0 || d.New[0] != '{' {
			bad("scheduled-change-set without the new instructions")
		}
	case events.SubscriptionScheduledChangeCleared:
		if len(d.Old) == 0 || d.Old[0] != '{' || len(d.New) != 0 {
			bad("scheduled-change-cleared must carry old and not new")
		}
	}
	if in.Deadline {
		if d.Deadline == nil || d.Late == nil || !d.Timing.Valid() {
			bad("deadline event without deadline, late or a valid timing (%q)", d.Timing)
			return p
		}
		if *d.Late != (d.Timing == events.TimingLate) {
			bad("late %v but timing %s: want late == (timing == late)", *d.Late, d.Timing)
		}
		if in.Type == events.SubscriptionCancellationClosed {
			if has("threshold") || has("remaining") || ev.Time.Before(*d.Deadline) {
				bad("cancellation-window-closed fires after its deadline and has no threshold")
			}
			if d.Timing == events.TimingOnTime && ev.Time.Sub(*d.Deadline) > 5*time.Minute {
				bad("fired %v after the deadline but on time", ev.Time.Sub(*d.Deadline))
			}
		} else {
			th := time.Duration(d.ThresholdSeconds) * time.Second
			if d.Threshold == "" || d.Threshold != events.FormatDuration(th) || d.RemainingSeconds == nil {
				bad("threshold %q / thresholdSeconds %d / remaining %q inconsistent", d.Threshold, d.ThresholdSeconds, d.Remaining)
			} else {
				rem := d.Deadline.Sub(ev.Time)
				if diff := rem - time.Duration(*d.RemainingSeconds)*time.Second; diff < 0 || diff >= time.Second || rem > th || rem <= 0 {
					bad("remainingSeconds %d: want deadline - time (%v), within the threshold %v", *d.RemainingSeconds, rem, th)
				}
				if d.Timing == events.TimingOnTime && th-rem > 5*time.Minute {
					bad("fired %v after its threshold but on time", th-rem)
				}
			}
		}
		switch in.Type {
		case events.SubscriptionRefundClosing:
			if d.Quantity == nil || *d.Quantity < 1 {
				bad("refund-window-closing without quantity")
			}
		case events.SubscriptionRenewalApproaching, events.SubscriptionTrialEnding:
			if d.AutoRenewEnabled == nil {
				bad("without autoRenewEnabled")
			} else if d.After.AutoRenewEnabled != nil && *d.After.AutoRenewEnabled != *d.AutoRenewEnabled {
				bad("autoRenewEnabled differs from after.autoRenewEnabled")
			}
		}
	}

	// The id derives from what happened (see docs/events.md).
	if key, ok := idKey(in, d); !ok {
		bad("cannot derive the id key")
	} else {
		key.Source, key.Type = ev.Source, ev.Type
		if got := key.ID(); got != ev.ID {
			bad("id %s is not the one derived from %+v (%s)", ev.ID, key, got)
		}
	}
	return p
}

// idKey rebuilds what an event's id is documented to derive from.
func idKey(in events.Info, d *events.Data) (events.IDKey, bool) {
	switch in.Type {
	case events.OpsCycleCompleted:
		return events.IDKey{Entity: "ops/cycle", Revision: d.Cycle.Number}, true
	case events.OpsCustomerPollFailed:
		return events.IDKey{Entity: "ops/" + d.CustomerID,
			Extra: fmt.Sprintf("%d/%d", d.Failure.FirstFailedAt.UnixNano(), d.Failure.ConsecutiveFailures)}, true
	case events.OpsMassRemovalHeld:
		if d.Hold.Missing != len(d.Hold.IDs) {
			return events.IDKey{}, false // more than 100 ids: not all listed
		}
		h := sha256.New()
		for _, id := range d.Hold.IDs {
			h.Write([]byte(id + "\n"))
		}
		return events.IDKey{Entity: "ops/" + d.CustomerID + "/" + d.Hold.Resource, Extra: hex.EncodeToString(h.Sum(nil))}, true
	case events.OpsEventDropped:
		return events.IDKey{Entity: "ops/event-dropped", Extra: d.Dropped.ID}, true
	}
	id := resourceID(in, d)
	if in.Resource == events.ResourceCustomer {
		id = d.CustomerID
	}
	entity := string(in.Resource) + "/" + d.CustomerID + "/" + id
	if in.Deadline {
		return events.IDKey{Entity: entity, Deadline: *d.Deadline, Threshold: time.Duration(d.ThresholdSeconds) * time.Second}, true
	}
	return events.IDKey{Entity: entity, Revision: d.Revision}, true
}

// checkEntityOrder: the change events of one entity appear in the outbox
// (and so on the stream) in the order of their revisions.
func checkEntityOrder(t *testing.T, all []emitted) {
	t.Helper()
	last := map[string]uint64{}
	for _, e := range all {
		if e.data.Revision == 0 {
			continue
		}
		if prev := last[e.rec.Entity]; e.data.Revision < prev {
			t.Errorf("%s (outbox %d): revision %d of %s after revision %d", e.ev.Type, e.rec.Seq, e.data.Revision, e.rec.Entity, prev)
		}
		last[e.rec.Entity] = e.data.Revision
	}
}

// checkFields ties the documented data fields of each type to the schema
// and to what the events carried.
func checkFields(t *testing.T, s *schemaSet, byType map[events.Type][]emitted) {
	t.Helper()
	defs := s.doc["$defs"].(map[string]any)
	dataProps := defs["Data"].(map[string]any)["properties"].(map[string]any)
	for _, in := range events.Catalog() {
		fields := typeFields(in)
		var names, always []string
		for _, f := range fields {
			names = append(names, f.name)
			if f.always {
				always = append(always, f.name)
			}
			if _, ok := dataProps[f.name]; !ok {
				t.Errorf("%s: documented field %s is not in the schema's Data properties", in.Type, f.name)
			}
		}
		for _, f := range in.Fields {
			if !slices.Contains(names, f) {
				t.Errorf("%s: catalog field %s is not documented", in.Type, f)
			}
		}
		req := requiredOf(defs, string(in.Type), map[string]bool{})
		sort.Strings(req)
		sort.Strings(always)
		if !slices.Equal(slices.Compact(req), always) {
			t.Errorf("%s: the schema requires %v, the doc says always %v", in.Type, req, always)
		}
		for _, e := range byType[in.Type] {
			for k := range e.raw {
				if !slices.Contains(names, k) {
					t.Errorf("%s (outbox %d) carries data.%s, which docs/events.md does not list for it", in.Type, e.rec.Seq, k)
				}
			}
		}
	}
	// Every member of the Go data model is in the schema.
	for _, x := range []struct {
		def string
		typ reflect.Type
	}{
		{"Data", reflect.TypeFor[events.Data]()}, {"View", reflect.TypeFor[events.View]()},
		{"Change", reflect.TypeFor[events.Change]()}, {"CycleSummary", reflect.TypeFor[events.CycleSummary]()},
		{"PollFailure", reflect.TypeFor[events.PollFailure]()}, {"Hold", reflect.TypeFor[events.Hold]()},
	} {
		props := defs[x.def].(map[string]any)["properties"].(map[string]any)
		for _, name := range jsonNames(x.typ) {
			if _, ok := props[name]; !ok {
				t.Errorf("schema $defs/%s lacks %s.%s (json %q)", x.def, x.typ.Name(), name, name)
			}
		}
	}
}

// requiredOf collects the required members of a definition and of the
// definitions it includes through allOf.
func requiredOf(defs map[string]any, name string, seen map[string]bool) []string {
	if seen[name] {
		return nil
	}
	seen[name] = true
	def, _ := defs[name].(map[string]any)
	var out []string
	for _, r := range asSlice(def["required"]) {
		out = append(out, r.(string))
	}
	for _, sub := range asSlice(def["allOf"]) {
		if ref, ok := sub.(map[string]any)["$ref"].(string); ok {
			out = append(out, requiredOf(defs, strings.TrimPrefix(ref, "#/$defs/"), seen)...)
		}
	}
	return out
}

func asSlice(v any) []any { s, _ := v.([]any); return s }

func jsonNames(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			out = append(out, name)
		}
	}
	return out
}

// subjectMatches reports whether a NATS subject matches a filter ('*' one
// token, '>' one or more trailing tokens).
func subjectMatches(filter, subject string) bool {
	f, s := strings.Split(filter, "."), strings.Split(subject, ".")
	for i, tok := range f {
		switch {
		case tok == ">":
			return len(s) > i
		case i >= len(s):
			return false
		case tok != "*" && tok != s[i]:
			return false
		}
	}
	return len(f) == len(s)
}

// checkFilters verifies the documented subject filters against the
// subjects the events were published on.
func checkFilters(t *testing.T, out *outcome, all []emitted) {
	t.Helper()
	for _, f := range out.filters {
		n := 0
		for _, e := range all {
			got, want := subjectMatches(f.filter, e.rec.Subject), f.want(e.info, e.data)
			if got != want {
				t.Errorf("filter %s (%s) matches %s: %v, want %v", f.doc, f.filter, e.rec.Subject, got, want)
			}
			if got {
				n++
			}
		}
		if n == 0 {
			t.Errorf("filter %s matched no event", f.doc)
		}
	}
}

func firstDiff(want, got []byte) string {
	w, g := strings.Split(string(want), "\n"), strings.Split(string(got), "\n")
	for i := 0; i < max(len(w), len(g)); i++ {
		var a, b string
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			b = g[i]
		}
		if a != b {
			return fmt.Sprintf("line %d:\n  file:      %q\n  generated: %q", i+1, a, b)
		}
	}
	return "identical lines, different bytes"
}

// TestSchemaRejectsInvalidEvents mutates valid emitted events and checks
// the schema rejects each mutation for the reason it was made.
func TestSchemaRejectsInvalidEvents(t *testing.T) {
	out := scenario(t)
	schema := loadSchema(t)
	first := map[events.Type][]byte{}
	for _, rec := range out.records {
		ev, err := events.Decode(rec.Body)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := first[ev.Type]; !ok {
			first[ev.Type] = rec.Body
		}
	}
	type mutation struct {
		name string
		typ  events.Type
		edit func(ev, data map[string]any)
		// the error expected: a keyword at an instance location
		where   string
		keyword string
		detail  string // e.g. the missing property
	}
	muts := []mutation{
		{"without id", events.SubscriptionQuantityChanged, func(ev, _ map[string]any) { delete(ev, "id") }, "", "required", "id"},
		{"id not deterministic (UUIDv4)", events.SubscriptionQuantityChanged,
			func(ev, _ map[string]any) { ev["id"] = "3f6c1a52-9d1e-4b7a-8c3e-2a5b6c7d8e9f" }, "/id", "pattern", ""},
		{"type without the io.pcwatch. prefix", events.SubscriptionQuantityChanged,
			func(ev, _ map[string]any) { ev["type"] = "com.example.subscription.quantity-changed" }, "/type", "enum", ""},
		{"unknown type", events.SubscriptionQuantityChanged,
			func(ev, _ map[string]any) { ev["type"] = "io.pcwatch.subscription.seats-changed" }, "/type", "enum", ""},
		{"quantity-changed without delta", events.SubscriptionQuantityChanged,
			func(_, d map[string]any) { delete(d, "delta") }, "/data", "required", "delta"},
		{"quantity-changed with a string quantity", events.SubscriptionQuantityChanged,
			func(_, d map[string]any) { d["new"] = "15" }, "/data/new", "type", ""},
		{"cancellation-window-closing without deadline", events.SubscriptionCancellationClosing,
			func(_, d map[string]any) { delete(d, "deadline") }, "/data", "required", "deadline"},
		{"refund-window-closing without quantity", events.SubscriptionRefundClosing,
			func(_, d map[string]any) { delete(d, "quantity") }, "/data", "required", "quantity"},
		{"renewal-approaching without autoRenewEnabled", events.SubscriptionRenewalApproaching,
			func(_, d map[string]any) { delete(d, "autoRenewEnabled") }, "/data", "required", "autoRenewEnabled"},
		{"subscription event without customerId", events.SubscriptionStatusChanged,
			func(_, d map[string]any) { delete(d, "customerId") }, "/data", "required", "customerId"},
		{"removal without before", events.SubscriptionRemoved,
			func(_, d map[string]any) { delete(d, "before") }, "/data", "required", "before"},
		{"wrong dataschema", events.SubscriptionQuantityChanged,
			func(ev, _ map[string]any) {
				ev["dataschema"] = events.SchemaBase + "#" + string(events.SubscriptionUpdated)
			}, "/dataschema", "const", ""},
		{"subject of another resource", events.SubscriptionQuantityChanged,
			func(ev, _ map[string]any) { ev["subject"] = "customers/x/managedservices/Exchange" }, "/subject", "pattern", ""},
		{"time not RFC 3339", events.OpsCycleCompleted,
			func(ev, _ map[string]any) { ev["time"] = "02/03/2026 09:00" }, "/time", "format", ""},
		{"cycle summary without number", events.OpsCycleCompleted,
			func(_, d map[string]any) { delete(d["cycle"].(map[string]any), "number") }, "/data/cycle", "required", "number"},
	}
	for _, m := range muts {
		t.Run(m.name, func(t *testing.T) {
			body, ok := first[m.typ]
			if !ok {
				t.Fatalf("no %s emitted", m.typ)
			}
			var ev map[string]any
			if err := json.Unmarshal(body, &ev); err != nil {
				t.Fatal(err)
			}
			if err := schema.envelope.Validate(instance(t, body)); err != nil {
				t.Fatalf("the unmutated event is invalid: %v", err)
			}
			m.edit(ev, ev["data"].(map[string]any))
			b, _ := json.Marshal(ev)
			err := schema.envelope.Validate(instance(t, b))
			var ve *jsonschema.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("the schema accepted it (err %v):\n%s", err, b)
			}
			if !hasCause(ve, m.where, m.keyword, m.detail) {
				t.Errorf("rejected, but not for %s %s %s:\n%v", m.where, m.keyword, m.detail, err)
			}
		})
	}

	// Additional, future data fields are allowed.
	var ev map[string]any
	_ = json.Unmarshal(first[events.SubscriptionQuantityChanged], &ev)
	ev["data"].(map[string]any)["billingImpact"] = map[string]any{"currency": "EUR", "amount": 42.5}
	b, _ := json.Marshal(ev)
	if err := schema.envelope.Validate(instance(t, b)); err != nil {
		t.Errorf("an additional data field is rejected: %v", err)
	}
}

// hasCause looks for a leaf error of keyword at the instance location
// where (a JSON Pointer), naming detail when it is a required error.
func hasCause(ve *jsonschema.ValidationError, where, keyword, detail string) bool {
	if len(ve.Causes) == 0 {
		loc := ""
		for _, tok := range ve.InstanceLocation {
			loc += "/" + tok
		}
		kp := ve.ErrorKind.KeywordPath()
		if loc != where || len(kp) == 0 || kp[0] != keyword {
			return false
		}
		if r, ok := ve.ErrorKind.(*kind.Required); ok && detail != "" {
			return slices.Contains(r.Missing, detail)
		}
		return true
	}
	for _, c := range ve.Causes {
		if hasCause(c, where, keyword, detail) {
			return true
		}
	}
	return false
}
