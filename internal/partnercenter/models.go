package partnercenter

import (
	"bytes"
	"encoding/json"
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

// Collection is the envelope of every list response.
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
