package pcsim

import "time"

// event is a lifecycle transition kind, in tie-break priority order.
type event uint8

const (
	evNone    event = iota
	evRefund        // a refundable seat batch's window closes
	evBilling       // the billing period ends inside the term
	evTerm          // the term ends: renew, convert a trial, or expire
	evDisable       // expired -> disabled
	evRemove        // disabled/deleted -> removed
)

// nextEvent returns sub's earliest pending transition and when it is due;
// evNone and the zero time when nothing is pending.
func (s *Sim) nextEvent(sub *subscription) (event, time.Time) {
	var (
		best event
		at   time.Time
	)
	consider := func(e event, t time.Time) {
		if best == evNone || t.Before(at) {
			best, at = e, t
		}
	}
	if len(sub.refunds) > 0 {
		consider(evRefund, sub.refunds[0].until)
	}
	live := sub.status == stActive || sub.status == stSuspended
	if live && sub.hasTerm() {
		td := sub.termDue()
		if sub.isNCE() && sub.status == stActive {
			if bd := sub.billEnd.Add(day); bd.Before(td) {
				consider(evBilling, bd)
			}
		}
		consider(evTerm, td)
	}
	switch sub.status {
	case stExpired:
		consider(evDisable, sub.since.Add(s.life.ExpiredToDisabled))
	case stDisabled:
		consider(evRemove, sub.since.Add(s.life.DisabledToRemoved))
	case stDeleted:
		consider(evRemove, sub.since.Add(s.life.DeletedToRemoved))
	}
	return best, at
}

// syncLocked applies, in due order, every transition due at or before now.
// Lock held.
func (s *Sim) syncLocked(now time.Time) {
	if len(s.dueq) == 0 || s.dueq[0].due.After(now) {
		return
	}
	prev := s.cause
	s.cause = CauseLifecycle
	for len(s.dueq) > 0 && !s.dueq[0].due.After(now) {
		sub := s.dueq[0]
		ev, at := s.nextEvent(sub)
		s.apply(sub, ev, at)
	}
	s.cause = prev
}

// apply performs one lifecycle transition at its due time. Every branch
// either moves the subscription's next due time forward or removes it, so
// syncLocked terminates. Lock held.
func (s *Sim) apply(sub *subscription, ev event, at time.Time) {
	switch ev {
	case evRefund:
		s.mutateSub(sub, at, "subscription.refundable", "refundableQuantity", func() {
			i := 0
			for i < len(sub.refunds) && !sub.refunds[i].until.After(at) {
				i++
			}
			sub.refunds = append([]refund(nil), sub.refunds[i:]...)
		})
	case evBilling:
		s.mutateSub(sub, at, "subscription.billingcycle", "billingCycleEndDate", func() {
			sub.billK++
			sub.billEnd = sub.termStart.AddDate(0, int(sub.billK)*int(sub.billMonths), -1)
		})
	case evTerm:
		switch {
		case sub.status != stActive || !sub.autoRenew:
			s.setStatus(sub, at, stExpired)
		case sub.trial:
			s.mutateSub(sub, at, "subscription.trialconverted", "isTrial", func() {
				if sub.off.paid != nil {
					sub.off = sub.off.paid
				}
				sub.trial = false
				sub.termMonths, sub.billMonths = 1, 1
				s.startTerm(sub, at)
			})
		default:
			s.mutateSub(sub, at, "subscription.renewed", "commitmentEndDate", func() {
				if n := sub.next; n != nil {
					sub.off, sub.termMonths, sub.billMonths, sub.quantity = n.off, n.termMonths, n.billMonths, n.quantity
					sub.next = nil
				}
				s.startTerm(sub, at)
			})
		}
	case evDisable:
		s.setStatus(sub, at, stDisabled)
	case evRemove:
		s.removeSub(sub, at)
	default:
		// Unreachable: a queued subscription always has an event.
		s.unschedule(sub)
	}
}

// startTerm begins a new term at start (a renewal, a conversion or a
// purchase's first term, which passes the purchase instant). Lock held.
func (s *Sim) startTerm(sub *subscription, start time.Time) {
	switch sub.fam {
	case famSaaS:
		sub.termStart = start
		sub.commitEnd = start.AddDate(0, int(sub.termMonths), -1)
	default:
		d := midnight(start)
		sub.termStart = d
		sub.commitEnd = d.AddDate(0, int(sub.termMonths), -1)
	}
	if sub.isNCE() {
		sub.cancelUntil = start.Add(CancellationWindow)
		sub.billK = 1
		sub.billEnd = sub.termStart.AddDate(0, int(sub.billMonths), -1)
	}
}

func (s *Sim) setStatus(sub *subscription, at time.Time, st status) {
	s.mutateSub(sub, at, "subscription.status", "status", func() {
		sub.status = st
		sub.since = at
	})
}

// removeSub drops sub from its customer and the due queue, logging
// subscription.removed. Lock held.
func (s *Sim) removeSub(sub *subscription, at time.Time) {
	c := sub.cust
	if i, _ := c.findSub(sub.id); i >= 0 {
		c.subs = append(c.subs[:i], c.subs[i+1:]...)
	}
	s.unschedule(sub)
	s.appendLog(Mutation{At: at, Op: "subscription.removed", CustomerID: c.id, ResourceKind: ResourceSubscription,
		ResourceID: sub.id, Old: subJSON(sub.wire(true))})
}

func midnight(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}
