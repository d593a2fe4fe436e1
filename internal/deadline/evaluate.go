package deadline

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pcwatch/pcwatch/internal/events"
)

const day = 24 * time.Hour

// Config holds the thresholds: how long before each deadline to warn.
type Config struct {
	// Thresholds are the thresholds of each rule. A rule absent (or nil)
	// warns at its defaults (Rule.Defaults); an empty list never warns.
	Thresholds map[*Rule][]time.Duration
	// RenewalAllTerms announces renewals of monthly terms too; by default
	// only terms of a year or more, which renew rarely and cost the most.
	RenewalAllTerms bool
	// LateAfter is the grace: an event fired within this of its threshold
	// is on time; one fired later is late or first-seen-inside (see
	// Evaluate). Default 5 minutes (comfortably above the evaluation
	// interval). On an accelerated clock it is in the clock's time.
	LateAfter time.Duration
	// SightingLag is how long after a deadline's recorded first sighting
	// the evaluator may first be able to act on it: a poll cycle records
	// what it lists with the cycle's start, and commits a customer's
	// listing up to a cycle later. A threshold crossed before the first
	// sighting, or less than SightingLag after it, is first-seen-inside,
	// never late. Default 20 minutes (the default 15-minute interval, its
	// jitter and the grace); the watcher derives it from its interval and
	// clock rate.
	SightingLag time.Duration
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	c := Config{Thresholds: map[*Rule][]time.Duration{}, LateAfter: 5 * time.Minute, SightingLag: 20 * time.Minute}
	for _, r := range rules {
		if r.HasThresholds() {
			c.Thresholds[r] = r.Defaults()
		}
	}
	return c
}

func (c Config) withDefaults() Config {
	if c.LateAfter <= 0 {
		c.LateAfter = DefaultConfig().LateAfter
	}
	if c.SightingLag <= 0 {
		c.SightingLag = DefaultConfig().SightingLag
	}
	return c
}

// ThresholdsOf returns the thresholds of rule r.
func (c Config) ThresholdsOf(r *Rule) []time.Duration {
	if ths := c.Thresholds[r]; ths != nil {
		return ths
	}
	return r.defaults
}

// Deadline is one upcoming deadline of a subscription.
type Deadline struct {
	Rule       *Rule
	At         time.Time
	Quantity   int // refund batches
	Thresholds []time.Duration
	// Seen is when the watcher first saw the deadline (Facts' seen times);
	// zero when unknown.
	Seen time.Time
}

// Deadlines lists a subscription's deadlines that still matter (live
// subscriptions only), whether past or not.
func Deadlines(f Facts, cfg Config) []Deadline {
	cfg = cfg.withDefaults()
	if !live(f.Status) {
		return nil
	}
	var out []Deadline
	for _, r := range rules {
		if r.due == nil {
			continue
		}
		for _, d := range r.due(f, cfg.ThresholdsOf(r), cfg) {
			d.Rule = r
			out = append(out, d)
		}
	}
	return out
}

// Firing is one deadline event to emit.
type Firing struct {
	Rule      *Rule
	Deadline  time.Time
	Threshold time.Duration // 0 for cancellation-closed
	Quantity  int           // refund batches
	Timing    events.Timing
	// Ledger are the ledger keys to record with it: the fired threshold and
	// any earlier ones skipped because a tighter one had passed too.
	Ledger []string
}

// LedgerKey names one (entity, rule, deadline instant, threshold).
func LedgerKey(entity string, r *Rule, at time.Time, threshold time.Duration) string {
	return entity + "|" + r.name + "|" + strconv.FormatInt(at.Unix(), 10) + "|" + strconv.FormatInt(int64(threshold/time.Second), 10)
}

// LedgerDeadline reads the deadline instant back from a ledger key.
func LedgerDeadline(key string) (time.Time, bool) {
	_, _, at, _, ok := ParseLedgerKey(key)
	return at, ok
}

// ParseLedgerKey reads a ledger key written by LedgerKey back. The rule is
// nil for a name this build does not know.
func ParseLedgerKey(key string) (entity string, r *Rule, at time.Time, threshold time.Duration, ok bool) {
	parts := strings.Split(key, "|")
	if len(parts) != 4 {
		return "", nil, time.Time{}, 0, false
	}
	n, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil {
		return "", nil, time.Time{}, 0, false
	}
	th, err := strconv.ParseInt(parts[3], 10, 64)
	if err != nil {
		return "", nil, time.Time{}, 0, false
	}
	r, _ = RuleNamed(parts[1])
	return parts[0], r, time.Unix(n, 0).UTC(), time.Duration(th) * time.Second, true
}

// Late reports whether the firing is late (Timing == events.TimingLate).
func (f Firing) Late() bool { return f.Timing == events.TimingLate }

// Evaluate returns what fires now for one subscription. fired reports
// whether a ledger key was recorded before. The rules:
//   - each (entity, kind, deadline, threshold) fires at most once, ever;
//   - when several thresholds of one deadline have passed unfired, only the
//     tightest fires, and the others are recorded as skipped;
//   - nothing fires for a deadline already past, except
//     cancellation-window-closed, once, for a window seen open;
//   - its timing (see timingOf) is on-time when every threshold it fires or
//     skips passed at most LateAfter ago; otherwise late when one of those
//     that passed longer ago passed at least SightingLag after the deadline
//     was first seen (the watcher knew it in time and did not fire: it
//     was down), else first-seen-inside.
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
		if fired(LedgerKey(entity, d.Rule, d.At, tightest)) {
			continue
		}
		var unfired []string
		var passed []time.Time // when each unfired threshold passed
		for _, th := range crossed {
			if k := LedgerKey(entity, d.Rule, d.At, th); !fired(k) {
				unfired = append(unfired, k)
				passed = append(passed, d.At.Add(-th))
			}
		}
		out = append(out, Firing{
			Rule: d.Rule, Deadline: d.At, Threshold: tightest, Quantity: d.Quantity,
			Timing: timingOf(passed, d.Seen, now, cfg),
			Ledger: unfired,
		})
	}
	if f.NCE && live(f.Status) && !f.CancelBy.IsZero() && f.CancelSeenOpen.Equal(f.CancelBy) && !now.Before(f.CancelBy) {
		if k := LedgerKey(entity, CancellationClosed, f.CancelBy, 0); !fired(k) {
			out = append(out, Firing{Rule: CancellationClosed, Deadline: f.CancelBy,
				Timing: timingOf([]time.Time{f.CancelBy}, f.CancelBySeen, now, cfg), Ledger: []string{k}})
		}
	}
	return out
}

// timingOf is the timing of a firing at now that covers thresholds passed
// at the instants passed, of a deadline first seen at seen (zero:
// unknown). A threshold passed at most LateAfter ago is on time. One
// passed longer ago was missed by the watcher — late — only if the
// deadline was known in time: first seen at least SightingLag before the
// threshold passed. Otherwise the watcher could not have fired it earlier:
// first-seen-inside. An unknown first sighting is never late (no state
// says the watcher knew the deadline in time).
func timingOf(passed []time.Time, seen, now time.Time, cfg Config) events.Timing {
	t := events.TimingOnTime
	for _, at := range passed {
		if now.Sub(at) <= cfg.LateAfter {
			continue
		}
		if !seen.IsZero() && !at.Before(seen.Add(cfg.SightingLag)) {
			return events.TimingLate
		}
		t = events.TimingFirstSeenInside
	}
	return t
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
