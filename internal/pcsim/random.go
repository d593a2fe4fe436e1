package pcsim

import "time"

// randomOps is the mix RandomMutations draws from (relative weights).
var randomOps = []struct {
	name   string
	weight int
}{
	{"increaseSeats", 22}, {"decreaseSeats", 12}, {"setAutoRenew", 10}, {"suspend", 4},
	{"reactivate", 4}, {"cancel", 4}, {"purchase", 10}, {"rename", 5}, {"scheduleNextTerm", 4},
	{"clearScheduledNextTerm", 2}, {"setAttentionNeeded", 5}, {"addCustomer", 3},
	{"removeCustomer", 1}, {"addManagedService", 3}, {"removeManagedService", 2},
	{"removeSubscription", 1},
}

// RandomMutations applies n operations drawn from a realistic mix with the
// simulator's seeded generator, choosing only operations the rules allow,
// and returns the mutations they logged (Cause "random"). It gives up after
// many refused draws, so it may apply fewer than n on a tiny dataset.
func (s *Sim) RandomMutations(n int) []Mutation {
	muts, _ := s.run(CauseRandom, func(now time.Time) error {
		done := 0
		for attempts := 0; done < n && attempts < 50*n+100; attempts++ {
			before := len(s.log)
			op := s.randomOne(now)
			if len(s.log) > before {
				done++
				s.logger.Debug("pcsim random mutation", "op", op, "mutations", len(s.log)-before)
			}
		}
		return nil
	})
	return muts
}

// randomOne tries one random operation; it reports which. Lock held.
func (s *Sim) randomOne(now time.Time) string {
	r := s.mutRng
	total := 0
	for _, o := range randomOps {
		total += o.weight
	}
	x := r.IntN(total)
	op := randomOps[0].name
	for _, o := range randomOps {
		if x < o.weight {
			op = o.name
			break
		}
		x -= o.weight
	}
	if len(s.custs) == 0 {
		s.addCustomer(now)
		return "addCustomer"
	}
	c := s.custs[r.IntN(len(s.custs))]
	var sub *subscription
	if len(c.subs) > 0 {
		sub = c.subs[r.IntN(len(c.subs))]
	}
	needSub := op != "purchase" && op != "addCustomer" && op != "removeCustomer" &&
		op != "addManagedService" && op != "removeManagedService"
	if needSub && sub == nil {
		return op
	}
	switch op {
	case "increaseSeats":
		_ = s.increaseSeats(now, c.id, sub.id, 1+r.IntN(5))
	case "decreaseSeats":
		n := 1 + r.IntN(3)
		if rt := sub.refundTotal(); rt > 0 {
			n = 1 + r.IntN(rt)
		}
		_ = s.decreaseSeats(now, c.id, sub.id, n)
	case "setAutoRenew":
		_ = s.setAutoRenew(now, c.id, sub.id, !sub.autoRenew)
	case "suspend":
		_ = s.suspend(now, c.id, sub.id)
	case "reactivate":
		_ = s.reactivate(now, c.id, sub.id)
	case "cancel":
		_ = s.cancel(now, c.id, sub.id)
	case "purchase":
		_, _ = s.purchase(now, c.id, s.randomPurchase())
	case "rename":
		_ = s.rename(now, c.id, sub.id, sub.off.name+" ("+teams[r.IntN(len(teams))]+")")
	case "scheduleNextTerm":
		next := NextTerm{Quantity: max(1, sub.quantity+r.IntN(5)-2)}
		if sub.fam == famNCE && r.IntN(3) == 0 {
			next.TermDuration = "P1Y"
			if sub.termMonths == 12 {
				next.TermDuration, next.BillingCycle = "P1M", "monthly"
			}
		}
		_ = s.scheduleNextTerm(now, c.id, sub.id, next)
	case "clearScheduledNextTerm":
		_ = s.clearScheduled(now, c.id, sub.id)
	case "setAttentionNeeded":
		_ = s.setAttention(now, c.id, sub.id, !sub.attention)
	case "addCustomer":
		s.addCustomer(now)
	case "removeCustomer":
		_ = s.removeCustomer(now, c.id)
	case "addManagedService":
		_ = s.addService(now, c.id, managedServicePool[r.IntN(len(managedServicePool))].id)
	case "removeManagedService":
		if len(c.services) > 0 {
			_ = s.removeService(now, c.id, c.services[r.IntN(len(c.services))])
		}
	case "removeSubscription":
		s.removeSub(sub, now)
	}
	return op
}

func (s *Sim) randomPurchase() PurchaseSpec {
	r := s.mutRng
	var o *offer
	switch x := r.IntN(20); {
	case x < 13:
		o = nceOffers[r.IntN(len(nceOffers))]
	case x < 15:
		o = softwareOffers[r.IntN(len(softwareOffers))]
	case x < 17:
		o = trialOffers[r.IntN(len(trialOffers))]
	default:
		o = saasOffers[r.IntN(len(saasOffers))]
	}
	spec := PurchaseSpec{OfferID: o.id, TermDuration: termName(o.terms[r.IntN(len(o.terms))])}
	if !o.trial {
		spec.Quantity = seatCounts[r.IntN(12)]
	}
	if spec.TermDuration == "P1Y" && o.fam == famNCE && r.IntN(2) == 0 {
		spec.BillingCycle = "annual"
	}
	return spec
}
