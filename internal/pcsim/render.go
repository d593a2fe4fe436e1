package pcsim

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"time"
)

// The wire* types fix the property order and presence of every rendered
// object. Optional properties are pointers or omitempty strings so that an
// absent property is omitted, as the real API omits it, never rendered null.

type wireHeader struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

type wireLink struct {
	URI     string       `json:"uri"`
	Method  string       `json:"method"`
	Headers []wireHeader `json:"headers"`
}

// noHeaders renders as "headers": [].
var noHeaders = []wireHeader{}

func getLink(uri string) *wireLink { return &wireLink{URI: uri, Method: "GET", Headers: noHeaders} }

type wireAttributes struct {
	Etag       *string `json:"etag,omitempty"`
	ObjectType string  `json:"objectType"`
}

type wireProductType struct {
	ID          string `json:"id"`
	DisplayName string `json:"displayName"`
}

type wireSubLinks struct {
	Product            *wireLink `json:"product,omitempty"`
	Sku                *wireLink `json:"sku,omitempty"`
	Availability       *wireLink `json:"availability,omitempty"`
	Offer              *wireLink `json:"offer,omitempty"`
	ParentSubscription *wireLink `json:"parentSubscription,omitempty"`
	Self               *wireLink `json:"self"`
}

type wireRefundDetail struct {
	Quantity             int    `json:"quantity"`
	AllowedUntilDateTime string `json:"allowedUntilDateTime"`
}

type wireRefundable struct {
	TotalQuantity int                `json:"totalQuantity"`
	Details       []wireRefundDetail `json:"details"`
}

type wireNextTermProduct struct {
	ProductID      string `json:"productId"`
	SkuID          string `json:"skuId"`
	AvailabilityID string `json:"availabilityId"`
	BillingCycle   string `json:"billingCycle"`
	TermDuration   string `json:"termDuration"`
	PromotionID    string `json:"promotionId,omitempty"`
}

type wireNextTerm struct {
	Product           wireNextTermProduct `json:"product"`
	Quantity          int                 `json:"quantity"`
	CustomTermEndDate string              `json:"customTermEndDate,omitempty"`
}

// wireSub is a subscription as rendered. Property order follows the
// documented examples.
type wireSub struct {
	ID                            string           `json:"id"`
	OfferID                       string           `json:"offerId"`
	OfferName                     string           `json:"offerName"`
	FriendlyName                  string           `json:"friendlyName"`
	ProductType                   *wireProductType `json:"productType,omitempty"`
	Quantity                      int              `json:"quantity"`
	UnitType                      string           `json:"unitType"`
	ParentSubscriptionID          string           `json:"parentSubscriptionId,omitempty"`
	HasPurchasableAddons          *bool            `json:"hasPurchasableAddons,omitempty"`
	CreationDate                  string           `json:"creationDate"`
	EffectiveStartDate            string           `json:"effectiveStartDate"`
	CommitmentEndDate             string           `json:"commitmentEndDate"`
	CommitmentEndDateTime         string           `json:"commitmentEndDateTime,omitempty"`
	CancellationAllowedUntilDate  string           `json:"cancellationAllowedUntilDate,omitempty"`
	BillingCycleEndDate           string           `json:"billingCycleEndDate,omitempty"`
	BillingCycleEndDateTime       string           `json:"billingCycleEndDateTime,omitempty"`
	Status                        string           `json:"status"`
	AutoRenewEnabled              bool             `json:"autoRenewEnabled"`
	ScheduledNextTermInstructions *wireNextTerm    `json:"scheduledNextTermInstructions,omitempty"`
	IsTrial                       *bool            `json:"isTrial,omitempty"`
	BillingType                   string           `json:"billingType"`
	BillingCycle                  string           `json:"billingCycle,omitempty"`
	TermDuration                  string           `json:"termDuration,omitempty"`
	RenewalTermDuration           *string          `json:"renewalTermDuration,omitempty"`
	IsMicrosoftProduct            *bool            `json:"isMicrosoftProduct,omitempty"`
	PartnerID                     *string          `json:"partnerId,omitempty"`
	AttentionNeeded               *bool            `json:"attentionNeeded,omitempty"`
	ActionTaken                   *bool            `json:"actionTaken,omitempty"`
	ContractType                  string           `json:"contractType"`
	Links                         wireSubLinks     `json:"links"`
	PublisherName                 string           `json:"publisherName,omitempty"`
	RefundableQuantity            *wireRefundable  `json:"refundableQuantity,omitempty"`
	OrderID                       string           `json:"orderId"`
	Attributes                    wireAttributes   `json:"attributes"`

	extra []extraField // unknown properties, rendered after attributes
}

type wireCompanyProfile struct {
	TenantID    string         `json:"tenantId"`
	Domain      string         `json:"domain"`
	CompanyName string         `json:"companyName"`
	Links       wireSelfLinks  `json:"links"`
	Attributes  wireAttributes `json:"attributes"`
}

type wireSelfLinks struct {
	Self *wireLink `json:"self"`
}

type wireCustomer struct {
	ID                    string             `json:"id"`
	CommerceID            string             `json:"commerceId"`
	CompanyProfile        wireCompanyProfile `json:"companyProfile"`
	RelationshipToPartner string             `json:"relationshipToPartner"`
	AllowDelegatedAccess  bool               `json:"allowDelegatedAccess"`
	AssociatedPartnerID   string             `json:"associatedPartnerId,omitempty"`
	Links                 wireSelfLinks      `json:"links"`
	Attributes            wireAttributes     `json:"attributes"`
}

type wireManagedServiceLinks struct {
	AdminService  *wireLink `json:"adminService"`
	ServiceHealth *wireLink `json:"serviceHealth"`
	ServiceTicket *wireLink `json:"serviceTicket"`
}

type wireManagedService struct {
	ID         string                  `json:"id"`
	Name       string                  `json:"name"`
	GroupName  string                  `json:"groupName"`
	Links      wireManagedServiceLinks `json:"links"`
	Attributes wireAttributes          `json:"attributes"`
}

type wireProductLinks struct {
	Skus *wireLink `json:"skus"`
	Self *wireLink `json:"self"`
}

type wireProduct struct {
	ID                 string           `json:"id"`
	Title              string           `json:"title"`
	Description        string           `json:"description,omitempty"`
	ProductType        *wireProductType `json:"productType,omitempty"`
	IsMicrosoftProduct bool             `json:"isMicrosoftProduct"`
	PublisherName      string           `json:"publisherName,omitempty"`
	Links              wireProductLinks `json:"links"`
}

type wireCollectionLinks struct {
	Self *wireLink `json:"self"`
	Next *wireLink `json:"next,omitempty"`
}

// wireError is the documented Partner Center error body.
type wireError struct {
	Code        int      `json:"code"`
	Description string   `json:"description"`
	Data        []string `json:"data"`
	Source      string   `json:"source"`
}

// wireThrottle is the documented 429 body.
type wireThrottle struct {
	StatusCode int    `json:"statusCode"`
	Message    string `json:"message"`
}

// extraField is a property the typed model does not know (SetUnknownField).
type extraField struct {
	name  string
	value json.RawMessage // compact
}

// Time layouts as the documentation renders them.
const (
	layout7       = "2006-01-02T15:04:05.0000000Z"      // creationDate: always 7 digits
	layoutTrimmed = "2006-01-02T15:04:05.9999999Z"      // instants: trailing zeros trimmed
	layoutOffset  = "2006-01-02T15:04:05.9999999-07:00" // marketplace dates carry +00:00
)

func fmtTrimmed(t time.Time) string { return t.UTC().Format(layoutTrimmed) }

// dayStart renders t's day at 00:00:00Z (commitmentEndDate).
func dayStart(t time.Time) string { return t.UTC().Format(time.DateOnly) + "T00:00:00Z" }

// dayEnd renders t's day at 23:59:59Z (commitmentEndDateTime).
func dayEnd(t time.Time) string { return t.UTC().Format(time.DateOnly) + "T23:59:59Z" }

var (
	vTrue, vFalse = true, false
	vEmpty        = ""
)

func bptr(b bool) *bool {
	if b {
		return &vTrue
	}
	return &vFalse
}

func sptr(s string) *string {
	if s == "" {
		return &vEmpty
	}
	return &s
}

// jsonBuf writes compact JSON without HTML escaping (Partner Center does not
// escape '&' in URIs).
type jsonBuf struct {
	bytes.Buffer
	enc *json.Encoder
}

func newJSONBuf() *jsonBuf {
	b := &jsonBuf{}
	b.enc = json.NewEncoder(&b.Buffer)
	b.enc.SetEscapeHTML(false)
	return b
}

// value appends v's JSON (without the Encoder's trailing newline).
func (b *jsonBuf) value(v any) {
	if err := b.enc.Encode(v); err != nil {
		// Only wire types are encoded; they cannot fail.
		panic("pcsim: encode: " + err.Error())
	}
	b.Truncate(b.Len() - 1)
}

// sub appends a subscription, with its unknown properties after attributes.
func (b *jsonBuf) sub(w *wireSub) {
	b.value(w)
	if len(w.extra) == 0 {
		return
	}
	b.Truncate(b.Len() - 1) // the closing '}'
	for _, e := range w.extra {
		b.WriteByte(',')
		b.value(e.name)
		b.WriteByte(':')
		b.Write(e.value)
	}
	b.WriteByte('}')
}

// collection renders the Partner Center collection envelope around items,
// each written by item(i).
func (b *jsonBuf) collection(n int, item func(i int), links wireCollectionLinks) {
	b.WriteString(`{"totalCount":`)
	b.value(n)
	b.WriteString(`,"items":[`)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		item(i)
	}
	b.WriteString(`],"links":`)
	b.value(links)
	b.WriteString(`,"attributes":{"objectType":"Collection"}}`)
}

// subJSON renders one subscription as standalone JSON (for the log).
func subJSON(w *wireSub) json.RawMessage {
	b := newJSONBuf()
	b.sub(w)
	return json.RawMessage(b.Bytes())
}

// wireFields caches, for diffWire, each wireSub field's index and JSON name.
var wireFields = func() []struct {
	idx  int
	name string
} {
	t := reflect.TypeFor[wireSub]()
	var out []struct {
		idx  int
		name string
	}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		out = append(out, struct {
			idx  int
			name string
		}{i, name})
	}
	return out
}()

// diffWire lists the top-level properties whose rendering differs between a
// and b, in rendering order (unknown properties last, by name order of b then a).
func diffWire(a, b *wireSub) []string {
	va, vb := reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem()
	var out []string
	for _, f := range wireFields {
		if !reflect.DeepEqual(va.Field(f.idx).Interface(), vb.Field(f.idx).Interface()) {
			out = append(out, f.name)
		}
	}
	find := func(list []extraField, name string) (json.RawMessage, bool) {
		for _, e := range list {
			if e.name == name {
				return e.value, true
			}
		}
		return nil, false
	}
	for _, e := range b.extra {
		if old, ok := find(a.extra, e.name); !ok || !bytes.Equal(old, e.value) {
			out = append(out, e.name)
		}
	}
	for _, e := range a.extra {
		if _, ok := find(b.extra, e.name); !ok {
			out = append(out, e.name)
		}
	}
	return out
}
