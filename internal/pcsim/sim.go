package pcsim

import (
	"container/heap"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pcwatch/pcwatch/internal/clock"
)

// Options configure a simulator. The zero value is a valid, empty simulator
// on the real clock that accepts any bearer token.
type Options struct {
	// Seed makes the dataset, new identifiers, RandomMutations and the random
	// faults deterministic.
	Seed int64
	// Customers is how many customers New generates.
	Customers int
	// SubscriptionsPerCustomer fixes each generated customer's subscription
	// count; 0 gives a realistic mix of 2 to 14 (about 8 on average).
	SubscriptionsPerCustomer int
	// Clock is business time (Partner Center's calendar): the dataset is
	// generated relative to its reading at New, and lifecycle transitions fall
	// due on it. nil means clock.Real{}.
	Clock clock.Clock
	// Wall is the wall clock used by the rate limiter and for Mutation.Wall.
	// nil means clock.Real{}.
	Wall clock.Clock
	// Token is the bearer token the API requires; "" accepts any token (an
	// "Authorization: Bearer ..." header is still required).
	Token string
	// IncludeRefundableInList makes list items carry refundableQuantity as
	// GET-by-id does; by default they omit it, as the documented lists do.
	IncludeRefundableInList bool
	// Lifecycle sets retention periods; zero fields take the defaults.
	Lifecycle Lifecycle
	// Sleep waits out injected latency. nil waits on a real timer, returning
	// early with ctx's error when the request is cancelled. Tests inject a
	// function that records the duration and returns at once.
	Sleep func(ctx context.Context, d time.Duration) error
	// Logger receives the simulator's logs; nil discards them.
	Logger *slog.Logger
	// Audit configures the activity log (GET /v1/auditrecords); the zero
	// value records every partner change, visible at once. An invalid
	// configuration (see SetAudit) is replaced by the zero value.
	Audit AuditConfig
	// Webhooks configures the callbacks to the registered URL (see
	// webhook.go); WebhookSigner signs them (nil: every attempt fails, as
	// a sender without a key would) and WebhookClient sends them (nil:
	// http.DefaultClient; redirects are never followed).
	Webhooks      WebhookConfig
	WebhookSigner *WebhookSigner
	WebhookClient *http.Client
}

// Lifecycle holds the retention periods of ended subscriptions.
type Lifecycle struct {
	ExpiredToDisabled time.Duration // expired -> disabled; default 30 days
	DisabledToRemoved time.Duration // disabled -> removed from listings; default 60 days
	DeletedToRemoved  time.Duration // cancelled (deleted) -> removed; default 90 days
}

const day = 24 * time.Hour

// CancellationWindow is how long after a purchase, renewal or seat increase
// an NCE change can be reversed (168 hours).
const CancellationWindow = 168 * time.Hour

// Causes of a Mutation.
const (
	CauseExplicit  = "explicit"
	CauseRandom    = "random"
	CauseLifecycle = "lifecycle"
)

// Resource kinds of a Mutation.
const (
	ResourceCustomer       = "customer"
	ResourceSubscription   = "subscription"
	ResourceManagedService = "managedService"
)

// Mutation is one entry of the mutation log: one change to one resource.
// Values are JSON-friendly: strings (times as the API renders them), ints,
// bools, json.RawMessage or nil.
type Mutation struct {
	Seq          uint64    `json:"seq"`  // 1, 2, 3, ... in log order
	At           time.Time `json:"at"`   // business time; a lifecycle change's due time
	Wall         time.Time `json:"wall"` // Options.Wall when it was applied
	Op           string    `json:"op"`   // see the package doc
	Cause        string    `json:"cause"`
	CustomerID   string    `json:"customerId"`
	ResourceKind string    `json:"resourceKind"`
	ResourceID   string    `json:"resourceId"`
	Field        string    `json:"field,omitempty"`
	Old          any       `json:"old,omitempty"`
	New          any       `json:"new,omitempty"`
	Changed      []string  `json:"changed,omitempty"` // top-level properties whose rendering changed
}

// Errors wrapped by the operations' errors.
var (
	ErrNotFound     = errors.New("not found")
	ErrNotAllowed   = errors.New("not allowed")
	ErrInvalid      = errors.New("invalid argument")
	ErrClockNotFake = errors.New("the business clock is not a *clock.Fake")
)

// RuleError is the error of an operation that the data or the NCE rules
// refuse. It wraps ErrNotFound, ErrNotAllowed or ErrInvalid.
type RuleError struct {
	Code int    // Partner Center error code where one is documented (e.g. 800090), else 0
	Msg  string // what was refused and why
	kind error
}

func (e *RuleError) Error() string { return "pcsim: " + e.Msg }
func (e *RuleError) Unwrap() error { return e.kind }

func notFound(format string, a ...any) error {
	return &RuleError{Msg: fmt.Sprintf(format, a...), kind: ErrNotFound}
}
func notAllowed(code int, format string, a ...any) error {
	return &RuleError{Code: code, Msg: fmt.Sprintf(format, a...), kind: ErrNotAllowed}
}
func invalid(format string, a ...any) error {
	return &RuleError{Msg: fmt.Sprintf(format, a...), kind: ErrInvalid}
}

// Sim is a simulated Partner Center. Create it with New; it is an
// http.Handler and safe for concurrent use.
type Sim struct {
	opts   Options
	clk    clock.Clock
	frozen atomic.Pointer[time.Time] // set by Freeze
	wall   clock.Clock
	sleep  func(context.Context, time.Duration) error
	logger *slog.Logger
	life   Lifecycle

	mu       sync.Mutex
	custs    []*customer // ascending by id
	byID     map[string]*customer
	dueq     dueHeap
	log      []Mutation
	cause    string
	nextOrd  uint64
	custSeq  int // ordinal of the next customer (naming)
	idRng    *rand.Rand
	mutRng   *rand.Rand
	tokenKey []byte

	fmu      sync.Mutex
	faults   Faults
	bucket   bucket
	faultRng *rand.Rand
	rules    []Rule
	stats    statsCounters

	// Hostile mode (fmu): the configuration, the off-origin URL and the
	// number of oversized changes made so far.
	hostile   hostileState
	offOrigin string
	overSeq   uint64

	// audit is the activity log (mu).
	audit auditState
	// webhooks are the registration and the callbacks (their own mutex).
	webhooks *webhookState

	off        offOriginCounters
	streamStop chan struct{} // closed by stopStreams
	stopOnce   sync.Once
}

func seeded(seed int64, stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(uint64(seed), stream))
}

// New builds a simulator and its dataset (see the package doc for what is
// deterministic). Generating 10,000 customers takes well under a second.
func New(opts Options) *Sim {
	s := &Sim{opts: opts, clk: opts.Clock, wall: opts.Wall, sleep: opts.Sleep, logger: opts.Logger, life: opts.Lifecycle}
	if s.clk == nil {
		s.clk = clock.Real{}
	}
	if s.wall == nil {
		s.wall = clock.Real{}
	}
	if s.sleep == nil {
		s.sleep = sleepCtx
	}
	if s.logger == nil {
		s.logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if s.life.ExpiredToDisabled <= 0 {
		s.life.ExpiredToDisabled = 30 * day
	}
	if s.life.DisabledToRemoved <= 0 {
		s.life.DisabledToRemoved = 60 * day
	}
	if s.life.DeletedToRemoved <= 0 {
		s.life.DeletedToRemoved = 90 * day
	}
	s.idRng = seeded(opts.Seed, 0x6964)
	s.mutRng = seeded(opts.Seed, 0x6d7574)
	s.faultRng = seeded(opts.Seed, 0x6661756c74)
	key := sha256.Sum256(binary.BigEndian.AppendUint64([]byte("pcsim continuation token\x00"), uint64(opts.Seed)))
	s.tokenKey = key[:]
	s.audit = newAuditState(opts.Seed, opts.Audit)
	s.webhooks = newWebhookState(opts.Seed, opts.Webhooks)
	s.byID = make(map[string]*customer, opts.Customers)
	s.cause = CauseExplicit
	s.streamStop = make(chan struct{})

	now := s.Now()
	s.custs = make([]*customer, 0, opts.Customers)
	for i := 0; i < opts.Customers; i++ {
		c := s.genCustomer(i, now)
		s.custs = append(s.custs, c)
		s.byID[c.id] = c
	}
	s.custSeq = opts.Customers
	sort.Slice(s.custs, func(i, j int) bool { return s.custs[i].id < s.custs[j].id })
	s.logger.Info("pcsim dataset generated", "seed", opts.Seed, "customers", len(s.custs), "subscriptions", s.subscriptionCount(), "start", now)
	return s
}

func (s *Sim) subscriptionCount() int {
	n := 0
	for _, c := range s.custs {
		n += len(c.subs)
	}
	return n
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// lock takes the state lock and applies every lifecycle transition due by
// the business clock's current reading, which it returns.
func (s *Sim) lock() time.Time {
	s.mu.Lock()
	now := s.Now()
	s.syncLocked(now)
	return now
}

// run executes op under the lock, after the due lifecycle transitions, and
// returns the mutations op logged.
func (s *Sim) run(cause string, op func(now time.Time) error) ([]Mutation, error) {
	now := s.lock()
	defer s.mu.Unlock()
	s.cause = cause
	defer func() { s.cause = CauseExplicit }()
	start := len(s.log)
	err := op(now)
	return append([]Mutation(nil), s.log[start:]...), err
}

// Advance applies every lifecycle transition due by the business clock's
// current reading and returns the mutations they logged. Requests and
// operations do the same implicitly.
func (s *Sim) Advance() []Mutation {
	s.mu.Lock()
	defer s.mu.Unlock()
	start := len(s.log)
	s.syncLocked(s.Now())
	return append([]Mutation(nil), s.log[start:]...)
}

// AdvanceClock moves a *clock.Fake business clock forward by d and applies
// the transitions that fell due. It fails with ErrClockNotFake otherwise.
func (s *Sim) AdvanceClock(d time.Duration) ([]Mutation, error) {
	f, ok := s.clk.(*clock.Fake)
	if !ok {
		return nil, ErrClockNotFake
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f.Advance(d)
	start := len(s.log)
	s.syncLocked(s.Now())
	return append([]Mutation(nil), s.log[start:]...), nil
}

// Now returns the business clock's reading.
func (s *Sim) Now() time.Time {
	if t := s.frozen.Load(); t != nil {
		return *t
	}
	return s.clk.Now().UTC()
}

// Freeze stops business time at its current reading: from then on the
// simulator's calendar stands still (no lifecycle transition falls due),
// whatever its clock does. The chaos suite freezes it for its quiet final
// phase, so the ground truth stays put while the watcher settles.
// Freezing twice keeps the first instant.
func (s *Sim) Freeze() time.Time {
	now := s.clk.Now().UTC()
	s.frozen.CompareAndSwap(nil, &now)
	return *s.frozen.Load()
}

// Log returns the mutations with Seq > sinceSeq, oldest first.
func (s *Sim) Log(sinceSeq uint64) []Mutation {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sinceSeq >= uint64(len(s.log)) {
		return []Mutation{}
	}
	return append([]Mutation(nil), s.log[sinceSeq:]...)
}

// appendLog records m, filling Seq, Wall and Cause, and writes its audit
// record. Lock held.
func (s *Sim) appendLog(m Mutation) { s.appendLogAudit(m, nil, nil) }

// appendLogAudit is appendLog for a subscription change rendered before
// and after it (the audit record's old and new values).
func (s *Sim) appendLogAudit(m Mutation, before, after *wireSub) {
	m.Seq = uint64(len(s.log)) + 1
	m.Wall = s.wall.Now().UTC()
	m.At = m.At.UTC()
	m.Cause = s.cause
	s.log = append(s.log, m)
	s.auditMutation(&s.log[len(s.log)-1], before, after)
	s.webhookMutation(&s.log[len(s.log)-1])
}

// mutateSub applies change to sub and logs it as one mutation. field names
// the primary property whose before/after values go into Old/New. A legacy
// subscription's etag version is bumped. Lock held.
func (s *Sim) mutateSub(sub *subscription, at time.Time, op, field string, change func()) {
	before := sub.wire(true)
	change()
	if sub.fam == famLegacy || sub.fam == famLegacyAddon {
		sub.etagVer++
	}
	after := sub.wire(true)
	s.schedule(sub)
	s.appendLogAudit(Mutation{At: at, Op: op, CustomerID: sub.cust.id, ResourceKind: ResourceSubscription,
		ResourceID: sub.id, Field: field, Old: fieldValue(before, field), New: fieldValue(after, field),
		Changed: diffWire(before, after)}, before, after)
}

// fieldValue extracts a rendered property's value for the log.
func fieldValue(w *wireSub, name string) any {
	for _, e := range w.extra {
		if e.name == name {
			return e.value
		}
	}
	for _, f := range wireFields {
		if f.name != name {
			continue
		}
		v := reflect.ValueOf(w).Elem().Field(f.idx)
		if v.Kind() == reflect.Pointer {
			if v.IsNil() {
				return nil
			}
			if rq, ok := v.Interface().(*wireRefundable); ok {
				return rq.TotalQuantity
			}
			v = v.Elem()
		}
		if v.Kind() == reflect.Struct {
			return rawJSON(v.Interface())
		}
		if v.Kind() == reflect.String && v.String() == "" && name != "renewalTermDuration" && name != "partnerId" {
			return nil
		}
		return v.Interface()
	}
	return nil
}

// findCustomer looks a customer up case-insensitively. Lock held.
func (s *Sim) findCustomer(id string) (*customer, error) {
	c := s.byID[strings.ToLower(id)]
	if c == nil {
		return nil, notFound("customer %s not found", id)
	}
	return c, nil
}

// findSub looks a subscription up. Lock held.
func (s *Sim) findSub(custID, subID string) (*subscription, error) {
	c, err := s.findCustomer(custID)
	if err != nil {
		return nil, err
	}
	_, sub := c.findSub(subID)
	if sub == nil {
		return nil, notFound("subscription %s of customer %s not found", subID, custID)
	}
	return sub, nil
}

// insertCustomer adds c keeping the id order. Lock held.
func (s *Sim) insertCustomer(c *customer) {
	i := sort.Search(len(s.custs), func(i int) bool { return s.custs[i].id >= c.id })
	s.custs = append(s.custs, nil)
	copy(s.custs[i+1:], s.custs[i:])
	s.custs[i] = c
	s.byID[c.id] = c
}

// dropCustomer removes c from the index. Lock held.
func (s *Sim) dropCustomer(c *customer) {
	i := sort.Search(len(s.custs), func(i int) bool { return s.custs[i].id >= c.id })
	if i < len(s.custs) && s.custs[i] == c {
		s.custs = append(s.custs[:i], s.custs[i+1:]...)
	}
	delete(s.byID, c.id)
}

// dueHeap orders subscriptions by their next lifecycle transition, ties by
// creation order.
type dueHeap []*subscription

func (h dueHeap) Len() int { return len(h) }
func (h dueHeap) Less(i, j int) bool {
	if !h[i].due.Equal(h[j].due) {
		return h[i].due.Before(h[j].due)
	}
	return h[i].ord < h[j].ord
}
func (h dueHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].hidx, h[j].hidx = i, j
}
func (h *dueHeap) Push(x any) {
	sub := x.(*subscription)
	sub.hidx = len(*h)
	*h = append(*h, sub)
}
func (h *dueHeap) Pop() any {
	old := *h
	sub := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	sub.hidx = -1
	return sub
}

// schedule (re)queues sub at its next transition. Lock held.
func (s *Sim) schedule(sub *subscription) {
	_, at := s.nextEvent(sub)
	switch {
	case at.IsZero() && sub.hidx >= 0:
		heap.Remove(&s.dueq, sub.hidx)
	case at.IsZero():
	case sub.hidx >= 0:
		sub.due = at
		heap.Fix(&s.dueq, sub.hidx)
	default:
		sub.due = at
		heap.Push(&s.dueq, sub)
	}
}

func (s *Sim) unschedule(sub *subscription) {
	if sub.hidx >= 0 {
		heap.Remove(&s.dueq, sub.hidx)
	}
}
