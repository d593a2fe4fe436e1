package webhook

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/pcwatch/pcwatch/internal/clock"
	"github.com/pcwatch/pcwatch/internal/events"
	"github.com/pcwatch/pcwatch/internal/state"
)

// Source is the intake's name as a hint's Origin and an actor's Source.
const Source = "webhook"

// Results of a callback (Metrics.Received): what was answered.
const (
	// ResultAccepted: a hint is durable; answered 200.
	ResultAccepted = "accepted"
	// ResultIgnored: authentic, but nothing to hint (a test event, an
	// unknown event name, no customer in the ResourceUri, a customer not
	// watched); answered 200 so that Partner Center does not retry.
	ResultIgnored = "ignored"
	// ResultRejected: forged, replayed or malformed; answered 4xx.
	ResultRejected = "rejected"
	// ResultThrottled: beyond the in-flight limit; answered 429.
	ResultThrottled = "throttled"
	// ResultUnavailable: the state file (or the certificate host) did not
	// answer in time; answered 503 so that Partner Center retries.
	ResultUnavailable = "unavailable"
)

// Reasons of a callback's result (Metrics.Received): a fixed set, so that
// a metric labelled by reason stays bounded whatever is sent.
const (
	ReasonHinted                 = "hinted"                  // accepted
	ReasonTestEvent              = "test-event"              // ignored
	ReasonUnknownEvent           = "unknown-event"           // ignored
	ReasonNoCustomer             = "no-customer"             // ignored
	ReasonUnknownCustomer        = "unknown-customer"        // ignored
	ReasonMethod                 = "method"                  // rejected 405
	ReasonContentType            = "content-type"            // rejected 415
	ReasonTooLarge               = "too-large"               // rejected 413
	ReasonNoSignature            = "no-signature"            // rejected 401
	ReasonAlgorithm              = "algorithm"               // rejected 401
	ReasonBadSignature           = "bad-signature"           // rejected 401
	ReasonNoCertificateURL       = "no-certificate-url"      // rejected 401
	ReasonCertificateHost        = "certificate-host"        // rejected 401
	ReasonCertificateUntrusted   = "certificate-untrusted"   // rejected 401
	ReasonCertificateName        = "certificate-name"        // rejected 401
	ReasonCertificateUnavailable = "certificate-unavailable" // unavailable 503 (or rejected 401 for a 4xx)
	ReasonReplay                 = "replay"                  // rejected 400
	ReasonStale                  = "stale"                   // rejected 400
	ReasonMalformed              = "malformed"               // rejected 400
	ReasonFlood                  = "flood"                   // throttled 429
	ReasonStoreTimeout           = "store-timeout"           // unavailable 503
	ReasonStoreFailed            = "store-failed"            // unavailable 503
)

// Reasons lists every reason.
var Reasons = []string{ReasonHinted, ReasonTestEvent, ReasonUnknownEvent, ReasonNoCustomer, ReasonUnknownCustomer,
	ReasonMethod, ReasonContentType, ReasonTooLarge, ReasonNoSignature, ReasonAlgorithm, ReasonBadSignature,
	ReasonNoCertificateURL, ReasonCertificateHost, ReasonCertificateUntrusted, ReasonCertificateName,
	ReasonCertificateUnavailable, ReasonReplay, ReasonStale, ReasonMalformed, ReasonFlood, ReasonStoreTimeout,
	ReasonStoreFailed}

// Metrics receives the intake's figures; implementations must be safe for
// concurrent use. Nil is allowed.
type Metrics interface {
	// Received counts one callback by result and reason (Result*,
	// Reason*).
	Received(result, reason string)
}

// Committer stores hints durably: *state.Store.
type Committer interface {
	Commit(*state.Change) error
}

var _ Committer = (*state.Store)(nil)

// Defaults of Options.
const (
	DefaultMaxBodyBytes  = 64 << 10
	DefaultMaxInFlight   = 32
	DefaultCommitTimeout = 400 * time.Millisecond
	// DefaultMaxAge is how old a callback's ResourceChangeUtcDate may be:
	// Partner Center documents a delay of up to 48 hours before
	// subscription-updated is sent, and retries a failed delivery, so a
	// tighter bound would refuse genuine callbacks.
	DefaultMaxAge = 72 * time.Hour
	// DefaultMaxSkew is how far in the future it may be.
	DefaultMaxSkew = time.Hour
	// DefaultReplayEntries bounds the replay cache.
	DefaultReplayEntries = 16384
)

// Options configure a Handler.
type Options struct {
	// Store receives the hints (Commit). Required.
	Store Committer
	// Known reports whether pcwatch watches the customer, given the id as
	// the ResourceUri spells it (the hint is keyed by that string, as the
	// activity-log tail does); callbacks of other customers are counted
	// and dropped. Required: it bounds the hints bucket.
	Known func(customerID string) bool
	// Verifier checks signatures; default NewVerifier(VerifierOptions{}).
	Verifier *Verifier
	// Clock is the time hints are stamped with and callbacks aged by;
	// default the wall clock.
	Clock clock.Clock
	// MaxBodyBytes bounds a callback body (413 beyond). Default
	// DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// MaxInFlight bounds the callbacks being handled at once, a commit
	// that outlived its answer included (429 beyond). Default
	// DefaultMaxInFlight.
	MaxInFlight int
	// CommitTimeout bounds the wait for the hint's commit; past it the
	// answer is 503 (Partner Center retries) while the commit may still
	// finish (a hint is only a trigger: a second one costs one refresh).
	// Default DefaultCommitTimeout, so that the answer leaves within ~500
	// ms of a cached certificate.
	CommitTimeout time.Duration
	// MaxAge and MaxSkew bound ResourceChangeUtcDate, when present, to
	// [now-MaxAge, now+MaxSkew] (400 outside). Defaults DefaultMaxAge,
	// DefaultMaxSkew.
	MaxAge, MaxSkew time.Duration
	// ReplayWindow is how long an accepted callback (body and signature)
	// is remembered and refused when it comes again; default MaxAge, so a
	// replay is refused either as seen or as stale. ReplayEntries bounds
	// the memory (oldest forgotten first); default DefaultReplayEntries.
	ReplayWindow  time.Duration
	ReplayEntries int
	// Metrics receives the figures; nil discards them.
	Metrics Metrics
	// Logger receives the logs; nil discards them.
	Logger *slog.Logger
	// Kick, when set, is called after a hint is durable: a non-blocking
	// kick for the refresher. It must not block.
	Kick func()
}

// Handler receives Partner Center webhook callbacks. It is an
// http.Handler for the callback URL (any path: mount it where the
// registration points). Safe for concurrent use.
//
// A callback is answered 200 only after its hint is committed to the state
// file; see Options for the other answers. Checks run cheapest first:
// in-flight limit, method, content type, body size, signature headers, the
// replay cache, the certificate and signature, the body, its age.
type Handler struct {
	o      Options
	v      *Verifier
	clock  clock.Clock
	log    *slog.Logger
	sem    chan struct{}
	replay *replayCache
}

// NewHandler checks o and applies its defaults.
func NewHandler(o Options) (*Handler, error) {
	switch {
	case o.Store == nil:
		return nil, errors.New("webhook: Options.Store is required (the open state file)")
	case o.Known == nil:
		return nil, errors.New("webhook: Options.Known is required (which customers are watched)")
	}
	if o.Verifier == nil {
		o.Verifier = NewVerifier(VerifierOptions{})
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = DefaultMaxInFlight
	}
	if o.CommitTimeout <= 0 {
		o.CommitTimeout = DefaultCommitTimeout
	}
	if o.MaxAge <= 0 {
		o.MaxAge = DefaultMaxAge
	}
	if o.MaxSkew <= 0 {
		o.MaxSkew = DefaultMaxSkew
	}
	if o.ReplayWindow <= 0 {
		o.ReplayWindow = o.MaxAge
	}
	if o.ReplayEntries <= 0 {
		o.ReplayEntries = DefaultReplayEntries
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Handler{o: o, v: o.Verifier, clock: o.Clock, log: log, sem: make(chan struct{}, o.MaxInFlight),
		replay: newReplayCache(o.ReplayEntries, o.ReplayWindow)}, nil
}

// InFlight returns how many callbacks are being handled, commits that
// outlived their answer included.
func (h *Handler) InFlight() int { return len(h.sem) }

// ServeHTTP handles one callback.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	select {
	case h.sem <- struct{}{}:
	default:
		w.Header().Set("Retry-After", "1")
		h.answer(w, r, ResultThrottled, ReasonFlood, http.StatusTooManyRequests, nil)
		return
	}
	release := true
	defer func() {
		if release {
			<-h.sem
		}
	}()
	rj := h.precheck(r)
	if rj != nil {
		h.fail(w, r, rj)
		return
	}
	body, rj := h.readBody(w, r)
	if rj != nil {
		h.fail(w, r, rj)
		return
	}
	sig, rj := signature(r.Header)
	if rj != nil {
		h.fail(w, r, rj)
		return
	}
	key := replayKey(body, sig)
	now := h.clock.Now()
	if h.replay.seen(key, now) {
		h.fail(w, r, reject(http.StatusBadRequest, ReasonReplay, "this callback (body and signature) was accepted before"))
		return
	}
	if err := h.v.Verify(r.Context(), body, sig, r.Header.Get("X-MS-Signature-Algorithm"), r.Header.Get("X-MS-Certificate-Url")); err != nil {
		var rjv *rejection
		if errors.As(err, &rjv) {
			h.fail(w, r, rjv)
		} else {
			h.fail(w, r, reject(http.StatusUnauthorized, ReasonBadSignature, "%v", err))
		}
		return
	}
	ev, err := DecodeEvent(body)
	if err != nil {
		h.fail(w, r, reject(http.StatusBadRequest, ReasonMalformed, "%v", err))
		return
	}
	if d := ev.ResourceChangeUtcDate; !d.IsZero() {
		now = h.clock.Now()
		if d.Before(now.Add(-h.o.MaxAge)) || d.After(now.Add(h.o.MaxSkew)) {
			h.fail(w, r, reject(http.StatusBadRequest, ReasonStale, "ResourceChangeUtcDate %s is outside [now-%s, now+%s]",
				d.Format(time.RFC3339), h.o.MaxAge, h.o.MaxSkew))
			return
		}
	}
	switch {
	case strings.EqualFold(ev.EventName, EventTest):
		h.answer(w, r, ResultIgnored, ReasonTestEvent, http.StatusOK, &ev)
		return
	case !hinted(ev.EventName):
		h.answer(w, r, ResultIgnored, ReasonUnknownEvent, http.StatusOK, &ev)
		return
	}
	res := ParseResourceURI(ev.ResourceURI)
	if res.CustomerID == "" {
		h.answer(w, r, ResultIgnored, ReasonNoCustomer, http.StatusOK, &ev)
		return
	}
	if !h.o.Known(res.CustomerID) {
		h.answer(w, r, ResultIgnored, ReasonUnknownCustomer, http.StatusOK, &ev)
		return
	}
	hint := hintOf(ev, res, h.clock.Now())
	done := make(chan error, 1)
	release = false // the commit goroutine holds the slot until it returns
	go func() {
		defer func() { <-h.sem }()
		done <- h.o.Store.Commit(&state.Change{Hints: []state.Hint{hint}})
	}()
	t := time.NewTimer(h.o.CommitTimeout)
	defer t.Stop()
	select {
	case err := <-done:
		if err != nil {
			h.log.Error("webhook hint not stored; Partner Center will retry", "customer", res.CustomerID, "err", err)
			w.Header().Set("Retry-After", "5")
			h.answer(w, r, ResultUnavailable, ReasonStoreFailed, http.StatusServiceUnavailable, &ev)
			return
		}
	case <-t.C:
		w.Header().Set("Retry-After", "5")
		h.answer(w, r, ResultUnavailable, ReasonStoreTimeout, http.StatusServiceUnavailable, &ev)
		return
	case <-r.Context().Done():
		h.answer(w, r, ResultUnavailable, ReasonStoreTimeout, http.StatusServiceUnavailable, &ev)
		return
	}
	h.replay.add(key, h.clock.Now())
	if h.o.Kick != nil {
		h.o.Kick()
	}
	h.answer(w, r, ResultAccepted, ReasonHinted, http.StatusOK, &ev)
}

// hintOf is the hint of an authentic event.
func hintOf(ev Event, res Resource, now time.Time) state.Hint {
	hint := state.Hint{CustomerID: res.CustomerID, FirstAt: now, LastAt: now, Count: 1, Origin: Source}
	a := &events.Actor{Source: Source, OperationType: ev.EventName, OperationDate: ev.ResourceChangeUtcDate}
	if res.SubscriptionID != "" {
		hint.Subscriptions = []string{res.SubscriptionID}
	}
	hint.Actors = map[string]*events.Actor{res.SubscriptionID: a}
	return hint
}

func (h *Handler) precheck(r *http.Request) *rejection {
	if r.Method != http.MethodPost {
		return reject(http.StatusMethodNotAllowed, ReasonMethod, "method %s (callbacks are POST)", clip(r.Method))
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || (mt != "application/json" && mt != "text/json") {
		return reject(http.StatusUnsupportedMediaType, ReasonContentType, "content type %q (callbacks are application/json)", clip(r.Header.Get("Content-Type")))
	}
	if r.ContentLength > h.o.MaxBodyBytes {
		return reject(http.StatusRequestEntityTooLarge, ReasonTooLarge, "a body of %d bytes (at most %d)", r.ContentLength, h.o.MaxBodyBytes)
	}
	return nil
}

func (h *Handler) readBody(w http.ResponseWriter, r *http.Request) ([]byte, *rejection) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.o.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, reject(http.StatusRequestEntityTooLarge, ReasonTooLarge, "a body over %d bytes", h.o.MaxBodyBytes)
		}
		return nil, reject(http.StatusBadRequest, ReasonMalformed, "reading the body: %v", err)
	}
	return body, nil
}

func (h *Handler) fail(w http.ResponseWriter, r *http.Request, rj *rejection) {
	result := ResultRejected
	if rj.status == http.StatusServiceUnavailable {
		result = ResultUnavailable
		w.Header().Set("Retry-After", "30")
	}
	if rj.status == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", http.MethodPost)
	}
	h.log.Warn("webhook callback refused", "status", rj.status, "reason", rj.reason, "remote", r.RemoteAddr, "err", rj.err)
	h.answer(w, r, result, rj.reason, rj.status, nil)
}

func (h *Handler) answer(w http.ResponseWriter, r *http.Request, result, reason string, status int, ev *Event) {
	if h.o.Metrics != nil {
		h.o.Metrics.Received(result, reason)
	}
	if ev != nil {
		h.log.Debug("webhook callback", "result", result, "reason", reason, "event", clip(ev.EventName), "resource", clip(ev.ResourceURI))
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = fmt.Fprintf(w, "{\"result\":%s,\"reason\":%s}\n", strconv.Quote(result), strconv.Quote(reason))
}

func replayKey(body, sig []byte) [32]byte {
	hs := sha256.New()
	var n [8]byte
	l := uint64(len(body))
	for i := range n {
		n[i] = byte(l >> (8 * i))
	}
	hs.Write(n[:])
	hs.Write(body)
	hs.Write(sig)
	var k [32]byte
	copy(k[:], hs.Sum(nil))
	return k
}
