package deadline

import (
	"slices"
	"strings"
	"time"

	"github.com/pcwatch/pcwatch/internal/events"
)

// A Rule is one kind of deadline: the event it fires, when by default, how
// its thresholds are configured, what its events carry and what the docs
// say of it. The rules are the variables below, listed by Rules; they are
// built once and never change, and are compared by identity.
//
// A new kind of deadline is one more rule here (with the computation of
// its instants from the facts), its event type in internal/events'
// catalog, its notifier template and sample (internal/notify's defaults)
// and docs/events.md (regenerated): the watcher's flags, its config and the
// docs' tables of thresholds and data members follow from the rule.
type Rule struct {
	name  string
	event events.Type
	// option is the flag (and PCWATCH_ variable, and config key) of its
	// thresholds; "" for a rule that fires once after its deadline.
	option, usage string
	defaults      []time.Duration
	// quantity, autoRenew: its events carry the seats of the batch
	// (quantity) or whether the subscription renews (autoRenewEnabled).
	quantity, autoRenew bool
	docs                RuleDocs
	// due lists the rule's deadlines in a live subscription's facts, each
	// with the thresholds ths; nil for a rule that fires after its
	// deadline (see Evaluate).
	due func(f Facts, ths []time.Duration, cfg Config) []Deadline
}

// RuleDocs is what docs/events.md says of a rule.
type RuleDocs struct {
	Deadline  string // the data member deadline
	Quantity  string // the data member quantity, when its events carry it
	AutoRenew string // the data member autoRenewEnabled, when its events carry it
	Late      string // the data member late, when it differs from the threshold rules'
	Timing    string // the data member timing, when it differs from the threshold rules'
	// Window is the rule's row in the table of default thresholds, Flags
	// what the row adds to its flag; Days writes its thresholds in days.
	Window, Flags string
	Days          bool
}

// The rules, in the order of the docs and of the watcher's flags.
var (
	// Cancellation warns before an NCE cancellation window closes.
	Cancellation = &Rule{
		name: "cancellation", event: events.SubscriptionCancellationClosing,
		option: "cancellation-thresholds", usage: "warn this long before an NCE cancellation window closes",
		defaults: []time.Duration{72 * time.Hour, 24 * time.Hour, 4 * time.Hour},
		docs: RuleDocs{Deadline: "When the cancellation window closes (cancellationAllowedUntilDate).",
			Window: "NCE cancellation window (`cancellationAllowedUntilDate`)"},
		due: func(f Facts, ths []time.Duration, _ Config) []Deadline {
			if !f.NCE || f.CancelBy.IsZero() {
				return nil
			}
			return []Deadline{{At: f.CancelBy, Seen: f.CancelBySeen, Thresholds: ths}}
		},
	}
	// CancellationClosed fires once when a window the watcher saw open
	// has closed.
	CancellationClosed = &Rule{
		name: "cancellation-closed", event: events.SubscriptionCancellationClosed,
		docs: RuleDocs{Deadline: "When the cancellation window closed.",
			Timing: "`on-time` when it fired within the grace of the window closing; `late` when the watcher knew the window in time but fired after that (it was down); `first-seen-inside` when the window was first seen only moments (less than a poll cycle plus the grace) before it closed (see [timing](#deadlines-and-their-timing)).",
			Late:   "`timing == \"late\"`: the watcher knew the window in time but was down when it closed."},
	}
	// Refund warns before the refund window of a batch of added seats
	// closes.
	Refund = &Rule{
		name: "refund", event: events.SubscriptionRefundClosing,
		option: "refund-thresholds", usage: "warn this long before a seat batch's refund window closes",
		defaults: []time.Duration{48 * time.Hour, 4 * time.Hour},
		quantity: true,
		docs: RuleDocs{Deadline: "When the batch's refund window closes (its allowedUntilDateTime).",
			Quantity: "The seats of the batch (batches closing at the same instant are summed).",
			Window:   "refund window of each seat batch (`allowedUntilDateTime`)"},
		due: func(f Facts, ths []time.Duration, _ Config) []Deadline {
			// Batches that close at the same instant are one deadline.
			var out []Deadline
			for _, b := range f.Refund {
				i := slices.IndexFunc(out, func(d Deadline) bool { return d.At.Equal(b.Until) })
				if i >= 0 {
					// Known since the first of them was seen.
					out[i].Quantity += b.Quantity
					if b.Seen.Before(out[i].Seen) {
						out[i].Seen = b.Seen
					}
					continue
				}
				out = append(out, Deadline{At: b.Until, Seen: b.Seen, Quantity: b.Quantity, Thresholds: ths})
			}
			return out
		},
	}
	// Renewal warns before the commitment end of an active subscription
	// (of terms of a year or more, unless RenewalAllTerms).
	Renewal = &Rule{
		name: "renewal", event: events.SubscriptionRenewalApproaching,
		option: "renewal-thresholds", usage: "warn this long before a commitment end",
		defaults:  []time.Duration{30 * day, 7 * day, day},
		autoRenew: true,
		docs: RuleDocs{Deadline: "The commitment end.", AutoRenew: "true: the subscription will renew; false: it will expire.",
			Window: "commitment end, terms of a year or more", Flags: " (`--renewal-all-terms` for all terms)", Days: true},
		due: func(f Facts, ths []time.Duration, cfg Config) []Deadline {
			if f.CommitmentEnd.IsZero() || f.CommitmentEnd.Year() >= noEndYear || f.Trial || !(cfg.RenewalAllTerms || TermAtLeastYear(f.Term)) ||
				!(f.Status == "" || strings.EqualFold(f.Status, "active")) {
				return nil
			}
			return []Deadline{{At: f.CommitmentEnd, Seen: f.CommitmentEndSeen, Thresholds: ths}}
		},
	}
	// Trial warns before a trial ends.
	Trial = &Rule{
		name: "trial", event: events.SubscriptionTrialEnding,
		option: "trial-thresholds", usage: "warn this long before a trial ends",
		defaults:  []time.Duration{7 * day, day},
		autoRenew: true,
		docs: RuleDocs{Deadline: "When the trial ends (its commitment end).",
			AutoRenew: "true: the trial converts to a paid subscription; false: it expires.", Window: "trial end", Days: true},
		due: func(f Facts, ths []time.Duration, _ Config) []Deadline {
			if f.CommitmentEnd.IsZero() || f.CommitmentEnd.Year() >= noEndYear || !f.Trial {
				return nil
			}
			return []Deadline{{At: f.CommitmentEnd, Seen: f.CommitmentEndSeen, Thresholds: ths}}
		},
	}

	rules = []*Rule{Cancellation, CancellationClosed, Refund, Renewal, Trial}
)

// Rules returns every rule, in documentation order.
func Rules() []*Rule { return slices.Clone(rules) }

// RuleNamed returns the rule of a name (as in ledger keys).
func RuleNamed(name string) (*Rule, bool) {
	for _, r := range rules {
		if r.name == name {
			return r, true
		}
	}
	return nil, false
}

// RuleOf returns the rule that fires event type t.
func RuleOf(t events.Type) (*Rule, bool) {
	for _, r := range rules {
		if r.event == t {
			return r, true
		}
	}
	return nil, false
}

// Name is the rule's name: in the deadline ledger's keys (state files hold
// them: it never changes), `watcher deadlines` and /api/deadlines.
func (r *Rule) Name() string { return r.name }

// String is Name.
func (r *Rule) String() string { return r.name }

// Event is the type of the events the rule fires.
func (r *Rule) Event() events.Type { return r.event }

// Option is the watcher's flag of the rule's thresholds (its PCWATCH_
// variable and config key derive from it), Usage its help; "" for a rule
// without thresholds.
func (r *Rule) Option() string { return r.option }
func (r *Rule) Usage() string  { return r.usage }

// Defaults returns the rule's default thresholds, widest first.
func (r *Rule) Defaults() []time.Duration { return slices.Clone(r.defaults) }

// HasThresholds reports whether the rule warns at thresholds before its
// deadline; a rule without fires once after it (cancellation-closed) and
// its events carry no threshold and no remaining time.
func (r *Rule) HasThresholds() bool { return r.due != nil }

// CarriesQuantity and CarriesAutoRenew report whether the rule's events
// carry quantity (the seats of a refund batch) and autoRenewEnabled.
func (r *Rule) CarriesQuantity() bool  { return r.quantity }
func (r *Rule) CarriesAutoRenew() bool { return r.autoRenew }

// Docs returns what docs/events.md says of the rule.
func (r *Rule) Docs() RuleDocs { return r.docs }
