package pcsim

import (
	"bytes"
	"encoding/json"
	"strings"
	"time"
)

// PurchaseSpec describes a new-commerce purchase.
type PurchaseSpec struct {
	// OfferID is a catalog offer "PRODUCT:SKU:AVAILABILITY" (NCE, Software,
	// NCE trial or marketplace SaaS); "" buys Microsoft 365 Business Basic.
	OfferID string `json:"offerId,omitempty"`
	// Quantity defaults to 1 (25 for a trial).
	Quantity int `json:"quantity,omitempty"`
	// TermDuration is P1M, P1Y or P3Y; "" takes the offer's first term.
	TermDuration string `json:"termDuration,omitempty"`
	// BillingCycle is monthly, annual or triennial; "" bills monthly
	// (triennial for a P3Y Software term).
	BillingCycle string `json:"billingCycle,omitempty"`
	// AutoRenew defaults to true.
	AutoRenew *bool `json:"autoRenew,omitempty"`
	// FriendlyName defaults to the offer name.
	FriendlyName string `json:"friendlyName,omitempty"`
	// PartnerID defaults to the customer's associated reseller ("" if direct).
	PartnerID *string `json:"partnerId,omitempty"`
}

// NextTerm are scheduled next-term instructions of an NCE subscription.
// Empty product fields keep the current offer; an empty term or billing
// cycle keeps the current one; Quantity 0 keeps the current quantity.
type NextTerm struct {
	ProductID      string `json:"productId,omitempty"`
	SkuID          string `json:"skuId,omitempty"`
	AvailabilityID string `json:"availabilityId,omitempty"`
	BillingCycle   string `json:"billingCycle,omitempty"`
	TermDuration   string `json:"termDuration,omitempty"`
	PromotionID    string `json:"promotionId,omitempty"`
	Quantity       int    `json:"quantity,omitempty"`
}

// IncreaseSeats adds n seats to an active subscription. On an NCE
// subscription the n seats form a refundable batch for CancellationWindow.
// Trials and the Azure plan have no seats to change.
func (s *Sim) IncreaseSeats(customerID, subscriptionID string, n int) error {
	_, err := s.run(CauseExplicit, func(now time.Time) error { return s.increaseSeats(now, customerID, subscriptionID, n) })
	return err
}

// DecreaseSeats removes n seats (at least one seat stays; use Cancel to end
// the subscription). An NCE subscription allows it inside its cancellation
// window, or outside it for at most the seats still refundable, consuming
// the newest batches first; otherwise it fails with code 800090.
func (s *Sim) DecreaseSeats(customerID, subscriptionID string, n int) error {
	_, err := s.run(CauseExplicit, func(now time.Time) error { return s.decreaseSeats(now, customerID, subscriptionID, n) })
	return err
}

// SetAutoRenew turns auto-renewal on or off on an active subscription (not
// the Azure plan). Turning it off clears scheduled next-term instructions.
// Setting the current value is a no-op and logs nothing.
func (s *Sim) SetAutoRenew(customerID, subscriptionID string, on bool) error {
	_, err := s.run(CauseExplicit, func(now time.Time) error { return s.setAutoRenew(now, customerID, subscriptionID, on) })
	return err
}

// Suspend suspends an active subscription.
func (s *Sim) Suspend(customerID, subscriptionID string) error {
	_, err := s.run(CauseExplicit, func(now time.Time) error { return s.suspend(now, customerID, subscriptionID) })
	return err
}

// Reactivate reactivates a suspended subscription.
func (s *Sim) Reactivate(customerID, subscriptionID string) error {
	_, err := s.run(CauseExplicit, func(now time.Time) error { return s.reactivate(now, customerID, subscriptionID) })
	return err
}

// Cancel cancels a subscription: status "deleted", auto-renew off, quantity
// unchanged. An NCE subscription can be cancelled only within its
// cancellation window (a trial any time, a marketplace SaaS any time);
// legacy subscriptions and the Azure plan cannot be cancelled (suspend them).
func (s *Sim) Cancel(customerID, subscriptionID string) error {
	_, err := s.run(CauseExplicit, func(now time.Time) error { return s.cancel(now, customerID, subscriptionID) })
	return err
}

// Purchase buys a new subscription for a customer and returns its id. It
// starts a term now with a fresh cancellation window, and its seats are
// refundable for CancellationWindow.
func (s *Sim) Purchase(customerID string, spec PurchaseSpec) (string, error) {
	var id string
	_, err := s.run(CauseExplicit, func(now time.Time) (err error) {
		id, err = s.purchase(now, customerID, spec)
		return err
	})
	return id, err
}

// Rename sets the friendly name of an active or suspended subscription.
func (s *Sim) Rename(customerID, subscriptionID, friendlyName string) error {
	_, err := s.run(CauseExplicit, func(now time.Time) error { return s.rename(now, customerID, subscriptionID, friendlyName) })
	return err
}

// ScheduleNextTerm sets the instructions applied at the next renewal of an
// active, auto-renewing NCE subscription (not a trial).
func (s *Sim) ScheduleNextTerm(customerID, subscriptionID string, next NextTerm) error {
	_, err := s.run(CauseExplicit, func(now time.Time) error { return s.scheduleNextTerm(now, customerID, subscriptionID, next) })
	return err
}

// ClearScheduledNextTerm removes scheduled next-term instructions; it fails
// when none are set.
func (s *Sim) ClearScheduledNextTerm(customerID, subscriptionID string) error {
	_, err := s.run(CauseExplicit, func(now time.Time) error { return s.clearScheduled(now, customerID, subscriptionID) })
	return err
}

// SetAttentionNeeded sets attentionNeeded on an NCE or Azure plan
// subscription (the kinds that report it). Setting the current value is a
// no-op.
func (s *Sim) SetAttentionNeeded(customerID, subscriptionID string, on bool) error {
	_, err := s.run(CauseExplicit, func(now time.Time) error { return s.setAttention(now, customerID, subscriptionID, on) })
	return err
}

// RemoveSubscription makes a subscription disappear from the listing.
func (s *Sim) RemoveSubscription(customerID, subscriptionID string) error {
	_, err := s.run(CauseExplicit, func(now time.Time) error {
		sub, err := s.findSub(customerID, subscriptionID)
		if err != nil {
			return err
		}
		s.removeSub(sub, now)
		return nil
	})
	return err
}

// AddCustomer adds a new customer (no subscriptions or managed services yet)
// and returns its id.
func (s *Sim) AddCustomer() string {
	var id string
	_, _ = s.run(CauseExplicit, func(now time.Time) error {
		id = s.addCustomer(now)
		return nil
	})
	return id
}

// RemoveCustomer removes a customer; its subscriptions and managed services
// are logged as removed before the customer.
func (s *Sim) RemoveCustomer(customerID string) error {
	_, err := s.run(CauseExplicit, func(now time.Time) error { return s.removeCustomer(now, customerID) })
	return err
}

// AddManagedService adds a managed service (e.g. "Exchange", "SharePoint",
// "Intune"; unknown ids are accepted and grouped under "Office").
func (s *Sim) AddManagedService(customerID, serviceID string) error {
	_, err := s.run(CauseExplicit, func(now time.Time) error { return s.addService(now, customerID, serviceID) })
	return err
}

// RemoveManagedService removes a managed service.
func (s *Sim) RemoveManagedService(customerID, serviceID string) error {
	_, err := s.run(CauseExplicit, func(now time.Time) error { return s.removeService(now, customerID, serviceID) })
	return err
}

// SetUnknownField adds or changes a top-level property the typed model does
// not know; jsonValue is its JSON text. An empty jsonValue removes it.
// Known property names are refused.
func (s *Sim) SetUnknownField(customerID, subscriptionID, name, jsonValue string) error {
	_, err := s.run(CauseExplicit, func(now time.Time) error {
		return s.setUnknownField(now, customerID, subscriptionID, name, jsonValue)
	})
	return err
}

// ---- implementations; the lock is held ----

func (s *Sim) activeSub(custID, subID, what string) (*subscription, error) {
	sub, err := s.findSub(custID, subID)
	if err != nil {
		return nil, err
	}
	if sub.status != stActive {
		return nil, notAllowed(0, "cannot %s subscription %s: its status is %s", what, sub.id, sub.status)
	}
	return sub, nil
}

func (s *Sim) seatChangeable(sub *subscription, what string) error {
	switch {
	case sub.fam == famAzurePlan:
		return notAllowed(0, "cannot %s subscription %s: the Azure plan is usage-based", what, sub.id)
	case sub.trial:
		return notAllowed(0, "cannot %s subscription %s: a trial's quantity is fixed", what, sub.id)
	}
	return nil
}

func (s *Sim) increaseSeats(now time.Time, custID, subID string, n int) error {
	if n < 1 {
		return invalid("seat increase must be at least 1, got %d", n)
	}
	sub, err := s.activeSub(custID, subID, "add seats to")
	if err != nil {
		return err
	}
	if err := s.seatChangeable(sub, "add seats to"); err != nil {
		return err
	}
	s.mutateSub(sub, now, "subscription.quantity", "quantity", func() {
		sub.quantity += n
		if sub.isNCE() {
			sub.refunds = insertRefund(sub.refunds, refund{qty: n, until: now.Add(CancellationWindow)})
		}
	})
	return nil
}

func insertRefund(list []refund, r refund) []refund {
	out := make([]refund, 0, len(list)+1)
	i := 0
	for i < len(list) && !list[i].until.After(r.until) {
		i++
	}
	out = append(out, list[:i]...)
	out = append(out, r)
	return append(out, list[i:]...)
}

// decreaseAllowed reports whether an n-seat decrease is allowed now.
func (s *Sim) decreaseAllowed(now time.Time, sub *subscription, n int) error {
	if sub.status != stActive {
		return notAllowed(0, "cannot remove seats from subscription %s: its status is %s", sub.id, sub.status)
	}
	if err := s.seatChangeable(sub, "remove seats from"); err != nil {
		return err
	}
	if sub.quantity-n < 1 {
		return notAllowed(0, "cannot remove %d of %d seats from subscription %s: at least one must stay (cancel instead)", n, sub.quantity, sub.id)
	}
	if sub.isNCE() && !now.Before(sub.cancelUntil) && n > sub.refundTotal() {
		return notAllowed(800090, "Subscription quantity cannot be decreased. (subscription %s: %d seats requested, %d refundable, cancellation window closed at %s)",
			sub.id, n, sub.refundTotal(), fmtTrimmed(sub.cancelUntil))
	}
	return nil
}

func (s *Sim) decreaseSeats(now time.Time, custID, subID string, n int) error {
	if n < 1 {
		return invalid("seat decrease must be at least 1, got %d", n)
	}
	sub, err := s.findSub(custID, subID)
	if err != nil {
		return err
	}
	if err := s.decreaseAllowed(now, sub, n); err != nil {
		return err
	}
	s.mutateSub(sub, now, "subscription.quantity", "quantity", func() {
		sub.quantity -= n
		if !sub.isNCE() {
			return
		}
		left := n
		refunds := append([]refund(nil), sub.refunds...)
		for i := len(refunds) - 1; i >= 0 && left > 0; i-- {
			take := min(left, refunds[i].qty)
			refunds[i].qty -= take
			left -= take
			if refunds[i].qty == 0 {
				refunds = append(refunds[:i], refunds[i+1:]...)
			}
		}
		sub.refunds = refunds
	})
	return nil
}

func (s *Sim) setAutoRenew(now time.Time, custID, subID string, on bool) error {
	sub, err := s.activeSub(custID, subID, "change auto-renew of")
	if err != nil {
		return err
	}
	if sub.fam == famAzurePlan {
		return notAllowed(0, "subscription %s: the Azure plan does not renew", sub.id)
	}
	if sub.autoRenew == on {
		return nil
	}
	s.mutateSub(sub, now, "subscription.autorenew", "autoRenewEnabled", func() {
		sub.autoRenew = on
		if !on {
			sub.next = nil
		}
	})
	return nil
}

func (s *Sim) suspend(now time.Time, custID, subID string) error {
	sub, err := s.activeSub(custID, subID, "suspend")
	if err != nil {
		return err
	}
	s.setStatus(sub, now, stSuspended)
	return nil
}

func (s *Sim) reactivate(now time.Time, custID, subID string) error {
	sub, err := s.findSub(custID, subID)
	if err != nil {
		return err
	}
	if sub.status != stSuspended {
		return notAllowed(0, "cannot reactivate subscription %s: its status is %s, not suspended", sub.id, sub.status)
	}
	s.setStatus(sub, now, stActive)
	return nil
}

func (s *Sim) cancelAllowed(now time.Time, sub *subscription) error {
	if sub.status != stActive && sub.status != stSuspended {
		return notAllowed(0, "cannot cancel subscription %s: its status is %s", sub.id, sub.status)
	}
	switch sub.fam {
	case famLegacy, famLegacyAddon, famAzurePlan:
		return notAllowed(0, "cannot cancel subscription %s: %s subscriptions are suspended, not cancelled", sub.id, sub.kind())
	case famNCE, famSoftware:
		if !sub.trial && !now.Before(sub.cancelUntil) {
			return notAllowed(0, "cannot cancel subscription %s: its cancellation window closed at %s", sub.id, fmtTrimmed(sub.cancelUntil))
		}
	}
	return nil
}

func (s *Sim) cancel(now time.Time, custID, subID string) error {
	sub, err := s.findSub(custID, subID)
	if err != nil {
		return err
	}
	if err := s.cancelAllowed(now, sub); err != nil {
		return err
	}
	s.mutateSub(sub, now, "subscription.status", "status", func() {
		sub.status, sub.since = stDeleted, now
		sub.autoRenew = false
		sub.refunds = nil
		sub.next = nil
	})
	return nil
}

func (s *Sim) purchase(now time.Time, custID string, spec PurchaseSpec) (string, error) {
	c, err := s.findCustomer(custID)
	if err != nil {
		return "", err
	}
	off := nceOffers[0]
	if spec.OfferID != "" {
		off = lookupOffer(spec.OfferID)
		if off == nil {
			return "", invalid("offer %q is not in the catalog", spec.OfferID)
		}
	}
	if off.fam != famNCE && off.fam != famSoftware && off.fam != famSaaS {
		return "", notAllowed(0, "offer %s (%s) cannot be purchased: only new-commerce and marketplace offers are sold", off.id, off.name)
	}
	term := off.terms[0]
	if spec.TermDuration != "" {
		t, ok := parseTerm(spec.TermDuration)
		if !ok || !hasTerm(off, t) {
			return "", invalid("offer %s has no term %q", off.id, spec.TermDuration)
		}
		term = t
	}
	bill := uint8(1)
	if term == 36 {
		bill = 36
	}
	if spec.BillingCycle != "" {
		b, ok := parseCycle(spec.BillingCycle)
		if !ok || b > term || off.fam == famSaaS && b != 1 {
			return "", invalid("billing cycle %q is not available with term %s", spec.BillingCycle, termName(term))
		}
		bill = b
	}
	qty := spec.Quantity
	if qty == 0 {
		qty = 1
		if off.trial {
			qty = 25
		}
	}
	if qty < 1 {
		return "", invalid("quantity must be at least 1, got %d", qty)
	}
	id := guid(s.idRng)
	sub := s.newSub(c, off, id)
	if spec.FriendlyName != "" {
		sub.friendly = spec.FriendlyName
	}
	if spec.PartnerID != nil {
		sub.partnerID = *spec.PartnerID
	}
	sub.trial = off.trial
	sub.termMonths, sub.billMonths = term, bill
	sub.quantity = qty
	sub.autoRenew = spec.AutoRenew == nil || *spec.AutoRenew
	sub.created = tick100ns(now)
	sub.effStart = tick100ns(now.Add(-time.Duration(s.idRng.Int64N(int64(time.Second)))))
	if off.fam == famSaaS {
		sub.orderID = marketplaceOrderID(s.idRng)
		s.startTerm(sub, sub.effStart)
	} else {
		sub.orderID = hexID(s.idRng, 12)
		s.startTerm(sub, sub.effStart)
		sub.cancelUntil = sub.created.Add(CancellationWindow)
		if !sub.trial {
			sub.refunds = []refund{{qty: qty, until: sub.cancelUntil}}
		}
	}
	c.subs = append(c.subs, sub)
	s.schedule(sub)
	s.appendLog(Mutation{At: now, Op: "subscription.created", CustomerID: c.id, ResourceKind: ResourceSubscription,
		ResourceID: sub.id, New: subJSON(sub.wire(true))})
	return id, nil
}

func hasTerm(o *offer, t uint8) bool {
	for _, x := range o.terms {
		if x == t {
			return true
		}
	}
	return false
}

func (s *Sim) rename(now time.Time, custID, subID, name string) error {
	if strings.TrimSpace(name) == "" {
		return invalid("friendly name must not be empty")
	}
	sub, err := s.findSub(custID, subID)
	if err != nil {
		return err
	}
	if sub.status != stActive && sub.status != stSuspended {
		return notAllowed(0, "cannot rename subscription %s: its status is %s", sub.id, sub.status)
	}
	if sub.friendly == name {
		return nil
	}
	s.mutateSub(sub, now, "subscription.friendlyname", "friendlyName", func() { sub.friendly = name })
	return nil
}

// resolveNextTerm validates instructions against sub and the catalog.
func (s *Sim) resolveNextTerm(sub *subscription, in NextTerm) (*nextTerm, error) {
	if !sub.isNCE() || sub.trial {
		return nil, notAllowed(0, "subscription %s (%s) cannot have scheduled next-term instructions", sub.id, sub.kind())
	}
	if sub.status != stActive || !sub.autoRenew {
		return nil, notAllowed(0, "subscription %s must be active with auto-renew on to schedule its next term", sub.id)
	}
	n := &nextTerm{off: sub.off, termMonths: sub.termMonths, billMonths: sub.billMonths, quantity: sub.quantity, promo: in.PromotionID}
	if in.ProductID != "" || in.SkuID != "" || in.AvailabilityID != "" {
		o := lookupOffer(in.ProductID + ":" + in.SkuID + ":" + in.AvailabilityID)
		if o == nil || o.trial || (o.fam != famNCE && o.fam != famSoftware) {
			return nil, invalid("next-term product %s:%s:%s is not a new-commerce catalog offer", in.ProductID, in.SkuID, in.AvailabilityID)
		}
		n.off = o
		if !hasTerm(o, n.termMonths) {
			n.termMonths = o.terms[0]
		}
	}
	if in.TermDuration != "" {
		t, ok := parseTerm(in.TermDuration)
		if !ok || !hasTerm(n.off, t) {
			return nil, invalid("offer %s has no term %q", n.off.id, in.TermDuration)
		}
		n.termMonths = t
	}
	if in.BillingCycle != "" {
		b, ok := parseCycle(in.BillingCycle)
		if !ok {
			return nil, invalid("unknown billing cycle %q", in.BillingCycle)
		}
		n.billMonths = b
	}
	if n.billMonths > n.termMonths {
		return nil, invalid("billing cycle %s is longer than term %s", cycleName(n.billMonths), termName(n.termMonths))
	}
	if in.Quantity < 0 {
		return nil, invalid("quantity must be at least 1, got %d", in.Quantity)
	}
	if in.Quantity > 0 {
		n.quantity = in.Quantity
	}
	return n, nil
}

func (s *Sim) scheduleNextTerm(now time.Time, custID, subID string, in NextTerm) error {
	sub, err := s.findSub(custID, subID)
	if err != nil {
		return err
	}
	n, err := s.resolveNextTerm(sub, in)
	if err != nil {
		return err
	}
	s.mutateSub(sub, now, "subscription.scheduled", "scheduledNextTermInstructions", func() { sub.next = n })
	return nil
}

func (s *Sim) clearScheduled(now time.Time, custID, subID string) error {
	sub, err := s.findSub(custID, subID)
	if err != nil {
		return err
	}
	if sub.next == nil {
		return notAllowed(0, "subscription %s has no scheduled next-term instructions", sub.id)
	}
	s.mutateSub(sub, now, "subscription.scheduled", "scheduledNextTermInstructions", func() { sub.next = nil })
	return nil
}

func (s *Sim) setAttention(now time.Time, custID, subID string, on bool) error {
	sub, err := s.findSub(custID, subID)
	if err != nil {
		return err
	}
	if !sub.isNCE() && sub.fam != famAzurePlan {
		return notAllowed(0, "subscription %s (%s) does not report attentionNeeded", sub.id, sub.kind())
	}
	if sub.attention == on {
		return nil
	}
	s.mutateSub(sub, now, "subscription.attention", "attentionNeeded", func() { sub.attention = on })
	return nil
}

func (s *Sim) addCustomer(now time.Time) string {
	var c *customer
	for c == nil || s.byID[c.id] != nil {
		c = newCustomer(s.idRng, s.custSeq)
	}
	s.custSeq++
	s.insertCustomer(c)
	s.appendLog(Mutation{At: now, Op: "customer.added", CustomerID: c.id, ResourceKind: ResourceCustomer,
		ResourceID: c.id, New: rawJSON(c.wire())})
	return c.id
}

func (s *Sim) removeCustomer(now time.Time, custID string) error {
	c, err := s.findCustomer(custID)
	if err != nil {
		return err
	}
	for len(c.subs) > 0 {
		s.removeSub(c.subs[0], now)
	}
	for len(c.services) > 0 {
		if err := s.removeService(now, c.id, c.services[0]); err != nil {
			return err
		}
	}
	s.dropCustomer(c)
	s.appendLog(Mutation{At: now, Op: "customer.removed", CustomerID: c.id, ResourceKind: ResourceCustomer,
		ResourceID: c.id, Old: rawJSON(c.wire())})
	return nil
}

func (s *Sim) addService(now time.Time, custID, svc string) error {
	if strings.TrimSpace(svc) == "" {
		return invalid("managed service id must not be empty")
	}
	c, err := s.findCustomer(custID)
	if err != nil {
		return err
	}
	if c.hasService(svc) >= 0 {
		return notAllowed(0, "customer %s already has managed service %s", c.id, svc)
	}
	d := managedServiceByID(svc)
	c.services = append(c.services, d.id)
	s.appendLog(Mutation{At: now, Op: "managedservice.added", CustomerID: c.id, ResourceKind: ResourceManagedService,
		ResourceID: d.id, New: rawJSON(c.wireService(d.id))})
	return nil
}

func (s *Sim) removeService(now time.Time, custID, svc string) error {
	c, err := s.findCustomer(custID)
	if err != nil {
		return err
	}
	i := c.hasService(svc)
	if i < 0 {
		return notFound("customer %s has no managed service %s", c.id, svc)
	}
	id := c.services[i]
	old := rawJSON(c.wireService(id))
	c.services = append(c.services[:i], c.services[i+1:]...)
	s.appendLog(Mutation{At: now, Op: "managedservice.removed", CustomerID: c.id, ResourceKind: ResourceManagedService,
		ResourceID: id, Old: old})
	return nil
}

// knownProperty reports whether name is a property the simulator renders.
func knownProperty(name string) bool {
	for _, f := range wireFields {
		if strings.EqualFold(f.name, name) {
			return true
		}
	}
	return false
}

func (s *Sim) setUnknownField(now time.Time, custID, subID, name, value string) error {
	if name == "" {
		return invalid("field name must not be empty")
	}
	if knownProperty(name) {
		return invalid("%q is a known subscription property; SetUnknownField only adds unknown ones", name)
	}
	var compact bytes.Buffer
	if value != "" {
		if err := json.Compact(&compact, []byte(value)); err != nil {
			return invalid("value of %q is not JSON: %v", name, err)
		}
	}
	sub, err := s.findSub(custID, subID)
	if err != nil {
		return err
	}
	idx := -1
	for i, e := range sub.extra {
		if e.name == name {
			idx = i
		}
	}
	switch {
	case value == "" && idx < 0:
		return notFound("subscription %s has no property %q", sub.id, name)
	case idx >= 0 && value != "" && bytes.Equal(sub.extra[idx].value, compact.Bytes()):
		return nil
	}
	s.mutateSub(sub, now, "subscription.field", name, func() {
		extra := make([]extraField, 0, len(sub.extra)+1)
		for i, e := range sub.extra {
			if i != idx {
				extra = append(extra, e)
			}
		}
		if value != "" {
			ef := extraField{name: name, value: json.RawMessage(compact.Bytes())}
			if idx >= 0 {
				extra = append(extra[:idx], append([]extraField{ef}, extra[idx:]...)...)
			} else {
				extra = append(extra, ef)
			}
		}
		sub.extra = extra
	})
	return nil
}
