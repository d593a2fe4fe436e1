package oracle

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Receipt is one delivery a webhook receiver accepted (answered 2xx).
type Receipt struct {
	EventID   string    // the CloudEvent id in the body
	WebhookID string    // the webhook-id header
	At        time.Time // wall time it arrived
	Attempt   string    // X-Pcwatch-Attempt
}

// DLQEntry is one dead-lettered message.
type DLQEntry struct {
	Seq     uint64 // sequence in the dead-letter stream
	EventID string
	Channel string
	Reason  string
	Status  int
}

// DeliveryInput is what CheckDelivery needs.
type DeliveryInput struct {
	Stream []Event
	// Routed says whether an event is routed to the webhook channel whose
	// receipts are given.
	Routed   func(Event) bool
	Receipts []Receipt
	// NotifierKills are the wall instants the notifier was killed (kill -9).
	NotifierKills []time.Time
	// KillSlack: a receipt up to this long after a kill still counts as
	// before it (a request written just before the kill can be handled by
	// the receiver just after).
	KillSlack time.Duration
	// DLQ holds the dead-letter stream; DLQChannel and DLQRouted name the
	// channel expected to dead-letter everything routed to it.
	DLQ        []DLQEntry
	DLQChannel string
	DLQRouted  func(Event) bool
}

// DeliveryStats says what CheckDelivery saw.
type DeliveryStats struct {
	Expected   int // events routed to the webhook
	Receipts   int // deliveries accepted
	Duplicates int // ids received more than once, each explained by a kill
	Explained  []string
	DLQ        int // dead-letter entries
}

// CheckDelivery checks, for a webhook channel: every event routed to it was
// received, by id (and webhook-id equal to the id); nothing else was; an id
// received more than once only when a notifier kill falls between each
// receipt and the next (the documented at-least-once window: a send the
// receiver accepted whose "delivered" record the notifier had not written
// when it died; a receipt within KillSlack after the kill counts as before
// it). For the dead-letter queue: it holds exactly the events
// routed to DLQChannel, each once, and nothing of any other channel.
func CheckDelivery(in DeliveryInput) ([]string, DeliveryStats) {
	var st DeliveryStats
	var problems []string
	byID := map[string]Event{}
	for _, e := range in.Stream {
		byID[e.ID] = e
	}
	got := map[string][]Receipt{}
	for _, r := range in.Receipts {
		if r.WebhookID != r.EventID {
			problems = append(problems, fmt.Sprintf("delivery: webhook-id %q differs from the event id %s in the body", r.WebhookID, r.EventID))
		}
		got[r.EventID] = append(got[r.EventID], r)
	}
	st.Receipts = len(in.Receipts)
	kills := append([]time.Time(nil), in.NotifierKills...)
	sort.Slice(kills, func(i, j int) bool { return kills[i].Before(kills[j]) })
	for _, e := range in.Stream {
		if !in.Routed(e) {
			continue
		}
		st.Expected++
		if len(got[e.ID]) == 0 {
			problems = append(problems, fmt.Sprintf("delivery: event lost on the way to the webhook: %s was never received", e))
		}
	}
	ids := make([]string, 0, len(got))
	for id := range got {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		rs := got[id]
		e, ok := byID[id]
		if !ok {
			problems = append(problems, fmt.Sprintf("delivery: the webhook received event id %s, which is not in the stream", id))
			continue
		}
		if !in.Routed(e) {
			problems = append(problems, fmt.Sprintf("delivery: the webhook received %s, which no route sends to it", e))
		}
		if len(rs) < 2 {
			continue
		}
		sort.Slice(rs, func(i, j int) bool { return rs[i].At.Before(rs[j].At) })
		explained := true
		var why []string
		for i := 1; i < len(rs); i++ {
			k := sort.Search(len(kills), func(j int) bool { return kills[j].Add(in.KillSlack).After(rs[i-1].At) })
			if k == len(kills) || !kills[k].Before(rs[i].At) {
				explained = false
				problems = append(problems, fmt.Sprintf("delivery: duplicate: %s received again at %s (attempt %s) after %s (attempt %s) with no notifier kill in between",
					e, rs[i].At.Format("15:04:05.000"), rs[i].Attempt, rs[i-1].At.Format("15:04:05.000"), rs[i-1].Attempt))
				continue
			}
			why = append(why, fmt.Sprintf("first at %s, notifier killed at %s, again at %s", rs[i-1].At.Format("15:04:05.000"),
				kills[k].Format("15:04:05.000"), rs[i].At.Format("15:04:05.000")))
		}
		if explained {
			st.Duplicates++
			st.Explained = append(st.Explained, fmt.Sprintf("%s: %s", e, strings.Join(why, "; ")))
		}
	}

	// Dead letters.
	st.DLQ = len(in.DLQ)
	dl := map[string][]DLQEntry{}
	for _, d := range in.DLQ {
		if d.Channel != in.DLQChannel {
			desc := d.EventID
			if e, ok := byID[d.EventID]; ok {
				desc = e.String()
			}
			problems = append(problems, fmt.Sprintf("delivery: the dead-letter queue holds %s for channel %q (reason %s, status %d), not only the broken channel %q", desc, d.Channel, d.Reason, d.Status, in.DLQChannel))
			continue
		}
		dl[d.EventID] = append(dl[d.EventID], d)
	}
	for _, e := range in.Stream {
		if !in.DLQRouted(e) {
			continue
		}
		switch n := len(dl[e.ID]); {
		case n == 0:
			problems = append(problems, fmt.Sprintf("delivery: %s is routed to %q, which always refuses, but is not in the dead-letter queue", e, in.DLQChannel))
		case n > 1:
			problems = append(problems, fmt.Sprintf("delivery: duplicate: %s is in the dead-letter queue %d times (seqs %v)", e, n, dlqSeqs(dl[e.ID])))
		}
	}
	for id, ds := range dl {
		e, ok := byID[id]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("delivery: the dead-letter queue holds event id %s (seq %d), which is not in the stream", id, ds[0].Seq))
		case !in.DLQRouted(e):
			problems = append(problems, fmt.Sprintf("delivery: the dead-letter queue holds %s, which is not routed to %q", e, in.DLQChannel))
		}
	}
	sort.Strings(problems)
	return problems, st
}

func dlqSeqs(ds []DLQEntry) []uint64 {
	var out []uint64
	for _, d := range ds {
		out = append(out, d.Seq)
	}
	return out
}
