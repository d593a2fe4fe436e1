package oracle

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/pcwatch/pcwatch/internal/events"
	"github.com/pcwatch/pcwatch/internal/pcsim"
)

// Span is an interval of business time.
type Span struct{ From, To time.Time }

// DeadlineInput is what CheckDeadlines needs.
type DeadlineInput struct {
	Events []Event // the stream, in order
	Truth  Truth
	Cycles Cycles
	// Up are the spans of business time during which a watcher process
	// ran its deadline evaluator (from when its operations server answered
	// to its kill or stop).
	Up []Span
	// End is the end of the observed span: the instant the simulator was
	// frozen. Thresholds crossed later are not required.
	End time.Time
	// MinUp is how much watcher uptime (business time) a span must contain
	// before a threshold in it is required to fire: a few evaluation
	// intervals.
	MinUp time.Duration
	// Cancellation and Trial are the watcher's thresholds.
	Cancellation, Trial []time.Duration
}

// DeadlineStats says what CheckDeadlines looked at.
type DeadlineStats struct {
	Events   int            // deadline events whose timing was checked
	Windows  int            // cancellation windows and trial ends reconstructed
	Seen     int            // of those, shown by some event (the watcher knew them)
	Required int            // (window, threshold) pairs required to fire exactly once
	Excluded map[string]int // pairs not required, by reason
	// NeverShown describes the windows no event showed (at most 10): the
	// simulator had them too briefly for a listing to see them (a purchase
	// and its customer's removal in one poll interval, say). A lost event
	// that showed one is caught by the model (revision gaps, completeness).
	NeverShown []string
}

// Deadline kinds checked against the reconstruction.
const (
	kindCancellation = "cancellation window"
	kindTrial        = "trial end"
)

type window struct {
	en          Entity
	kind        string
	d           time.Time
	from, until time.Time // when the simulator had it (until: zero while open)
	fromWhat    string
}

type subTrack struct {
	en     Entity
	live   bool
	nce    bool
	trial  bool
	cancel *window
	trialW *window
}

func liveStatus(s string) bool {
	return strings.EqualFold(s, "active") || strings.EqualFold(s, "suspended")
}

// trialEnd is the instant a trial ends as the API renders it
// (commitmentEndDateTime, 23:59:59 of the end day); pcsim.State gives the
// end day at 00:00:00Z.
func trialEnd(day time.Time) time.Time {
	y, m, d := day.UTC().Date()
	return time.Date(y, m, d, 23, 59, 59, 0, time.UTC)
}

// createdSub is what a subscription.created mutation's New JSON says.
type createdSub struct {
	Status                       string `json:"status"`
	IsTrial                      bool   `json:"isTrial"`
	CancellationAllowedUntilDate string `json:"cancellationAllowedUntilDate"`
	CommitmentEndDateTime        string `json:"commitmentEndDateTime"`
}

// reconstruct replays the log from the initial state and returns every
// cancellation window and trial end the simulator had, with when.
func reconstruct(t Truth) ([]*window, map[Entity]*subTrack, []string) {
	var all []*window
	var problems []string
	subs := map[Entity]*subTrack{}
	open := func(s *subTrack, kind string, d, at time.Time, what string) {
		w := &window{en: s.en, kind: kind, d: d, from: at, fromWhat: what}
		all = append(all, w)
		if kind == kindCancellation {
			s.cancel = w
		} else {
			s.trialW = w
		}
	}
	closeAll := func(s *subTrack, at time.Time) {
		for _, w := range []*window{s.cancel, s.trialW} {
			if w != nil && w.until.IsZero() {
				w.until = at
			}
		}
		s.cancel, s.trialW = nil, nil
	}
	for _, c := range t.Initial.Customers {
		for _, ss := range c.Subscriptions {
			s := &subTrack{en: SubscriptionEntity(c.ID, ss.ID), live: liveStatus(ss.Status), nce: ss.CancellationAllowedUntil != nil, trial: ss.IsTrial}
			subs[s.en] = s
			if !s.live {
				continue
			}
			if s.nce {
				open(s, kindCancellation, *ss.CancellationAllowedUntil, t.Initial.At, "the initial state")
			}
			if s.trial {
				open(s, kindTrial, trialEnd(ss.CommitmentEndDate), t.Initial.At, "the initial state")
			}
		}
	}
	for _, mu := range t.Log {
		if mu.ResourceKind != pcsim.ResourceSubscription {
			continue
		}
		en := MutationEntity(mu)
		what := fmt.Sprintf("mutation %d (%s)", mu.Seq, mu.Op)
		s := subs[en]
		if mu.Op == "subscription.created" {
			var cs createdSub
			b, _ := json.Marshal(mu.New)
			if err := json.Unmarshal(b, &cs); err != nil {
				problems = append(problems, fmt.Sprintf("oracle: %s: cannot read the created subscription: %v", what, err))
				continue
			}
			s = &subTrack{en: en, live: liveStatus(cs.Status), trial: cs.IsTrial, nce: cs.CancellationAllowedUntilDate != ""}
			subs[en] = s
			if s.live && s.nce {
				d, err := time.Parse(time.RFC3339Nano, cs.CancellationAllowedUntilDate)
				if err != nil {
					problems = append(problems, fmt.Sprintf("oracle: %s: cancellationAllowedUntilDate: %v", what, err))
				} else {
					open(s, kindCancellation, d, mu.At, what)
				}
			}
			if s.live && s.trial {
				d, err := time.Parse(time.RFC3339Nano, cs.CommitmentEndDateTime)
				if err != nil {
					problems = append(problems, fmt.Sprintf("oracle: %s: commitmentEndDateTime: %v", what, err))
				} else {
					open(s, kindTrial, d, mu.At, what)
				}
			}
			continue
		}
		if s == nil {
			problems = append(problems, fmt.Sprintf("oracle: %s: %s is not in the initial state and was never created", what, en))
			continue
		}
		switch mu.Op {
		case "subscription.removed":
			closeAll(s, mu.At)
			delete(subs, en)
		case "subscription.status":
			st, _ := mu.New.(string)
			if !liveStatus(st) {
				closeAll(s, mu.At)
				s.live = false
			} else if !s.live {
				// Back to live from an ended status: the windows are not
				// followed further (the simulator never does this today).
				s.live = true
			}
		case "subscription.renewed", "subscription.trialconverted":
			closeAll(s, mu.At)
			if mu.Op == "subscription.trialconverted" {
				s.trial = false
			}
			if s.live && s.nce {
				open(s, kindCancellation, mu.At.Add(pcsim.CancellationWindow), mu.At, what)
			}
		}
	}
	return all, subs, problems
}

// selfCheck compares the reconstruction with the final state: a mismatch
// is a flaw of the oracle (or of the simulator's log), not of the watcher.
func selfCheck(subs map[Entity]*subTrack, final pcsim.State) []string {
	var problems []string
	inFinal := map[Entity]bool{}
	for _, c := range final.Customers {
		for _, ss := range c.Subscriptions {
			en := SubscriptionEntity(c.ID, ss.ID)
			inFinal[en] = true
			s := subs[en]
			if s == nil {
				problems = append(problems, fmt.Sprintf("oracle: reconstruction lost %s, which the final state has", en))
				continue
			}
			if !s.live || !liveStatus(ss.Status) {
				continue
			}
			if ss.CancellationAllowedUntil != nil && (s.cancel == nil || !s.cancel.d.Equal(*ss.CancellationAllowedUntil)) {
				problems = append(problems, fmt.Sprintf("oracle: reconstructed cancellation window of %s is %v, the final state says %s", en, wd(s.cancel), ss.CancellationAllowedUntil.UTC().Format(time.RFC3339Nano)))
			}
			if ss.IsTrial && (s.trialW == nil || !s.trialW.d.Equal(trialEnd(ss.CommitmentEndDate))) {
				problems = append(problems, fmt.Sprintf("oracle: reconstructed trial end of %s is %v, the final state says %s", en, wd(s.trialW), trialEnd(ss.CommitmentEndDate).Format(time.RFC3339)))
			}
		}
	}
	for en := range subs {
		if !inFinal[en] {
			problems = append(problems, fmt.Sprintf("oracle: reconstruction keeps %s, which the final state does not have", en))
		}
	}
	sort.Strings(problems)
	return problems
}

func wd(w *window) string {
	if w == nil {
		return "none"
	}
	return w.d.UTC().Format(time.RFC3339Nano)
}

// dkey identifies a deadline of one subscription: kind and instant (whole
// seconds, as the watcher's ledger keys it).
type dkey struct {
	en   Entity
	kind string
	d    int64
}

func kindOf(t events.Type) string {
	switch t {
	case events.SubscriptionCancellationClosing, events.SubscriptionCancellationClosed:
		return kindCancellation
	case events.SubscriptionTrialEnding:
		return kindTrial
	}
	return ""
}

func uptime(up []Span, lo, hi time.Time) time.Duration {
	var total time.Duration
	for _, s := range up {
		a, b := s.From, s.To
		if a.Before(lo) {
			a = lo
		}
		if b.After(hi) {
			b = hi
		}
		if b.After(a) {
			total += b.Sub(a)
		}
	}
	return total
}

func maxTime(ts ...time.Time) time.Time {
	m := ts[0]
	for _, t := range ts[1:] {
		if t.After(m) {
			m = t
		}
	}
	return m
}

func minTime(ts ...time.Time) time.Time {
	m := ts[0]
	for _, t := range ts[1:] {
		if t.Before(m) {
			m = t
		}
	}
	return m
}

// CheckDeadlines checks the deadline events:
//
//   - timing, for every deadline event: a threshold event fires inside its
//     threshold (deadline - threshold <= time < deadline) and says so
//     consistently (threshold, remaining); cancellation-window-closed fires
//     at or after the deadline and only for a window an earlier event of
//     the subscription showed open;
//   - no (subscription, kind, deadline, threshold) fires twice;
//   - every cancellation-window-closing and trial-ending event is about a
//     window the simulator had (reconstructed from the initial state and
//     the mutation log);
//   - completeness: for every reconstructed window and threshold, let
//     [lo, hi) be the span in which that threshold is the tightest one
//     crossed (from deadline - threshold to the next tighter threshold's
//     instant, or the deadline), cut to when the watcher knew the window
//     (the start of the cycle after the first event showing it), to when
//     the simulator had it unchanged (until a status change to an ended
//     status, a renewal, a conversion or a removal) and to the observed
//     span (before End). If the watcher ran for at least MinUp inside
//     [lo, hi), its evaluator had to fire exactly that threshold there:
//     exactly one event for (subscription, deadline, threshold) must be in
//     the stream. Otherwise the pair is excluded (a later, tighter event
//     marked late legitimately covers it) and counted by reason.
func CheckDeadlines(in DeadlineInput) ([]string, DeadlineStats) {
	st := DeadlineStats{Excluded: map[string]int{}}
	var problems []string
	ths := map[string][]time.Duration{kindCancellation: slices.Clone(in.Cancellation), kindTrial: slices.Clone(in.Trial)}
	for _, v := range ths {
		slices.Sort(v)
		slices.Reverse(v) // widest first
	}

	// Timing, duplicates, seen-open windows.
	fired := map[dkey]map[int64][]Event{} // threshold seconds -> events
	seen := map[dkey]Event{}              // first change event showing the deadline
	seenOpen := map[dkey]bool{}
	for _, e := range in.Events {
		en, ok := EntityOf(e)
		if !ok || en.Kind != KindSubscription {
			continue
		}
		d := e.Data
		if e.IsChange() && d.After != nil {
			if c := d.After.CancellationAllowedUntilDate; c != nil {
				k := dkey{en, kindCancellation, c.Unix()}
				if _, ok := seen[k]; !ok {
					seen[k] = e
				}
				if e.Time.Before(*c) {
					seenOpen[k] = true
				}
			}
			if d.After.IsTrial != nil && *d.After.IsTrial && d.After.CommitmentEndDate != nil {
				k := dkey{en, kindTrial, d.After.CommitmentEndDate.Unix()}
				if _, ok := seen[k]; !ok {
					seen[k] = e
				}
			}
		}
		if !e.IsDeadline() {
			continue
		}
		st.Events++
		if d.Deadline == nil {
			problems = append(problems, fmt.Sprintf("deadline: %s: event without a deadline: %s", en, e))
			continue
		}
		dl := *d.Deadline
		// timing (absent from watchers before it): one of the three, and
		// late is timing == late.
		if d.Timing != "" && (!d.Timing.Valid() || d.Late == nil || *d.Late != (d.Timing == events.TimingLate)) {
			problems = append(problems, fmt.Sprintf("deadline: %s: timing %q with late %v: want on-time, first-seen-inside or late, and late == (timing == late): %s", en, d.Timing, derefBool(d.Late), e))
		}
		if e.Type == events.SubscriptionCancellationClosed {
			if e.Time.Before(dl) {
				problems = append(problems, fmt.Sprintf("deadline: %s: cancellation-window-closed fired at %s, before the window closed at %s: %s", en, e.Time.UTC().Format(time.RFC3339), dl.UTC().Format(time.RFC3339), e))
			}
			k := dkey{en, kindCancellation, dl.Unix()}
			if !seenOpen[k] {
				problems = append(problems, fmt.Sprintf("deadline: %s: cancellation-window-closed for a window no earlier event showed open: %s", en, e))
			}
			fk := dkey{en, "closed", dl.Unix()}
			if fired[fk] == nil {
				fired[fk] = map[int64][]Event{}
			}
			fired[fk][0] = append(fired[fk][0], e)
			continue
		}
		th := time.Duration(d.ThresholdSeconds) * time.Second
		if th <= 0 {
			problems = append(problems, fmt.Sprintf("deadline: %s: threshold event without thresholdSeconds: %s", en, e))
			continue
		}
		if e.Time.Before(dl.Add(-th)) || !e.Time.Before(dl) {
			problems = append(problems, fmt.Sprintf("deadline: %s: fired at %s, outside its threshold [%s, %s): %s", en, e.Time.UTC().Format(time.RFC3339),
				dl.Add(-th).UTC().Format(time.RFC3339), dl.UTC().Format(time.RFC3339), e))
		}
		if d.Threshold != events.FormatDuration(th) {
			problems = append(problems, fmt.Sprintf("deadline: %s: threshold %q but thresholdSeconds %d: %s", en, d.Threshold, d.ThresholdSeconds, e))
		}
		if d.RemainingSeconds == nil || absDur(time.Duration(*d.RemainingSeconds)*time.Second-dl.Sub(e.Time)) > time.Second {
			problems = append(problems, fmt.Sprintf("deadline: %s: remainingSeconds %v is not deadline - time (%s): %s", en, deref64(d.RemainingSeconds), dl.Sub(e.Time), e))
		}
		kind := kindOf(e.Type)
		if kind != "" && !slices.Contains(ths[kind], th) {
			problems = append(problems, fmt.Sprintf("deadline: %s: threshold %s is not configured for the %s: %s", en, d.Threshold, kind, e))
		}
		if kind == "" {
			kind = string(e.Type) // refund windows, renewals: timing and duplicates only
		}
		fk := dkey{en, kind, dl.Unix()}
		if fired[fk] == nil {
			fired[fk] = map[int64][]Event{}
		}
		fired[fk][d.ThresholdSeconds] = append(fired[fk][d.ThresholdSeconds], e)
	}
	var keys []dkey
	for k := range fired {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return fmt.Sprint(keys[i]) < fmt.Sprint(keys[j]) })
	for _, k := range keys {
		for th, evs := range fired[k] {
			if len(evs) > 1 {
				var ds []string
				for _, e := range evs {
					ds = append(ds, e.String())
				}
				problems = append(problems, fmt.Sprintf("duplicate: %s: %s at %s threshold %ds fired %d times: %s", k.en, k.kind,
					time.Unix(k.d, 0).UTC().Format(time.RFC3339), th, len(evs), strings.Join(ds, "; ")))
			}
		}
	}

	// Reconstruction.
	wins, subs, rp := reconstruct(in.Truth)
	problems = append(problems, rp...)
	problems = append(problems, selfCheck(subs, in.Truth.Final)...)
	known := map[dkey]bool{}
	for _, w := range wins {
		known[dkey{w.en, w.kind, w.d.Unix()}] = true
	}
	for _, k := range keys {
		if k.kind != kindCancellation && k.kind != kindTrial {
			continue
		}
		if !known[k] {
			for _, evs := range fired[k] {
				problems = append(problems, fmt.Sprintf("deadline: %s: the simulator never had a %s at %s: %s", k.en, k.kind, time.Unix(k.d, 0).UTC().Format(time.RFC3339), evs[0]))
				break
			}
		}
	}
	for _, k := range keys {
		if k.kind != "closed" || known[dkey{k.en, kindCancellation, k.d}] {
			continue
		}
		problems = append(problems, fmt.Sprintf("deadline: %s: cancellation-window-closed for a window the simulator never had (%s): %s", k.en, time.Unix(k.d, 0).UTC().Format(time.RFC3339), fired[k][0][0]))
	}

	// Completeness.
	sort.Slice(wins, func(i, j int) bool {
		if wins[i].en != wins[j].en {
			return wins[i].en.String() < wins[j].en.String()
		}
		return wins[i].d.Before(wins[j].d)
	})
	for _, w := range wins {
		st.Windows++
		k := dkey{w.en, w.kind, w.d.Unix()}
		se, ok := seen[k]
		list := ths[w.kind]
		if !ok {
			st.Excluded["window never shown by an event"] += len(list)
			if len(st.NeverShown) < 10 {
				had := "until the end"
				if !w.until.IsZero() {
					had = "for " + w.until.Sub(w.from).Round(time.Minute).String() + " of business time"
				}
				st.NeverShown = append(st.NeverShown, fmt.Sprintf("%s: %s at %s, from %s, %s", w.en, w.kind, w.d.UTC().Format(time.RFC3339), w.fromWhat, had))
			}
			continue
		}
		st.Seen++
		known, ok := in.Cycles.NextStart(se.Time)
		if !ok {
			st.Excluded["window first shown by the last cycle"] += len(list)
			continue
		}
		until := w.until
		if until.IsZero() {
			until = time.Unix(1<<40, 0)
		}
		for i, th := range list {
			inst := w.d.Add(-th)
			next := w.d
			if i+1 < len(list) {
				next = w.d.Add(-list[i+1])
			}
			lo := maxTime(inst, known, w.from)
			hi := minTime(next, until, in.End)
			switch {
			case !inst.Before(in.End):
				st.Excluded["threshold after the observed span"]++
				continue
			case !next.After(known) || !next.After(w.from):
				st.Excluded["threshold passed before the watcher knew the window"]++
				continue
			case !hi.After(lo):
				st.Excluded["subscription changed or span ended inside the threshold"]++
				continue
			}
			if up := uptime(in.Up, lo, hi); up < in.MinUp {
				st.Excluded["watcher down for the threshold"]++
				continue
			}
			st.Required++
			if n := len(fired[k][int64(th/time.Second)]); n == 0 {
				var got []string
				for t, evs := range fired[k] {
					got = append(got, fmt.Sprintf("%ds x%d", t, len(evs)))
				}
				sort.Strings(got)
				problems = append(problems, fmt.Sprintf("deadline missed (event lost?): %s: %s at %s (from %s): threshold %s crossed at %s never fired, though the watcher knew the window since %s (first shown by %s) and ran for %s of [%s, %s); thresholds that fired: %v",
					w.en, w.kind, w.d.UTC().Format(time.RFC3339), w.fromWhat, events.FormatDuration(th), inst.UTC().Format(time.RFC3339),
					known.UTC().Format(time.RFC3339), se, uptime(in.Up, lo, hi).Round(time.Minute), lo.UTC().Format(time.RFC3339), hi.UTC().Format(time.RFC3339), got))
			}
		}
	}
	return problems, st
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

func deref64(p *int64) any {
	if p == nil {
		return "absent"
	}
	return *p
}

func derefBool(p *bool) any {
	if p == nil {
		return "absent"
	}
	return *p
}
