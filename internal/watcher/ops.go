package watcher

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pcwatch/pcwatch/internal/activity"
	"github.com/pcwatch/pcwatch/internal/actor"
	"github.com/pcwatch/pcwatch/internal/cli"
	"github.com/pcwatch/pcwatch/internal/clock"
	"github.com/pcwatch/pcwatch/internal/deadline"
	"github.com/pcwatch/pcwatch/internal/opsguard"
	"github.com/pcwatch/pcwatch/internal/poller"
	"github.com/pcwatch/pcwatch/internal/relay"
	"github.com/pcwatch/pcwatch/internal/resource"
	"github.com/pcwatch/pcwatch/internal/secret"
	"github.com/pcwatch/pcwatch/internal/state"
)

// health answers /readyz.
type health struct {
	store    *state.Store
	nc       *nats.Conn
	relay    func() relay.Health   // nil: not checked
	actors   func() []actor.Status // nil: not checked
	interval time.Duration
	started  time.Time
	// listFailures: consecutive failed customer lists that make the
	// watcher not ready (--failure-threshold).
	listFailures int
	// progress is the poller's sweep progress (/api/progress); nil: not
	// served.
	progress func() poller.Progress

	mu         sync.Mutex
	lastCycle  time.Time
	lastRep    *poller.Report
	listStreak int   // consecutive cycles whose customer list failed
	cycleErr   error // the last cycle could not run at all
}

// cycled records a finished cycle.
func (h *health) cycled(r *poller.Report) {
	h.mu.Lock()
	h.lastCycle, h.lastRep, h.cycleErr = time.Now(), r, nil
	if r.CustomerListOK {
		h.listStreak = 0
	} else {
		h.listStreak++
	}
	h.mu.Unlock()
}

// cycleFailed records a cycle that could not run (the state file failed).
func (h *health) cycleFailed(err error) {
	h.mu.Lock()
	h.cycleErr = err
	h.mu.Unlock()
}

// maxOutboxUnhealthy: beyond this many waiting events with NATS down, the
// watcher reports not ready.
const maxOutboxUnhealthy = 10000

// relayFailuresUnready: this many failed relay drains in a row (about a
// minute of retrying with the relay's backoff) while events wait make the
// watcher not ready, when NATS is connected (something other than an
// outage, which the outbox rides out, keeps events from being stored) or
// refuses the credentials (which waiting does not fix).
const relayFailuresUnready = 8

// ready reports readiness and why not: every actor runs (none is
// restarting or failed), the state file is open, events can
// flow (NATS connected, or the outbox is still small), a cycle finished
// recently (within three intervals plus a grace period for the first one),
// the last cycle could run, and the customer list has not failed in
// listFailures consecutive cycles.
func (h *health) ready() (bool, []string) {
	var why []string
	depth, err := h.store.OutboxLen()
	if err != nil {
		why = append(why, "state file: "+err.Error())
	}
	if !h.nc.IsConnected() && depth > maxOutboxUnhealthy {
		why = append(why, fmt.Sprintf("NATS disconnected and %d events waiting in the outbox", depth))
	}
	if h.relay != nil && depth > 0 {
		if rh := h.relay(); rh.ConsecutiveFailures >= relayFailuresUnready &&
			(h.nc.IsConnected() || errors.Is(rh.LastError, nats.ErrAuthorization)) {
			why = append(why, fmt.Sprintf("events are not being published (%d attempts in a row failed since %s; %d waiting in the outbox): %v",
				rh.ConsecutiveFailures, rh.FailingSince.UTC().Format(time.RFC3339), depth, rh.LastError))
		}
	}
	if h.actors != nil {
		why = append(why, actor.Down(h.actors())...)
	}
	h.mu.Lock()
	last, streak, cerr, rep := h.lastCycle, h.listStreak, h.cycleErr, h.lastRep
	h.mu.Unlock()
	if cerr != nil {
		why = append(why, "the last poll cycle failed: "+cerr.Error())
	}
	if limit := max(1, h.listFailures); streak >= limit && rep != nil {
		why = append(why, fmt.Sprintf("the customer list failed in the last %d cycles (known customers are still polled; new and removed customers are not seen): %v", streak, rep.CustomerList))
	}
	limit := 3*h.interval + 5*time.Minute
	switch {
	case last.IsZero() && time.Since(h.started) > limit:
		why = append(why, "no poll cycle has completed since start")
	case !last.IsZero() && time.Since(last) > limit:
		why = append(why, fmt.Sprintf("last poll cycle finished %s ago", time.Since(last).Round(time.Second)))
	}
	return len(why) == 0, why
}

// opsHandler serves the operations endpoints behind guard: every request
// must name this server in Host (DNS rebinding); with a token configured,
// /metrics and /api/* need it, /healthz and /readyz stay open for probes but
// a failing /readyz tells its reasons only to loopback callers and callers
// with the token.
func opsHandler(m *metrics, h *health, store *state.Store, dcfg deadline.Config, clk clock.Clock, red *secret.Redactor, guard *opsguard.Guard) http.Handler {
	mux := http.NewServeMux()
	writeJSON := func(w http.ResponseWriter, v any, err error) { writeJSON(red.Writer(w), w, v, err) }
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ok, why := h.ready()
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
			if !guard.MayShowDetails(r) {
				fmt.Fprintln(w, "not ready")
				return
			}
			for _, s := range why {
				fmt.Fprintln(red.Writer(w), s)
			}
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.Handle("GET /metrics", guard.Protect(promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})))
	mux.Handle("GET /api/state", guard.Protect(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := Inspect(store)
		writeJSON(w, s, err)
	})))
	mux.Handle("GET /api/deadlines", guard.Protect(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ds, err := Upcoming(store, dcfg, clk.Now())
		var damaged *state.DamagedError
		if errors.As(err, &damaged) {
			// The deadlines that could be read, and a warning.
			w.Header().Set("Warning", fmt.Sprintf("299 pcwatch %q", red.String(cli.ErrorLine(err))))
			err = nil
		}
		writeJSON(w, ds, err)
	})))
	mux.Handle("GET /api/progress", guard.Protect(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.progress == nil {
			http.NotFound(w, r)
			return
		}
		writeJSON(w, NewProgressView(h.progress()), nil)
	})))
	// The state file as a consistent copy (one read transaction, while
	// polling goes on): what `watcher backup` saves while this watcher
	// holds the file's lock. It carries tenant data and the outbox, so it
	// is behind the token like /api/state.
	mux.Handle("GET /api/backup", guard.Protect(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Disposition", `attachment; filename="`+state.FileName+`"`)
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if _, err := store.Backup(w); err != nil {
			// Headers are gone: the copy ends short, and `watcher
			// backup` refuses a copy that does not open.
			panic(http.ErrAbortHandler)
		}
	})))
	return guard.CheckHost(mux)
}

// ProgressView is what /api/progress answers: the running sweep's
// progress, or the last sweep's once it is done.
type ProgressView struct {
	Cycle       uint64    `json:"cycle"`
	Running     bool      `json:"running"`
	StartedAt   time.Time `json:"startedAt,omitzero"`
	Total       int       `json:"total"`
	NeverListed int       `json:"neverListed"`
	Polled      int       `json:"polled"`
	OK          int       `json:"ok"`
	Failed      int       `json:"failed"`
	Percent     float64   `json:"percent"`
	Elapsed     float64   `json:"elapsedSeconds"`
	// ETA is the time left at the pace so far, while running and once a
	// customer is done.
	ETA      *float64   `json:"etaSeconds,omitempty"`
	ETAText  string     `json:"eta,omitempty"`
	Finishes *time.Time `json:"finishesAt,omitempty"`
}

// NewProgressView renders p.
func NewProgressView(p poller.Progress) ProgressView {
	v := ProgressView{Cycle: p.Cycle, Running: p.Running, StartedAt: p.StartedAt, Total: p.Total, NeverListed: p.NeverListed,
		Polled: p.Polled, OK: p.OK, Failed: p.Failed, Elapsed: p.Elapsed().Round(time.Second).Seconds()}
	if p.Total > 0 {
		v.Percent = float64(int(1000*float64(p.Polled)/float64(p.Total))) / 10
	}
	if eta, ok := p.ETA(); ok {
		s := eta.Round(time.Second).Seconds()
		at := p.At.Add(eta).UTC().Truncate(time.Second)
		v.ETA, v.ETAText, v.Finishes = &s, fmtDur(eta), &at
	}
	return v
}

// writeJSON answers v as JSON, or err as a 500, writing the body through
// body (which redacts secrets).
func writeJSON(body io.Writer, w http.ResponseWriter, v any, err error) {
	if err != nil {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprintln(body, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(body)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// StateSummary is what `watcher state` and /api/state show. In JSON the
// record counts are members of the summary named by their kind
// (resource.Kind.Count: "customers", "subscriptions", ...), after cycle.
type StateSummary struct {
	Cycle         uint64                 `json:"-"`
	Records       map[*resource.Kind]int `json:"-"` // stored entities of each kind
	Pending       int                    `json:"pendingRemovals"`
	LedgerEntries int                    `json:"deadlineLedgerEntries"`
	Outbox        int                    `json:"outboxDepth"`
	PerCustomer   []CustomerStateRecord  `json:"perCustomer"`
	// Events larger than NATS accepts, since the state file was created:
	// published shrunk, or replaced by an ops.event-dropped notice.
	EventsTruncated uint64 `json:"eventsTruncated"`
	EventsDropped   uint64 `json:"eventsDropped"`
	// Records that no longer decode (damage since the file was opened;
	// Open refuses a damaged file): counted, the first ones named.
	DamagedCount   int      `json:"damagedRecords,omitempty"`
	DamagedRecords []string `json:"damagedRecordNames,omitempty"`
	// ChangeFeed is where the activity-log tail stands and what it has
	// hinted that is not refreshed yet.
	ChangeFeed ChangeFeedState `json:"changeFeed"`
}

// ChangeFeedState is the activity-log cursor and the pending hints.
type ChangeFeedState struct {
	// CursorNewest is the newest activity-log record seen (absent: the
	// tail never read one); CursorSeen the records it remembers to
	// deduplicate the overlapping windows.
	CursorNewest *time.Time `json:"cursorNewest,omitempty"`
	CursorSeen   int        `json:"cursorSeen"`
	CursorError  string     `json:"cursorError,omitempty"`
	// PendingHints are customers hinted and not yet refreshed; the
	// oldest waits since OldestHint.
	PendingHints int        `json:"pendingHints"`
	OldestHint   *time.Time `json:"oldestHint,omitempty"`
}

// stateFields is StateSummary without its JSON methods.
type stateFields StateSummary

// MarshalJSON writes cycle, then the count of every kind, then the rest.
func (s StateSummary) MarshalJSON() ([]byte, error) {
	rest, err := json.Marshal(stateFields(s))
	if err != nil {
		return nil, err
	}
	b := fmt.Appendf(nil, `{"cycle":%d`, s.Cycle)
	for _, k := range resource.All() {
		name, _ := json.Marshal(k.Count())
		b = fmt.Appendf(b, ",%s:%d", name, s.Records[k])
	}
	if len(rest) > len("{}") {
		b = append(append(b, ','), rest[1:]...)
	} else {
		b = append(b, '}')
	}
	return b, nil
}

// UnmarshalJSON reads what MarshalJSON writes (the CLI reads a running
// watcher's /api/state). Counts of kinds this build does not know are
// ignored.
func (s *StateSummary) UnmarshalJSON(b []byte) error {
	if err := json.Unmarshal(b, (*stateFields)(s)); err != nil {
		return err
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(b, &members); err != nil {
		return err
	}
	if v, ok := members["cycle"]; ok {
		if err := json.Unmarshal(v, &s.Cycle); err != nil {
			return fmt.Errorf("cycle: %w", err)
		}
	}
	s.Records = map[*resource.Kind]int{}
	for _, k := range resource.All() {
		if v, ok := members[k.Count()]; ok {
			var n int
			if err := json.Unmarshal(v, &n); err != nil {
				return fmt.Errorf("%s: %w", k.Count(), err)
			}
			s.Records[k] = n
		}
	}
	return nil
}

// CustomerStateRecord is one customer's line.
type CustomerStateRecord struct {
	ID               string     `json:"id"`
	Name             string     `json:"name"`
	Subscriptions    int        `json:"subscriptions"`
	LastSuccess      *time.Time `json:"lastSuccess,omitempty"`
	FailingSince     *time.Time `json:"failingSince,omitempty"`
	ConsecutiveFails int        `json:"consecutiveFailures,omitempty"`
	LastError        string     `json:"lastError,omitempty"`
}

// Inspect summarises the state file.
func Inspect(store *state.Store) (*StateSummary, error) {
	counts, err := store.Counts()
	if err != nil {
		return nil, err
	}
	cycle, err := store.Cycle()
	if err != nil {
		return nil, err
	}
	lastOK, err := store.LastOK()
	if err != nil {
		return nil, err
	}
	relayed, err := store.RelayCounts()
	if err != nil {
		return nil, err
	}
	s := &StateSummary{Cycle: cycle, Records: counts.Records,
		Pending: counts.Pending, LedgerEntries: counts.Ledger, Outbox: counts.Outbox,
		EventsTruncated: relayed.Truncated, EventsDropped: relayed.Dropped}
	subs := map[string]int{}
	damaged := &state.DamagedError{Path: store.Path()}
	// skipDamaged keeps what could be read: a damaged record is named in
	// DamagedRecords, not a reason to show nothing.
	skipDamaged := func(err error) error {
		var de *state.DamagedError
		var re *state.RecordError
		switch {
		case errors.As(err, &de):
			damaged.Merge(de)
			return nil
		case errors.As(err, &re):
			damaged.Add(re)
			return nil
		}
		return err
	}
	err = store.View(func(r *state.ReadTx) error {
		if v := r.Cursor(activity.CursorName); v != nil {
			if ci, err := activity.DecodeCursor(v); err != nil {
				s.ChangeFeed.CursorError = err.Error()
			} else {
				s.ChangeFeed.CursorSeen = ci.Seen
				if !ci.Newest.IsZero() {
					s.ChangeFeed.CursorNewest = &ci.Newest
				}
			}
		}
		if err := skipDamaged(r.Hints(func(h state.Hint) error {
			s.ChangeFeed.PendingHints++
			if s.ChangeFeed.OldestHint == nil || h.FirstAt.Before(*s.ChangeFeed.OldestHint) {
				at := h.FirstAt
				s.ChangeFeed.OldestHint = &at
			}
			return nil
		})); err != nil {
			return err
		}
		if err := skipDamaged(r.ForEach(resource.Subscriptions, func(k string, _ state.Record) error {
			c, _ := state.SplitKey(k)
			subs[c]++
			return nil
		})); err != nil {
			return err
		}
		return skipDamaged(r.ForEach(resource.Customers, func(id string, rec state.Record) error {
			name := ""
			if raw, err := rec.JSON(); err != nil {
				if err := skipDamaged(err); err != nil {
					return err
				}
			} else {
				name = resource.Customers.ViewOf(id, raw).CompanyName
			}
			cr := CustomerStateRecord{ID: id, Name: name, Subscriptions: subs[id]}
			if t, ok := lastOK[id]; ok {
				cr.LastSuccess = &t
			}
			if f, ok := r.Failure(id); ok {
				cr.FailingSince, cr.ConsecutiveFails, cr.LastError = &f.FirstAt, f.Count, f.LastError
			}
			s.PerCustomer = append(s.PerCustomer, cr)
			return nil
		}))
	})
	s.DamagedCount = damaged.Count
	for _, r := range damaged.Records {
		s.DamagedRecords = append(s.DamagedRecords, r.Error())
	}
	return s, err
}

// UpcomingDeadline is one line of `watcher deadlines`.
type UpcomingDeadline struct {
	CustomerID     string    `json:"customerId"`
	CustomerName   string    `json:"customerName"`
	SubscriptionID string    `json:"subscriptionId"`
	Offer          string    `json:"offer"`
	PartnerID      string    `json:"partnerId,omitempty"` // the reseller's MPN id
	Rule           string    `json:"kind"`                // the deadline rule's name
	ClosesAt       time.Time `json:"closesAt"`
	In             string    `json:"in"`
	InSeconds      int64     `json:"inSeconds"`
	Quantity       int       `json:"quantity,omitempty"`
	AutoRenew      *bool     `json:"autoRenewEnabled,omitempty"`
}

// Upcoming lists future deadlines, soonest first. Records that no longer
// decode are skipped: the list of the others comes with a
// *state.DamagedError naming them.
func Upcoming(store *state.Store, cfg deadline.Config, now time.Time) ([]UpcomingDeadline, error) {
	var out []UpcomingDeadline
	err := eachUpcoming(store, cfg, now, func(u UpcomingDeadline) { out = append(out, u) })
	sort.SliceStable(out, func(i, j int) bool { return out[i].ClosesAt.Before(out[j].ClosesAt) })
	return out, err
}

// eachUpcoming calls visit with every future deadline, in the state file's
// order, in one read transaction: Upcoming collects them all, the deadline
// query (query.go) keeps one page. Records that no longer decode are
// skipped and named by the *state.DamagedError it returns.
func eachUpcoming(store *state.Store, cfg deadline.Config, now time.Time, visit func(UpcomingDeadline)) error {
	names := map[string]string{}
	damaged := &state.DamagedError{Path: store.Path()}
	skipDamaged := func(err error) error {
		var de *state.DamagedError
		var re *state.RecordError
		switch {
		case errors.As(err, &de):
			damaged.Merge(de)
			return nil
		case errors.As(err, &re):
			damaged.Add(re)
			return nil
		}
		return err
	}
	err := store.View(func(r *state.ReadTx) error {
		if err := skipDamaged(r.ForEach(resource.Customers, func(id string, rec state.Record) error {
			raw, err := rec.JSON()
			if err != nil {
				return skipDamaged(err)
			}
			names[id] = resource.Customers.ViewOf(id, raw).CompanyName
			return nil
		})); err != nil {
			return err
		}
		return skipDamaged(r.ForEach(resource.Subscriptions, func(k string, rec state.Record) error {
			f, err := deadline.StoredFacts(k, rec)
			if err != nil || f == nil {
				return skipDamaged(err) // a record without facts has no deadlines
			}
			ds := deadline.Deadlines(*f, cfg)
			if len(ds) == 0 {
				return nil
			}
			cust, sub := state.SplitKey(k)
			raw, err := rec.JSON()
			if err != nil {
				return skipDamaged(err)
			}
			v := resource.Subscriptions.ViewOf(sub, raw)
			for _, d := range ds {
				if !d.At.After(now) {
					continue
				}
				u := UpcomingDeadline{CustomerID: cust, CustomerName: names[cust], SubscriptionID: sub, Offer: v.OfferName, PartnerID: v.PartnerID,
					Rule: d.Rule.Name(), ClosesAt: d.At, In: fmtDur(d.At.Sub(now)), InSeconds: int64(d.At.Sub(now) / time.Second), Quantity: d.Quantity}
				if d.Rule.CarriesAutoRenew() {
					ar := f.AutoRenew
					u.AutoRenew = &ar
				}
				visit(u)
			}
			return nil
		}))
	})
	if err == nil && damaged.Count > 0 {
		err = damaged
	}
	return err
}

// fmtDur renders "2d 3h", "3h 58m", "12m".
func fmtDur(d time.Duration) string {
	d = d.Round(time.Minute)
	days, hours, mins := d/(24*time.Hour), d%(24*time.Hour)/time.Hour, d%time.Hour/time.Minute
	switch {
	case days > 0:
		return fmt.Sprintf("%dd %dh", days, hours)
	case hours > 0:
		return fmt.Sprintf("%dh %dm", hours, mins)
	default:
		return fmt.Sprintf("%dm", mins)
	}
}
