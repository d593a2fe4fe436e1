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

func sampleData(info events.Info, at time.Time) *events.Data {
	d := &events.Data{CustomerID: sampleCustomerID, CustomerName: sampleCustomerName, Revision: 7}
	customer := &events.View{ID: sampleCustomerID, CompanyName: sampleCustomerName, Domain: "contoso.onmicrosoft.com",
		TenantID: sampleCustomerID, RelationshipToPartner: "reseller", AllowDelegatedAccess: ptr(true)}
	sub := sampleSub(at)
	deadline := func(left, threshold time.Duration) {
		dl := at.Add(left).Truncate(time.Minute)
		d.Deadline = &dl
		d.Threshold = events.FormatDuration(threshold)
		d.ThresholdSeconds = int64(threshold / time.Second)
		secs := int64(dl.Sub(at) / time.Second)
		d.RemainingSeconds = &secs
		d.Remaining = events.FormatDuration(dl.Sub(at))
		d.Late = ptr(false)
	}
	change := func(path string, old, new any) {
		c := events.Change{Path: path}
		if old != nil {
			c.Old = events.JSONValue(old)
		}
		if new != nil {
			c.New = events.JSONValue(new)
		}
		d.Changes = append(d.Changes, c)
	}
	if info.Resource == events.ResourceSubscription {
		d.SubscriptionID = sampleSubID
		d.After = sub
	}
	switch info.Type {
	case events.CustomerAdded:
		d.After = customer
	case events.CustomerRemoved:
		d.Before = customer
	case events.CustomerUpdated:
		customer.AllowDelegatedAccess = ptr(false)
		d.After = customer
		change("/allowDelegatedAccess", true, false)
		change("/companyProfile/companyName", "Contoso", sampleCustomerName)
	case events.SubscriptionCreated:
		sub.CreationDate, sub.EffectiveStartDate = ptr(at.Add(-time.Hour)), ptr(at.Add(-time.Hour))
		sub.CommitmentEndDate = ptr(at.AddDate(1, 0, 0).Truncate(24 * time.Hour))
		sub.CancellationAllowedUntilDate = ptr(at.Add(7 * 24 * time.Hour).Truncate(time.Minute))
	case events.SubscriptionRemoved:
		d.After, d.Before = nil, sub
	case events.SubscriptionQuantityChanged:
		sub.Quantity = ptr(10)
		d.Old, d.New, d.Delta = events.JSONValue(12), events.JSONValue(10), ptr(-2)
		change("/quantity", 12, 10)
	case events.SubscriptionStatusChanged:
		sub.Status = "suspended"
		d.Old, d.New = events.JSONValue("active"), events.JSONValue("suspended")
		change("/status", "active", "suspended")
	case events.SubscriptionAutoRenewChanged:
		sub.AutoRenewEnabled = ptr(false)
		d.Old, d.New = events.JSONValue(true), events.JSONValue(false)
		change("/autoRenewEnabled", true, false)
	case events.SubscriptionRenewed:
		old := *sub.CommitmentEndDate
		sub.CommitmentEndDate = ptr(old.AddDate(1, 0, 0))
		sub.CancellationAllowedUntilDate = ptr(old.Add(7 * 24 * time.Hour))
		d.Old, d.New = events.JSONValue(old), events.JSONValue(*sub.CommitmentEndDate)
		change("/commitmentEndDate", old, *sub.CommitmentEndDate)
	case events.SubscriptionTermChanged:
		sub.BillingCycle = "annual"
		change("/billingCycle", "monthly", "annual")
	case events.SubscriptionScheduledChangeSet:
		next := map[string]any{"product": map[string]string{"productId": "CFQ7TTC0LF8Q", "skuId": "0001"}, "quantity": 15, "termDuration": "P1Y", "billingCycle": "Monthly"}
		d.New = events.JSONValue(next)
		change("/scheduledNextTermInstructions", nil, next)
	case events.SubscriptionScheduledChangeCleared:
		prev := map[string]any{"product": map[string]string{"productId": "CFQ7TTC0LF8Q", "skuId": "0001"}, "quantity": 15, "termDuration": "P1Y"}
		d.Old = events.JSONValue(prev)
		change("/scheduledNextTermInstructions", prev, nil)
	case events.SubscriptionAttentionNeeded:
		change("/attentionNeeded", false, true)
	case events.SubscriptionUpdated:
		change("/friendlyName", "M365 Basic", "Contoso M365 Basic")
	case events.SubscriptionCancellationClosing:
		sub.OfferName = "Microsoft 365 E3"
		sub.CreationDate = ptr(at.Add(-7*24*time.Hour + 4*time.Hour))
		deadline(3*time.Hour+58*time.Minute, 4*time.Hour)
		sub.CancellationAllowedUntilDate = d.Deadline
	case events.SubscriptionCancellationClosed:
		sub.OfferName = "Microsoft 365 E3"
		dl := at.Add(-2 * time.Minute).Truncate(time.Minute)
		d.Deadline, d.Late = &dl, ptr(false)
		sub.CancellationAllowedUntilDate = &dl
	case events.SubscriptionRefundClosing:
		d.Quantity = ptr(3)
		deadline(46*time.Hour+10*time.Minute, 48*time.Hour)
	case events.SubscriptionRenewalApproaching:
		deadline(6*24*time.Hour+23*time.Hour, 7*24*time.Hour)
		sub.CommitmentEndDate = d.Deadline
		d.AutoRenewEnabled = ptr(true)
	case events.SubscriptionTrialEnding:
		sub.OfferName, sub.IsTrial, sub.AutoRenewEnabled = "Microsoft 365 E3 (Trial)", ptr(true), ptr(false)
		sub.Quantity, sub.TermDuration = ptr(25), "P1M"
		deadline(23*time.Hour+15*time.Minute, 24*time.Hour)
		sub.CommitmentEndDate = d.Deadline
		d.AutoRenewEnabled = ptr(false)
	case events.ManagedServiceAdded, events.ManagedServiceRemoved, events.ManagedServiceUpdated:
		d.ManagedServiceID = "exchange"
		ms := &events.View{ID: "exchange", Name: "Exchange Online", GroupName: "Microsoft 365"}
		switch info.Type {
		case events.ManagedServiceRemoved:
			d.Before = ms
		case events.ManagedServiceUpdated:
			d.After = ms
			change("/groupName", "Office 365", "Microsoft 365")
		default:
			d.After = ms
		}
	case events.ProductAdded, events.ProductRemoved:
		d.ProductID, d.TargetView = "CFQ7TTC0LH18", "Microsoft365"
		p := &events.View{ID: "CFQ7TTC0LH18", Title: sampleOffer}
		if info.Type == events.ProductAdded {
			d.After = p
		} else {
			d.Before = p
		}
	case events.OpsCycleCompleted:
		d.CustomerID, d.CustomerName, d.Revision = "", "", 0
		d.Cycle = &events.CycleSummary{Number: 1042, StartedAt: at.Add(-93 * time.Second), DurationSeconds: 93.4,
			CustomersTotal: 2500, CustomersOK: 2498, CustomersFailed: 2, CustomerListOK: true, EventsEmitted: 17,
			APIRequests: 2611, Throttled: 12, Retries: 14}
	case events.OpsCustomerPollFailed:
		d.Revision = 0
		d.Failure = &events.PollFailure{ConsecutiveFailures: 5, FirstFailedAt: at.Add(-25 * time.Minute), Cycle: 1042,
			LastError: "partner center GET /v1/customers/" + sampleCustomerID + "/subscriptions: HTTP 403 code 900200: the partner does not have a relationship with this customer"}
	case events.OpsMassRemovalHeld:
		d.Revision = 0
		ids := make([]string, 0, 40)
		for i := range 40 {
			ids = append(ids, fmt.Sprintf("%08x-0000-4000-8000-%012x", i+1, i+1))
		}
		d.Hold = &events.Hold{Resource: "subscription", Missing: 40, Total: 48, Share: 40.0 / 48, Threshold: 0.5, IDs: ids, Cycle: 1042}
	case events.OpsEventDropped:
		d.Revision = 0
		d.Dropped = &events.DroppedEvent{ID: "5f0c9a4e-1d2b-8c3a-9e4f-6a7b8c9d0e1f", Type: events.SubscriptionUpdated,
			Subject: "pcwatch.events.subscription.updated." + sampleCustomerID + "." + sampleSubID,
			Entity:  "subscription/" + sampleCustomerID + "/" + sampleSubID, Size: 3145728, Limit: 1048576}
	}
	return d
}

// sampleBody is SampleEvent encoded, for tests and seeds.
func sampleBody(t events.Type, at time.Time) ([]byte, error) {
	ev, err := SampleEvent(t, at)
	if err != nil {
		return nil, err
	}
	return json.Marshal(ev)
}
