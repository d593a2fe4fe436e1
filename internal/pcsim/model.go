package pcsim

import (
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"
	"time"
)

type status uint8

const (
	stActive status = iota
	stSuspended
	stDeleted
	stExpired
	stDisabled
)

var statusNames = [...]string{"active", "suspended", "deleted", "expired", "disabled"}

func (s status) String() string { return statusNames[s] }

// refund is one refundable seat batch.
type refund struct {
	qty   int
	until time.Time
}

// nextTerm is a normalised ScheduleNextTerm instruction.
type nextTerm struct {
	off        *offer
	termMonths uint8
	billMonths uint8
	quantity   int
	promo      string
}

// subscription is the simulator's state of one subscription. Strings of the
// offer are shared through off; everything else is what changes.
type subscription struct {
	id         string
	cust       *customer
	off        *offer
	ord        uint64 // creation order, the lifecycle tie-break
	hidx       int    // index in the due heap, -1 when not queued
	due        time.Time
	fam        family
	status     status
	autoRenew  bool
	trial      bool
	attention  bool
	action     bool
	termMonths uint8
	billMonths uint8 // 0 for one_time
	billK      uint16
	etagVer    uint32
	quantity   int
	friendly   string
	partnerID  string
	orderID    string
	parentID   string

	created     time.Time
	effStart    time.Time
	termStart   time.Time // start of the current term (renewal instant)
	commitEnd   time.Time // NCE/legacy: the end day at 00:00; SaaS: the end instant
	cancelUntil time.Time // NCE only
	billEnd     time.Time // NCE only: current billing period's end day at 00:00
	since       time.Time // when the current status was entered

	refunds []refund // ascending by until
	next    *nextTerm
	extra   []extraField // copy-on-write
}

// customer is the simulator's state of one customer.
type customer struct {
	id         string
	commerceID string
	name       string
	domain     string
	partnerID  string // associatedPartnerId of an indirect customer
	delegated  bool
	subs       []*subscription // creation order
	services   []string
}

func (c *customer) findSub(id string) (int, *subscription) {
	for i, s := range c.subs {
		if strings.EqualFold(s.id, id) {
			return i, s
		}
	}
	return -1, nil
}

func (c *customer) hasService(id string) int {
	for i, s := range c.services {
		if strings.EqualFold(s, id) {
			return i
		}
	}
	return -1
}

func termName(months uint8) string {
	switch months {
	case 1:
		return "P1M"
	case 12:
		return "P1Y"
	case 36:
		return "P3Y"
	}
	return "P" + strconv.Itoa(int(months)) + "M"
}

func parseTerm(s string) (uint8, bool) {
	switch strings.ToUpper(s) {
	case "P1M":
		return 1, true
	case "P1Y", "P12M":
		return 12, true
	case "P3Y", "P36M":
		return 36, true
	}
	return 0, false
}

func cycleName(months uint8) string {
	switch months {
	case 1:
		return "monthly"
	case 12:
		return "annual"
	case 36:
		return "triennial"
	}
	return "one_time"
}

func parseCycle(s string) (uint8, bool) {
	switch strings.ToLower(strings.ReplaceAll(s, "_", "")) {
	case "monthly":
		return 1, true
	case "annual":
		return 12, true
	case "triennial":
		return 36, true
	}
	return 0, false
}

// titleCycle renders a billing cycle the way scheduledNextTermInstructions
// shows it in the documentation ("Annual").
func titleCycle(months uint8) string {
	n := cycleName(months)
	return strings.ToUpper(n[:1]) + n[1:]
}

func (s *subscription) isNCE() bool { return s.fam == famNCE || s.fam == famSoftware }

// hasTerm reports whether the subscription has terms that end and renew.
func (s *subscription) hasTerm() bool { return s.fam != famAzurePlan }

// termDue is when the current term ends: once commitmentEndDateTime
// (23:59:59 of the end day) has passed, i.e. a day after commitEnd.
func (s *subscription) termDue() time.Time { return s.commitEnd.Add(24 * time.Hour) }

func (s *subscription) kind() string {
	switch s.fam {
	case famNCE:
		if s.trial {
			return KindNCETrial
		}
		if s.termMonths == 1 {
			return KindNCEMonthly
		}
		return KindNCEAnnual
	case famSoftware:
		return KindNCESoftware
	case famLegacy:
		return KindLegacyLicense
	case famLegacyAddon:
		return KindLegacyAddon
	case famAzurePlan:
		return KindAzurePlan
	}
	return KindMarketplaceSaaS
}

func (s *subscription) refundTotal() int {
	n := 0
	for _, r := range s.refunds {
		n += r.qty
	}
	return n
}

func (s *subscription) etag() string {
	return base64.StdEncoding.EncodeToString([]byte(`{"id":"` + strings.ToLower(s.id) + `","version":` +
		strconv.FormatUint(uint64(s.etagVer), 10) + `}`))
}

func (n *nextTerm) wire() *wireNextTerm {
	return &wireNextTerm{
		Product: wireNextTermProduct{ProductID: n.off.productID, SkuID: n.off.skuID, AvailabilityID: n.off.availID,
			BillingCycle: titleCycle(n.billMonths), TermDuration: termName(n.termMonths), PromotionID: n.promo},
		Quantity: n.quantity,
	}
}

// wire renders the subscription. full selects the GET-by-id form, which
// carries refundableQuantity for NCE subscriptions. The result shares no
// mutable memory with the state, so two renderings can be diffed.
func (s *subscription) wire(full bool) *wireSub {
	o := s.off
	w := &wireSub{
		ID: s.id, OfferID: o.id, OfferName: o.name, FriendlyName: s.friendly, Quantity: s.quantity,
		UnitType: o.unitType, Status: s.status.String(), AutoRenewEnabled: s.autoRenew,
		BillingType: o.billingType, ContractType: "subscription", OrderID: s.orderID, extra: s.extra,
		Attributes: wireAttributes{ObjectType: "Subscription"},
	}
	w.Links = o.links
	w.Links.Self = getLink("/customers/" + s.cust.id + "/subscriptions/" + s.id)
	switch s.fam {
	case famNCE, famSoftware:
		w.ProductType = o.productType
		w.HasPurchasableAddons = &vFalse
		w.CreationDate = s.created.Format(layout7)
		w.EffectiveStartDate = fmtTrimmed(s.effStart)
		w.CommitmentEndDate = dayStart(s.commitEnd)
		w.CommitmentEndDateTime = dayEnd(s.commitEnd)
		w.CancellationAllowedUntilDate = fmtTrimmed(s.cancelUntil)
		w.BillingCycleEndDate = dayStart(s.billEnd)
		w.BillingCycleEndDateTime = dayEnd(s.billEnd)
		if s.next != nil {
			w.ScheduledNextTermInstructions = s.next.wire()
		}
		w.IsTrial = bptr(s.trial)
		w.BillingCycle = cycleName(s.billMonths)
		w.TermDuration = termName(s.termMonths)
		w.RenewalTermDuration = &vEmpty
		w.IsMicrosoftProduct = &vTrue
		w.PartnerID = sptr(s.partnerID)
		w.AttentionNeeded, w.ActionTaken = bptr(s.attention), bptr(s.action)
		w.PublisherName = o.publisher
		if full {
			rq := &wireRefundable{TotalQuantity: s.refundTotal(), Details: make([]wireRefundDetail, len(s.refunds))}
			for i, r := range s.refunds {
				rq.Details[i] = wireRefundDetail{Quantity: r.qty, AllowedUntilDateTime: fmtTrimmed(r.until)}
			}
			w.RefundableQuantity = rq
		}
	case famLegacy, famLegacyAddon:
		w.CreationDate = fmtTrimmed(s.created)
		w.EffectiveStartDate = dayStart(s.effStart)
		w.CommitmentEndDate = dayStart(s.commitEnd)
		if s.fam == famLegacyAddon {
			w.ParentSubscriptionID = s.parentID
			w.CommitmentEndDateTime = dayStart(s.commitEnd)
			w.Links.ParentSubscription = getLink("/customers/" + s.cust.id + "/subscriptions/" + s.parentID)
		} else {
			w.IsTrial = &vFalse
			w.BillingCycle = cycleName(s.billMonths)
		}
		if s.partnerID != "" {
			w.PartnerID = sptr(s.partnerID)
		}
		etag := s.etag()
		w.Attributes.Etag = &etag
	case famAzurePlan:
		w.ProductType = o.productType
		w.HasPurchasableAddons = &vFalse
		w.CreationDate = s.created.Format(layout7)
		w.EffectiveStartDate = fmtTrimmed(s.effStart)
		w.CommitmentEndDate = "9999-" + s.effStart.Format("01-02") + "T00:00:00Z"
		w.IsTrial = &vFalse
		w.BillingCycle = "one_time"
		w.IsMicrosoftProduct = &vTrue
		w.PartnerID = sptr(s.partnerID)
		w.AttentionNeeded, w.ActionTaken = bptr(s.attention), bptr(s.action)
		w.PublisherName = o.publisher
	case famSaaS:
		w.HasPurchasableAddons = &vFalse
		w.CreationDate = s.created.Format(layout7)
		w.EffectiveStartDate = s.effStart.Format(layoutOffset)
		w.CommitmentEndDate = s.commitEnd.Format(layoutOffset)
		w.IsTrial = &vFalse
		w.BillingCycle = cycleName(s.billMonths)
		w.TermDuration = termName(s.termMonths)
		w.IsMicrosoftProduct = &vFalse
		w.PartnerID = sptr(s.partnerID)
		w.PublisherName = o.publisher
		w.Attributes.Etag = &vEmpty
	}
	return w
}

func (c *customer) wire() *wireCustomer {
	return &wireCustomer{
		ID: c.id, CommerceID: c.commerceID,
		CompanyProfile: wireCompanyProfile{TenantID: c.id, Domain: c.domain, CompanyName: c.name,
			Links:      wireSelfLinks{Self: getLink("/customers/" + c.id + "/profiles/company")},
			Attributes: wireAttributes{ObjectType: "CustomerCompanyProfile"}},
		RelationshipToPartner: "reseller",
		AllowDelegatedAccess:  c.delegated,
		AssociatedPartnerID:   c.partnerID,
		Links:                 wireSelfLinks{Self: getLink("/customers/" + c.id)},
		Attributes:            wireAttributes{ObjectType: "Customer"},
	}
}

func (c *customer) wireService(id string) *wireManagedService {
	d := managedServiceByID(id)
	base := "https://portal.office.com/Partner/BeginClientSession.aspx?CTID=" + c.id + "&CSDEST="
	return &wireManagedService{
		ID: d.id, Name: d.name, GroupName: d.group,
		Links: wireManagedServiceLinks{
			AdminService:  getLink(base + d.id + "&InitialDomain=" + c.domain + "&PrimaryDomain=" + c.domain),
			ServiceHealth: getLink(base + "ServiceStatus"),
			ServiceTicket: getLink(base + "Support"),
		},
		Attributes: wireAttributes{ObjectType: "ManagedService"},
	}
}

func rawJSON(v any) json.RawMessage {
	b := newJSONBuf()
	b.value(v)
	return json.RawMessage(b.Bytes())
}
