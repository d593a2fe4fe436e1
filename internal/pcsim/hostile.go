package pcsim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Endpoint names, as Scope.Endpoint and Stats.Requests spell them.
const (
	EndpointCustomers       = "customers"       // GET /v1/customers (the paged listing)
	EndpointCustomer        = "customer"        // GET /v1/customers/{id}
	EndpointSubscriptions   = "subscriptions"   // GET /v1/customers/{id}/subscriptions
	EndpointSubscription    = "subscription"    // GET /v1/customers/{id}/subscriptions/{sid}
	EndpointManagedServices = "managedservices" // GET /v1/customers/{id}/managedservices
	EndpointProducts        = "products"        // GET /v1/customers/{id}/products
)

var endpoints = []string{EndpointCustomers, EndpointCustomer, EndpointSubscriptions, EndpointSubscription,
	EndpointManagedServices, EndpointProducts, EndpointAuditRecords}

// Shapes of a malformed 200 body (MalformedRule.Shapes): valid JSON that is
// not what the endpoint promises.
const (
	ShapeNull          = "null"          // null
	ShapeEmptyObject   = "emptyObject"   // {}
	ShapeEmptyArray    = "emptyArray"    // []
	ShapeString        = "string"        // a JSON string
	ShapeNumber        = "number"        // a JSON number
	ShapeItemsMissing  = "itemsMissing"  // a collection envelope without items; totalCount > 0
	ShapeItemsNull     = "itemsNull"     // "items": null; totalCount > 0
	ShapeItemsEmpty    = "itemsEmpty"    // "items": [] while totalCount > 0
	ShapeItemsNotArray = "itemsNotArray" // "items" is an object (the first real item, or {}); totalCount > 0
)

// AllShapes lists every malformed shape, in the order a MalformedRule
// without Shapes serves them.
var AllShapes = []string{ShapeNull, ShapeEmptyObject, ShapeEmptyArray, ShapeString, ShapeNumber,
	ShapeItemsMissing, ShapeItemsNull, ShapeItemsEmpty, ShapeItemsNotArray}

// Redirect targets (RedirectRule.Target).
const (
	// RedirectOffOrigin sends the client to the off-origin server (another
	// port of the same host; see SetOffOriginURL), which serves empty
	// collections and records whether it received credentials.
	RedirectOffOrigin = "off-origin"
	// RedirectSameOrigin sends the client to the same URL on this server
	// with the query parameter pcsim-redirected=1 added; a request that
	// carries it is never redirected again and is served normally.
	RedirectSameOrigin = "same-origin"
)

// redirectMark is the query parameter of a same-origin redirect.
const redirectMark = "pcsim-redirected"

// Endless paging modes (EndlessPaging.Mode).
const (
	// EndlessNewIDs serves, from EndlessPaging.FromPage on, pages of
	// customers that do not exist, new ids on every page.
	EndlessNewIDs = "newIds"
	// EndlessRepeat serves page FromPage-1 again and again.
	EndlessRepeat = "repeat"
)

// Slow body modes (SlowRule.Mode).
const (
	// SlowTrickle sends the real body (with its real Content-Length) in
	// chunks of ChunkBytes, one every Interval.
	SlowTrickle = "trickle"
	// SlowEndless sends a collection whose items never end (no
	// Content-Length): ChunkBytes of made-up items per write, a pause of
	// Interval between writes, until the client goes away.
	SlowEndless = "endless"
)

// CauseHostile is the Cause of the mutations an OversizedRule makes.
const CauseHostile = "hostile"

// Defaults of the hostile rules.
const (
	DefaultOversizedBytes    = 1_200_000 // OversizedRule.Bytes: over NATS's 1 MiB max payload
	DefaultEndlessPageSize   = 20        // EndlessPaging.PageSize
	DefaultTrickleChunkBytes = 64        // SlowRule.ChunkBytes, trickle
	DefaultTrickleInterval   = 100 * time.Millisecond
	DefaultEndlessChunkBytes = 32 << 10 // SlowRule.ChunkBytes, endless
)

// ErrHostile is wrapped by SetHostile's errors: a configuration that names
// an unknown endpoint, shape, mode or status, or lacks a required field.
var ErrHostile = errors.New("invalid hostile configuration")

// Scope selects the /v1 requests a hostile rule applies to. The zero Scope
// matches every request; each non-empty field narrows it.
type Scope struct {
	// Endpoint is one of the Endpoint* names; "" matches every endpoint.
	Endpoint string `json:"endpoint,omitempty"`
	// Customers are customer ids (case-insensitive). The customer listing
	// is about no customer: a scope with Customers never matches it.
	Customers []string `json:"customers,omitempty"`
	// Pages are 0-based page indexes of the customer listing (0 is the
	// first request, 1 the first continuation); a scope with Pages matches
	// only listing requests of those pages.
	Pages []int `json:"pages,omitempty"`
}

// MalformedRule answers the 200 responses of its scope with valid JSON that
// is not what the endpoint promises: Shapes in turn, one per matching
// request (empty Shapes: AllShapes). Collection shapes keep the real body's
// links (a customer page's next link too) and say totalCount = the real
// count, at least 1.
type MalformedRule struct {
	Scope  Scope    `json:"scope"`
	Shapes []string `json:"shapes,omitempty"`
}

// RedirectRule answers the requests of its scope with a redirect (Status
// 301, 302, 303, 307 or 308; 0 means 302) to Target (RedirectOffOrigin when
// empty). The Location keeps the request's path and query.
type RedirectRule struct {
	Scope  Scope  `json:"scope"`
	Status int    `json:"status,omitempty"`
	Target string `json:"target,omitempty"`
}

// ErrorRule answers every request of its scope with Status (4xx or 5xx; 0
// means 500) and the documented error body for it, for as long as it is
// configured: a persistent failure, unlike the one-shot Rule.
type ErrorRule struct {
	Scope  Scope `json:"scope"`
	Status int   `json:"status,omitempty"`
	// RetryAfter > 0 adds Retry-After in whole seconds (rounded up), e.g.
	// 24h for the 86400 a hostile server may send.
	RetryAfter time.Duration `json:"retryAfter,omitempty"`
	// EchoAuthorization puts the request's Authorization header, verbatim,
	// into the error body (its description and data), as a careless proxy
	// or token endpoint does.
	EchoAuthorization bool `json:"echoAuthorization,omitempty"`
}

// OversizedRule makes one subscription's Field huge: each time the
// customer's subscriptions are served (listing or by id), at most once per
// Every of wall time, Field gets a new value of Bytes bytes, so every poll
// sees a change whose event exceeds NATS's max payload. Each change is a
// logged mutation (Cause "hostile"; op subscription.friendlyname, or
// subscription.field for another field), so the ground truth stays exact.
// The value stays when the rule is cleared (rename the subscription or
// remove the field to shrink it).
type OversizedRule struct {
	Customer string `json:"customer"`
	// Subscription is the subscription's id; "" takes the customer's first.
	Subscription string `json:"subscription,omitempty"`
	// Field is "friendlyName" (the default) or the name of a property
	// Partner Center does not document (a custom field, rendered after
	// attributes, as SetUnknownField does).
	Field string `json:"field,omitempty"`
	// Bytes is the value's length; 0 means DefaultOversizedBytes.
	Bytes int `json:"bytes,omitempty"`
	// Every is the least wall time between two changes; 0 changes it on
	// every request.
	Every time.Duration `json:"every,omitempty"`
}

// EndlessPaging makes the customer listing never end: pages before
// FromPage (0 means 1) are served as usual; the page before FromPage links
// to a continuation, and from FromPage on every page links to the next
// with a new continuation token. Mode EndlessNewIDs fills those pages with
// PageSize (0 means DefaultEndlessPageSize, at most the request's size)
// customers that do not exist, new ids on every page; EndlessRepeat
// serves page FromPage-1's customers again on every page. A continuation
// of an endless page asked after the rule was cleared answers 400 (an
// expired continuation token).
type EndlessPaging struct {
	Mode     string `json:"mode"`
	FromPage int    `json:"fromPage,omitempty"`
	PageSize int    `json:"pageSize,omitempty"`
}

// DuplicateCustomer lists one customer twice: it is appended to the last
// page of the customer listing (a second page when the listing has one, so
// the copies are on different pages). Customer "" takes the listing's
// first customer. Different makes the copy differ (its companyName gets
// " (listed twice)").
type DuplicateCustomer struct {
	Customer  string `json:"customer,omitempty"`
	Different bool   `json:"different,omitempty"`
}

// SlowRule delivers the 200 bodies of its scope slowly (SlowTrickle) or
// endlessly (SlowEndless). ChunkBytes 0 and Interval 0 take the mode's
// defaults (trickle: DefaultTrickleChunkBytes every
// DefaultTrickleInterval; endless: DefaultEndlessChunkBytes per write,
// without a pause). Waits use Options.Sleep; a stream ends when the client
// goes away or the server shuts down.
type SlowRule struct {
	Scope      Scope         `json:"scope"`
	Mode       string        `json:"mode"`
	ChunkBytes int           `json:"chunkBytes,omitempty"`
	Interval   time.Duration `json:"interval,omitempty"`
}

// Hostile is the hostile mode: answers a real Partner Center should never
// give, each scoped to endpoints, customers or pages. The zero value is
// off. In every list the first rule whose scope matches a request applies.
// See the package doc for the order in which they are decided.
type Hostile struct {
	Malformed         []MalformedRule    `json:"malformed,omitempty"`
	Redirects         []RedirectRule     `json:"redirects,omitempty"`
	Errors            []ErrorRule        `json:"errors,omitempty"`
	Oversized         []OversizedRule    `json:"oversized,omitempty"`
	EndlessPaging     *EndlessPaging     `json:"endlessPaging,omitempty"`
	DuplicateCustomer *DuplicateCustomer `json:"duplicateCustomer,omitempty"`
	Slow              []SlowRule         `json:"slow,omitempty"`
	// AuditNoise adds records for unknown customers or of undocumented
	// operation types to every audit records page.
	AuditNoise *AuditNoise `json:"auditNoise,omitempty"`
}

// IsZero reports hostile mode off.
func (h Hostile) IsZero() bool {
	return len(h.Malformed) == 0 && len(h.Redirects) == 0 && len(h.Errors) == 0 && len(h.Oversized) == 0 &&
		h.EndlessPaging == nil && h.DuplicateCustomer == nil && len(h.Slow) == 0 && h.AuditNoise == nil
}

func hostileErr(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrHostile, fmt.Sprintf(format, a...))
}

func (sc Scope) validate(what string) error {
	if sc.Endpoint != "" && !slices.Contains(endpoints, sc.Endpoint) {
		return hostileErr("%s: endpoint %q is not one of %s", what, sc.Endpoint, strings.Join(endpoints, ", "))
	}
	if len(sc.Pages) > 0 && sc.Endpoint != "" && sc.Endpoint != EndpointCustomers {
		return hostileErr("%s: pages only apply to the %s endpoint, not %s", what, EndpointCustomers, sc.Endpoint)
	}
	for _, p := range sc.Pages {
		if p < 0 {
			return hostileErr("%s: page %d is negative (pages are 0-based)", what, p)
		}
	}
	for _, c := range sc.Customers {
		if strings.TrimSpace(c) == "" {
			return hostileErr("%s: empty customer id", what)
		}
	}
	return nil
}

// validate checks a configuration; offOrigin tells whether an off-origin
// URL is set.
func (h Hostile) validate(offOrigin bool) error {
	for i, r := range h.Malformed {
		what := fmt.Sprintf("malformed[%d]", i)
		if err := r.Scope.validate(what); err != nil {
			return err
		}
		for _, sh := range r.Shapes {
			if !slices.Contains(AllShapes, sh) {
				return hostileErr("%s: shape %q is not one of %s", what, sh, strings.Join(AllShapes, ", "))
			}
		}
	}
	for i, r := range h.Redirects {
		what := fmt.Sprintf("redirects[%d]", i)
		if err := r.Scope.validate(what); err != nil {
			return err
		}
		switch r.Status {
		case 0, 301, 302, 303, 307, 308:
		default:
			return hostileErr("%s: status %d is not a redirect (301, 302, 303, 307 or 308)", what, r.Status)
		}
		switch r.Target {
		case "", RedirectOffOrigin:
			if !offOrigin {
				return hostileErr("%s: no off-origin server: call SetOffOriginURL (Run starts one)", what)
			}
		case RedirectSameOrigin:
		default:
			return hostileErr("%s: target %q is not %q or %q", what, r.Target, RedirectOffOrigin, RedirectSameOrigin)
		}
	}
	for i, r := range h.Errors {
		what := fmt.Sprintf("errors[%d]", i)
		if err := r.Scope.validate(what); err != nil {
			return err
		}
		if r.Status != 0 && (r.Status < 400 || r.Status > 599) {
			return hostileErr("%s: status %d is not a 4xx or 5xx", what, r.Status)
		}
		if r.RetryAfter < 0 {
			return hostileErr("%s: retryAfter must not be negative", what)
		}
	}
	for i, r := range h.Oversized {
		what := fmt.Sprintf("oversized[%d]", i)
		if strings.TrimSpace(r.Customer) == "" {
			return hostileErr("%s: customer is required", what)
		}
		if r.Field != "" && r.Field != "friendlyName" && knownProperty(r.Field) {
			return hostileErr("%s: field %q is a documented subscription property; use friendlyName or a custom name", what, r.Field)
		}
		if r.Bytes < 0 || r.Every < 0 {
			return hostileErr("%s: bytes and every must not be negative", what)
		}
	}
	if e := h.EndlessPaging; e != nil {
		if e.Mode != EndlessNewIDs && e.Mode != EndlessRepeat {
			return hostileErr("endlessPaging: mode %q is not %q or %q", e.Mode, EndlessNewIDs, EndlessRepeat)
		}
		if e.FromPage < 0 || e.PageSize < 0 {
			return hostileErr("endlessPaging: fromPage and pageSize must not be negative")
		}
	}
	for i, r := range h.Slow {
		what := fmt.Sprintf("slow[%d]", i)
		if err := r.Scope.validate(what); err != nil {
			return err
		}
		if r.Mode != SlowTrickle && r.Mode != SlowEndless {
			return hostileErr("%s: mode %q is not %q or %q", what, r.Mode, SlowTrickle, SlowEndless)
		}
		if r.ChunkBytes < 0 || r.Interval < 0 {
			return hostileErr("%s: chunkBytes and interval must not be negative", what)
		}
	}
	return nil
}

// hostileState is the configuration in force and its counters. fmu.
type hostileState struct {
	cfg      Hostile
	rot      []int       // per malformed rule: requests served so far
	overLast []time.Time // per oversized rule: wall time of its last change
}

// SetHostile replaces the hostile configuration (the zero Hostile turns
// hostile mode off) and resets its counters (the shape rotation, the
// oversized rules' last change). It refuses, with an error wrapping
// ErrHostile, a configuration that names an unknown endpoint, shape, mode
// or status, or an off-origin redirect while no off-origin URL is set; the
// configuration in force then stays. Faults and the inject queue are left
// alone.
func (s *Sim) SetHostile(h Hostile) error {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	if err := h.validate(s.offOrigin != ""); err != nil {
		return err
	}
	s.hostile = hostileState{cfg: h, rot: make([]int, len(h.Malformed)), overLast: make([]time.Time, len(h.Oversized))}
	return nil
}

// CurrentHostile returns the hostile configuration in force.
func (s *Sim) CurrentHostile() Hostile {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	return s.hostile.cfg
}

func (sc Scope) match(rt route, page int) bool {
	if sc.Endpoint != "" && sc.Endpoint != rt.endpoint {
		return false
	}
	if len(sc.Customers) > 0 {
		if rt.customer == "" || !slices.ContainsFunc(sc.Customers, func(c string) bool { return strings.EqualFold(c, rt.customer) }) {
			return false
		}
	}
	if len(sc.Pages) > 0 && (rt.endpoint != EndpointCustomers || !slices.Contains(sc.Pages, page)) {
		return false
	}
	return true
}

// hostilePlan is what the hostile mode decided for one request.
type hostilePlan struct {
	status     int // non-zero: answer this (an error or a redirect) before authentication
	body       []byte
	retryAfter int
	location   string
	kind       string // the Stats.Faults kind of status

	shape     string // malformed 200 body
	endless   *EndlessPaging
	dup       *DuplicateCustomer
	oversized []oversizedChange
	slow      *SlowRule
	// auditNoise: records to add to an audit records page.
	auditNoise *AuditNoise
}

// oversizedChange is one due change of an OversizedRule.
type oversizedChange struct {
	rule OversizedRule
	seq  uint64
}

// planHostile decides the hostile answers of one /v1 request. page is the
// customer-listing page index, or -1.
func (s *Sim) planHostile(rt route, r *http.Request, page int) hostilePlan {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	hs := &s.hostile
	var p hostilePlan
	if hs.cfg.IsZero() {
		return p
	}
	for _, e := range hs.cfg.Errors {
		if !e.Scope.match(rt, page) {
			continue
		}
		p.status = e.Status
		if p.status == 0 {
			p.status = http.StatusInternalServerError
		}
		if e.RetryAfter > 0 {
			p.retryAfter = retrySeconds(e.RetryAfter)
		}
		p.body = defaultErrorBody(p.status, max(p.retryAfter, 1))
		if e.EchoAuthorization {
			p.body = echoBody(p.status, max(p.retryAfter, 1), r)
		}
		p.kind = "hostile-error"
		s.countFault(p.kind)
		return p
	}
	if !r.URL.Query().Has(redirectMark) {
		for _, d := range hs.cfg.Redirects {
			if !d.Scope.match(rt, page) {
				continue
			}
			p.status = d.Status
			if p.status == 0 {
				p.status = http.StatusFound
			}
			if d.Target == RedirectSameOrigin {
				q := r.URL.Query()
				q.Set(redirectMark, "1")
				p.location = r.URL.Path + "?" + q.Encode()
				p.kind = "hostile-redirect-same-origin"
			} else {
				p.location = s.offOrigin + r.URL.RequestURI()
				p.kind = "hostile-redirect-off-origin"
			}
			p.body = errorBody(p.status, "The resource has moved to "+p.location+".")
			s.countFault(p.kind)
			return p
		}
	}
	for i, m := range hs.cfg.Malformed {
		if !m.Scope.match(rt, page) {
			continue
		}
		shapes := m.Shapes
		if len(shapes) == 0 {
			shapes = AllShapes
		}
		p.shape = shapes[hs.rot[i]%len(shapes)]
		hs.rot[i]++
		break
	}
	if rt.endpoint == EndpointCustomers {
		if e := hs.cfg.EndlessPaging; e != nil {
			c := *e
			p.endless = &c
		}
		if d := hs.cfg.DuplicateCustomer; d != nil {
			c := *d
			p.dup = &c
		}
	}
	if n := hs.cfg.AuditNoise; n != nil && rt.endpoint == EndpointAuditRecords {
		c := *n
		p.auditNoise = &c
	}
	if rt.endpoint == EndpointSubscriptions || rt.endpoint == EndpointSubscription {
		now := s.wall.Now()
		for i, o := range hs.cfg.Oversized {
			if !strings.EqualFold(o.Customer, rt.customer) {
				continue
			}
			if last := hs.overLast[i]; !last.IsZero() && now.Sub(last) < o.Every {
				continue
			}
			hs.overLast[i] = now
			s.overSeq++
			p.oversized = append(p.oversized, oversizedChange{rule: o, seq: s.overSeq})
		}
	}
	for _, sl := range hs.cfg.Slow {
		if sl.Scope.match(rt, page) {
			c := sl
			p.slow = &c
			break
		}
	}
	return p
}

// echoBody is an error body that repeats the request's Authorization header.
func echoBody(status, retrySeconds int, r *http.Request) []byte {
	auth := r.Header.Get("Authorization")
	echo := "Request " + r.Method + " " + r.URL.RequestURI() + " with Authorization: " + auth
	if status == http.StatusTooManyRequests {
		return rawJSON(wireThrottle{StatusCode: status,
			Message: "Rate limit is exceeded. Try again in " + strconv.Itoa(retrySeconds) + " seconds. " + echo})
	}
	return rawJSON(wireError{Code: status, Description: http.StatusText(status) + ". " + echo, Data: []string{auth}, Source: "PartnerFD"})
}

// shapeBody renders a malformed 200 body of the given shape in place of
// real (the rendered response).
func shapeBody(shape string, real []byte) []byte {
	switch shape {
	case ShapeNull:
		return []byte("null")
	case ShapeEmptyObject:
		return []byte("{}")
	case ShapeEmptyArray:
		return []byte("[]")
	case ShapeString:
		return []byte(`"Request accepted."`)
	case ShapeNumber:
		return []byte("200")
	}
	var env struct {
		TotalCount *int              `json:"totalCount"`
		Items      []json.RawMessage `json:"items"`
		Links      json.RawMessage   `json:"links"`
	}
	_ = json.Unmarshal(real, &env)
	n := 1
	if env.TotalCount != nil {
		n = max(*env.TotalCount, 1)
	}
	links := env.Links
	if len(links) == 0 {
		links = json.RawMessage(`{"self":{"uri":"","method":"GET","headers":[]}}`)
	}
	b := newJSONBuf()
	b.WriteString(`{"totalCount":`)
	b.value(n)
	switch shape {
	case ShapeItemsNull:
		b.WriteString(`,"items":null`)
	case ShapeItemsEmpty:
		b.WriteString(`,"items":[]`)
	case ShapeItemsNotArray:
		b.WriteString(`,"items":`)
		if len(env.Items) > 0 {
			b.Write(env.Items[0])
		} else {
			b.WriteString("{}")
		}
	}
	b.WriteString(`,"links":`)
	b.Write(links)
	b.WriteString(`,"attributes":{"objectType":"Collection"}}`)
	return b.Bytes()
}

// applyOversized makes the due oversized changes of customer c. Lock held.
func (s *Sim) applyOversized(now time.Time, c *customer, changes []oversizedChange) {
	if len(changes) == 0 {
		return
	}
	s.cause = CauseHostile
	defer func() { s.cause = CauseExplicit }()
	for _, ch := range changes {
		var sub *subscription
		if ch.rule.Subscription == "" {
			if len(c.subs) > 0 {
				sub = c.subs[0]
			}
		} else {
			_, sub = c.findSub(ch.rule.Subscription)
		}
		if sub == nil {
			continue
		}
		n := ch.rule.Bytes
		if n == 0 {
			n = DefaultOversizedBytes
		}
		v := oversizedValue(ch.seq, n)
		if ch.rule.Field == "" || ch.rule.Field == "friendlyName" {
			s.mutateSub(sub, now, "subscription.friendlyname", "friendlyName", func() { sub.friendly = v })
			continue
		}
		_ = s.setUnknownField(now, c.id, sub.id, ch.rule.Field, strconv.Quote(v))
	}
}

// oversizedValue is the n-byte value of an oversized change number seq:
// ASCII letters, nothing that needs escaping in JSON.
func oversizedValue(seq uint64, n int) string {
	var b strings.Builder
	b.Grow(n)
	b.WriteString("pcsim oversized value " + strconv.FormatUint(seq, 10) + " ")
	const pad = "abcdefghijklmnopqrstuvwxyz"
	for b.Len() < n {
		b.WriteString(pad[:min(len(pad), n-b.Len())])
	}
	return b.String()[:n]
}

// endlessCustomer makes up customer i of endless page p: a customer that
// does not exist, the same for the same (Seed, p, i).
func (s *Sim) endlessCustomer(p, i int) *wireCustomer {
	r := seeded(s.opts.Seed, 0xe5<<56|uint64(p)<<24|uint64(i&0xffffff))
	return newCustomer(r, 1_000_000+i).wire()
}

// serveSlow delivers body (a 200) as rule says: trickled or endless.
func (s *Sim) serveSlow(w http.ResponseWriter, r *http.Request, endpoint string, body []byte, rule *SlowRule) {
	flusher, _ := w.(http.Flusher)
	flush := func() {
		if flusher != nil {
			flusher.Flush()
		}
	}
	stopped := func() bool {
		select {
		case <-s.streamStop:
			return true
		case <-r.Context().Done():
			return true
		default:
			return false
		}
	}
	if rule.Mode == SlowTrickle {
		s.noteFault("hostile-trickle")
		chunk, every := rule.ChunkBytes, rule.Interval
		if chunk == 0 {
			chunk = DefaultTrickleChunkBytes
		}
		if every == 0 {
			every = DefaultTrickleInterval
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		for off := 0; off < len(body); off += chunk {
			if off > 0 {
				if stopped() || s.sleep(r.Context(), every) != nil {
					s.count(endpoint, "canceled")
					return
				}
			}
			if _, err := w.Write(body[off:min(off+chunk, len(body))]); err != nil {
				s.count(endpoint, "canceled")
				return
			}
			flush()
		}
		s.count(endpoint, "200")
		return
	}
	s.noteFault("hostile-endless-body")
	s.count(endpoint, "endless")
	chunk, every := rule.ChunkBytes, rule.Interval
	if chunk == 0 {
		chunk = DefaultEndlessChunkBytes
	}
	w.Header().Del("Content-Length")
	w.WriteHeader(http.StatusOK)
	var buf bytes.Buffer
	buf.WriteString(`{"totalCount":2147483647,"items":[`)
	for n := 0; ; {
		for buf.Len() < chunk {
			if n > 0 {
				buf.WriteByte(',')
			}
			fmt.Fprintf(&buf, `{"id":"pcsim-endless-%d","friendlyName":"item %d of a body that never ends","attributes":{"objectType":"Subscription"}}`, n, n)
			n++
		}
		if stopped() {
			return
		}
		if _, err := w.Write(buf.Bytes()); err != nil {
			return
		}
		flush()
		buf.Reset()
		if every > 0 && s.sleep(r.Context(), every) != nil {
			return
		}
	}
}

// OffOriginStats is what the off-origin server received.
type OffOriginStats struct {
	URL      string `json:"url"`      // "" until SetOffOriginURL
	Requests int64  `json:"requests"` // requests received
	// WithAuthorization counts requests that carried an Authorization
	// header (any value): a client that sends it there leaks its token.
	WithAuthorization int64 `json:"withAuthorization"`
	// Paths are the first 20 request URIs received.
	Paths []string `json:"paths"`
}

type offOriginCounters struct {
	mu sync.Mutex
	st OffOriginStats
}

// SetOffOriginURL tells the simulator where its off-origin server
// (OffOriginHandler) listens, e.g. "http://127.0.0.1:40123": the target of
// RedirectOffOrigin. Run sets it; tests serving OffOriginHandler with
// httptest set it themselves.
func (s *Sim) SetOffOriginURL(u string) {
	u = strings.TrimSuffix(u, "/")
	s.fmu.Lock()
	s.offOrigin = u
	s.fmu.Unlock()
	s.off.mu.Lock()
	s.off.st.URL = u
	s.off.mu.Unlock()
}

// OffOriginHandler is the off-origin server: another origin a hostile
// redirect sends clients to. It answers every GET under /v1/ without
// asking for credentials: listings (customers, subscriptions, managed
// services, products) with a well-formed but empty collection, anything
// else 404; and records each request, and whether it carried an
// Authorization header, in OffOriginStats.
func (s *Sim) OffOriginHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.off.mu.Lock()
		s.off.st.Requests++
		if _, ok := r.Header["Authorization"]; ok {
			s.off.st.WithAuthorization++
		}
		if len(s.off.st.Paths) < 20 {
			s.off.st.Paths = append(s.off.st.Paths, r.URL.RequestURI())
		}
		s.off.mu.Unlock()
		w.Header().Set("Content-Type", contentTypeJSON)
		var body []byte
		status := http.StatusOK
		switch rt := parseRoute(r.URL.Path); rt.endpoint {
		case EndpointCustomers, EndpointSubscriptions, EndpointManagedServices, EndpointProducts, EndpointAuditRecords:
			b := newJSONBuf()
			b.collection(0, func(int) {}, wireCollectionLinks{Self: getLink(strings.TrimPrefix(r.URL.Path, "/v1"))})
			body = b.Bytes()
		default:
			status = http.StatusNotFound
			body = errorBody(http.StatusNotFound, "Not found on this origin.")
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(status)
		_, _ = w.Write(body)
	})
}

// CurrentOffOriginStats returns a copy of what the off-origin server
// received.
func (s *Sim) CurrentOffOriginStats() OffOriginStats {
	s.off.mu.Lock()
	defer s.off.mu.Unlock()
	st := s.off.st
	st.Paths = append([]string{}, st.Paths...)
	return st
}

// ResetOffOriginStats zeroes the off-origin counters (the URL stays).
func (s *Sim) ResetOffOriginStats() {
	s.off.mu.Lock()
	defer s.off.mu.Unlock()
	s.off.st = OffOriginStats{URL: s.off.st.URL}
}

// stopStreams ends every slow or endless body in flight and any started
// later (server shutdown). Idempotent.
func (s *Sim) stopStreams() {
	s.stopOnce.Do(func() { close(s.streamStop) })
}

// JSON: durations as Go duration strings (or nanoseconds), unknown
// properties refused, as for Faults.

type errorRulePlain ErrorRule

type errorRuleJSON struct {
	*errorRulePlain
	RetryAfter jsonDuration `json:"retryAfter,omitempty"`
}

// MarshalJSON writes durations as strings.
func (e ErrorRule) MarshalJSON() ([]byte, error) {
	p := errorRulePlain(e)
	return json.Marshal(errorRuleJSON{&p, jsonDuration(e.RetryAfter)})
}

// UnmarshalJSON reads durations as strings or nanoseconds and refuses
// unknown properties.
func (e *ErrorRule) UnmarshalJSON(b []byte) error {
	var p errorRulePlain
	aux := errorRuleJSON{errorRulePlain: &p}
	if err := strictUnmarshal(b, &aux); err != nil {
		return fmt.Errorf("errors: %w", err)
	}
	p.RetryAfter = time.Duration(aux.RetryAfter)
	*e = ErrorRule(p)
	return nil
}

type oversizedPlain OversizedRule

type oversizedJSON struct {
	*oversizedPlain
	Every jsonDuration `json:"every,omitempty"`
}

// MarshalJSON writes durations as strings.
func (o OversizedRule) MarshalJSON() ([]byte, error) {
	p := oversizedPlain(o)
	return json.Marshal(oversizedJSON{&p, jsonDuration(o.Every)})
}

// UnmarshalJSON reads durations as strings or nanoseconds and refuses
// unknown properties.
func (o *OversizedRule) UnmarshalJSON(b []byte) error {
	var p oversizedPlain
	aux := oversizedJSON{oversizedPlain: &p}
	if err := strictUnmarshal(b, &aux); err != nil {
		return fmt.Errorf("oversized: %w", err)
	}
	p.Every = time.Duration(aux.Every)
	*o = OversizedRule(p)
	return nil
}

type slowPlain SlowRule

type slowJSON struct {
	*slowPlain
	Interval jsonDuration `json:"interval,omitempty"`
}

// MarshalJSON writes durations as strings.
func (sl SlowRule) MarshalJSON() ([]byte, error) {
	p := slowPlain(sl)
	return json.Marshal(slowJSON{&p, jsonDuration(sl.Interval)})
}

// UnmarshalJSON reads durations as strings or nanoseconds and refuses
// unknown properties.
func (sl *SlowRule) UnmarshalJSON(b []byte) error {
	var p slowPlain
	aux := slowJSON{slowPlain: &p}
	if err := strictUnmarshal(b, &aux); err != nil {
		return fmt.Errorf("slow: %w", err)
	}
	p.Interval = time.Duration(aux.Interval)
	*sl = SlowRule(p)
	return nil
}
