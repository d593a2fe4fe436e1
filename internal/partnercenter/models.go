package partnercenter

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
)

// Every entity keeps the JSON object it was decoded from in Raw, next to its
// typed view. The differ works on Raw, so fields Microsoft adds later are
// neither lost nor invisible. Property names are matched case-insensitively
// (encoding/json does so), which covers the PascalCase bodies some
// documented responses use.

// Header is one header a link asks the caller to send, e.g. the
// MS-ContinuationToken of a next-page link.
type Header struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Link is a Partner Center hypermedia link.
type Link struct {
	URI     string   `json:"uri"`
	Method  string   `json:"method,omitempty"`
	Headers []Header `json:"headers,omitempty"`
}

// Attributes is the attributes object most resources carry.
type Attributes struct {
	Etag       string `json:"etag,omitempty"`
	ObjectType string `json:"objectType,omitempty"`
}

// CollectionLinks are the paging links of a collection.
type CollectionLinks struct {
	Self     *Link `json:"self,omitempty"`
	Next     *Link `json:"next,omitempty"`
	Previous *Link `json:"previous,omitempty"`
}

// Collection is the envelope of every list response. TotalCount is the
// number of items on this page for customers (keyset-paged) and the number
// of all items for the unpaged listings; documented examples show a
// totalCount larger than their (abridged) items, so only "no items although
// totalCount > 0" is treated as malformed.
//
// Decoding a Collection with encoding/json accepts any JSON (null, {}, ...)
// as an empty collection; the client decodes list responses with its own
// stricter reader, which refuses whatever is not a collection.
type Collection[T any] struct {
	TotalCount int             `json:"totalCount"`
	Items      []T             `json:"items"`
	Links      CollectionLinks `json:"links"`
	Attributes Attributes      `json:"attributes"`
}

// CompanyProfile is a customer's company profile.
type CompanyProfile struct {
	TenantID    string `json:"tenantId"`
	Domain      string `json:"domain"`
	CompanyName string `json:"companyName"`
}

// Address is a postal address.
type Address struct {
	Country      string `json:"country,omitempty"`
	Region       string `json:"region,omitempty"`
	City         string `json:"city,omitempty"`
	State        string `json:"state,omitempty"`
	AddressLine1 string `json:"addressLine1,omitempty"`
	AddressLine2 string `json:"addressLine2,omitempty"`
	PostalCode   string `json:"postalCode,omitempty"`
	FirstName    string `json:"firstName,omitempty"`
	LastName     string `json:"lastName,omitempty"`
	PhoneNumber  string `json:"phoneNumber,omitempty"`
}

// BillingProfile is a customer's billing profile, present on some responses.
type BillingProfile struct {
	ID             string   `json:"id,omitempty"`
	FirstName      string   `json:"firstName,omitempty"`
	LastName       string   `json:"lastName,omitempty"`
	Email          string   `json:"email,omitempty"`
	Culture        string   `json:"culture,omitempty"`
	Language       string   `json:"language,omitempty"`
	CompanyName    string   `json:"companyName,omitempty"`
	DefaultAddress *Address `json:"defaultAddress,omitempty"`
}

// Customer is a customer of the partner.
type Customer struct {
	ID                    string                `json:"id"`
	CommerceID            string                `json:"commerceId,omitempty"`
	CompanyProfile        CompanyProfile        `json:"companyProfile"`
	BillingProfile        *BillingProfile       `json:"billingProfile,omitempty"`
	RelationshipToPartner RelationshipToPartner `json:"relationshipToPartner"`
	AllowDelegatedAccess  *bool                 `json:"allowDelegatedAccess,omitempty"`
	AssociatedPartnerID   string                `json:"associatedPartnerId,omitempty"`
	Links                 map[string]Link       `json:"links,omitempty"`
	Attributes            Attributes            `json:"attributes"`

	Raw json.RawMessage `json:"-"` // the object as received
}

// UnmarshalJSON decodes the typed view and keeps a copy of the raw object.
func (c *Customer) UnmarshalJSON(b []byte) error {
	type plain Customer
	if err := json.Unmarshal(b, (*plain)(c)); err != nil {
		return err
	}
	c.Raw = append(json.RawMessage(nil), b...)
	return nil
}

// ProductType classifies a subscription or product, e.g.
// {id: Azure, subType: {id: SavingsPlan}}.
type ProductType struct {
	ID          string   `json:"id"`
	DisplayName string   `json:"displayName,omitempty"`
	SubType     *SubType `json:"subType,omitempty"`
}

// SubType refines a ProductType. The documentation sends it as an object
// {id, displayName}; a bare string is read as its id.
type SubType struct {
	ID          string `json:"id"`
	DisplayName string `json:"displayName,omitempty"`
}

// UnmarshalJSON accepts an object or a string.
func (s *SubType) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '{' {
		type plain SubType
		return json.Unmarshal(b, (*plain)(s))
	}
	v, err := unmarshalEnum(b)
	*s = SubType{ID: v}
	return err
}

// RefundableDetail is one batch of seats that can still be refunded.
type RefundableDetail struct {
	Quantity             int  `json:"quantity"`
	AllowedUntilDateTime Time `json:"allowedUntilDateTime"`
}

// RefundableQuantity is documented on get-subscription-by-id for NCE
// subscriptions: each seat increase opens its own refund window.
type RefundableQuantity struct {
	TotalQuantity int                `json:"totalQuantity"`
	Details       []RefundableDetail `json:"details"`
}

// RefundOption is a refund a subscription still allows.
type RefundOption struct {
	Type      string `json:"type"`
	ExpiresAt Time   `json:"expiresAt"`
}

// NextTermProduct is the product part of scheduled next-term instructions.
type NextTermProduct struct {
	ProductID      string       `json:"productId,omitempty"`
	SkuID          string       `json:"skuId,omitempty"`
	AvailabilityID string       `json:"availabilityId,omitempty"`
	BillingCycle   BillingCycle `json:"billingCycle,omitempty"`
	TermDuration   string       `json:"termDuration,omitempty"`
	PromotionID    string       `json:"promotionId,omitempty"`
}

// ScheduledNextTermInstructions is a change scheduled for the next term of an
// NCE subscription.
type ScheduledNextTermInstructions struct {
	Product           NextTermProduct `json:"product"`
	Quantity          int             `json:"quantity"`
	CustomTermEndDate Time            `json:"customTermEndDate"`
}

// Subscription is a customer's subscription, legacy or new commerce (NCE).
type Subscription struct {
	ID                            string                         `json:"id"`
	EntitlementID                 string                         `json:"entitlementId,omitempty"`
	OfferID                       string                         `json:"offerId,omitempty"`
	OfferName                     string                         `json:"offerName,omitempty"`
	FriendlyName                  string                         `json:"friendlyName,omitempty"`
	ProductType                   *ProductType                   `json:"productType,omitempty"`
	Quantity                      int                            `json:"quantity"`
	UnitType                      string                         `json:"unitType,omitempty"`
	ParentSubscriptionID          string                         `json:"parentSubscriptionId,omitempty"`
	HasPurchasableAddons          bool                           `json:"hasPurchasableAddons,omitempty"`
	CreationDate                  Time                           `json:"creationDate"`
	EffectiveStartDate            Time                           `json:"effectiveStartDate"`
	CommitmentEndDate             Time                           `json:"commitmentEndDate"`
	CommitmentEndDateTime         Time                           `json:"commitmentEndDateTime"`
	CancellationAllowedUntilDate  Time                           `json:"cancellationAllowedUntilDate"`
	BillingCycleEndDate           Time                           `json:"billingCycleEndDate"`
	BillingCycleEndDateTime       Time                           `json:"billingCycleEndDateTime"`
	Status                        SubscriptionStatus             `json:"status"`
	AutoRenewEnabled              bool                           `json:"autoRenewEnabled"`
	IsTrial                       bool                           `json:"isTrial"`
	BillingType                   BillingType                    `json:"billingType,omitempty"`
	BillingCycle                  BillingCycle                   `json:"billingCycle,omitempty"`
	TermDuration                  string                         `json:"termDuration,omitempty"`
	RenewalTermDuration           string                         `json:"renewalTermDuration,omitempty"`
	IsMicrosoftProduct            bool                           `json:"isMicrosoftProduct,omitempty"`
	PartnerID                     string                         `json:"partnerId,omitempty"`
	ContractType                  ContractType                   `json:"contractType,omitempty"`
	OrderID                       string                         `json:"orderId,omitempty"`
	SuspensionReasons             []string                       `json:"suspensionReasons,omitempty"`
	ScheduledNextTermInstructions *ScheduledNextTermInstructions `json:"scheduledNextTermInstructions,omitempty"`
	RefundableQuantity            *RefundableQuantity            `json:"refundableQuantity,omitempty"`
	RefundOptions                 []RefundOption                 `json:"refundOptions,omitempty"`
	AttentionNeeded               bool                           `json:"attentionNeeded"`
	ActionTaken                   bool                           `json:"actionTaken"`
	PublisherName                 string                         `json:"publisherName,omitempty"`
	Links                         map[string]Link                `json:"links,omitempty"`
	Attributes                    Attributes                     `json:"attributes"`

	Raw json.RawMessage `json:"-"` // the object as received
}

// UnmarshalJSON decodes the typed view and keeps a copy of the raw object.
func (s *Subscription) UnmarshalJSON(b []byte) error {
	type plain Subscription
	if err := json.Unmarshal(b, (*plain)(s)); err != nil {
		return err
	}
	s.Raw = append(json.RawMessage(nil), b...)
	return nil
}

// IsNCE reports whether the subscription is a new-commerce one: its product
// type says so, or it carries a cancellation window, which only NCE has.
func (s *Subscription) IsNCE() bool {
	if s.ProductType != nil && (EnumEqual(s.ProductType.ID, "OnlineServicesNCE") ||
		EnumEqual(s.ProductType.ID, "Software")) {
		return true
	}
	return s.CancellationAllowedUntilDate.Present()
}

// CommitmentEnd returns the most precise commitment end known:
// commitmentEndDateTime when present, else commitmentEndDate.
func (s *Subscription) CommitmentEnd() Time {
	if s.CommitmentEndDateTime.Valid() {
		return s.CommitmentEndDateTime
	}
	return s.CommitmentEndDate
}

// ManagedService is a service the partner administers for a customer.
type ManagedService struct {
	ID         string          `json:"id"`
	Name       string          `json:"name"`
	GroupName  string          `json:"groupName"`
	Links      map[string]Link `json:"links,omitempty"`
	Attributes Attributes      `json:"attributes"`

	Raw json.RawMessage `json:"-"` // the object as received
}

// UnmarshalJSON decodes the typed view and keeps a copy of the raw object.
func (m *ManagedService) UnmarshalJSON(b []byte) error {
	type plain ManagedService
	if err := json.Unmarshal(b, (*plain)(m)); err != nil {
		return err
	}
	m.Raw = append(json.RawMessage(nil), b...)
	return nil
}

// Product is a catalog product available to a customer in a target view.
type Product struct {
	ID                 string          `json:"id"`
	Title              string          `json:"title"`
	Description        string          `json:"description,omitempty"`
	ProductType        *ProductType    `json:"productType,omitempty"`
	IsMicrosoftProduct bool            `json:"isMicrosoftProduct"`
	Links              map[string]Link `json:"links,omitempty"`
	Attributes         Attributes      `json:"attributes"`

	Raw json.RawMessage `json:"-"` // the object as received
}

// UnmarshalJSON decodes the typed view and keeps a copy of the raw object.
// Catalog responses put isMicrosoftProduct under dynamicAttributes; it is
// read from there when the top-level property is absent.
func (p *Product) UnmarshalJSON(b []byte) error {
	type plain Product
	var aux struct {
		plain
		IsMicrosoftProduct *bool `json:"isMicrosoftProduct"`
		DynamicAttributes  *struct {
			IsMicrosoftProduct *bool `json:"isMicrosoftProduct"`
		} `json:"dynamicAttributes"`
	}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	*p = Product(aux.plain)
	switch {
	case aux.IsMicrosoftProduct != nil:
		p.IsMicrosoftProduct = *aux.IsMicrosoftProduct
	case aux.DynamicAttributes != nil && aux.DynamicAttributes.IsMicrosoftProduct != nil:
		p.IsMicrosoftProduct = *aux.DynamicAttributes.IsMicrosoftProduct
	}
	p.Raw = append(json.RawMessage(nil), b...)
	return nil
}

// itemBudget bounds what one response (and the listing it belongs to) may
// take while it is decoded: the bytes read plus, for every decoded item,
// the in-memory size of its typed view (so that a body of tiny items such
// as [{},{},...] cannot expand into gigabytes), and the number of items.
// The zero value is unbounded.
type itemBudget struct {
	r        io.Reader
	n        int64  // bytes read plus bytes charged for decoded items
	limit    int64  // 0: none
	option   string // the Options field that sets limit (LimitResponseBytes, LimitListingBytes)
	optLimit int64  // that option's value, when limit is only what is left of it
	over     bool
	rerr     error // first read error other than io.EOF (a network failure)
	items    int   // items decoded so far in the listing, this response included
	maxItm   int   // 0: none
}

// optionLimit is the value of the option that bounds b.
func (b *itemBudget) optionLimit() int64 {
	if b.optLimit > 0 {
		return b.optLimit
	}
	return b.limit
}

// errOverBudget is what an itemBudget's Read returns past its limit; the
// client turns it into a *LimitError.
var errOverBudget = errors.New("response over its size limit")

// errTooManyItems is returned by decodeCollection when the listing's item
// bound is reached; the client turns it into a *LimitError.
var errTooManyItems = errors.New("listing over its item limit")

func (b *itemBudget) Read(p []byte) (int, error) {
	if b.over {
		return 0, errOverBudget
	}
	if b.limit > 0 {
		// Read at most one byte past the limit, to tell "exactly at the
		// limit" from "over it".
		if rem := b.limit - b.n + 1; int64(len(p)) > rem {
			p = p[:rem]
		}
	}
	n, err := b.r.Read(p)
	b.n += int64(n)
	if b.limit > 0 && b.n > b.limit {
		b.over = true
		return n, errOverBudget
	}
	if err != nil && err != io.EOF && b.rerr == nil {
		b.rerr = err
	}
	return n, err
}

// charge counts n more bytes of decoded memory; it reports false once the
// limit is crossed.
func (b *itemBudget) charge(n int64) bool {
	b.n += n
	if b.limit > 0 && b.n > b.limit {
		b.over = true
	}
	return !b.over
}

// newDecoder returns a decoder over r that skips a UTF-8 byte order mark.
func newDecoder(r io.Reader) *json.Decoder {
	br := &bomSkipper{r: r}
	return json.NewDecoder(br)
}

type bomSkipper struct {
	r    io.Reader
	head []byte
	done bool
}

func (s *bomSkipper) Read(p []byte) (int, error) {
	if !s.done {
		s.done = true
		var buf [3]byte
		n, err := io.ReadFull(s.r, buf[:])
		if n == 3 && bytes.Equal(buf[:], utf8BOM) {
			s.head = nil
		} else {
			s.head = append([]byte(nil), buf[:n]...)
		}
		if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
			return 0, err
		}
		if err != nil && len(s.head) == 0 {
			return 0, io.EOF
		}
	}
	if len(s.head) > 0 {
		n := copy(p, s.head)
		s.head = s.head[n:]
		return n, nil
	}
	return s.r.Read(p)
}

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// decodeCollection reads one collection page from dec, item by item, so
// that at most one item's JSON is buffered at a time. It accepts exactly
// the bodies encoding/json decodes into a Collection[T] without error,
// minus those that are not a collection: a body that is not an object, an
// object without an items array (missing, null, or another type), one that
// names items twice, or one whose items are empty while totalCount is
// positive; those fail with an error matching ErrNotCollection. Property
// names match case-insensitively, like encoding/json. b (may be nil)
// bounds the items (charged at their in-memory size) and counts them.
func decodeCollection[T any](dec *json.Decoder, b *itemBudget) (Collection[T], error) {
	var c Collection[T]
	tok, err := dec.Token()
	if err != nil {
		return c, syntaxOr(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return c, notCollection("the body is %s, not an object with an items array", describeToken(tok))
	}
	itemSize := int64(reflect.TypeFor[T]().Size())
	seenItems := false
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return c, syntaxOr(err)
		}
		key, _ := kt.(string)
		switch {
		case strings.EqualFold(key, "items"):
			if seenItems {
				return c, notCollection("items appears twice")
			}
			seenItems = true
			t, err := dec.Token()
			if err != nil {
				return c, syntaxOr(err)
			}
			if d, ok := t.(json.Delim); !ok || d != '[' {
				return c, notCollection("items is %s, not an array", describeToken(t))
			}
			for dec.More() {
				if b != nil && b.maxItm > 0 && b.items >= b.maxItm {
					return c, errTooManyItems
				}
				var v T
				if err := dec.Decode(&v); err != nil {
					return c, syntaxOr(err)
				}
				if b != nil {
					b.items++
					if !b.charge(itemSize) {
						return c, errOverBudget
					}
				}
				c.Items = append(c.Items, v)
			}
			if _, err := dec.Token(); err != nil { // ']'
				return c, syntaxOr(err)
			}
		case strings.EqualFold(key, "totalCount"):
			err = dec.Decode(&c.TotalCount)
		case strings.EqualFold(key, "links"):
			err = dec.Decode(&c.Links)
		case strings.EqualFold(key, "attributes"):
			err = dec.Decode(&c.Attributes)
		default:
			err = skipValue(dec)
		}
		if err != nil {
			return c, syntaxOr(err)
		}
	}
	if _, err := dec.Token(); err != nil { // '}'
		return c, syntaxOr(err)
	}
	if err := expectEOF(dec); err != nil {
		return c, err
	}
	switch {
	case !seenItems:
		return c, notCollection("the object has no items property")
	case len(c.Items) == 0 && c.TotalCount > 0:
		return c, notCollection("items is empty but totalCount is %d", c.TotalCount)
	}
	if c.Items == nil {
		c.Items = []T{}
	}
	return c, nil
}

// decodeSubscription reads a single subscription: the body must be one JSON
// object with an id.
func decodeSubscription(dec *json.Decoder, s *Subscription) error {
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return syntaxOr(err)
	}
	if err := expectEOF(dec); err != nil {
		return err
	}
	if len(raw) == 0 || raw[0] != '{' {
		return notObject("the body is %s, not a subscription object", describeRaw(raw))
	}
	if err := json.Unmarshal(raw, s); err != nil {
		return err
	}
	if s.ID == "" {
		return notObject("the subscription object has no id")
	}
	return nil
}

// expectEOF fails when anything but white space follows the value, as
// json.Unmarshal does.
func expectEOF(dec *json.Decoder) error {
	t, err := dec.Token()
	switch {
	case err == io.EOF:
		return nil
	case err != nil:
		return syntaxOr(err)
	}
	return fmt.Errorf("invalid data after the top-level value: %s", describeToken(t))
}

// skipValue consumes one JSON value token by token, so that an unknown
// property is never buffered whole.
func skipValue(dec *json.Decoder) error {
	depth := 0
	for {
		t, err := dec.Token()
		if err != nil {
			return err
		}
		if d, ok := t.(json.Delim); ok {
			switch d {
			case '{', '[':
				depth++
			default:
				depth--
			}
		}
		if depth == 0 {
			return nil
		}
	}
}

// syntaxOr turns a premature end of input into io.ErrUnexpectedEOF (the
// body is truncated) and passes other errors on.
func syntaxOr(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func describeToken(t json.Token) string {
	switch v := t.(type) {
	case nil:
		return "null"
	case json.Delim:
		switch v {
		case '[':
			return "an array"
		case '{':
			return "an object"
		}
		return fmt.Sprintf("%q", string(v))
	case string:
		return "a string"
	case float64, json.Number:
		return "a number"
	case bool:
		return "a boolean"
	}
	return fmt.Sprintf("%T", t)
}

func describeRaw(raw json.RawMessage) string {
	if len(raw) == 0 {
		return "empty"
	}
	switch raw[0] {
	case 'n':
		return "null"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	}
	return "a number"
}
