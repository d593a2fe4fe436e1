package pcsim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// RateLimit is a token bucket on Options.Wall: Requests per Per, bursting
// up to Requests. A request that finds the bucket empty gets 429.
type RateLimit struct {
	Requests int           `json:"requests"`
	Per      time.Duration `json:"per"`
	// RetryAfter is the Retry-After sent with a 429; 0 sends the time until
	// the next token. Either way it is whole seconds, at least 1.
	RetryAfter time.Duration `json:"retryAfter"`
}

// PageFault fails one page of the customer listing.
type PageFault struct {
	Page   int `json:"page"`   // 0-based page index; must be > 0 (a continuation request)
	Times  int `json:"times"`  // how many requests for that page fail; -1 until cleared
	Status int `json:"status"` // HTTP status; 0 means 500
}

// Faults are the failures the /v1 API injects. The zero value injects none.
// Durations are written in JSON as Go duration strings ("1.5s"); numbers are
// read as nanoseconds.
type Faults struct {
	RateLimit     RateLimit     `json:"rateLimit"`
	Latency       time.Duration `json:"latency"`       // added to every request
	ErrorRate     float64       `json:"errorRate"`     // share answered 500, 502 or 503 (503 with Retry-After)
	MalformedRate float64       `json:"malformedRate"` // share of 200s whose body is not valid JSON
	TruncateRate  float64       `json:"truncateRate"`  // share of 200s cut to half their Content-Length
	ResetRate     float64       `json:"resetRate"`     // share of connections closed without a response
	// FailCustomerPage fails a page in the middle of the customer listing.
	FailCustomerPage PageFault `json:"failCustomerPage"`
}

// Rule is a one-shot fault: the next Times requests whose path starts with
// PathPrefix (case-insensitive; "" matches all) are answered Status with
// Body. Rules fire in the order they were injected.
type Rule struct {
	PathPrefix string        `json:"pathPrefix"`
	Status     int           `json:"status"`     // 0 means 500
	Body       string        `json:"body"`       // "" sends the status's Partner Center error body
	Times      int           `json:"times"`      // <= 0 means 1
	RetryAfter time.Duration `json:"retryAfter"` // > 0 adds Retry-After (whole seconds, at least 1)
}

// Stats counts /v1 requests (admin requests are not counted).
type Stats struct {
	// Requests counts by endpoint (customers, customer, subscriptions,
	// subscription, managedservices, products, auditrecords, unknown) and
	// outcome: the status code, or "reset" / "truncated" / "canceled".
	Requests  map[string]map[string]int64 `json:"requests"`
	Total     int64                       `json:"total"`
	Throttled int64                       `json:"throttled"` // 429s from the rate limiter
	// Faults counts injected faults by kind: ratelimit, latency, error,
	// malformed, truncate, reset, customerpage, inject.
	Faults map[string]int64 `json:"faults"`
}

type statsCounters struct {
	requests  map[string]map[string]int64
	total     int64
	throttled int64
	faults    map[string]int64
}

// SetFaults replaces the fault configuration (the zero Faults clears it) and
// refills the rate limiter's bucket. The inject queue is left alone.
func (s *Sim) SetFaults(f Faults) {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	s.faults = f
	s.bucket = bucket{}
}

// CurrentFaults returns the fault configuration in force (with a
// FailCustomerPage's remaining Times).
func (s *Sim) CurrentFaults() Faults {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	return s.faults
}

// Inject queues a one-shot fault rule.
func (s *Sim) Inject(r Rule) {
	if r.Times <= 0 {
		r.Times = 1
	}
	s.fmu.Lock()
	defer s.fmu.Unlock()
	s.rules = append(s.rules, r)
}

// ClearInjected empties the inject queue.
func (s *Sim) ClearInjected() {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	s.rules = nil
}

// Stats returns a copy of the request and fault counters.
func (s *Sim) Stats() Stats {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	out := Stats{Requests: map[string]map[string]int64{}, Total: s.stats.total, Throttled: s.stats.throttled, Faults: map[string]int64{}}
	for ep, m := range s.stats.requests {
		c := make(map[string]int64, len(m))
		for k, v := range m {
			c[k] = v
		}
		out.Requests[ep] = c
	}
	for k, v := range s.stats.faults {
		out.Faults[k] = v
	}
	return out
}

// ResetStats zeroes the counters.
func (s *Sim) ResetStats() {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	s.stats = statsCounters{}
}

func (s *Sim) count(endpoint, outcome string) {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	if s.stats.requests == nil {
		s.stats.requests = map[string]map[string]int64{}
	}
	m := s.stats.requests[endpoint]
	if m == nil {
		m = map[string]int64{}
		s.stats.requests[endpoint] = m
	}
	m[outcome]++
	s.stats.total++
}

// countFault records an injected fault. fmu held.
func (s *Sim) countFault(kind string) {
	if s.stats.faults == nil {
		s.stats.faults = map[string]int64{}
	}
	s.stats.faults[kind]++
}

// bucket is a token bucket; the zero value is full on first use.
type bucket struct {
	tokens float64
	last   time.Time
	primed bool
}

// take removes a token at now, or reports how long until one is available.
func (b *bucket) take(cfg RateLimit, now time.Time) (bool, time.Duration) {
	capacity := float64(cfg.Requests)
	rate := capacity / cfg.Per.Seconds() // tokens per second
	if !b.primed {
		b.tokens, b.last, b.primed = capacity, now, true
	}
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = math.Min(capacity, b.tokens+el*rate)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / rate * float64(time.Second))
}

// retrySeconds renders a Retry-After: whole seconds, rounded up, at least 1.
func retrySeconds(d time.Duration) int {
	n := int(math.Ceil(d.Seconds()))
	if n < 1 {
		n = 1
	}
	return n
}

// faultPlan is what the fault layer decided for one request.
type faultPlan struct {
	latency    time.Duration
	status     int    // non-zero: answer this instead of the real response
	body       []byte // with status
	retryAfter int    // seconds; 0 = no header
	reset      bool
	malformed  bool
	truncate   bool
}

// plan decides the faults of one /v1 request. page is the customer-listing
// page index of the request, or -1.
func (s *Sim) plan(path string, page int) faultPlan {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	f := &s.faults
	var p faultPlan
	if f.Latency > 0 {
		p.latency = f.Latency
		s.countFault("latency")
	}
	if rl := f.RateLimit; rl.Requests > 0 && rl.Per > 0 {
		if ok, wait := s.bucket.take(rl, s.wall.Now()); !ok {
			if rl.RetryAfter > 0 {
				wait = rl.RetryAfter
			}
			p.status, p.retryAfter = http.StatusTooManyRequests, retrySeconds(wait)
			p.body = throttleBody(p.retryAfter)
			s.stats.throttled++
			s.countFault("ratelimit")
			return p
		}
	}
	for i := range s.rules {
		r := &s.rules[i]
		if !hasPrefixFold(path, r.PathPrefix) {
			continue
		}
		p.status = r.Status
		if p.status == 0 {
			p.status = http.StatusInternalServerError
		}
		if r.RetryAfter > 0 {
			p.retryAfter = retrySeconds(r.RetryAfter)
		}
		p.body = []byte(r.Body)
		if r.Body == "" {
			p.body = defaultErrorBody(p.status, max(p.retryAfter, 1))
		}
		if r.Times--; r.Times <= 0 {
			s.rules = append(s.rules[:i], s.rules[i+1:]...)
		}
		s.countFault("inject")
		return p
	}
	if pf := &f.FailCustomerPage; page > 0 && pf.Page == page && pf.Times != 0 {
		if pf.Times > 0 {
			pf.Times--
		}
		p.status = pf.Status
		if p.status == 0 {
			p.status = http.StatusInternalServerError
		}
		if p.status == http.StatusTooManyRequests || p.status == http.StatusServiceUnavailable {
			p.retryAfter = 1
		}
		p.body = defaultErrorBody(p.status, 1)
		s.countFault("customerpage")
		return p
	}
	if f.ResetRate > 0 && s.faultRng.Float64() < f.ResetRate {
		p.reset = true
		s.countFault("reset")
		return p
	}
	if f.ErrorRate > 0 && s.faultRng.Float64() < f.ErrorRate {
		p.status = []int{500, 502, 503}[s.faultRng.IntN(3)]
		if p.status == http.StatusServiceUnavailable {
			p.retryAfter = 1
		}
		p.body = defaultErrorBody(p.status, 1)
		s.countFault("error")
		return p
	}
	if f.MalformedRate > 0 && s.faultRng.Float64() < f.MalformedRate {
		p.malformed = true
	}
	if f.TruncateRate > 0 && s.faultRng.Float64() < f.TruncateRate {
		p.truncate = true
	}
	return p
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

func throttleBody(seconds int) []byte {
	return rawJSON(wireThrottle{StatusCode: http.StatusTooManyRequests,
		Message: "Rate limit is exceeded. Try again in " + strconv.Itoa(seconds) + " seconds."})
}

func errorBody(code int, description string) []byte {
	return rawJSON(wireError{Code: code, Description: description, Data: []string{}, Source: "PartnerFD"})
}

// defaultErrorBody is the body of an injected error status.
func defaultErrorBody(status, retrySeconds int) []byte {
	switch status {
	case http.StatusTooManyRequests:
		return throttleBody(retrySeconds)
	case http.StatusServiceUnavailable:
		return errorBody(status, "The service is temporarily unavailable. Please try again later.")
	case http.StatusBadGateway:
		return errorBody(status, "Bad gateway: the upstream service did not respond.")
	}
	return errorBody(status, fmt.Sprintf("Injected failure: %d %s.", status, http.StatusText(status)))
}

// corrupt turns a valid JSON body into an invalid one the way the
// documentation's examples are broken: a "..." placeholder in a collection's
// items, or else a trailing comma before the closing brace.
func corrupt(body []byte) []byte {
	if i := bytes.Index(body, []byte(`"items":[`)); i >= 0 && !bytes.HasPrefix(body[i+9:], []byte("]")) {
		i += len(`"items":[`)
		out := append([]byte(nil), body[:i]...)
		out = append(out, "...,"...)
		return append(out, body[i:]...)
	}
	j := bytes.LastIndexByte(body, '}')
	if j < 0 {
		return append(append([]byte(nil), body...), ',')
	}
	out := append([]byte(nil), body[:j]...)
	out = append(out, ',')
	return append(out, body[j:]...)
}

// jsonDuration reads a duration as a Go duration string or as nanoseconds,
// and writes it as a string.
type jsonDuration time.Duration

func (d jsonDuration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *jsonDuration) UnmarshalJSON(b []byte) error {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	switch x := v.(type) {
	case string:
		p, err := time.ParseDuration(x)
		if err != nil {
			return fmt.Errorf("duration %q: %w", x, err)
		}
		*d = jsonDuration(p)
	case float64:
		*d = jsonDuration(time.Duration(x))
	case nil:
		*d = 0
	default:
		return fmt.Errorf("duration must be a string like \"1s\" or nanoseconds, got %s", b)
	}
	return nil
}

// strictUnmarshal decodes b into v refusing unknown properties.
func strictUnmarshal(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

type rateLimitJSON struct {
	Requests   int          `json:"requests"`
	Per        jsonDuration `json:"per"`
	RetryAfter jsonDuration `json:"retryAfter"`
}

// MarshalJSON writes durations as strings.
func (r RateLimit) MarshalJSON() ([]byte, error) {
	return json.Marshal(rateLimitJSON{r.Requests, jsonDuration(r.Per), jsonDuration(r.RetryAfter)})
}

// UnmarshalJSON reads durations as strings or nanoseconds and refuses
// unknown properties.
func (r *RateLimit) UnmarshalJSON(b []byte) error {
	var aux rateLimitJSON
	if err := strictUnmarshal(b, &aux); err != nil {
		return fmt.Errorf("rateLimit: %w", err)
	}
	*r = RateLimit{aux.Requests, time.Duration(aux.Per), time.Duration(aux.RetryAfter)}
	return nil
}

type faultsPlain Faults

type faultsJSON struct {
	*faultsPlain
	Latency jsonDuration `json:"latency"`
}

// MarshalJSON writes durations as strings.
func (f Faults) MarshalJSON() ([]byte, error) {
	p := faultsPlain(f)
	return json.Marshal(faultsJSON{&p, jsonDuration(f.Latency)})
}

// UnmarshalJSON reads durations as strings or nanoseconds and refuses
// unknown properties.
func (f *Faults) UnmarshalJSON(b []byte) error {
	var p faultsPlain
	aux := faultsJSON{faultsPlain: &p}
	if err := strictUnmarshal(b, &aux); err != nil {
		return err
	}
	p.Latency = time.Duration(aux.Latency)
	*f = Faults(p)
	return nil
}

type rulePlain Rule

type ruleJSON struct {
	*rulePlain
	RetryAfter jsonDuration `json:"retryAfter"`
}

// MarshalJSON writes durations as strings.
func (r Rule) MarshalJSON() ([]byte, error) {
	p := rulePlain(r)
	return json.Marshal(ruleJSON{&p, jsonDuration(r.RetryAfter)})
}

// UnmarshalJSON reads durations as strings or nanoseconds and refuses
// unknown properties.
func (r *Rule) UnmarshalJSON(b []byte) error {
	var p rulePlain
	aux := ruleJSON{rulePlain: &p}
	if err := strictUnmarshal(b, &aux); err != nil {
		return err
	}
	p.RetryAfter = time.Duration(aux.RetryAfter)
	*r = Rule(p)
	return nil
}
