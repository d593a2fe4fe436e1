package pcsim

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// The activity log (GET /v1/auditrecords): every change a partner makes
// appends an audit record, as Partner Center's "Get a record of Partner
// Center activity" and "Auditing resources" document them. See the package
// doc for which mutations have a record, and AuditConfig for the lag, the
// loss and the retention.

// Audit defaults and documented limits.
const (
	// DefaultAuditMaxRecords bounds the records retained (about 2-4 KB
	// each: a subscription update carries the subscription's JSON twice).
	DefaultAuditMaxRecords = 20000
	// AuditRetention is how far back the activity log reaches: older
	// records are dropped, and a startDate before today minus 90 days is
	// answered 400.
	AuditRetention = 90 * day
	// AuditMaxWindow is the widest endDate - startDate one query may ask.
	AuditMaxWindow = 30 * day
	// DefaultAuditPageSize and MaxAuditPageSize bound ?size=.
	DefaultAuditPageSize = 500
	MaxAuditPageSize     = 500
)

// EndpointAuditRecords is GET /v1/auditrecords, as Scope.Endpoint and
// Stats.Requests spell it.
const EndpointAuditRecords = "auditrecords"

// Operation types the simulator writes (see the package doc).
const (
	AuditOpAddCustomer              = "add_customer"
	AuditOpRemoveRelationship       = "remove_partner_customer_relationship"
	AuditOpCreateOrder              = "create_order"
	AuditOpUpdateSubscription       = "update_subscription"
	AuditOpConvertTrialSubscription = "convert_trial_subscription"
)

// The actors of the records. Explicit operations (Go calls, POST
// /admin/mutate) act as AuditExplicitUser through the partner's API
// application (App+User); random ones draw from a pool that also has an
// App-only actor (no user); Microsoft's own changes that have a record
// carry no user and the application AuditMicrosoftApp.
const (
	AuditExplicitUser = "admin@pcsimpartner.onmicrosoft.com"
	AuditMicrosoftApp = "FulfillmentService"
)

// AuditConfig configures the activity log. The zero value records every
// partner change, visible at once, up to DefaultAuditMaxRecords.
type AuditConfig struct {
	// Off records nothing: changes made while it is set never get a
	// record (records already written stay).
	Off bool `json:"off,omitempty"`
	// Lag is the business time between a change and its record becoming
	// visible to GET /v1/auditrecords. It is fixed per record when the
	// record is written: changing it does not move records already written.
	Lag time.Duration `json:"lag,omitempty"`
	// LossRate is the share of records never written, drawn from the
	// seeded generator (a log that misses changes, so that only the sweep
	// finds them).
	LossRate float64 `json:"lossRate,omitempty"`
	// OmitIDs writes records without an id, as the 2017 documented
	// example shows them (a client then deduplicates by content).
	OmitIDs bool `json:"omitIds,omitempty"`
	// MaxRecords bounds the records retained, the oldest dropped first; 0
	// means DefaultAuditMaxRecords.
	MaxRecords int `json:"maxRecords,omitempty"`
}

func (c AuditConfig) validate() error {
	switch {
	case c.Lag < 0:
		return invalid("audit lag must not be negative, got %s", c.Lag)
	case !(c.LossRate >= 0 && c.LossRate <= 1):
		return invalid("audit lossRate must be between 0 and 1, got %v", c.LossRate)
	case c.MaxRecords < 0:
		return invalid("audit maxRecords must not be negative (0 means %d), got %d", DefaultAuditMaxRecords, c.MaxRecords)
	}
	return nil
}

func (c AuditConfig) maxRecords() int {
	if c.MaxRecords <= 0 {
		return DefaultAuditMaxRecords
	}
	return c.MaxRecords
}

type auditConfigPlain AuditConfig

type auditConfigJSON struct {
	*auditConfigPlain
	Lag jsonDuration `json:"lag,omitempty"`
}

// MarshalJSON writes Lag as a Go duration string.
func (c AuditConfig) MarshalJSON() ([]byte, error) {
	p := auditConfigPlain(c)
	return json.Marshal(auditConfigJSON{&p, jsonDuration(c.Lag)})
}

// UnmarshalJSON reads Lag as a duration string or nanoseconds and refuses
// unknown properties.
func (c *AuditConfig) UnmarshalJSON(b []byte) error {
	var p auditConfigPlain
	aux := auditConfigJSON{auditConfigPlain: &p}
	if err := strictUnmarshal(b, &aux); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	p.Lag = time.Duration(aux.Lag)
	*c = AuditConfig(p)
	return nil
}

// AuditStatus is the activity log's configuration and counters.
type AuditStatus struct {
	Config    AuditConfig `json:"config"`
	PartnerID string      `json:"partnerId"` // the partnerId of every record
	Retained  int         `json:"retained"`  // records held
	Visible   int         `json:"visible"`   // of those, visible now (past their lag)
	Written   uint64      `json:"written"`   // records ever written
	Lost      uint64      `json:"lost"`      // records not written (LossRate)
	Dropped   uint64      `json:"dropped"`   // records dropped to stay within MaxRecords
	Expired   uint64      `json:"expired"`   // records dropped past the 90 days
	Oldest    *time.Time  `json:"oldest,omitempty"`
	Newest    *time.Time  `json:"newest,omitempty"`
}

// AuditLogEntry is one record as written, with what the API does not
// show: when it becomes visible and which mutation it records (the chaos
// suite's link from a hint to the change it announces).
type AuditLogEntry struct {
	Seq           uint64          `json:"seq"`         // 1, 2, 3, ... in write order
	MutationSeq   uint64          `json:"mutationSeq"` // Mutation.Seq of the change
	OperationDate time.Time       `json:"operationDate"`
	VisibleAt     time.Time       `json:"visibleAt"`
	CustomerID    string          `json:"customerId"`
	OperationType string          `json:"operationType"`
	Record        json.RawMessage `json:"record"` // as GET /v1/auditrecords renders it
}

// auditEntry is one retained record.
type auditEntry struct {
	seq      uint64
	mutSeq   uint64
	at       time.Time // operationDate
	visible  time.Time
	day      string // yyyy-mm-dd of at
	customer string // lower case
	name     string
	resType  string
	op       string
	json     []byte
}

// auditActor is who a record says acted.
type auditActor struct {
	upn, app string
}

// auditState is the activity log. Guarded by Sim.mu.
type auditState struct {
	cfg       AuditConfig
	recs      []auditEntry // ascending seq (and operationDate)
	seq       uint64
	lastAt    time.Time // operationDate of the newest record
	lastTicks int64     // the ticks in the newest record's id
	rng       *rand.Rand
	partner   string
	api       auditActor   // explicit operations
	pool      []auditActor // random operations
	written   uint64
	lost      uint64
	dropped   uint64
	expired   uint64
	noise     uint64 // hostile noise records made
}

func newAuditState(seed int64, cfg AuditConfig) auditState {
	r := seeded(seed, 0x6175646974)
	if cfg.validate() != nil {
		cfg = AuditConfig{Off: cfg.Off, OmitIDs: cfg.OmitIDs}
	}
	a := auditState{cfg: cfg, rng: r, partner: guid(r)}
	apiApp, portalApp := guid(r), guid(r)
	a.api = auditActor{upn: AuditExplicitUser, app: apiApp}
	a.pool = []auditActor{
		a.api,
		{upn: "sales.agent@pcsimpartner.onmicrosoft.com", app: portalApp},
		{upn: "billing@pcsimpartner.onmicrosoft.com", app: "Partner Center Native App"},
		{app: apiApp}, // App-only: no user
	}
	return a
}

// SetAudit replaces the activity log's configuration. It fails with
// ErrInvalid for a negative lag or maxRecords or a lossRate outside [0, 1];
// the configuration in force then stays. A smaller MaxRecords drops the
// oldest records at once.
func (s *Sim) SetAudit(c AuditConfig) error {
	if err := c.validate(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.audit.cfg = c
	s.audit.trim()
	return nil
}

// CurrentAudit returns the activity log's configuration.
func (s *Sim) CurrentAudit() AuditConfig {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.audit.cfg
}

// AuditStatus returns the activity log's configuration and counters (after
// applying due transitions and dropping expired records).
func (s *Sim) AuditStatus() AuditStatus {
	now := s.lock()
	defer s.mu.Unlock()
	a := &s.audit
	a.expire(now)
	st := AuditStatus{Config: a.cfg, PartnerID: a.partner, Retained: len(a.recs), Written: a.written,
		Lost: a.lost, Dropped: a.dropped, Expired: a.expired}
	for i := range a.recs {
		if !a.recs[i].visible.After(now) {
			st.Visible++
		}
	}
	if n := len(a.recs); n > 0 {
		st.Oldest, st.Newest = tptr(a.recs[0].at), tptr(a.recs[n-1].at)
	}
	return st
}

// AuditLog returns the retained records with Seq > sinceSeq, visible or
// not, oldest first.
func (s *Sim) AuditLog(sinceSeq uint64) []AuditLogEntry {
	now := s.lock()
	defer s.mu.Unlock()
	s.audit.expire(now)
	out := []AuditLogEntry{}
	for i := range s.audit.recs {
		e := &s.audit.recs[i]
		if e.seq <= sinceSeq {
			continue
		}
		out = append(out, AuditLogEntry{Seq: e.seq, MutationSeq: e.mutSeq, OperationDate: e.at, VisibleAt: e.visible,
			CustomerID: e.customer, OperationType: e.op, Record: append(json.RawMessage(nil), e.json...)})
	}
	return out
}

// ClearAudit drops every retained record (the counters stay).
func (s *Sim) ClearAudit() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.audit.recs = nil
}

// trim drops the oldest records beyond MaxRecords.
func (a *auditState) trim() {
	if n := len(a.recs) - a.cfg.maxRecords(); n > 0 {
		a.dropped += uint64(n)
		a.drop(n)
	}
}

// expire drops the records older than the retention (by operationDate
// day, as queries see them).
func (a *auditState) expire(now time.Time) {
	oldest := midnight(now).Add(-AuditRetention).Format(time.DateOnly)
	n := 0
	for n < len(a.recs) && a.recs[n].day < oldest {
		n++
	}
	if n > 0 {
		a.expired += uint64(n)
		a.drop(n)
	}
}

// drop removes the n oldest records, reallocating once most of the backing
// array is dead so that the memory of dropped records is released.
func (a *auditState) drop(n int) {
	for i := 0; i < n; i++ {
		a.recs[i] = auditEntry{}
	}
	a.recs = a.recs[n:]
	if cap(a.recs) > 2*len(a.recs)+1024 {
		a.recs = append(make([]auditEntry, 0, len(a.recs)+len(a.recs)/4+16), a.recs...)
	}
}

// ---- writing records; Sim.mu held ----

// auditMutation writes the audit record of m, if its change has one.
// before and after are the renderings around a subscription change (nil
// otherwise).
func (s *Sim) auditMutation(m *Mutation, before, after *wireSub) {
	a := &s.audit
	if a.cfg.Off {
		return
	}
	rec, ok := s.auditRecordFor(m, before, after)
	if !ok {
		return
	}
	if a.cfg.LossRate > 0 && a.rng.Float64() < a.cfg.LossRate {
		a.lost++
		return
	}
	// Records are written in mutation order and operationDate never
	// moves back (queries rely on days ascending with seq); the id's ticks
	// move forward by one when two changes share an instant, so that ids
	// stay unique.
	at := tick100ns(m.At)
	if at.Before(a.lastAt) {
		at = a.lastAt
	}
	a.lastAt = at
	ticks := max(dotnetTicks(at), a.lastTicks+1)
	a.lastTicks = ticks
	rec.OperationDate = at.Format(layout7)
	rec.PartnerID = a.partner
	rec.Participants = []string{a.partner}
	rec.OriginalCorrelationID = guid(a.rng)
	rec.OperationStatus = "succeeded"
	rec.Attributes = wireAttributes{ObjectType: "AuditRecord"}
	if !a.cfg.OmitIDs {
		res := strings.ToLower(rec.resourceID)
		if res != "" {
			res += "_"
		}
		rec.ID = a.partner + "_" + rec.CustomerID + "_" + res + strings.ReplaceAll(rec.OperationType, "_", "") +
			"_" + strconv.FormatInt(ticks, 10)
	}
	a.seq++
	a.written++
	a.recs = append(a.recs, auditEntry{seq: a.seq, mutSeq: m.Seq, at: at, visible: at.Add(a.cfg.Lag),
		day: at.Format(time.DateOnly), customer: strings.ToLower(rec.CustomerID), name: rec.CustomerName,
		resType: rec.ResourceType, op: rec.OperationType, json: rawJSON(rec)})
	a.expire(s.Now())
	a.trim()
}

// dotnetTicks is t in .NET ticks (100ns since 0001-01-01), the suffix of
// documented record ids.
func dotnetTicks(t time.Time) int64 {
	const unixEpochTicks = 621355968000000000
	return t.UnixNano()/100 + unixEpochTicks
}

// actor returns who performed a change of the current cause.
func (s *Sim) auditActor() auditActor {
	a := &s.audit
	if s.cause == CauseRandom {
		return a.pool[a.rng.IntN(len(a.pool))]
	}
	return a.api
}

// auditRecordFor builds the record of m (without the fields every record
// shares), or reports that the change has none: Microsoft's lifecycle
// changes (renewals, expiry, refund windows, billing periods), its flags
// (attentionNeeded, undocumented properties), subscriptions disappearing
// from the listing, managed services and the hostile mode's changes.
func (s *Sim) auditRecordFor(m *Mutation, before, after *wireSub) (*wireAuditRecord, bool) {
	partner := s.cause == CauseExplicit || s.cause == CauseRandom
	var actor auditActor
	switch {
	case partner:
		actor = s.auditActor()
	case s.cause == CauseLifecycle && m.Op == "subscription.trialconverted":
		actor = auditActor{app: AuditMicrosoftApp}
	default:
		return nil, false
	}
	rec := &wireAuditRecord{CustomerID: m.CustomerID, UserPrincipalName: actor.upn, ApplicationID: actor.app,
		CustomizedData: []wireKeyValue{}}
	c := s.byID[strings.ToLower(m.CustomerID)]
	if c != nil {
		rec.CustomerName = c.name
	}
	switch m.Op {
	case "customer.added":
		if c == nil {
			return nil, false
		}
		rec.ResourceType, rec.OperationType, rec.resourceID = "customer", AuditOpAddCustomer, "customer"
		rec.ResourceNewValue = pascalJSON(rawJSON(c.wire()))
		rec.CustomizedData = kvs("PrimaryDomainName", c.domain, "Relationship", "Reseller")
	case "customer.removed":
		old, _ := m.Old.(json.RawMessage)
		var w wireCustomer
		_ = json.Unmarshal(old, &w)
		rec.CustomerName = w.CompanyProfile.CompanyName
		rec.ResourceType, rec.OperationType = "partner_customer_relationship", AuditOpRemoveRelationship
		rec.ResourceOldValue = pascalJSON(old)
	case "subscription.created":
		if c == nil {
			return nil, false
		}
		_, sub := c.findSub(m.ResourceID)
		if sub == nil {
			return nil, false
		}
		w := sub.wire(true)
		rec.ResourceType, rec.OperationType, rec.resourceID = "order", AuditOpCreateOrder, sub.orderID
		rec.ResourceNewValue = string(rawJSON(orderOf(sub, w)))
		var onRecord *string
		if sub.partnerID != "" {
			onRecord = &sub.partnerID
		}
		rec.CustomizedData = append(kvs("OrderId", sub.orderID, "BillingCycle", titleCycle(sub.billMonths),
			"OfferId-0", w.OfferID, "SubscriptionId-0", sub.id, "SubscriptionName-0", sub.friendly,
			"Quantity-0", strconv.Itoa(sub.quantity)), wireKeyValue{Key: "PartnerOnRecord-0", Value: onRecord})
	case "subscription.quantity", "subscription.autorenew", "subscription.friendlyname",
		"subscription.scheduled", "subscription.status", "subscription.trialconverted":
		if before == nil || after == nil || (!partner && m.Op != "subscription.trialconverted") {
			return nil, false
		}
		rec.ResourceType, rec.OperationType, rec.resourceID = "subscription", AuditOpUpdateSubscription, m.ResourceID
		if m.Op == "subscription.trialconverted" {
			rec.OperationType = AuditOpConvertTrialSubscription
		}
		rec.ResourceOldValue = pascalJSON(subJSON(before))
		rec.ResourceNewValue = pascalJSON(subJSON(after))
		rec.CustomizedData = kvs("SubscriptionId", m.ResourceID, "OfferId", after.OfferID, "SubscriptionName", after.FriendlyName)
	default:
		return nil, false
	}
	return rec, true
}

// kvs makes customizedData from key, value pairs.
func kvs(pairs ...string) []wireKeyValue {
	out := make([]wireKeyValue, 0, len(pairs)/2)
	for i := 0; i+1 < len(pairs); i += 2 {
		v := pairs[i+1]
		out = append(out, wireKeyValue{Key: pairs[i], Value: &v})
	}
	return out
}

// wireAuditRecord is an audit record as rendered, in the documented
// property order (resourceOldValue, never shown there, before
// resourceNewValue).
type wireAuditRecord struct {
	ID                    string         `json:"id,omitempty"`
	PartnerID             string         `json:"partnerId"`
	Participants          []string       `json:"participants"`
	CustomerID            string         `json:"customerId"`
	CustomerName          string         `json:"customerName,omitempty"`
	UserPrincipalName     string         `json:"userPrincipalName,omitempty"`
	ApplicationID         string         `json:"applicationId,omitempty"`
	ResourceType          string         `json:"resourceType"`
	ResourceOldValue      string         `json:"resourceOldValue,omitempty"`
	ResourceNewValue      string         `json:"resourceNewValue,omitempty"`
	OperationType         string         `json:"operationType"`
	OriginalCorrelationID string         `json:"originalCorrelationId,omitempty"`
	OperationDate         string         `json:"operationDate"`
	OperationStatus       string         `json:"operationStatus"`
	CustomizedData        []wireKeyValue `json:"customizedData"`
	Attributes            wireAttributes `json:"attributes"`

	resourceID string // the id's resource part
}

type wireKeyValue struct {
	Key   string  `json:"key"`
	Value *string `json:"value"`
}

// wireOrder is the order a create_order record carries in
// resourceNewValue, PascalCase as documented.
type wireOrder struct {
	ID                  string          `json:"Id"`
	ReferenceCustomerID string          `json:"ReferenceCustomerId"`
	BillingCycle        string          `json:"BillingCycle"`
	CurrencyCode        string          `json:"CurrencyCode"`
	LineItems           []wireOrderLine `json:"LineItems"`
	CreationDate        string          `json:"CreationDate"`
	Status              string          `json:"Status"`
	TransactionType     string          `json:"TransactionType"`
	Attributes          struct {
		ObjectType string `json:"ObjectType"`
	} `json:"Attributes"`
}

type wireOrderLine struct {
	LineItemNumber       int     `json:"LineItemNumber"`
	OfferID              string  `json:"OfferId"`
	SubscriptionID       string  `json:"SubscriptionId"`
	ParentSubscriptionID *string `json:"ParentSubscriptionId"`
	TermDuration         string  `json:"TermDuration,omitempty"`
	TransactionType      string  `json:"TransactionType"`
	FriendlyName         string  `json:"FriendlyName"`
	Quantity             int     `json:"Quantity"`
	PartnerIDOnRecord    *string `json:"PartnerIdOnRecord"`
}

func orderOf(sub *subscription, w *wireSub) wireOrder {
	o := wireOrder{ID: sub.orderID, ReferenceCustomerID: sub.cust.id, BillingCycle: cycleName(sub.billMonths),
		CurrencyCode: "USD", CreationDate: sub.created.Format(layout7), Status: "completed", TransactionType: "UserPurchase"}
	line := wireOrderLine{OfferID: w.OfferID, SubscriptionID: sub.id, TermDuration: w.TermDuration,
		TransactionType: "New", FriendlyName: sub.friendly, Quantity: sub.quantity}
	if sub.partnerID != "" {
		p := sub.partnerID
		line.PartnerIDOnRecord = &p
	}
	o.LineItems = []wireOrderLine{line}
	o.Attributes.ObjectType = "Order"
	return o
}

// pascalJSON re-renders a JSON document with every property name's first
// letter in upper case, order and values kept: the form in which the
// documented records carry resources (Partner Center serialises its .NET
// models there).
func pascalJSON(raw []byte) string {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	b := newJSONBuf()
	if err := pascalValue(dec, b); err != nil {
		return string(raw) // only the simulator's own renderings get here
	}
	return b.String()
}

func pascalValue(dec *json.Decoder, b *jsonBuf) error {
	t, err := dec.Token()
	if err != nil {
		return err
	}
	switch v := t.(type) {
	case json.Delim:
		open, end := byte('{'), json.Delim('}')
		if v == '[' {
			open, end = '[', ']'
		}
		b.WriteByte(open)
		for i := 0; dec.More(); i++ {
			if i > 0 {
				b.WriteByte(',')
			}
			if open == '{' {
				kt, err := dec.Token()
				if err != nil {
					return err
				}
				k, _ := kt.(string)
				if r, n := utf8.DecodeRuneInString(k); n > 0 {
					k = string(unicode.ToUpper(r)) + k[n:]
				}
				b.value(k)
				b.WriteByte(':')
			}
			if err := pascalValue(dec, b); err != nil {
				return err
			}
		}
		if t, err := dec.Token(); err != nil || t != end {
			return errors.New("unbalanced JSON")
		}
		b.WriteByte(byte(end))
	case json.Number:
		b.WriteString(v.String())
	case nil:
		b.WriteString("null")
	default:
		b.value(v)
	}
	return nil
}

// ---- serving GET /v1/auditrecords; Sim.mu held ----

// auditQuery is one query, as the first request states it and its
// continuation token carries it.
type auditQuery struct {
	Start  string       `json:"s"` // yyyy-mm-dd
	End    string       `json:"e"`
	Filter *auditFilter `json:"f,omitempty"`
	Size   int          `json:"n"`
	Before uint64       `json:"b,omitempty"` // continuation: records with seq < Before
}

// auditFilter is the documented filter object.
type auditFilter struct {
	Field    string `json:"Field"`
	Value    string `json:"Value"`
	Operator string `json:"Operator"`
}

// Filter fields and operators, as the documentation spells them (compared
// case-insensitively).
var (
	auditFilterFields    = []string{"CompanyName", "CustomerId", "ResourceType"}
	auditFilterOperators = []string{"substring", "equals", "starts_with"}
)

func (f *auditFilter) match(e *auditEntry) bool {
	if f == nil {
		return true
	}
	var have string
	switch strings.ToLower(f.Field) {
	case "companyname":
		have = e.name
	case "customerid":
		have = e.customer
	case "resourcetype":
		// The documentation's values are the SDK's ResourceType names
		// ("Subscription"); records spell them snake case.
		have = strings.ReplaceAll(e.resType, "_", "")
		want := strings.ReplaceAll(f.Value, "_", "")
		return compareFold(have, want, f.Operator)
	}
	return compareFold(have, f.Value, f.Operator)
}

func compareFold(have, want, op string) bool {
	have, want = strings.ToLower(have), strings.ToLower(want)
	switch strings.ToLower(strings.ReplaceAll(op, "_", "")) {
	case "substring":
		return strings.Contains(have, want)
	case "startswith":
		return strings.HasPrefix(have, want)
	}
	return have == want
}

// parseAuditDay reads a startDate or endDate: yyyy-mm-dd as documented,
// or the date-times the SDKs send ("6/1/2017 12:00:00 AM", RFC 3339);
// only the day counts.
func parseAuditDay(v string) (time.Time, bool) {
	v = strings.TrimSpace(v)
	for _, layout := range []string{time.DateOnly, time.RFC3339Nano, "2006-01-02T15:04:05", "1/2/2006 3:04:05 PM",
		"01/02/2006 15:04:05", "1/2/2006"} {
		if t, err := time.Parse(layout, v); err == nil {
			y, m, d := t.Date()
			return time.Date(y, m, d, 0, 0, 0, 0, time.UTC), true
		}
	}
	return time.Time{}, false
}

func auditBad(msg string) (int, []byte) {
	return http.StatusBadRequest, errorBody(http.StatusBadRequest, msg)
}

// parseAuditQuery reads the query of a first request, applying the
// documented defaults and limits against today (the business day).
func parseAuditQuery(q url.Values, now time.Time) (auditQuery, int, []byte) {
	today := midnight(now)
	var aq auditQuery
	start := today.Add(-AuditMaxWindow)
	if v := q.Get("startDate"); v != "" {
		t, ok := parseAuditDay(v)
		if !ok {
			st, body := auditBad("The startDate '" + v + "' is not a date; use yyyy-mm-dd.")
			return aq, st, body
		}
		start = t
	}
	if oldest := today.Add(-AuditRetention); start.Before(oldest) {
		st, body := auditBad("The startDate " + start.Format(time.DateOnly) + " is more than 90 days ago; activity log data is available from " + oldest.Format(time.DateOnly) + " on.")
		return aq, st, body
	}
	end := start.Add(AuditMaxWindow)
	if end.After(today) {
		end = today
	}
	if end.Before(start) {
		end = start
	}
	if v := q.Get("endDate"); v != "" {
		t, ok := parseAuditDay(v)
		if !ok {
			st, body := auditBad("The endDate '" + v + "' is not a date; use yyyy-mm-dd.")
			return aq, st, body
		}
		end = t
	}
	if end.Before(start) {
		st, body := auditBad("The endDate " + end.Format(time.DateOnly) + " is before the startDate " + start.Format(time.DateOnly) + ".")
		return aq, st, body
	}
	if end.Sub(start) > AuditMaxWindow {
		st, body := auditBad("The date range " + start.Format(time.DateOnly) + " to " + end.Format(time.DateOnly) + " is wider than the maximum window of 30 days.")
		return aq, st, body
	}
	aq.Start, aq.End = start.Format(time.DateOnly), end.Format(time.DateOnly)
	aq.Size = DefaultAuditPageSize
	if v := q.Get("size"); v != "" || q.Has("size") {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			st, body := auditBad("The size parameter must be a positive integer (at most 500), got '" + v + "'.")
			return aq, st, body
		}
		aq.Size = min(n, MaxAuditPageSize)
	}
	if v := q.Get("filter"); v != "" {
		var f auditFilter
		dec := json.NewDecoder(strings.NewReader(v))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&f); err != nil || dec.More() {
			st, body := auditBad("The filter must be a JSON object {\"Field\":...,\"Value\":...,\"Operator\":...}: " + fmt.Sprint(err))
			return aq, st, body
		}
		if !containsFold(auditFilterFields, f.Field) {
			st, body := auditBad("The filter field '" + f.Field + "' is not supported; use " + strings.Join(auditFilterFields, ", ") + ".")
			return aq, st, body
		}
		if !containsFold(auditFilterOperators, f.Operator) {
			st, body := auditBad("The filter operator '" + f.Operator + "' is not supported; use " + strings.Join(auditFilterOperators, ", ") + ".")
			return aq, st, body
		}
		aq.Filter = &f
	}
	return aq, 0, nil
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// tokenAudit is the continuation token version of an audit records page;
// decodeTokenV refuses it, so a customers continuation cannot be forged
// from one.
const tokenAudit = 3

func (s *Sim) encodeAuditToken(q auditQuery) string {
	js, _ := json.Marshal(q) // strings and numbers: cannot fail
	payload := append([]byte{tokenAudit}, js...)
	m := hmac.New(sha256.New, s.tokenKey)
	m.Write(payload)
	return base64.RawURLEncoding.EncodeToString(m.Sum(payload)[:len(payload)+16])
}

func (s *Sim) decodeAuditToken(tok string) (auditQuery, bool) {
	var q auditQuery
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(raw) < 18 || raw[0] != tokenAudit {
		return q, false
	}
	payload, sum := raw[:len(raw)-16], raw[len(raw)-16:]
	m := hmac.New(sha256.New, s.tokenKey)
	m.Write(payload)
	if !hmac.Equal(m.Sum(nil)[:16], sum) {
		return q, false
	}
	if json.Unmarshal(payload[1:], &q) != nil || q.Size <= 0 || q.Before == 0 {
		return q, false
	}
	return q, true
}

// selfURI renders the query as the documented links do (without /v1).
func (q auditQuery) selfURI() string {
	v := "/auditrecords?startDate=" + q.Start + "&endDate=" + q.End + "&size=" + strconv.Itoa(q.Size)
	if q.Filter != nil {
		f, _ := json.Marshal(q.Filter)
		v += "&filter=" + url.QueryEscape(string(f))
	}
	return v
}

// listAudit serves one page of GET /v1/auditrecords: the visible records of
// the query's days that match its filter, newest first, Size at a time.
// Lock held.
func (s *Sim) listAudit(b *jsonBuf, r *http.Request, now time.Time, hp *hostilePlan) (int, []byte) {
	q := r.URL.Query()
	var aq auditQuery
	if seek := q.Get("seekOperation"); seek != "" {
		if !strings.EqualFold(seek, "Next") {
			return auditBad("seekOperation '" + seek + "' is not supported; use Next.")
		}
		tok := r.Header.Get("MS-ContinuationToken")
		if tok == "" {
			return auditBad("seekOperation=Next requires the MS-ContinuationToken header.")
		}
		var ok bool
		if aq, ok = s.decodeAuditToken(tok); !ok {
			return auditBad("The continuation token is invalid.")
		}
	} else {
		var st int
		var body []byte
		if aq, st, body = parseAuditQuery(q, now); st != 0 {
			return st, body
		}
	}
	a := &s.audit
	a.expire(now)
	var picked []*auditEntry
	for i := len(a.recs) - 1; i >= 0 && len(picked) <= aq.Size; i-- {
		e := &a.recs[i]
		if e.day < aq.Start {
			break // operationDate only moves forward with seq
		}
		if aq.Before > 0 && e.seq >= aq.Before || e.day > aq.End || e.visible.After(now) || !aq.Filter.match(e) {
			continue
		}
		picked = append(picked, e)
	}
	more := len(picked) > aq.Size
	if more {
		picked = picked[:aq.Size]
	}
	items := make([][]byte, len(picked), len(picked)+2)
	for i, e := range picked {
		items[i] = e.json
	}
	if hp.auditNoise != nil {
		items = append(items, s.auditNoise(hp.auditNoise, now)...)
	}
	self := aq.selfURI()
	links := wireCollectionLinks{Self: getLink(self)}
	var tok string
	if more {
		next := aq
		next.Before = picked[len(picked)-1].seq
		tok = s.encodeAuditToken(next)
		links.Next = &wireLink{URI: self + "&seekOperation=Next", Method: "GET",
			Headers: []wireHeader{{Key: "MS-ContinuationToken", Value: tok}}}
	}
	b.WriteString(`{"totalCount":`)
	b.value(len(items))
	b.WriteString(`,"items":[`)
	for i, it := range items {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(it)
	}
	b.WriteByte(']')
	if tok != "" {
		b.WriteString(`,"continuationToken":`)
		b.value(tok)
	}
	b.WriteString(`,"links":`)
	b.value(links)
	b.WriteString(`,"attributes":{"objectType":"Collection"}}`)
	return http.StatusOK, b.Bytes()
}

// AuditNoise is a hostile rule: every audit records page also carries
// records a client must count and skip, never act on. They are not in the
// activity log (AuditLog) and change nothing.
type AuditNoise struct {
	// UnknownCustomers adds an update_subscription record for a customer
	// (and subscription) that does not exist.
	UnknownCustomers bool `json:"unknownCustomers,omitempty"`
	// UnknownOperations adds a record of an operation type Partner Center
	// does not document, for a customer that exists.
	UnknownOperations bool `json:"unknownOperations,omitempty"`
}

// auditNoise renders the noise records of one page. Lock held.
func (s *Sim) auditNoise(n *AuditNoise, now time.Time) [][]byte {
	a := &s.audit
	var out [][]byte
	mk := func(cust, name, op, resType, subID string) {
		a.noise++
		r := seeded(s.opts.Seed, 0x6e6f697365<<16|a.noise)
		at := tick100ns(now)
		rec := wireAuditRecord{PartnerID: a.partner, Participants: []string{a.partner}, CustomerID: cust, CustomerName: name,
			UserPrincipalName: a.api.upn, ApplicationID: a.api.app, ResourceType: resType, OperationType: op,
			OriginalCorrelationID: guid(r), OperationDate: at.Format(layout7), OperationStatus: "succeeded",
			CustomizedData: []wireKeyValue{}, Attributes: wireAttributes{ObjectType: "AuditRecord"}}
		rec.ID = a.partner + "_" + cust + "_" + strings.ReplaceAll(op, "_", "") + "_" + strconv.FormatInt(dotnetTicks(at), 10) +
			"_noise" + strconv.FormatUint(a.noise, 10)
		if subID != "" {
			rec.CustomizedData = kvs("SubscriptionId", subID)
		}
		out = append(out, rawJSON(rec))
	}
	if n.UnknownCustomers {
		r := seeded(s.opts.Seed, 0x756e6b6e<<16|a.noise)
		mk(guid(r), "Nobody Ltd", AuditOpUpdateSubscription, "subscription", guid(r))
	}
	if n.UnknownOperations && len(s.custs) > 0 {
		c := s.custs[int(a.noise)%len(s.custs)]
		mk(c.id, c.name, "pcsim_undocumented_operation", "pcsim_resource", "")
	}
	if len(out) > 0 {
		s.noteFault("hostile-audit-noise") // fmu is taken after mu, never the other way round
	}
	return out
}
