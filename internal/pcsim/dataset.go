package pcsim

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// guid draws a version-4 GUID, lower case.
func guid(r *rand.Rand) string {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], r.Uint64())
	binary.LittleEndian.PutUint64(b[8:], r.Uint64())
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:], b[10:])
	return string(out[:])
}

func hexID(r *rand.Rand, n int) string {
	b := make([]byte, (n+1)/2)
	for i := range b {
		b[i] = byte(r.UintN(256))
	}
	return hex.EncodeToString(b)[:n]
}

// marketplaceOrderID mimics the opaque marketplace order ids of the docs.
func marketplaceOrderID(r *rand.Rand) string {
	b := make([]byte, 25)
	for i := range b {
		b[i] = byte(r.UintN(256))
	}
	return base64.RawURLEncoding.EncodeToString(b)[:33]
}

func domainOf(base string, n int) string {
	var b strings.Builder
	for _, c := range base {
		if unicode.IsLetter(c) || unicode.IsDigit(c) {
			b.WriteRune(unicode.ToLower(c))
		}
	}
	return b.String() + strconv.Itoa(n) + ".onmicrosoft.com"
}

// durN draws a duration in [0, d).
func durN(r *rand.Rand, d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return time.Duration(r.Int64N(int64(d)))
}

// tick100ns truncates to Partner Center's 100ns resolution.
func tick100ns(t time.Time) time.Time { return t.Truncate(100 * time.Nanosecond) }

var (
	seatCounts = []int{1, 1, 2, 3, 5, 5, 8, 10, 10, 12, 15, 20, 25, 30, 50, 75, 100, 250}
	teams      = []string{"Sales", "Finance", "HQ", "Warehouse", "Contractors", "Engineering"}
	serviceP   = []float64{0.85, 0.5, 0.75, 0.4, 0.3}
)

// newCustomer draws a customer's identity. n is its ordinal (for the name).
func newCustomer(r *rand.Rand, n int) *customer {
	c := &customer{id: guid(r), commerceID: guid(r)}
	base := companyNames[r.IntN(len(companyNames))]
	c.name = base + " " + strconv.Itoa(100+n)
	c.domain = domainOf(base, 100+n)
	if r.Float64() < 0.35 {
		c.partnerID = resellers[r.IntN(len(resellers))]
	}
	c.delegated = r.Float64() < 0.7
	return c
}

// genCustomer generates customer i of the dataset from (Seed, i) alone.
func (s *Sim) genCustomer(i int, now time.Time) *customer {
	r := seeded(s.opts.Seed, uint64(i)<<8|0x43)
	c := newCustomer(r, i)
	for j, d := range managedServicePool {
		if r.Float64() < serviceP[j] {
			c.services = append(c.services, d.id)
		}
	}
	n := s.opts.SubscriptionsPerCustomer
	if n <= 0 {
		n = 2 + r.IntN(13)
	}
	for j := 0; j < n; j++ {
		s.genSub(r, c, now)
	}
	return c
}

// kind weights of the generated mix.
var kindWeights = []struct {
	kind   string
	weight int
}{
	{KindNCEMonthly, 22}, {KindNCEAnnual, 28}, {KindNCESoftware, 5}, {KindNCETrial, 6},
	{KindLegacyLicense, 12}, {KindLegacyAddon, 5}, {KindAzurePlan, 7}, {KindMarketplaceSaaS, 10},
}

func pickKind(r *rand.Rand) string {
	total := 0
	for _, k := range kindWeights {
		total += k.weight
	}
	x := r.IntN(total)
	for _, k := range kindWeights {
		if x < k.weight {
			return k.kind
		}
		x -= k.weight
	}
	return KindNCEAnnual
}

func (s *Sim) newSub(c *customer, off *offer, id string) *subscription {
	sub := &subscription{id: id, cust: c, off: off, fam: off.fam, ord: s.nextOrd, hidx: -1,
		partnerID: c.partnerID, friendly: off.name}
	s.nextOrd++
	return sub
}

// genSub generates one subscription of c as of now, consistent with the
// lifecycle rules (nothing is due at now).
func (s *Sim) genSub(r *rand.Rand, c *customer, now time.Time) {
	kind := pickKind(r)
	var legacyBases []*subscription
	for _, x := range c.subs {
		if x.fam == famLegacy {
			legacyBases = append(legacyBases, x)
		}
	}
	switch {
	case kind == KindAzurePlan:
		for _, x := range c.subs {
			if x.fam == famAzurePlan {
				kind = KindNCEAnnual
			}
		}
	case kind == KindLegacyAddon && len(legacyBases) == 0:
		kind = KindLegacyLicense
	}
	var sub *subscription
	switch kind {
	case KindNCEMonthly, KindNCEAnnual:
		sub = s.newSub(c, nceOffers[r.IntN(len(nceOffers))], guid(r))
		if kind == KindNCEMonthly {
			sub.termMonths, sub.billMonths = 1, 1
		} else {
			sub.termMonths, sub.billMonths = 12, 1
			if r.IntN(2) == 0 {
				sub.billMonths = 12
			}
		}
		s.genNCE(r, sub, now)
	case KindNCESoftware:
		sub = s.newSub(c, softwareOffers[r.IntN(len(softwareOffers))], guid(r))
		sub.termMonths, sub.billMonths = 36, 36
		s.genNCE(r, sub, now)
	case KindNCETrial:
		sub = s.newSub(c, trialOffers[r.IntN(len(trialOffers))], guid(r))
		sub.trial, sub.termMonths, sub.billMonths = true, 1, 1
		s.genNCE(r, sub, now)
		sub.quantity = 25
		sub.refunds = nil
	case KindLegacyLicense:
		sub = s.newSub(c, legacyOffers[r.IntN(len(legacyOffers))], strings.ToUpper(guid(r)))
		s.genLegacy(r, sub, now, nil)
	case KindLegacyAddon:
		sub = s.newSub(c, addonOffers[r.IntN(len(addonOffers))], strings.ToUpper(guid(r)))
		s.genLegacy(r, sub, now, legacyBases[r.IntN(len(legacyBases))])
	case KindAzurePlan:
		sub = s.newSub(c, azurePlanOffer, guid(r))
		sub.created = tick100ns(now.Add(-10*day - durN(r, 900*day)))
		sub.effStart = tick100ns(sub.created.Add(-durN(r, time.Second)))
		sub.quantity = 1
		sub.orderID = hexID(r, 12)
		if r.Float64() < 0.05 {
			sub.status, sub.since = stSuspended, now.Add(-durN(r, 10*day))
		}
		sub.friendly = "Azure plan"
		if r.Float64() < 0.3 {
			sub.friendly = "Azure " + teams[r.IntN(len(teams))]
		}
	default: // marketplace SaaS
		sub = s.newSub(c, saasOffers[r.IntN(len(saasOffers))], guid(r))
		s.genSaaS(r, sub, now)
	}
	if r.Float64() < 0.15 && sub.fam != famAzurePlan {
		sub.friendly = sub.off.name + " (" + teams[r.IntN(len(teams))] + ")"
	}
	c.subs = append(c.subs, sub)
	s.schedule(sub)
}

// genNCE dates an NCE subscription (termMonths/billMonths set) and picks its
// status, auto-renew, quantity and refundable batches.
func (s *Sim) genNCE(r *rand.Rand, sub *subscription, now time.Time) {
	T := int(sub.termMonths)
	today := midnight(now)
	sub.quantity = seatCounts[r.IntN(len(seatCounts))]
	sub.orderID = hexID(r, 12)
	sub.autoRenew = r.Float64() < 0.85
	if sub.trial {
		sub.autoRenew = r.Float64() < 0.4
	}
	u := r.Float64()
	st := stActive
	switch {
	case sub.trial && u >= 0.8:
		st = stExpired
	case sub.trial:
	case u < 0.82:
	case u < 0.86:
		st = stSuspended
	case u < 0.92:
		st = stExpired
	case u < 0.96:
		st = stDisabled
	default:
		st = stDeleted
	}
	firstTerm := func(created time.Time) {
		sub.created = tick100ns(created)
		sub.effStart = tick100ns(created.Add(-durN(r, time.Second)))
		sub.termStart = midnight(sub.effStart)
		sub.commitEnd = sub.termStart.AddDate(0, T, -1)
		sub.cancelUntil = sub.created.Add(CancellationWindow)
	}
	laterTerm := func(termStart time.Time, renewals int) {
		created := termStart.AddDate(0, -T*renewals, 0).Add(durN(r, day))
		sub.created = tick100ns(created)
		sub.effStart = tick100ns(created.Add(-durN(r, time.Second)))
		sub.termStart = termStart
		sub.commitEnd = termStart.AddDate(0, T, -1)
		sub.cancelUntil = termStart.Add(CancellationWindow)
	}
	renewals := 0
	if T < 36 && r.Float64() < 0.55 {
		renewals = 1 + r.IntN(3)
	}
	switch st {
	case stActive, stSuspended:
		if renewals == 0 || sub.trial {
			back := durN(r, time.Duration(27*T)*day)
			if r.Float64() < 0.15 || sub.trial && T == 1 && r.Float64() < 0.3 {
				back = time.Hour + durN(r, 6*day)
			}
			firstTerm(now.Add(-back))
		} else {
			laterTerm(today.AddDate(0, 0, -r.IntN(27*T)), renewals)
		}
		sub.billK = 1
		for sub.termStart.AddDate(0, int(sub.billK)*int(sub.billMonths), -1).Add(day).Compare(now) <= 0 {
			sub.billK++
		}
		sub.billEnd = sub.termStart.AddDate(0, int(sub.billK)*int(sub.billMonths), -1)
		if st == stSuspended {
			sub.since = now.Add(-durN(r, now.Sub(sub.created)))
			break
		}
		if now.Before(sub.cancelUntil) && sub.created.After(now.Add(-CancellationWindow)) {
			sub.refunds = append(sub.refunds, refund{qty: sub.quantity, until: sub.created.Add(CancellationWindow)})
		}
		if r.Float64() < 0.15 {
			at := now.Add(-time.Minute - durN(r, 6*day))
			if at.After(sub.created) {
				inc := 1 + r.IntN(5)
				sub.quantity += inc
				sub.refunds = append(sub.refunds, refund{qty: inc, until: tick100ns(at).Add(CancellationWindow)})
			}
		}
	case stExpired, stDisabled:
		var since time.Time
		if st == stExpired {
			since = today.AddDate(0, 0, -(1 + r.IntN(29)))
		} else {
			since = today.AddDate(0, 0, -(1 + r.IntN(59)))
		}
		ended := since
		if st == stDisabled {
			ended = since.Add(-s.life.ExpiredToDisabled)
		}
		commitEnd := ended.Add(-day)
		termStart := commitEnd.AddDate(0, -T, 1)
		if renewals == 0 || sub.trial {
			firstTerm(termStart.Add(durN(r, day)))
		} else {
			laterTerm(termStart, renewals)
		}
		sub.commitEnd = commitEnd
		sub.billK = uint16(T / int(sub.billMonths))
		sub.billEnd = commitEnd
		sub.autoRenew = false
		sub.status, sub.since = st, since
		return
	case stDeleted:
		created := now.Add(-8*day - durN(r, 80*day))
		firstTerm(created)
		sub.billK = 1
		sub.billEnd = sub.termStart.AddDate(0, int(sub.billMonths), -1)
		sub.autoRenew = false
		sub.since = tick100ns(sub.created.Add(time.Hour + durN(r, 6*day)))
	}
	sub.status = st
}

// genLegacy dates a legacy subscription; parent is set for an add-on.
func (s *Sim) genLegacy(r *rand.Rand, sub *subscription, now time.Time, parent *subscription) {
	today := midnight(now)
	sub.termMonths = 12
	sub.billMonths = 1
	if r.IntN(3) == 0 {
		sub.billMonths = 12
	}
	sub.quantity = seatCounts[r.IntN(len(seatCounts))]
	sub.created = now.Add(-60*day - durN(r, 1500*day)).Truncate(time.Millisecond)
	if parent != nil {
		sub.parentID = parent.id
		if sub.quantity > parent.quantity {
			sub.quantity = parent.quantity
		}
		if parent.created.After(sub.created) {
			sub.created = parent.created.Add(durN(r, 30*day)).Truncate(time.Millisecond)
		}
	}
	sub.effStart = midnight(sub.created)
	sub.termStart = sub.effStart
	for !sub.termStart.AddDate(0, 12, -1).After(today.Add(-day)) {
		sub.termStart = sub.termStart.AddDate(0, 12, 0)
	}
	sub.commitEnd = sub.termStart.AddDate(0, 12, -1)
	sub.autoRenew = r.Float64() < 0.85
	sub.etagVer = 1 + uint32(r.IntN(3))
	sub.orderID = strings.ToUpper(guid(r))
	if r.Float64() < 0.12 {
		sub.status, sub.since = stSuspended, now.Add(-durN(r, 30*day))
	}
}

// genSaaS dates a marketplace subscription.
func (s *Sim) genSaaS(r *rand.Rand, sub *subscription, now time.Time) {
	sub.termMonths, sub.billMonths = 1, 1
	if r.Float64() < 0.4 {
		sub.termMonths = 12
	}
	T := int(sub.termMonths)
	sub.quantity = seatCounts[r.IntN(10)]
	sub.orderID = marketplaceOrderID(r)
	sub.autoRenew = r.Float64() < 0.7
	sub.created = tick100ns(now.Add(-2*day - durN(r, 700*day)))
	sub.effStart = tick100ns(sub.created.Add(durN(r, 5*day)))
	if sub.effStart.After(now) {
		sub.effStart = sub.created
	}
	sub.termStart = sub.effStart
	for !sub.termStart.AddDate(0, T, -1).Add(day).After(now) {
		sub.termStart = sub.termStart.AddDate(0, T, -1).Add(day)
	}
	sub.commitEnd = sub.termStart.AddDate(0, T, -1)
	switch u := r.Float64(); {
	case u < 0.05:
		sub.status, sub.since = stSuspended, now.Add(-durN(r, 20*day))
	case u < 0.12:
		sub.status, sub.since = stDeleted, now.Add(-day-durN(r, 80*day))
		sub.autoRenew = false
	}
}
