// Package partnercenter is a typed, read-only client for the Microsoft
// Partner Center REST API: customers (paged), a customer's subscriptions
// (optionally filtered by reseller MPN id), one subscription by id, managed
// services and products per target view. A *Client is safe for concurrent
// use; every call is a read and may be repeated.
//
// # Retries
//
// The client retries what is worth retrying (network errors, 408, 429, 5xx,
// truncated or malformed bodies) with exponential backoff (doubling, 50%
// jitter), at most Options.MaxRetries times (default 3, as the Azure SDKs)
// and within Options.RetryBudget, whichever ends first. A 429 that says
// when to come back (Retry-After, or "try again in N seconds") is Partner
// Center's normal throttling: it is waited out as asked and does not count
// against MaxRetries, only the budget bounds it. Retry-After on 429 and 503
// pauses every concurrent caller; all callers share one rate limiter.
//
// No wait outlasts a request's budget: a Retry-After longer than what is
// left of it fails that request at once, the pause it imposes on the other
// callers is capped at one RetryBudget, and a caller whose own budget ends
// before that pause does fails at once too. A request given up is a
// *RetryError (ErrGaveUp; ErrThrottled too for those Retry-After cases)
// saying after how many attempts and wrapping the last error; the caller
// fails it for now and tries again later with a fresh budget.
//
// # Errors
//
// Failures are typed and name the endpoint, the path, the HTTP status and
// the request id: *APIError (non-2xx), *DecodeError (a 2xx body that is
// malformed, or valid JSON but not a collection, or not an object with an
// id: never read as an empty listing), *LimitError (a memory bound
// crossed), *RedirectError (a redirect off the base origin), *RetryError,
// *AuthError (no token). A listing fails as a whole: a partial list is
// never returned.
//
// # Origins and credentials
//
// Credentials never appear in errors or logs (token endpoint echoes are
// redacted in every encoding) and are never sent to another origin than the
// base URL's (scheme, host and port): a redirect elsewhere is refused
// before it is followed, whatever CheckRedirect the caller's http.Client
// has, and fails that request without a retry; the token endpoint is held
// to its own origin the same way. URLs with userinfo are refused.
//
// # Memory
//
// Pages are decoded item by item from the response stream (one item's JSON
// is buffered at a time, unknown properties are skipped token by token),
// and every bound counts the bytes read plus the in-memory size of each
// decoded item, so a body of tiny items cannot expand into gigabytes:
//
//   - one response: Options.MaxResponseBytes (default 16 MiB, about ten
//     times a page of 500 subscriptions);
//   - one listing, all its pages: Options.MaxListingBytes (default 512
//     MiB), Options.MaxPages pages (default 1000) and Options.MaxItems
//     items (default 250,000);
//   - an error body: its first 64 KiB.
//
// The item listings (ListSubscriptionItems, ...) read a page whole (it is
// bounded by MaxResponseBytes) and split it without decoding the items;
// each item is charged as if decoded, so they fail where the typed
// listings fail.
//
// A request in flight therefore holds at most about 2-3 x MaxResponseBytes
// (the decoder's buffer, the decoded items, and garbage not yet collected),
// whatever the server sends: N concurrent callers reading endless bodies
// stay under N x 3 x MaxResponseBytes (measured by TestEndlessBodiesPeakHeap
// and BenchmarkEndlessBodies). A listing retains at most about 2 x
// MaxListingBytes (raw items and their typed views), so the client as a
// whole holds at most (concurrent listings) x 2 x MaxListingBytes plus
// (concurrent requests) x 3 x MaxResponseBytes. Crossing a bound fails the
// request and its listing with a *LimitError naming the Options field to
// raise; it is not retried.
package partnercenter

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"golang.org/x/oauth2"
	"golang.org/x/time/rate"

	"github.com/pcwatch/pcwatch/internal/budget"
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
	// DefaultMaxRetries is the number of retries of one logical request
	// after its first attempt, as in the Azure SDKs; a 429 that says when to
	// come back does not count.
	DefaultMaxRetries = 3
	// DefaultAttemptTimeout bounds one HTTP attempt.
	DefaultAttemptTimeout = 60 * time.Second
	// DefaultMaxResponseBytes bounds one response: a page of 500 customers
	// or subscriptions is well under 2 MiB.
	DefaultMaxResponseBytes = 16 << 20
	// DefaultMaxListingBytes bounds all pages of one listing together:
	// 250,000 customers of about 2 KiB each.
	DefaultMaxListingBytes = 512 << 20
	// DefaultMaxPages bounds the pages of one listing: 500,000 customers in
	// pages of 500.
	DefaultMaxPages = 1000
	// DefaultMaxItems bounds the items of one listing.
	DefaultMaxItems = 250000
	// maxErrorBody bounds what is read of a non-2xx body.
	maxErrorBody = 64 << 10
	// maxDecodeAttempts bounds retries of bodies that arrive malformed.
	maxDecodeAttempts = 3
	// maxRetryAfter caps a parsed Retry-After so that absurd values stay
	// representable; any such value exceeds every retry budget anyway.
	maxRetryAfter = 366 * 24 * time.Hour
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
	// The client sends through a copy whose CheckRedirect refuses any
	// redirect off the base URL's origin before it is followed (then
	// applies the caller's CheckRedirect, if any); the caller's value is
	// not modified.
	HTTPClient *http.Client
	// RequestsPerMinute paces all callers of this client (and of any client
	// sharing Limiter). Default DefaultRequestsPerMinute.
	RequestsPerMinute float64
	// Burst is the limiter's burst. Default 10.
	Burst int
	// Limiter, when set, is used instead of one built from RequestsPerMinute.
	Limiter *rate.Limiter
	// Gate, when set, hands out the request budget by class
	// (budget.WithClass on a request's context: the sweep waits behind
	// hinted refreshes); Limiter and RequestsPerMinute are then ignored.
	// Default a gate over the limiter, with the client's Clock and Sleep.
	Gate *budget.Gate
	// PageSize for customer listings. Default DefaultPageSize.
	PageSize int
	// Locale is sent as X-Locale. Default "en-US".
	Locale string
	// RetryBudget bounds retries of one logical request. Default
	// DefaultRetryBudget.
	RetryBudget time.Duration
	// MaxRetries bounds the retries of one logical request after its first
	// attempt, in addition to RetryBudget. A 429 that carries a Retry-After
	// (header, or "try again in N seconds") of at least a second does not
	// count: that is Partner Center's normal throttling, bounded by
	// RetryBudget alone. Default DefaultMaxRetries; negative means none.
	MaxRetries int
	// RetryInitial and RetryMax shape the exponential backoff (each wait
	// doubles, with 50% jitter). Defaults 500ms and 30s.
	RetryInitial, RetryMax time.Duration
	// AttemptTimeout bounds one HTTP attempt. Default DefaultAttemptTimeout.
	AttemptTimeout time.Duration
	// MaxResponseBytes bounds one response body, decoded items counted at
	// their in-memory size. Default DefaultMaxResponseBytes.
	MaxResponseBytes int64
	// MaxListingBytes bounds all responses of one listing together, counted
	// the same way. Default DefaultMaxListingBytes.
	MaxListingBytes int64
	// MaxPages bounds the pages of one listing. Default DefaultMaxPages.
	MaxPages int
	// MaxItems bounds the items of one listing. Default DefaultMaxItems.
	MaxItems int
	// LimitHints name, per bound (LimitPages, ...), the setting a user
	// raises it with; LimitError says so. Default "Options.<bound>".
	LimitHints map[string]string
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
	origin   string // scheme://host:port of base
	ts       oauth2.TokenSource
	hc       *http.Client
	gate     *budget.Gate
	pageSize int
	locale   string
	budget   time.Duration
	retries  int
	initial  time.Duration
	maxWait  time.Duration
	attempt  time.Duration
	maxResp  int64
	maxList  int64
	maxPages int
	maxItems int
	// limitHints: see Options.LimitHints.
	limitHints map[string]string
	obs        Observer
	log        *slog.Logger
	clk        clock.Clock
	sleep      func(context.Context, time.Duration) error

	pauseMu    sync.Mutex
	pauseUntil time.Time // no request leaves before this (Retry-After)

	requests, throttled, retried atomic.Uint64
}

// New returns a client. It fails when the base URL is not an absolute http(s)
// URL, carries userinfo (user:password@: credentials belong in the
// PCWATCH_PC_* variables, and a URL is printed in logs and event sources),
// or no token source is given.
func New(o Options) (*Client, error) {
	if o.BaseURL == "" {
		o.BaseURL = GlobalBaseURL
	}
	u, err := checkURL("partner center base URL", o.BaseURL, GlobalBaseURL)
	if err != nil {
		return nil, err
	}
	u.Path = strings.TrimSuffix(strings.TrimSuffix(u.Path, "/"), "/v1")
	u.RawQuery, u.Fragment = "", ""
	if o.TokenSource == nil {
		return nil, errors.New("partner center client: no credentials (set PCWATCH_PC_TOKEN, or PCWATCH_PC_TENANT_ID, PCWATCH_PC_CLIENT_ID and PCWATCH_PC_CLIENT_SECRET)")
	}
	c := &Client{
		base:       u,
		origin:     originOf(u),
		ts:         oauth2.ReuseTokenSource(nil, o.TokenSource),
		hc:         o.HTTPClient,
		gate:       o.Gate,
		pageSize:   o.PageSize,
		locale:     o.Locale,
		budget:     o.RetryBudget,
		retries:    o.MaxRetries,
		initial:    o.RetryInitial,
		maxWait:    o.RetryMax,
		attempt:    o.AttemptTimeout,
		maxResp:    o.MaxResponseBytes,
		maxList:    o.MaxListingBytes,
		maxPages:   o.MaxPages,
		maxItems:   o.MaxItems,
		limitHints: o.LimitHints,
		obs:        o.Observer,
		log:        o.Logger,
		clk:        o.Clock,
		sleep:      o.Sleep,
	}
	c.hc = sameOriginClient(o.HTTPClient, c.origin)
	if c.clk == nil {
		c.clk = clock.Real{}
	}
	if c.sleep == nil {
		c.sleep = clock.Sleep
	}
	if lim := o.Limiter; c.gate == nil && lim == nil {
		rpm := o.RequestsPerMinute
		if rpm <= 0 {
			rpm = DefaultRequestsPerMinute
		}
		burst := o.Burst
		if burst <= 0 {
			burst = 10
		}
		c.gate = budget.New(rate.NewLimiter(rate.Limit(rpm/60), burst), c.clk, c.sleep)
	} else if c.gate == nil {
		c.gate = budget.New(lim, c.clk, c.sleep)
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
	switch {
	case c.retries == 0:
		c.retries = DefaultMaxRetries
	case c.retries < 0:
		c.retries = 0
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
	if c.maxResp <= 0 {
		c.maxResp = DefaultMaxResponseBytes
	}
	if c.maxList <= 0 {
		c.maxList = DefaultMaxListingBytes
	}
	if c.maxPages <= 0 {
		c.maxPages = DefaultMaxPages
	}
	if c.maxItems <= 0 {
		c.maxItems = DefaultMaxItems
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// BaseURL returns the API root the client talks to.
func (c *Client) BaseURL() string { return c.base.String() }

// Stats returns cumulative traffic counters.
func (c *Client) Stats() Stats {
	return Stats{Requests: c.requests.Load(), Throttled: c.throttled.Load(), Retries: c.retried.Load()}
}

// Limiter returns the client's rate limiter, so other clients can share it.
func (c *Client) Limiter() *rate.Limiter { return c.gate.Limiter() }

// Gate returns the gate that hands out the client's request budget.
func (c *Client) Gate() *budget.Gate { return c.gate }

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
// refundableQuantity on this endpoint, not on the list. A 200 body that is
// not a JSON object with an id fails with a *DecodeError matching
// ErrNotObject.
func (c *Client) GetSubscription(ctx context.Context, customerID, subscriptionID string) (*Subscription, error) {
	p := "/v1/customers/" + url.PathEscape(customerID) + "/subscriptions/" + url.PathEscape(subscriptionID)
	var s Subscription
	err := c.get(ctx, "subscription", p, nil, c.budget, c.responseBudget, func(dec *json.Decoder, _ *itemBudget) error {
		s = Subscription{}
		return decodeSubscription(dec, &s)
	})
	if err != nil {
		return nil, err
	}
	return &s, nil
}

// ListSubscriptionItems is ListSubscriptions without the typed decoding:
// each subscription's JSON as received, checked to be valid JSON and an
// object (or null), in listing order. The caller decodes what it needs
// (json.Unmarshal into a Subscription); one that fails to decode is as a
// listing that did not decode. The listing's guarantees and bounds are
// ListSubscriptions'.
func (c *Client) ListSubscriptionItems(ctx context.Context, customerID string, f SubscriptionFilter) ([]json.RawMessage, error) {
	p := "/v1/customers/" + url.PathEscape(customerID) + "/subscriptions"
	if f.MPNID != "" {
		p += "?" + url.Values{"mpn_id": {f.MPNID}}.Encode()
	}
	return listItems[Subscription](ctx, c, "subscriptions", p)
}

// ListManagedServiceItems is ListManagedServices without the typed
// decoding, as ListSubscriptionItems.
func (c *Client) ListManagedServiceItems(ctx context.Context, customerID string) ([]json.RawMessage, error) {
	return listItems[ManagedService](ctx, c, "managedservices", "/v1/customers/"+url.PathEscape(customerID)+"/managedservices")
}

// ListProductItems is ListProducts without the typed decoding, as
// ListSubscriptionItems.
func (c *Client) ListProductItems(ctx context.Context, customerID, targetView string) ([]json.RawMessage, error) {
	p := "/v1/customers/" + url.PathEscape(customerID) + "/products?" + url.Values{"targetView": {targetView}}.Encode()
	return listItems[Product](ctx, c, "products", p)
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

// listAll reads every page of a listing, decoding each item into a T as
// it streams in. Each page must be a well-formed collection; the listing
// as a whole stays within the client's page, item and byte bounds. Any
// failure fails the whole listing: a partial list is never returned.
func listAll[T any](ctx context.Context, c *Client, endpoint, path string) ([]T, error) {
	return listPages(ctx, c, endpoint, path, func(dec *json.Decoder, b *itemBudget) (Collection[T], error) {
		return decodeCollection[T](dec, b)
	})
}

// listItems reads every page of a listing as listAll[T] does, with the
// same guarantees and the same bounds (each item charged at the size of a
// T, which it may be decoded into), but returns each item's raw JSON
// undecoded (see SplitCollection): valid JSON, an object or null, not yet
// known to decode into a T.
func listItems[T any](ctx context.Context, c *Client, endpoint, path string) ([]json.RawMessage, error) {
	size := int64(reflect.TypeFor[T]().Size())
	return listPages(ctx, c, endpoint, path, func(_ *json.Decoder, b *itemBudget) (Collection[json.RawMessage], error) {
		return readCollection(b, size)
	})
}

// listPages follows a listing's next links, reading each page with
// readPage, within the client's bounds.
func listPages[T any](ctx context.Context, c *Client, endpoint, path string, readPage func(*json.Decoder, *itemBudget) (Collection[T], error)) ([]T, error) {
	var (
		all       []T
		hdr       []Header
		seen      = map[[sha256.Size]byte]bool{}
		listBytes int64 // charged by the pages read so far
	)
	for page := 1; ; page++ {
		var coll Collection[T]
		budget := func() *itemBudget {
			return c.listingBudget(listBytes, len(all))
		}
		var charged int64
		err := c.get(ctx, endpoint, path, hdr, c.budget, budget, func(dec *json.Decoder, b *itemBudget) error {
			var err error
			coll, err = readPage(dec, b)
			charged = b.n
			return err
		})
		if err != nil {
			var le *LimitError
			if errors.As(err, &le) {
				le.Page = page
			}
			if page > 1 {
				return nil, fmt.Errorf("listing %s failed at page %d after %d items (the whole listing is discarded): %w", endpoint, page, len(all), err)
			}
			return nil, err
		}
		listBytes += charged
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
		if page >= c.maxPages {
			return nil, &LimitError{Endpoint: endpoint, Method: http.MethodGet, Path: p, Option: LimitPages,
				Limit: int64(c.maxPages), Page: page + 1, CorrelationID: CorrelationID(ctx), Hint: c.limitHints[LimitPages]}
		}
		h := sha256.New()
		h.Write([]byte(p))
		for _, x := range next.Headers {
			fmt.Fprintf(h, "\x00%q\x00%q", x.Key, x.Value)
		}
		var key [sha256.Size]byte
		h.Sum(key[:0])
		if seen[key] {
			return nil, fmt.Errorf("listing %s: page %d links back to an earlier page (%s); the server is looping", endpoint, page, p)
		}
		seen[key] = true
		path, hdr = p, next.Headers
	}
}

// responseBudget is the bound of a single-resource response.
func (c *Client) responseBudget() *itemBudget {
	return &itemBudget{limit: c.maxResp, option: LimitResponseBytes}
}

// listingBudget is the bound of one page of a listing that has charged
// used bytes and holds items items so far: the per-response bound, or what
// is left of the per-listing one when that is smaller.
func (c *Client) listingBudget(used int64, items int) *itemBudget {
	b := &itemBudget{limit: c.maxResp, option: LimitResponseBytes, items: items, maxItm: c.maxItems}
	if left := c.maxList - used; left < b.limit {
		b.limit, b.option = max(left, 1), LimitListingBytes
		b.optLimit = c.maxList
	}
	return b
}

// originOf returns u's origin as scheme://host:port, lower-cased, with the
// scheme's default port made explicit, so that equal origins compare equal.
func originOf(u *url.URL) string {
	scheme := strings.ToLower(u.Scheme)
	port := u.Port()
	if port == "" {
		switch scheme {
		case "https":
			port = "443"
		case "http":
			port = "80"
		}
	}
	return scheme + "://" + net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}

// maxRedirects is how many same-origin redirects are followed, as
// net/http's default policy.
const maxRedirects = 10

// sameOriginClient returns a copy of hc (a new client when nil) that
// refuses to follow a redirect off origin: CheckRedirect runs before the
// redirected request is sent, so the other origin never sees it nor its
// Authorization header (net/http forwards that header to the same host on
// another port). The copy shares hc's Transport, Jar and Timeout; hc's own
// CheckRedirect still applies to same-origin redirects.
func sameOriginClient(hc *http.Client, origin string) *http.Client {
	var cp http.Client
	if hc != nil {
		cp = *hc
	}
	prev := cp.CheckRedirect
	cp.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if to := originOf(req.URL); to != origin {
			re := &RedirectError{From: origin, Location: to}
			if req.Response != nil {
				re.StatusCode = req.Response.StatusCode
			}
			return re
		}
		if prev != nil {
			return prev(req, via)
		}
		if len(via) >= maxRedirects {
			return fmt.Errorf("stopped after %d redirects", maxRedirects)
		}
		return nil
	}
	return &cp
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
	return c.get(ctx, "customers", "/v1/customers?size=1", nil, budget, func() *itemBudget { return c.listingBudget(0, 0) },
		func(dec *json.Decoder, b *itemBudget) error {
			_, err := decodeCollection[json.RawMessage](dec, b)
			return err
		})
}

// decodeFunc reads a 2xx body from dec; b counts and bounds what it reads.
type decodeFunc func(dec *json.Decoder, b *itemBudget) error

// get performs one logical GET, retries included, within budget (the
// client's when not positive), and decodes a 2xx body with decode, from a
// stream bounded by a fresh newBudget() per attempt.
func (c *Client) get(ctx context.Context, endpoint, path string, hdr []Header, budget time.Duration, newBudget func() *itemBudget, decode decodeFunc) error {
	reqID := NewID()
	corrID := CorrelationID(ctx)
	if corrID == "" {
		corrID = NewID()
	}
	if budget <= 0 {
		budget = c.budget // backoff would read 0 as "no limit"
	}
	bo := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(c.initial),
		backoff.WithMaxInterval(c.maxWait),
		backoff.WithMaxElapsedTime(budget),
		backoff.WithRandomizationFactor(0.5),
		backoff.WithMultiplier(2),
	)
	bo.Clock = c.clk
	bo.Reset()
	deadline := c.clk.Now().Add(budget)
	decodeFailures, retries := 0, 0
	var lastErr error
	for attempt := 1; ; attempt++ {
		if err := c.waitTurn(ctx, deadline); err != nil {
			var re *RetryError
			if errors.As(err, &re) {
				re.Attempts, re.MaxRetries, re.Budget, re.Err = attempt-1, c.retries, budget, lastErr
			}
			return err
		}
		r := c.do(ctx, endpoint, path, hdr, reqID, corrID, newBudget(), decode)
		retryAfter := r.retryAfter
		var err error
		reason := ""
		switch {
		case r.sendErr != nil:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var authErr *AuthError
			var re *RedirectError
			switch {
			case errors.As(r.sendErr, &authErr):
				if !authErr.Temporary() {
					return fmt.Errorf("partner center GET %s: %w", path, r.sendErr)
				}
			case errors.As(r.sendErr, &re):
				// Not retried: the server means it, and following it
				// would hand the token to another origin.
				re.Endpoint, re.Method, re.Path, re.RequestID, re.CorrelationID = endpoint, http.MethodGet, path, reqID, corrID
				return re
			}
			reason = "network"
			err = fmt.Errorf("partner center GET %s: %w [request-id %s, correlation-id %s]", path, r.sendErr, reqID, corrID)
		case r.status < 200 || r.status > 299:
			ae := &APIError{Endpoint: endpoint, Method: http.MethodGet, Path: path, StatusCode: r.status,
				RequestID: reqID, CorrelationID: corrID, RetryAfter: retryAfter}
			ae.parseErrorBody(r.errBody)
			if ae.RetryAfter == 0 && r.status == http.StatusTooManyRequests {
				ae.RetryAfter = retryAfterFromMessage(ae.Message)
			}
			retryAfter = ae.RetryAfter
			err = ae
			if !ae.Temporary() {
				return ae
			}
			reason = strconv.Itoa(r.status)
			if r.status == http.StatusTooManyRequests {
				c.throttled.Add(1)
			}
			if r.status != http.StatusTooManyRequests && r.status != http.StatusServiceUnavailable {
				retryAfter = 0 // only 429 and 503 define Retry-After
			}
			// Hold everyone back for a Retry-After the client is willing
			// to wait (at most one RetryBudget): Partner Center throttles
			// per tenant, so the others would be refused too. A longer
			// one (a day) fails this request below and is not shared: a
			// server that asks one request to wait a day must not stop
			// the polling of every other customer (they find out for
			// themselves if it applies to them).
			if retryAfter <= c.budget {
				c.pause(retryAfter)
			}
		case r.decodeErr == nil:
			return nil
		default:
			retryAfter = 0
			switch b := r.budget; {
			case errors.Is(r.decodeErr, errOverBudget) || errors.Is(r.decodeErr, errTooManyItems):
				// Not retried: the same request would cross it again.
				le := &LimitError{Endpoint: endpoint, Method: http.MethodGet, Path: path, Option: b.option,
					Limit: b.optionLimit(), RequestID: reqID, CorrelationID: corrID}
				if errors.Is(r.decodeErr, errTooManyItems) {
					le.Option, le.Limit = LimitItems, int64(b.maxItm)
				}
				le.Hint = c.limitHints[le.Option]
				return le
			case b.rerr != nil:
				// The body broke off: a network failure, retried as such.
				reason = "network"
				err = fmt.Errorf("partner center GET %s: reading HTTP %d response body: %w [request-id %s, correlation-id %s]",
					path, r.status, b.rerr, reqID, corrID)
			default:
				err = &DecodeError{Endpoint: endpoint, Method: http.MethodGet, Path: path, StatusCode: r.status,
					RequestID: reqID, CorrelationID: corrID, Err: r.decodeErr}
				decodeFailures++
				if decodeFailures >= maxDecodeAttempts {
					return &RetryError{Reason: GaveUpDecode, Attempts: attempt, MaxRetries: c.retries, Budget: budget, Err: err}
				}
				reason = "malformed"
			}
		}
		// A 429 that says when to come back is throttling, not a failure:
		// it is waited out exactly as asked, and the time budget bounds
		// it. Everything else counts as a retry and backs off.
		throttled := r.status == http.StatusTooManyRequests && retryAfter >= time.Second
		if !throttled {
			retries++
			if retries > c.retries {
				return &RetryError{Reason: GaveUpRetries, Attempts: attempt, MaxRetries: c.retries, Budget: budget, Err: err}
			}
		}
		lastErr = err
		if left := deadline.Sub(c.clk.Now()); retryAfter > left {
			// Waiting would outlast the budget: fail now, so that the
			// caller moves on and tries again later with a fresh budget.
			return &RetryError{Reason: GaveUpRetryAfter, Attempts: attempt, MaxRetries: c.retries, Budget: budget,
				Left: max(left, 0), RetryAfter: retryAfter, Err: err}
		}
		wait := retryAfter
		if !throttled {
			wait = bo.NextBackOff() // never beyond the budget: it stops first
			if wait == backoff.Stop {
				return &RetryError{Reason: GaveUpBudget, Attempts: attempt, MaxRetries: c.retries, Budget: budget, Err: err}
			}
			wait = max(wait, retryAfter)
		}
		c.retried.Add(1)
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
// limiter grants a request. A pause that lasts beyond deadline (the
// request's budget) is not waited out: waitTurn returns a *RetryError
// (GaveUpPause) at once.
func (c *Client) waitTurn(ctx context.Context, deadline time.Time) error {
	for {
		c.pauseMu.Lock()
		until := c.pauseUntil
		c.pauseMu.Unlock()
		now := c.clk.Now()
		if !now.Before(until) {
			break
		}
		if until.After(deadline) {
			return &RetryError{Reason: GaveUpPause, Left: max(deadline.Sub(now), 0), RetryAfter: until.Sub(now)}
		}
		if err := c.sleep(ctx, until.Sub(now)); err != nil {
			return err
		}
	}
	return c.gate.Wait(ctx)
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

// attemptResult is the outcome of one HTTP attempt.
type attemptResult struct {
	sendErr    error         // no response (or no token)
	status     int           // HTTP status
	retryAfter time.Duration // Retry-After header
	errBody    []byte        // start of a non-2xx body
	budget     *itemBudget   // what the 2xx body read and charged
	decodeErr  error         // decode's error on a 2xx body
}

// do sends one attempt. A 2xx body is decoded as it streams in, bounded by
// b; of any other body only the first maxErrorBody bytes are read. The body
// is closed without being drained, so an endless body costs nothing more.
func (c *Client) do(ctx context.Context, endpoint, path string, hdr []Header, reqID, corrID string, b *itemBudget, decode decodeFunc) attemptResult {
	actx, cancel := context.WithTimeout(ctx, c.attempt)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodGet, c.base.String()+path, nil)
	if err != nil {
		return attemptResult{sendErr: err}
	}
	tok, err := c.ts.Token()
	if err != nil {
		return attemptResult{sendErr: err}
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
		return attemptResult{sendErr: err}
	}
	defer resp.Body.Close()
	r := attemptResult{status: resp.StatusCode, retryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), c.clk.Now()), budget: b}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		c.observe(endpoint, resp.StatusCode, start)
		if err != nil && len(body) == 0 {
			// The status says what went wrong; an unreadable error body
			// only loses the details.
			c.log.Debug("partner center error body unreadable", "path", path, "status", resp.StatusCode, "err", err)
		}
		r.errBody = bytes.TrimPrefix(body, utf8BOM)
		return r
	}
	b.r = resp.Body
	r.decodeErr = decode(newDecoder(b), b)
	c.observe(endpoint, resp.StatusCode, start)
	c.log.Debug("partner center request", "endpoint", endpoint, "path", path, "status", resp.StatusCode,
		"bytes", b.n, "items", b.items, "request_id", reqID, "correlation_id", corrID)
	return r
}

func (c *Client) observe(endpoint string, status int, start time.Time) {
	if c.obs != nil {
		c.obs.ObserveRequest(endpoint, status, c.clk.Now().Sub(start))
	}
}

// parseRetryAfter reads delta-seconds (digits, optionally with a fraction)
// or an HTTP date, capped at maxRetryAfter. Anything else (negative, NaN,
// Inf, exponents, a date in the past) is no Retry-After: 0.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if deltaSeconds.MatchString(v) {
		n, err := strconv.ParseFloat(v, 64)
		if err != nil || n*float64(time.Second) >= float64(maxRetryAfter) {
			return maxRetryAfter // digits only: the error is a range error
		}
		return time.Duration(n * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), maxRetryAfter)
	}
	return 0
}

var deltaSeconds = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?$`)

var tryAgainIn = regexp.MustCompile(`(?i)try again in (\d+) seconds?`)

// retryAfterFromMessage reads "Try again in 57 seconds." from a 429 body
// that came without a Retry-After header.
func retryAfterFromMessage(msg string) time.Duration {
	m := tryAgainIn.FindStringSubmatch(msg)
	if m == nil {
		return 0
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil || n >= int64(maxRetryAfter/time.Second) {
		return maxRetryAfter
	}
	return time.Duration(n) * time.Second
}
