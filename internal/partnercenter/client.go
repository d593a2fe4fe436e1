// Package partnercenter is a typed, read-only client for the Microsoft
// Partner Center REST API: customers (paged), a customer's subscriptions
// (optionally filtered by reseller MPN id), one subscription by id, managed
// services and products per target view.
//
// The client retries what is worth retrying (network errors, 408, 429, 5xx,
// truncated or malformed bodies) with exponential backoff and jitter inside
// an explicit time budget, honours Retry-After on 429 and 503 for every
// concurrent caller, and paces all callers through one shared rate limiter.
// Everything else comes back as an *APIError or *DecodeError that names the
// endpoint, the HTTP status and the request id. Credentials never appear in
// errors or logs.
package partnercenter

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"golang.org/x/oauth2"
	"golang.org/x/time/rate"

	"github.com/pcwatch/pcwatch/internal/clock"
)

// Defaults.
const (
	// DefaultPageSize is the customers page size; 500 is the largest the
	// API accepts.
	DefaultPageSize = 500
	// DefaultRequestsPerMinute stays well under Partner Center's documented
	// 500 requests per minute per partner tenant, leaving room for the
	// partner's other tools.
	DefaultRequestsPerMinute = 300
	// DefaultRetryBudget bounds the time one logical request may spend in
	// retries, Retry-After waits included.
	DefaultRetryBudget = 3 * time.Minute
	// DefaultAttemptTimeout bounds one HTTP attempt.
	DefaultAttemptTimeout = 60 * time.Second
	// maxBody bounds one response body.
	maxBody = 256 << 20
	// maxDecodeAttempts bounds retries of bodies that arrive malformed.
	maxDecodeAttempts = 3
)

// Observer receives per-request telemetry. Implementations must be safe for
// concurrent use and fast; the client calls them inline.
type Observer interface {
	// ObserveRequest is called once per HTTP attempt; status is 0 when no
	// response arrived.
	ObserveRequest(endpoint string, status int, d time.Duration)
	// ObserveRetry is called before each retry wait.
	ObserveRetry(endpoint, reason string, wait time.Duration)
}

// Options configure a Client. The zero value of every field but TokenSource
// has a sensible default.
type Options struct {
	// BaseURL is the API root without /v1, e.g. GlobalBaseURL or a
	// simulator's URL. A path prefix (a proxy) is kept.
	BaseURL string
	// TokenSource supplies bearer tokens; see Credentials. Required.
	TokenSource oauth2.TokenSource
	// HTTPClient sends requests. It must not add its own Authorization.
	HTTPClient *http.Client
	// RequestsPerMinute paces all callers of this client (and of any client
	// sharing Limiter). Default DefaultRequestsPerMinute.
	RequestsPerMinute float64
	// Burst is the limiter's burst. Default 10.
	Burst int
	// Limiter, when set, is used instead of one built from RequestsPerMinute.
	Limiter *rate.Limiter
	// PageSize for customer listings. Default DefaultPageSize.
	PageSize int
	// Locale is sent as X-Locale. Default "en-US".
	Locale string
	// RetryBudget bounds retries of one logical request. Default
	// DefaultRetryBudget.
	RetryBudget time.Duration
	// RetryInitial and RetryMax shape the exponential backoff. Defaults
	// 500ms and 30s.
	RetryInitial, RetryMax time.Duration
	// AttemptTimeout bounds one HTTP attempt. Default DefaultAttemptTimeout.
	AttemptTimeout time.Duration
	// Observer receives telemetry; may be nil.
	Observer Observer
	// Logger receives per-request debug lines; nil discards.
	Logger *slog.Logger
	// Clock and Sleep drive waits (rate limiting, backoff, Retry-After).
	// Tests inject a fake clock and a Sleep that advances it. Defaults: the
	// wall clock and a context-aware timer.
	Clock clock.Clock
	Sleep func(ctx context.Context, d time.Duration) error
}

// Stats are cumulative counters of a client's traffic.
type Stats struct {
	Requests  uint64 // HTTP attempts sent
	Throttled uint64 // 429 answers
	Retries   uint64 // retry waits
}

// Client is a Partner Center API client. It is safe for concurrent use; all
// callers share its rate limiter and its Retry-After pause.
type Client struct {
	base     *url.URL
	ts       oauth2.TokenSource
	hc       *http.Client
	lim      *rate.Limiter
	pageSize int
	locale   string
	budget   time.Duration
	initial  time.Duration
	maxWait  time.Duration
	attempt  time.Duration
	obs      Observer
	log      *slog.Logger
	clk      clock.Clock
	sleep    func(context.Context, time.Duration) error

	pauseMu    sync.Mutex
	pauseUntil time.Time // no request leaves before this (Retry-After)

	requests, throttled, retries atomic.Uint64
}

// New returns a client. It fails when the base URL is not an absolute http(s)
// URL or no token source is given.
func New(o Options) (*Client, error) {
	if o.BaseURL == "" {
		o.BaseURL = GlobalBaseURL
	}
	u, err := url.Parse(o.BaseURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("partner center base URL %q: want an absolute http(s) URL such as %s", o.BaseURL, GlobalBaseURL)
	}
	u.Path = strings.TrimSuffix(strings.TrimSuffix(u.Path, "/"), "/v1")
	u.RawQuery, u.Fragment = "", ""
	if o.TokenSource == nil {
		return nil, errors.New("partner center client: no credentials (set PCWATCH_PC_TOKEN, or PCWATCH_PC_TENANT_ID, PCWATCH_PC_CLIENT_ID and PCWATCH_PC_CLIENT_SECRET)")
	}
	c := &Client{
		base:     u,
		ts:       oauth2.ReuseTokenSource(nil, o.TokenSource),
		hc:       o.HTTPClient,
		lim:      o.Limiter,
		pageSize: o.PageSize,
		locale:   o.Locale,
		budget:   o.RetryBudget,
		initial:  o.RetryInitial,
		maxWait:  o.RetryMax,
		attempt:  o.AttemptTimeout,
		obs:      o.Observer,
		log:      o.Logger,
		clk:      o.Clock,
		sleep:    o.Sleep,
	}
	if c.hc == nil {
		c.hc = &http.Client{}
	}
	if c.lim == nil {
		rpm := o.RequestsPerMinute
		if rpm <= 0 {
			rpm = DefaultRequestsPerMinute
		}
		burst := o.Burst
		if burst <= 0 {
			burst = 10
		}
		c.lim = rate.NewLimiter(rate.Limit(rpm/60), burst)
	}
	if c.pageSize <= 0 {
		c.pageSize = DefaultPageSize
	}
	if c.locale == "" {
		c.locale = "en-US"
	}
	if c.budget <= 0 {
		c.budget = DefaultRetryBudget
	}
	if c.initial <= 0 {
		c.initial = 500 * time.Millisecond
	}
	if c.maxWait <= 0 {
		c.maxWait = 30 * time.Second
	}
	if c.attempt <= 0 {
		c.attempt = DefaultAttemptTimeout
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.clk == nil {
		c.clk = clock.Real{}
	}
	if c.sleep == nil {
		c.sleep = clock.Sleep
	}
	return c, nil
}

// BaseURL returns the API root the client talks to.
func (c *Client) BaseURL() string { return c.base.String() }

// Stats returns cumulative traffic counters.
func (c *Client) Stats() Stats {
	return Stats{Requests: c.requests.Load(), Throttled: c.throttled.Load(), Retries: c.retries.Load()}
}

// Limiter returns the client's rate limiter, so other clients can share it.
func (c *Client) Limiter() *rate.Limiter { return c.lim }

type correlationKey struct{}

// WithCorrelationID returns a context whose requests carry id as
// MS-CorrelationId. The poller sets one per cycle.
func WithCorrelationID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, correlationKey{}, id)
}

// CorrelationID returns the correlation id set on ctx, or "".
func CorrelationID(ctx context.Context) string {
	s, _ := ctx.Value(correlationKey{}).(string)
	return s
}

// NewID returns a random RFC 4122 version 4 UUID string.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// ListCustomers returns every customer, following next links (sending back
// their headers, which carry MS-ContinuationToken) until none is left. A
// page that fails fails the whole listing: a partial list is never returned.
func (c *Client) ListCustomers(ctx context.Context) ([]Customer, error) {
	q := url.Values{"size": {strconv.Itoa(c.pageSize)}}
	return listAll[Customer](ctx, c, "customers", "/v1/customers?"+q.Encode())
}

// SubscriptionFilter narrows a subscription listing.
type SubscriptionFilter struct {
	// MPNID keeps the subscriptions a given reseller (partner MPN id)
	// provided; empty lists all.
	MPNID string
}

// ListSubscriptions returns a customer's subscriptions.
func (c *Client) ListSubscriptions(ctx context.Context, customerID string, f SubscriptionFilter) ([]Subscription, error) {
	p := "/v1/customers/" + url.PathEscape(customerID) + "/subscriptions"
	if f.MPNID != "" {
		p += "?" + url.Values{"mpn_id": {f.MPNID}}.Encode()
	}
	return listAll[Subscription](ctx, c, "subscriptions", p)
}

// GetSubscription returns one subscription. Partner Center documents
// refundableQuantity on this endpoint, not on the list.
func (c *Client) GetSubscription(ctx context.Context, customerID, subscriptionID string) (*Subscription, error) {
	p := "/v1/customers/" + url.PathEscape(customerID) + "/subscriptions/" + url.PathEscape(subscriptionID)
	var s Subscription
	if err := c.getJSON(ctx, "subscription", p, nil, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// ListManagedServices returns the services the partner administers for a
// customer. Partner Center only serves it to App+User credentials.
func (c *Client) ListManagedServices(ctx context.Context, customerID string) ([]ManagedService, error) {
	p := "/v1/customers/" + url.PathEscape(customerID) + "/managedservices"
	return listAll[ManagedService](ctx, c, "managedservices", p)
}

// ListProducts returns the products available to a customer in a catalog
// target view (e.g. "OnlineServices", "Azure", "Software").
func (c *Client) ListProducts(ctx context.Context, customerID, targetView string) ([]Product, error) {
	p := "/v1/customers/" + url.PathEscape(customerID) + "/products?" + url.Values{"targetView": {targetView}}.Encode()
	return listAll[Product](ctx, c, "products", p)
}

// maxPages guards against a server that never stops paging.
const maxPages = 100000

func listAll[T any](ctx context.Context, c *Client, endpoint, path string) ([]T, error) {
	var (
		all  []T
		hdr  []Header
		seen = map[string]bool{}
	)
	for page := 1; ; page++ {
		var coll Collection[T]
		if err := c.getJSON(ctx, endpoint, path, hdr, &coll); err != nil {
			if page > 1 {
				return nil, fmt.Errorf("listing %s failed at page %d after %d items (the whole listing is discarded): %w", endpoint, page, len(all), err)
			}
			return nil, err
		}
		if all == nil {
			all = coll.Items
		} else {
			all = append(all, coll.Items...)
		}
		next := coll.Links.Next
		if next == nil || next.URI == "" {
			return all, nil
		}
		p, err := c.resolve(next.URI)
		if err != nil {
			return nil, fmt.Errorf("listing %s: page %d: %w", endpoint, page, err)
		}
		key := p + "\x00" + fmt.Sprint(next.Headers)
		if seen[key] || page >= maxPages {
			return nil, fmt.Errorf("listing %s: page %d links back to an earlier page (%s); the server is looping", endpoint, page, p)
		}
		seen[key] = true
		path, hdr = p, next.Headers
	}
}

// resolve turns a link URI into a request path under the base URL. Next
// links already carry /v1 ("/v1/customers?size=500&seekOperation=Next");
// resource links do not ("/customers/..."). Absolute links are followed only
// to the base host, so the bearer token never leaves it.
func (c *Client) resolve(uri string) (string, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return "", fmt.Errorf("next link %q is not a URL: %w", uri, err)
	}
	if u.IsAbs() {
		if !strings.EqualFold(u.Host, c.base.Host) {
			return "", fmt.Errorf("next link %q points to another host than %s; not following it", uri, c.base.Host)
		}
		u.Scheme, u.Host = "", ""
		u.Path = strings.TrimPrefix(u.Path, c.base.Path)
	}
	p := u.Path
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	if lp := strings.ToLower(p); lp != "/v1" && !strings.HasPrefix(lp, "/v1/") {
		p = "/v1" + p
	}
	if u.RawQuery != "" {
		p += "?" + u.RawQuery
	}
	return p, nil
}

// Probe makes one small request (the first customer) to check that the API
// is reachable and the credentials are accepted, retrying transient
// failures for at most budget.
func (c *Client) Probe(ctx context.Context, budget time.Duration) error {
	var coll Collection[json.RawMessage]
	return c.getJSONBudget(ctx, "customers", "/v1/customers?size=1", nil, &coll, budget)
}

// getJSON performs one logical GET (retries included) and decodes the body
// into v.
func (c *Client) getJSON(ctx context.Context, endpoint, path string, hdr []Header, v any) error {
	return c.getJSONBudget(ctx, endpoint, path, hdr, v, c.budget)
}

func (c *Client) getJSONBudget(ctx context.Context, endpoint, path string, hdr []Header, v any, budget time.Duration) error {
	reqID := NewID()
	corrID := CorrelationID(ctx)
	if corrID == "" {
		corrID = NewID()
	}
	bo := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(c.initial),
		backoff.WithMaxInterval(c.maxWait),
		backoff.WithMaxElapsedTime(budget),
		backoff.WithRandomizationFactor(0.5),
	)
	bo.Clock = c.clk
	bo.Reset()
	decodeFailures := 0
	for attempt := 1; ; attempt++ {
		if err := c.waitTurn(ctx); err != nil {
			return err
		}
		status, body, retryAfter, err := c.do(ctx, endpoint, path, hdr, reqID, corrID)
		reason := ""
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var authErr *AuthError
			if errors.As(err, &authErr) && !authErr.Temporary() {
				return fmt.Errorf("partner center GET %s: %w", path, err)
			}
			reason = "network"
			err = fmt.Errorf("partner center GET %s: %w [request-id %s, correlation-id %s]", path, err, reqID, corrID)
		case status < 200 || status > 299:
			ae := &APIError{Endpoint: endpoint, Method: http.MethodGet, Path: path, StatusCode: status,
				RequestID: reqID, CorrelationID: corrID, RetryAfter: retryAfter}
			ae.parseErrorBody(body)
			if ae.RetryAfter == 0 && status == http.StatusTooManyRequests {
				ae.RetryAfter = retryAfterFromMessage(ae.Message)
			}
			retryAfter = ae.RetryAfter
			err = ae
			if !ae.Temporary() {
				return ae
			}
			reason = strconv.Itoa(status)
			if status == http.StatusTooManyRequests {
				c.throttled.Add(1)
			}
			if status != http.StatusTooManyRequests && status != http.StatusServiceUnavailable {
				retryAfter = 0 // only 429 and 503 define Retry-After
			}
			c.pause(retryAfter)
		default:
			derr := json.Unmarshal(body, v)
			if derr == nil {
				return nil
			}
			err = &DecodeError{Endpoint: endpoint, Method: http.MethodGet, Path: path, StatusCode: status,
				RequestID: reqID, CorrelationID: corrID, Err: derr}
			decodeFailures++
			if decodeFailures >= maxDecodeAttempts {
				return err
			}
			reason = "malformed"
		}
		wait := bo.NextBackOff()
		if wait == backoff.Stop {
			return fmt.Errorf("giving up after %d attempts within the %s retry budget: %w", attempt, budget, err)
		}
		if retryAfter > wait {
			wait = retryAfter
		}
		c.retries.Add(1)
		if c.obs != nil {
			c.obs.ObserveRetry(endpoint, reason, wait)
		}
		c.log.Debug("partner center retry", "endpoint", endpoint, "path", path, "attempt", attempt,
			"reason", reason, "wait", wait, "request_id", reqID, "err", err)
		if err := c.sleep(ctx, wait); err != nil {
			return err
		}
	}
}

// waitTurn blocks until the shared Retry-After pause is over and the rate
// limiter grants a request.
func (c *Client) waitTurn(ctx context.Context) error {
	for {
		c.pauseMu.Lock()
		until := c.pauseUntil
		c.pauseMu.Unlock()
		now := c.clk.Now()
		if !now.Before(until) {
			break
		}
		if err := c.sleep(ctx, until.Sub(now)); err != nil {
			return err
		}
	}
	r := c.lim.ReserveN(c.clk.Now(), 1)
	if !r.OK() {
		return errors.New("partner center rate limiter: burst is zero")
	}
	if d := r.DelayFrom(c.clk.Now()); d > 0 {
		if err := c.sleep(ctx, d); err != nil {
			r.CancelAt(c.clk.Now())
			return err
		}
	}
	return nil
}

// pause holds every caller back for d (a Retry-After).
func (c *Client) pause(d time.Duration) {
	if d <= 0 {
		return
	}
	until := c.clk.Now().Add(d)
	c.pauseMu.Lock()
	if until.After(c.pauseUntil) {
		c.pauseUntil = until
	}
	c.pauseMu.Unlock()
}

// do sends one attempt and reads the whole body.
func (c *Client) do(ctx context.Context, endpoint, path string, hdr []Header, reqID, corrID string) (status int, body []byte, retryAfter time.Duration, err error) {
	actx, cancel := context.WithTimeout(ctx, c.attempt)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodGet, c.base.String()+path, nil)
	if err != nil {
		return 0, nil, 0, err
	}
	tok, err := c.ts.Token()
	if err != nil {
		return 0, nil, 0, err
	}
	for _, h := range hdr {
		if h.Key != "" && !strings.EqualFold(h.Key, "Authorization") {
			req.Header.Set(h.Key, h.Value)
		}
	}
	tok.SetAuthHeader(req)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("MS-RequestId", reqID)
	req.Header.Set("MS-CorrelationId", corrID)
	req.Header.Set("X-Locale", c.locale)
	req.Header.Set("MS-PartnerCenter-Application", "pcwatch")

	start := c.clk.Now()
	c.requests.Add(1)
	resp, err := c.hc.Do(req)
	if err != nil {
		c.observe(endpoint, 0, start)
		return 0, nil, 0, err
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(io.LimitReader(resp.Body, maxBody))
	c.observe(endpoint, resp.StatusCode, start)
	if err != nil {
		return 0, nil, 0, fmt.Errorf("reading HTTP %d response body: %w", resp.StatusCode, err)
	}
	c.log.Debug("partner center request", "endpoint", endpoint, "path", path, "status", resp.StatusCode,
		"bytes", len(body), "request_id", reqID, "correlation_id", corrID)
	return resp.StatusCode, bytes.TrimPrefix(body, utf8BOM), parseRetryAfter(resp.Header.Get("Retry-After"), c.clk.Now()), nil
}

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

func (c *Client) observe(endpoint string, status int, start time.Time) {
	if c.obs != nil {
		c.obs.ObserveRequest(endpoint, status, c.clk.Now().Sub(start))
	}
}

// parseRetryAfter reads delta-seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseFloat(v, 64); err == nil {
		if n < 0 {
			return 0
		}
		return time.Duration(n * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

var tryAgainIn = regexp.MustCompile(`(?i)try again in (\d+) seconds?`)

// retryAfterFromMessage reads "Try again in 57 seconds." from a 429 body
// that came without a Retry-After header.
func retryAfterFromMessage(msg string) time.Duration {
	m := tryAgainIn.FindStringSubmatch(msg)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return time.Duration(n) * time.Second
}
