package notify

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/pcwatch/pcwatch/internal/events"
)

// SampleSource is the CloudEvents source of sample events.
const SampleSource = "https://pcwatch.io/notifier/sample"

// sampleTime is the detection instant of the samples configuration checks
// render.
var sampleTime = time.Date(2026, 11, 22, 10, 2, 0, 0, time.UTC)

// Sample entities: a realistic customer and subscription.
const (
	sampleCustomerID   = "3f2b9c1e-5a7d-4e8f-9b0a-1c2d3e4f5a6b"
	sampleCustomerName = "Contoso Ltd"
	sampleSubID        = "1234abcd-9f8e-4d7c-8b6a-5e4f3d2c1b0a"
	sampleOffer        = "Microsoft 365 Business Basic"
	samplePartnerID    = "4847383"
)

// SampleEvent builds a realistic event of type t detected at at: the
// customer Contoso Ltd, a Microsoft 365 subscription, plausible old and new
// values and deadlines. `notifier test` sends these, configuration checks
// render them, and tests use them. Its id depends on t and at.
func SampleEvent(t events.Type, at time.Time) (*events.Event, error) {
	info, ok := events.Lookup(t)
	if !ok {
		return nil, fmt.Errorf("unknown event type %q (see docs/events.md)", t)
	}
	at = at.UTC()
	d := sampleData(info, at)
	key := events.IDKey{Entity: "sample/" + string(t), Extra: at.Format(time.RFC3339Nano)}
	_, ev, err := events.New(SampleSource, t, key, at, d)
	return ev, err
}

func ptr[T any](v T) *T { return &v }

func sampleSub(at time.Time) *events.View {
	start := at.AddDate(0, -11, -23).Truncate(24 * time.Hour)
	return &events.View{
		ID: sampleSubID, OfferID: "CFQ7TTC0LH18:0001", OfferName: sampleOffer, FriendlyName: "Contoso M365 Basic",
		ProductType: "OnlineServicesNCE", Quantity: ptr(10), UnitType: "Licenses", Status: "active",
		AutoRenewEnabled: ptr(true), IsTrial: ptr(false), TermDuration: "P1Y", BillingCycle: "monthly",
		CreationDate: &start, EffectiveStartDate: &start, CommitmentEndDate: ptr(start.AddDate(1, 0, 0)),
		PartnerID: samplePartnerID,
	}
}

// sample is a sample event's data being built: the base (the customer
// Contoso Ltd, and for a subscription event its Microsoft 365 subscription
// as after) and what a type's presentation changes of it.
type sample struct {
	d        *events.Data
	at       time.Time
	customer *events.View // the sample customer
	sub      *events.View // the sample subscription
}

// deadline sets a deadline left from now and the threshold that fired.
func (s *sample) deadline(left, threshold time.Duration) {
	dl := s.at.Add(left).Truncate(time.Minute)
	s.d.Deadline = &dl
	s.d.Threshold = events.FormatDuration(threshold)
	s.d.ThresholdSeconds = int64(threshold / time.Second)
	secs := int64(dl.Sub(s.at) / time.Second)
	s.d.RemainingSeconds = &secs
	s.d.Remaining = events.FormatDuration(dl.Sub(s.at))
	s.d.Timing, s.d.Late = events.TimingOnTime, ptr(false)
}

// change adds a field-level change (nil: absent).
func (s *sample) change(path string, old, new any) {
	c := events.Change{Path: path}
	if old != nil {
		c.Old = events.JSONValue(old)
	}
	if new != nil {
		c.New = events.JSONValue(new)
	}
	s.d.Changes = append(s.d.Changes, c)
}

func sampleData(info events.Info, at time.Time) *events.Data {
	s := &sample{
		d:  &events.Data{CustomerID: sampleCustomerID, CustomerName: sampleCustomerName, Revision: 7},
		at: at,
		customer: &events.View{ID: sampleCustomerID, CompanyName: sampleCustomerName, Domain: "contoso.onmicrosoft.com",
			TenantID: sampleCustomerID, RelationshipToPartner: "reseller", AllowDelegatedAccess: ptr(true)},
		sub: sampleSub(at),
	}
	if info.Resource == events.ResourceSubscription {
		s.d.SubscriptionID = sampleSubID
		s.d.After = s.sub
	}
	if p := presentations[info.Type]; p.sample != nil {
		p.sample(s)
	}
	return s.d
}

// sampleBody is SampleEvent encoded, for tests and seeds.
func sampleBody(t events.Type, at time.Time) ([]byte, error) {
	ev, err := SampleEvent(t, at)
	if err != nil {
		return nil, err
	}
	return json.Marshal(ev)
}
