package deadline

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pcwatch/pcwatch/internal/events"
)

// Kind is a kind of deadline.
type Kind string

// Deadline kinds.
const (
	KindCancellation       Kind = "cancellation"        // cancellation window closing
	KindCancellationClosed Kind = "cancellation-closed" // cancellation window closed
	KindRefund             Kind = "refund"              // a refundable seat batch
	KindRenewal            Kind = "renewal"             // commitment end
	KindTrial              Kind = "trial"               // trial end
)

// EventType maps a kind to its event type.
func (k Kind) EventType() events.Type {
	switch k {
	case KindCancellation:
		return events.SubscriptionCancellationClosing
	case KindCancellationClosed:
		return events.SubscriptionCancellationClosed
	case KindRefund:
		return events.SubscriptionRefundClosing
	case KindRenewal:
		return events.SubscriptionRenewalApproaching
	case KindTrial:
		return events.SubscriptionTrialEnding
	}
	return ""
}

const day = 24 * time.Hour

// Config holds the thresholds: how long before each deadline to warn.
type Config struct {
	Cancellation []time.Duration // default 72h, 24h, 4h
	Refund       []time.Duration // default 48h, 4h
	Renewal      []time.Duration // default 30d, 7d, 1d
	Trial        []time.Duration // default 7d, 1d
	// RenewalAllTerms announces renewals of monthly terms too; by default
	// only terms of a year or more, which renew rarely and cost the most.
	RenewalAllTerms bool
	// LateAfter: an event fired more than this after its threshold passed
	// is marked late. Default 5 minutes (comfortably above the evaluation
	// interval).
	LateAfter time.Duration
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		Cancellation: []time.Duration{72 * time.Hour, 24 * time.Hour, 4 * time.Hour},
		Refund:       []time.Duration{48 * time.Hour, 4 * time.Hour},
		Renewal:      []time.Duration{30 * day, 7 * day, day},
		Trial:        []time.Duration{7 * day, day},
		LateAfter:    5 * time.Minute,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Cancellation == nil {
		c.Cancellation = d.Cancellation
	}
	if c.Refund == nil {
		c.Refund = d.Refund
	}
	if c.Renewal == nil {
		c.Renewal = d.Renewal
	}
	if c.Trial == nil {
		c.Trial = d.Trial
	}
	if c.LateAfter <= 0 {
		c.LateAfter = d.LateAfter
	}
	return c
}

// Deadline is one upcoming deadline of a subscription.
type Deadline struct {
	Kind       Kind
	At         time.Time
	Quantity   int // refund batches
	Thresholds []time.Duration
}

// Deadlines lists a subscription's deadlines that still matter (live
// subscriptions only), whether past or not.
func Deadlines(f Facts, cfg Config) []Deadline {
	cfg = cfg.withDefaults()
	if !live(f.Status) {
		return nil
	}
	var out []Deadline
	if f.NCE && !f.CancelBy.IsZero() {
		out = append(out, Deadline{Kind: KindCancellation, At: f.CancelBy, Thresholds: cfg.Cancellation})
	}
	// Batches that close at the same instant are one deadline.
	var refunds []Deadline
	for _, b := range f.Refund {
		i := slices.IndexFunc(refunds, func(d Deadline) bool { return d.At.Equal(b.Until) })
		if i >= 0 {
			refunds[i].Quantity += b.Quantity
			continue
		}
		refunds = append(refunds, Deadline{Kind: KindRefund, At: b.Until, Quantity: b.Quantity, Thresholds: cfg.Refund})
	}
	out = append(out, refunds...)
	if !f.CommitmentEnd.IsZero() {
		switch {
		case f.Trial:
			out = append(out, Deadline{Kind: KindTrial, At: f.CommitmentEnd, Thresholds: cfg.Trial})
		case (cfg.RenewalAllTerms || TermAtLeastYear(f.Term)) && (f.Status == "" || strings.EqualFold(f.Status, "active")):
			out = append(out, Deadline{Kind: KindRenewal, At: f.CommitmentEnd, Thresholds: cfg.Renewal})
		}
	}
	return out
}

// Firing is one deadline event to emit.
type Firing struct {
	Kind      Kind
	Deadline  time.Time
	Threshold time.Duration // 0 for cancellation-closed
	Quantity  int           // refund batches
	Late      bool
	// Ledger are the ledger keys to record with it: the fired threshold and
	// any earlier ones skipped because a tighter one had passed too.
	Ledger []string
}

// LedgerKey names one (entity, kind, deadline instant, threshold).
func LedgerKey(entity string, k Kind, at time.Time, threshold time.Duration) string {
	return entity + "|" + string(k) + "|" + strconv.FormatInt(at.Unix(), 10) + "|" + strconv.FormatInt(int64(threshold/time.Second), 10)
}

// LedgerDeadline reads the deadline instant back from a ledger key.
func LedgerDeadline(key string) (time.Time, bool) {
	_, _, at, _, ok := ParseLedgerKey(key)
	return at, ok
}

// ParseLedgerKey reads a ledger key written by LedgerKey back.
func ParseLedgerKey(key string) (entity string, k Kind, at time.Time, threshold time.Duration, ok bool) {
	parts := strings.Split(key, "|")
	if len(parts) != 4 {
		return "", "", time.Time{}, 0, false
	}
	n, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil {
		return "", "", time.Time{}, 0, false
	}
	th, err := strconv.ParseInt(parts[3], 10, 64)
	if err != nil {
		return "", "", time.Time{}, 0, false
	}
	return parts[0], Kind(parts[1]), time.Unix(n, 0).UTC(), time.Duration(th) * time.Second, true
}

// Evaluate returns what fires now for one subscription. fired reports
// whether a ledger key was recorded before. The rules:
//   - each (entity, kind, deadline, threshold) fires at most once, ever;
//   - when several thresholds of one deadline have passed unfired, only the
//     tightest fires, marked late, and the others are recorded as skipped;
//   - a threshold fired more than LateAfter after it passed is late;
//   - nothing fires for a deadline already past, except
//     cancellation-window-closed, once, for a window seen open.
func Evaluate(entity string, f Facts, now time.Time, cfg Config, fired func(string) bool) []Firing {
	cfg = cfg.withDefaults()
	var out []Firing
	for _, d := range Deadlines(f, cfg) {
		if !now.Before(d.At) {
			continue
		}
		ths := slices.Clone(d.Thresholds)
		slices.Sort(ths) // tightest first
		var crossed []time.Duration
		for _, th := range ths {
			if !now.Before(d.At.Add(-th)) {
				crossed = append(crossed, th)
			}
		}
		if len(crossed) == 0 {
			continue
		}
		tightest := crossed[0]
		if fired(LedgerKey(entity, d.Kind, d.At, tightest)) {
			continue
		}
		var unfired []string
		for _, th := range crossed {
			if k := LedgerKey(entity, d.Kind, d.At, th); !fired(k) {
				unfired = append(unfired, k)
			}
		}
		out = append(out, Firing{
			Kind: d.Kind, Deadline: d.At, Threshold: tightest, Quantity: d.Quantity,
			Late:   len(unfired) > 1 || now.Sub(d.At.Add(-tightest)) > cfg.LateAfter,
			Ledger: unfired,
		})
	}
	if f.NCE && live(f.Status) && !f.CancelBy.IsZero() && f.CancelSeenOpen.Equal(f.CancelBy) && !now.Before(f.CancelBy) {
		if k := LedgerKey(entity, KindCancellationClosed, f.CancelBy, 0); !fired(k) {
			out = append(out, Firing{Kind: KindCancellationClosed, Deadline: f.CancelBy,
				Late: now.Sub(f.CancelBy) > cfg.LateAfter, Ledger: []string{k}})
		}
	}
	return out
}

// TermAtLeastYear reports whether an ISO 8601 duration (P1Y, P12M, P365D,
// P3Y...) is a year or longer.
func TermAtLeastYear(term string) bool {
	d, ok := ParseTerm(term)
	return ok && d >= 365*day
}

// ParseTerm reads an ISO 8601 date duration (PnYnMnWnD) as an approximate
// duration (a month is 30 days, a year 365).
func ParseTerm(term string) (time.Duration, bool) {
	s := strings.ToUpper(strings.TrimSpace(term))
	if !strings.HasPrefix(s, "P") || len(s) < 3 {
		return 0, false
	}
	s = s[1:]
	var total time.Duration
	for s != "" {
		i := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == 0 || i == len(s) {
			return 0, false
		}
		n, err := strconv.Atoi(s[:i])
		if err != nil {
			return 0, false
		}
		unit := map[byte]time.Duration{'Y': 365 * day, 'M': 30 * day, 'W': 7 * day, 'D': day}[s[i]]
		if unit == 0 {
			return 0, false
		}
		total += time.Duration(n) * unit
		s = s[i+1:]
	}
	return total, true
}

// ParseThresholds reads a comma-separated list such as "72h,24h,4h" or
// "30d,7d,1d" (d = 24h).
func ParseThresholds(s string) ([]time.Duration, error) {
	var out []time.Duration
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		var d time.Duration
		var err error
		if n, ok := strings.CutSuffix(p, "d"); ok {
			var v float64
			v, err = strconv.ParseFloat(n, 64)
			d = time.Duration(v * float64(day))
		} else {
			d, err = time.ParseDuration(p)
		}
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("threshold %q: want a positive duration such as 72h or 7d", p)
		}
		out = append(out, d)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no thresholds in %q", s)
	}
	return out, nil
}
