// Package deadline computes the NCE deadlines Partner Center never
// announces — the cancellation window, per-seat refund windows, renewals and
// trial ends — from the stored snapshots, and fires each threshold once.
package deadline

import (
	"encoding/json"
	"fmt"
	"time"

	pc "github.com/pcwatch/pcwatch/internal/partnercenter"
	"github.com/pcwatch/pcwatch/internal/resource"
	"github.com/pcwatch/pcwatch/internal/state"
)

// Facts are the deadline-relevant facts of one subscription, kept next to
// its snapshot (state.Record.Meta) so that evaluating deadlines never has to
// decode Partner Center JSON.
type Facts struct {
	NCE       bool      `json:"nce,omitempty"`
	Status    string    `json:"status,omitempty"`
	Quantity  int       `json:"quantity"`
	AutoRenew bool      `json:"autoRenew,omitempty"`
	Trial     bool      `json:"trial,omitempty"`
	Term      string    `json:"term,omitempty"` // ISO 8601 duration, e.g. P1Y
	PartnerID string    `json:"partnerId,omitempty"`
	CancelBy  time.Time `json:"cancelBy,omitzero"` // cancellationAllowedUntilDate
	// CancelSeenOpen is the cancellation deadline as observed while it was
	// still ahead; cancellation-window-closed fires only when it equals
	// CancelBy, i.e. for a window the watcher saw open.
	CancelSeenOpen time.Time `json:"cancelSeenOpen,omitzero"`
	// CancelBySeen is when the watcher first saw this CancelBy (a new
	// window, a moved one: the time it was listed with this value).
	CancelBySeen  time.Time `json:"cancelBySeen,omitzero"`
	CommitmentEnd time.Time `json:"commitmentEnd,omitzero"`
	// CommitmentEndSeen is when the watcher first saw this CommitmentEnd
	// (renewal and trial-end deadlines).
	CommitmentEndSeen time.Time `json:"commitmentEndSeen,omitzero"`
	// Refund batches: each NCE seat increase can be refunded until its own
	// instant. From the listing when it carries refundableQuantity, else
	// from the last get-by-id fetch.
	Refund          []Batch   `json:"refund,omitempty"`
	RefundFromList  bool      `json:"refundFromList,omitempty"`
	RefundFetchedAt time.Time `json:"refundFetchedAt,omitzero"`
	// RefundFetchedQty is the quantity when the refund batches were fetched;
	// a different quantity makes them stale.
	RefundFetchedQty int `json:"refundFetchedQty,omitempty"`
	// LastIncreaseAt is when a seat increase was last observed.
	LastIncreaseAt time.Time `json:"lastIncreaseAt,omitzero"`
}

// Batch is one refundable batch of seats.
type Batch struct {
	Quantity int       `json:"quantity"`
	Until    time.Time `json:"until"`
	// Seen is when the watcher first saw a batch closing at Until.
	Seen time.Time `json:"seen,omitzero"`
}

// The seen times (CancelBySeen, CommitmentEndSeen, Batch.Seen) tell a
// deadline first seen inside a threshold from one the watcher knew in time
// but fired late (events.Timing). Facts written before they existed have
// none: StoredFacts fills them with the record's last write (AssumeSeen),
// the latest instant the deadline was certainly known. That errs towards
// first-seen-inside, never towards a false "late": a threshold crossed
// between the real first sighting and that write is called first seen
// inside; one crossed after it is judged exactly.

// seenSince is when deadline at was first seen: prevSeen when the previous
// facts had the same deadline, else now. Zero for no deadline.
func seenSince(at, prevAt, prevSeen, now time.Time) time.Time {
	switch {
	case at.IsZero():
		return time.Time{}
	case !prevSeen.IsZero() && prevAt.Equal(at):
		return prevSeen
	}
	return now
}

// AssumeSeen fills the seen times missing from facts written before the
// watcher recorded them: each present deadline without one is taken as
// seen at t (see above). A zero t changes nothing.
func (f *Facts) AssumeSeen(t time.Time) {
	if t.IsZero() {
		return
	}
	if !f.CancelBy.IsZero() && f.CancelBySeen.IsZero() {
		f.CancelBySeen = t
	}
	if !f.CommitmentEnd.IsZero() && f.CommitmentEndSeen.IsZero() {
		f.CommitmentEndSeen = t
	}
	for i := range f.Refund {
		if f.Refund[i].Seen.IsZero() {
			f.Refund[i].Seen = t
		}
	}
}

// carrySeen gives each batch the seen time of a batch of old closing at
// the same instant, or now.
func carrySeen(batches, old []Batch, now time.Time) {
	for i := range batches {
		batches[i].Seen = now
		for _, o := range old {
			if o.Until.Equal(batches[i].Until) && !o.Seen.IsZero() && o.Seen.Before(batches[i].Seen) {
				batches[i].Seen = o.Seen
			}
		}
	}
}

// noEndYear is the year from which Partner Center's commitment end dates
// mean "no end" (9999-12-10 in the documented legacy Azure subscription).
const noEndYear = 9999

// FactsOf derives a subscription's facts from its listing, carrying over
// what the listing cannot tell (refund batches fetched by id, the
// seen-open mark, the last increase) from prev, which is nil at first
// sighting.
func FactsOf(s *pc.Subscription, prev *Facts, now time.Time) Facts {
	f := Facts{
		NCE:           s.IsNCE(),
		Status:        string(s.Status),
		Quantity:      s.Quantity,
		AutoRenew:     s.AutoRenewEnabled,
		Trial:         s.IsTrial,
		Term:          s.TermDuration,
		PartnerID:     s.PartnerID,
		CancelBy:      s.CancellationAllowedUntilDate.T,
		CommitmentEnd: s.CommitmentEnd().T,
	}
	if f.CommitmentEnd.Year() >= noEndYear {
		// Partner Center's "no end" (legacy Azure and usage-based
		// subscriptions list 9999-12-…): nothing renews or expires.
		f.CommitmentEnd = time.Time{}
	}
	if !f.CancelBy.IsZero() && now.Before(f.CancelBy) {
		f.CancelSeenOpen = f.CancelBy
	} else if prev != nil && prev.CancelSeenOpen.Equal(f.CancelBy) {
		f.CancelSeenOpen = prev.CancelSeenOpen
	}
	var prevFacts Facts // zero at first sighting
	if prev != nil {
		prevFacts = *prev
	}
	f.CancelBySeen = seenSince(f.CancelBy, prevFacts.CancelBy, prevFacts.CancelBySeen, now)
	f.CommitmentEndSeen = seenSince(f.CommitmentEnd, prevFacts.CommitmentEnd, prevFacts.CommitmentEndSeen, now)
	if prev != nil {
		f.LastIncreaseAt = prev.LastIncreaseAt
		if s.Quantity > prev.Quantity {
			f.LastIncreaseAt = now
		}
	}
	if rq := s.RefundableQuantity; rq != nil {
		f.RefundFromList = true
		f.Refund = batchesOf(rq)
		carrySeen(f.Refund, prevFacts.Refund, now)
	} else if prev != nil && !prev.RefundFromList {
		f.Refund, f.RefundFetchedAt, f.RefundFetchedQty = prev.Refund, prev.RefundFetchedAt, prev.RefundFetchedQty
	}
	return f
}

// SetRefund records refund batches fetched by id.
func (f *Facts) SetRefund(rq *pc.RefundableQuantity, now time.Time) {
	old := f.Refund
	f.Refund = batchesOf(rq)
	carrySeen(f.Refund, old, now)
	f.RefundFetchedAt = now
	f.RefundFetchedQty = f.Quantity
}

func batchesOf(rq *pc.RefundableQuantity) []Batch {
	if rq == nil {
		return nil
	}
	var out []Batch
	for _, d := range rq.Details {
		if d.AllowedUntilDateTime.Valid() && d.Quantity > 0 {
			out = append(out, Batch{Quantity: d.Quantity, Until: d.AllowedUntilDateTime.T})
		}
	}
	return out
}

// NeedsRefundFetch reports whether refund batches should be fetched by id:
// an NCE subscription whose list entry lacks them, with its cancellation
// window open or seats added in the last 7 days, whose batches were never
// fetched, are stale (the quantity changed since), or older than refresh.
func (f *Facts) NeedsRefundFetch(now time.Time, refresh time.Duration) bool {
	if !f.NCE || f.RefundFromList || !live(f.Status) {
		return false
	}
	windowOpen := !f.CancelBy.IsZero() && now.Before(f.CancelBy)
	recentIncrease := !f.LastIncreaseAt.IsZero() && now.Sub(f.LastIncreaseAt) < 7*24*time.Hour
	if !windowOpen && !recentIncrease {
		return false
	}
	return f.RefundFetchedAt.IsZero() || f.RefundFetchedQty != f.Quantity || now.Sub(f.RefundFetchedAt) >= refresh
}

// RefundWatchUntil is until when the subscription may need its refund
// batches read by id (see NeedsRefundFetch): the end of an open
// cancellation window or 7 days after the last seat increase. Zero when it
// never will (not NCE, batches come with the listing, not live).
func (f *Facts) RefundWatchUntil() time.Time {
	if !f.NCE || f.RefundFromList || !live(f.Status) {
		return time.Time{}
	}
	until := f.CancelBy
	if !f.LastIncreaseAt.IsZero() {
		if t := f.LastIncreaseAt.Add(7 * 24 * time.Hour); t.After(until) {
			until = t
		}
	}
	return until
}

// Encode serialises facts for state.Record.Meta.
func (f Facts) Encode() []byte {
	b, _ := json.Marshal(f)
	return b
}

// DecodeFacts reads facts written by Encode; empty meta gives zero facts.
func DecodeFacts(b []byte) (Facts, error) {
	var f Facts
	if len(b) == 0 {
		return f, nil
	}
	err := json.Unmarshal(b, &f)
	return f, err
}

// StoredFacts reads the facts kept with the stored subscription key (its
// state.Record.Meta). It returns nil facts, and no error, for a record
// that holds none. A record whose metadata does not decompress, or whose
// facts do not decode, gives a *state.RecordError naming it (errors.Is
// state.ErrCorrupt).
//
// It is the one reader of stored facts: the differ (previous facts, the
// partner filter, refund reads), the evaluator and /api/deadlines. Seen
// times missing from facts written by an older watcher are filled with the
// record's last write (AssumeSeen).
func StoredFacts(key string, rec state.Record) (*Facts, error) {
	meta, err := rec.MetaJSON()
	if err != nil {
		return nil, err
	}
	if len(meta) == 0 {
		return nil, nil
	}
	f, err := DecodeFacts(meta)
	if err != nil {
		return nil, &state.RecordError{Kind: resource.Subscriptions.Name(), Key: key, Err: fmt.Errorf("its deadline facts do not decode: %w", err)}
	}
	// Facts from before the seen times: their deadlines were known at the
	// record's last write at the latest.
	// (A record written without times reads back times before 1970: no
	// time, and its deadlines' sightings stay unknown, never late.)
	if epoch := time.Unix(0, 0); rec.Updated.After(epoch) {
		f.AssumeSeen(rec.Updated)
	} else if rec.FirstSeen.After(epoch) {
		f.AssumeSeen(rec.FirstSeen)
	}
	return &f, nil
}

// live reports whether a status still has deadlines worth announcing.
func live(status string) bool {
	return pc.EnumEqual(status, "active") || pc.EnumEqual(status, "suspended") || status == ""
}
