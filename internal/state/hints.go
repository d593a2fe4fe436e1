package state

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/pcwatch/pcwatch/internal/events"
)

// Buckets added after the first releases, for the change cursor (issue
// 13). Open creates them in a file that lacks them (read-only, they read as
// empty): a lost one costs only a relist — hints are triggers and a cursor
// can be rebuilt from the look-back window — so their absence is never
// called damage.
var (
	bHints   = []byte("hints")
	bCursors = []byte("cursors")
	// later are the bookkeeping buckets Open adds when missing.
	later = [][]byte{bHints, bCursors}
)

// MaxHintSubscriptions bounds the subscription ids one customer's hint
// keeps; past it the hint asks for the customer's listing only (which
// covers every subscription anyway).
const MaxHintSubscriptions = 32

// Hint is a durable trigger: something (an activity-log record, a webhook
// callback) said that a customer changed, so it should be read again
// soon. It is never state about the customer itself: a refresh reads
// Partner Center and diffs as a sweep does; the hint only says when and,
// where known, who. Hints of one customer coalesce into one (Merge).
type Hint struct {
	CustomerID string `json:"customerId"`
	// Subscriptions are subscription ids the hints named (at most
	// MaxHintSubscriptions; Overflow says more were named).
	Subscriptions []string `json:"subscriptions,omitempty"`
	Overflow      bool     `json:"overflow,omitempty"`
	// FirstAt is when the oldest coalesced hint arrived, for the
	// hint-to-event latency; LastAt the newest.
	FirstAt time.Time `json:"firstAt"`
	LastAt  time.Time `json:"lastAt"`
	// Count is how many hints coalesced; Seq increases with every merge,
	// so that finishing a refresh removes only the hints it covered.
	Count int    `json:"count"`
	Seq   uint64 `json:"seq"`
	// Origin is where the latest hint came from ("activity-log",
	// "webhook").
	Origin string `json:"origin,omitempty"`
	// Actors are who made the changes, per subscription id ("" for the
	// customer itself): of each, the record with the latest operation
	// date, whatever order the records arrived in.
	Actors map[string]*events.Actor `json:"actors,omitempty"`
}

// Merge folds n into h (the stored hint of the same customer, or a zero
// Hint) and returns the result; h is not modified.
func (h Hint) Merge(n Hint) Hint {
	out := h
	out.CustomerID = n.CustomerID
	out.Subscriptions = slices.Clone(h.Subscriptions)
	for _, s := range n.Subscriptions {
		if slices.Contains(out.Subscriptions, s) {
			continue
		}
		if len(out.Subscriptions) >= MaxHintSubscriptions {
			out.Overflow = true
			continue
		}
		out.Subscriptions = append(out.Subscriptions, s)
	}
	out.Overflow = out.Overflow || n.Overflow
	if out.FirstAt.IsZero() || (!n.FirstAt.IsZero() && n.FirstAt.Before(out.FirstAt)) {
		out.FirstAt = n.FirstAt
	}
	if n.LastAt.After(out.LastAt) {
		out.LastAt = n.LastAt
	}
	out.Count = h.Count + max(1, n.Count)
	out.Seq = h.Seq + 1
	if n.Origin != "" {
		out.Origin = n.Origin
	}
	if len(n.Actors) > 0 {
		out.Actors = make(map[string]*events.Actor, len(h.Actors)+len(n.Actors))
		for k, a := range h.Actors {
			out.Actors[k] = a
		}
		for k, a := range n.Actors {
			cur := out.Actors[k]
			if cur == nil && len(out.Actors) >= MaxHintSubscriptions+1 {
				continue
			}
			// The latest change's actor wins, whichever record was
			// read first (records can appear in the log late).
			if cur != nil && a != nil && a.OperationDate.Before(cur.OperationDate) {
				continue
			}
			out.Actors[k] = a
		}
	}
	return out
}

// HintDone says that a refresh covered customer's hint up to Seq: the
// hint is deleted when its stored Seq is at most that (a hint merged
// during the refresh survives, for the next one).
type HintDone struct {
	CustomerID string
	Seq        uint64
}

// Hint returns a customer's pending hint.
func (r *ReadTx) Hint(customerID string) (Hint, bool, error) {
	b := r.tx.Bucket(bHints)
	if b == nil {
		return Hint{}, false, nil
	}
	v := b.Get([]byte(customerID))
	if v == nil {
		return Hint{}, false, nil
	}
	h, err := decodeHint(customerID, v)
	return h, err == nil, err
}

// Hints calls fn for every pending hint, in customer-id order. A hint that
// does not decode is skipped and counted in the returned error (a
// *DamagedError) after the others.
func (r *ReadTx) Hints(fn func(Hint) error) error {
	b := r.tx.Bucket(bHints)
	if b == nil {
		return nil
	}
	d := &DamagedError{}
	err := b.ForEach(func(k, v []byte) error {
		h, err := decodeHint(string(k), v)
		if err != nil {
			d.Add(&RecordError{Kind: "hint", Key: string(k), Err: err})
			return nil
		}
		return fn(h)
	})
	if err != nil {
		return err
	}
	if len(d.Records) > 0 {
		return d
	}
	return nil
}

// Cursor returns the value stored under name by Change.Cursors (nil when
// there is none).
func (r *ReadTx) Cursor(name string) []byte {
	b := r.tx.Bucket(bCursors)
	if b == nil {
		return nil
	}
	return slices.Clone(b.Get([]byte(name)))
}

func decodeHint(key string, v []byte) (Hint, error) {
	var h Hint
	if err := json.Unmarshal(v, &h); err != nil {
		return Hint{}, fmt.Errorf("hint does not decode: %w", err)
	}
	if h.CustomerID != key {
		return Hint{}, fmt.Errorf("hint of customer %q stored under %q", h.CustomerID, key)
	}
	return h, nil
}

// applyHints writes c's hints and cursors; called by apply.
func applyHints(tx *bolt.Tx, c *Change) error {
	if len(c.Hints) == 0 && len(c.HintsDone) == 0 && len(c.Cursors) == 0 && len(c.ForgetCustomers) == 0 {
		return nil
	}
	hb, cb := tx.Bucket(bHints), tx.Bucket(bCursors)
	if hb == nil || cb == nil {
		return fmt.Errorf("the state file has no bucket of hints or cursors: it was opened read-only")
	}
	for _, n := range c.Hints {
		if n.CustomerID == "" {
			return fmt.Errorf("a hint without a customer id")
		}
		var cur Hint
		if v := hb.Get([]byte(n.CustomerID)); v != nil {
			// A stored hint that does not decode is replaced: it
			// was only a trigger.
			cur, _ = decodeHint(n.CustomerID, v)
		}
		v, err := json.Marshal(cur.Merge(n))
		if err != nil {
			return err
		}
		if err := hb.Put([]byte(n.CustomerID), v); err != nil {
			return err
		}
	}
	for _, d := range c.HintsDone {
		v := hb.Get([]byte(d.CustomerID))
		if v == nil {
			continue
		}
		if cur, err := decodeHint(d.CustomerID, v); err == nil && cur.Seq > d.Seq {
			continue
		}
		if err := hb.Delete([]byte(d.CustomerID)); err != nil {
			return err
		}
	}
	for _, id := range c.ForgetCustomers {
		if err := hb.Delete([]byte(id)); err != nil {
			return err
		}
	}
	for name, v := range c.Cursors {
		var err error
		if v == nil {
			err = cb.Delete([]byte(name))
		} else {
			err = cb.Put([]byte(name), v)
		}
		if err != nil {
			return err
		}
	}
	return nil
}
