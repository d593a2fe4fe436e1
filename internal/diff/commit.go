package diff

import (
	"fmt"
	"time"

	"github.com/pcwatch/pcwatch/internal/deadline"
	pc "github.com/pcwatch/pcwatch/internal/partnercenter"
	"github.com/pcwatch/pcwatch/internal/resource"
	"github.com/pcwatch/pcwatch/internal/state"
)

// CommitCustomer diffs one customer's complete listing against the store
// and commits the result — snapshot, pending marks and events — in one
// transaction. An unchanged customer is compared inside a read transaction
// and writes nothing. Only one goroutine may commit a given customer at a
// time (the poller polls each customer from one worker).
func CommitCustomer(s *state.Store, l *Listing, o Options) (*Result, error) {
	var res *Result
	err := s.View(func(r *state.ReadTx) error {
		snap, err := r.Customer(l.CustomerID, l.Kinds...)
		if err != nil {
			return err
		}
		res, err = Customer(snap, l, o)
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := s.Commit(&res.Change); err != nil {
		return nil, fmt.Errorf("customer %s: %w", l.CustomerID, err)
	}
	return res, nil
}

// CommitCustomerList diffs the complete customer list against the store
// and commits the result in one transaction. inScope, when not nil,
// restricts the diff to the customers it accepts (a --customers filter):
// known customers outside it are neither compared nor removed.
func CommitCustomerList(s *state.Store, fresh []resource.Entity, o Options, inScope func(id string) bool) (*Result, error) {
	var res *Result
	err := s.View(func(r *state.ReadTx) error {
		known := map[string]state.Record{}
		if err := r.ForEach(resource.Customers, func(k string, rec state.Record) error {
			if inScope == nil || inScope(k) {
				known[k] = rec
			}
			return nil
		}); err != nil {
			return err
		}
		pending := map[string]state.Pending{}
		if err := r.PendingAll(resource.Customers, func(k string, p state.Pending) error {
			if inScope != nil && !inScope(k) {
				return nil
			}
			pending[k] = p
			return nil
		}); err != nil {
			return err
		}
		tombs := map[string]uint64{}
		if err := r.TombsAll(resource.Customers, func(k string, rev uint64) error {
			tombs[k] = rev
			return nil
		}); err != nil {
			return err
		}
		var err error
		res, err = CustomerList(known, pending, tombs, r.Baselined(resource.Customers, ""), fresh, o)
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := s.Commit(&res.Change); err != nil {
		return nil, fmt.Errorf("customer list: %w", err)
	}
	return res, nil
}

// CommitRefunds records refund batches read by id (nil: read, none) in the
// deadline facts of a customer's subscriptions, after the listing was
// committed. Subscriptions no longer stored are skipped.
func CommitRefunds(s *state.Store, customerID string, fetched map[string]*pc.RefundableQuantity, now time.Time) error {
	if len(fetched) == 0 {
		return nil
	}
	var ch state.Change
	err := s.View(func(r *state.ReadTx) error {
		snap, err := r.Customer(customerID, resource.Subscriptions)
		if err != nil {
			return err
		}
		for id, rq := range fetched {
			rec, ok := snap.Records[resource.Subscriptions][id]
			if !ok {
				continue
			}
			key := customerID + "/" + id
			var f deadline.Facts // unreadable facts start afresh
			if sf, _ := deadline.StoredFacts(key, rec); sf != nil {
				f = *sf
			}
			f.SetRefund(rq, now)
			rec = rec.Clone()
			rec.Meta, rec.Watch, rec.Updated = f.Encode(), f.RefundWatchUntil(), now
			ch.Puts = append(ch.Puts, state.Put{Kind: resource.Subscriptions, Key: key, Record: rec})
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := s.Commit(&ch); err != nil {
		return fmt.Errorf("customer %s: refund batches: %w", customerID, err)
	}
	return nil
}
