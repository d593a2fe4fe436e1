package partnercenter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// bodyServer answers every request with status 200 and body, counting hits.
func bodyServer(t *testing.T, body string) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

// Defect 1 (issue 11): a 200 body that is valid JSON but not a well-formed
// collection was read as a complete, empty listing, and the differ then
// reported every subscription removed.
func TestNotACollectionIsAnError(t *testing.T) {
	for _, tt := range []struct {
		name, body, says string
	}{
		{"null", `null`, "the body is null"},
		{"empty object", `{}`, "no items property"},
		{"array", `[]`, "the body is an array"},
		{"array of items", `[{"id":"a"}]`, "the body is an array"},
		{"string", `"items"`, "the body is a string"},
		{"number", `42`, "the body is a number"},
		{"boolean", `true`, "the body is a boolean"},
		{"items missing", `{"totalCount":2,"links":{}}`, "no items property"},
		{"items null", `{"totalCount":0,"items":null}`, "items is null"},
		{"items object", `{"items":{"id":"a"}}`, "items is an object"},
		{"items string", `{"items":"a,b"}`, "items is a string"},
		{"items number", `{"items":2}`, "items is a number"},
		{"items empty, totalCount 3", `{"totalCount":3,"items":[]}`, "items is empty but totalCount is 3"},
		{"PascalCase, items empty, totalCount 1", `{"TotalCount":1,"Items":[]}`, "items is empty but totalCount is 1"},
		{"items twice", `{"items":[],"Items":[{"id":"a"}]}`, "items appears twice"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv, hits := bodyServer(t, tt.body)
			c, _ := newTestClient(t, srv, nil)
			got, err := c.ListSubscriptions(context.Background(), "c1", SubscriptionFilter{})
			if err == nil {
				t.Fatalf("got %d subscriptions and no error from %s; want a DecodeError", len(got), tt.body)
			}
			if got != nil {
				t.Errorf("got %d subscriptions alongside the error", len(got))
			}
			var de *DecodeError
			if !errors.As(err, &de) || !errors.Is(err, ErrNotCollection) {
				t.Fatalf("err = %v; want a *DecodeError matching ErrNotCollection", err)
			}
			for _, want := range []string{"GET /v1/customers/c1/subscriptions", "(subscriptions)", "HTTP 200", tt.says, "request-id " + de.RequestID} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			if hits.Load() != maxDecodeAttempts {
				t.Errorf("%d attempts, want %d (retried like a malformed body)", hits.Load(), maxDecodeAttempts)
			}
		})
	}
}

// The documented shapes stay accepted: an empty collection, and a
// totalCount larger than the items (the examples are abridged, and
// totalCount counts all subscriptions, not those of the page).
func TestWellFormedCollectionsStillDecode(t *testing.T) {
	for _, tt := range []struct {
		body string
		n    int
	}{
		{`{"totalCount":0,"items":[]}`, 0},
		{`{"items":[]}`, 0},
		{"\uFEFF" + `{"totalCount":0,"items":[],"links":{"self":{"uri":"/x"}}}`, 0},
		{`{"totalCount":37,"items":[{"id":"a"}],"attributes":{"objectType":"Collection"}}`, 1},
		{`{"TotalCount":2,"Items":[{"Id":"a"},{"Id":"b"}],"futureField":{"x":[1,{"y":null}]}}`, 2},
	} {
		srv, _ := bodyServer(t, tt.body)
		c, _ := newTestClient(t, srv, nil)
		got, err := c.ListSubscriptions(context.Background(), "c1", SubscriptionFilter{})
		if err != nil || len(got) != tt.n || got == nil {
			t.Errorf("%s: got %v, %v; want %d subscriptions", tt.body, got, err, tt.n)
		}
	}
}

// A page after the first that is not a collection fails the whole listing.
func TestNotACollectionOnALaterPage(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("seekOperation") == "Next" {
			io.WriteString(w, `{"totalCount":500,"items":[],"links":{}}`)
			return
		}
		io.WriteString(w, `{"totalCount":1,"items":[{"id":"c1"}],"links":{"next":{"uri":"/v1/customers?size=500&seekOperation=Next","headers":[{"key":"MS-ContinuationToken","value":"t"}]}}}`)
	}))
	defer srv.Close()
	c, _ := newTestClient(t, srv, nil)
	got, err := c.ListCustomers(context.Background())
	if got != nil || !errors.Is(err, ErrNotCollection) || !strings.Contains(err.Error(), "failed at page 2 after 1 items") {
		t.Fatalf("got %d customers, err %v; want the listing to fail at page 2", len(got), err)
	}
}

// GetSubscription: the body must be one object with an id.
func TestGetSubscriptionNotAnObject(t *testing.T) {
	for _, body := range []string{`null`, `{}`, `[]`, `[{"id":"s1"}]`, `"s1"`, `7`, `{"id":""}`, `{"quantity":3}`, `{"id":"s1"} {"id":"s2"}`} {
		t.Run(body, func(t *testing.T) {
			srv, hits := bodyServer(t, body)
			c, _ := newTestClient(t, srv, nil)
			s, err := c.GetSubscription(context.Background(), "c1", "s1")
			var de *DecodeError
			if s != nil || !errors.As(err, &de) {
				t.Fatalf("got %+v, %v; want a *DecodeError", s, err)
			}
			if !strings.Contains(body, " ") && !errors.Is(err, ErrNotObject) {
				t.Errorf("err = %v; want it to match ErrNotObject", err)
			}
			for _, want := range []string{"/v1/customers/c1/subscriptions/s1", "(subscription)", "HTTP 200", "request-id " + de.RequestID} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			if hits.Load() != maxDecodeAttempts {
				t.Errorf("%d attempts, want %d", hits.Load(), maxDecodeAttempts)
			}
		})
	}
	srv, _ := bodyServer(t, `{"id":"s1","quantity":2}`)
	c, _ := newTestClient(t, srv, nil)
	if s, err := c.GetSubscription(context.Background(), "c1", "s1"); err != nil || s.ID != "s1" || s.Quantity != 2 {
		t.Fatalf("GetSubscription = %+v, %v", s, err)
	}
}

// The probe refuses a non-collection too: a server answering {} is not
// the Partner Center API.
func TestProbeRefusesNonCollection(t *testing.T) {
	srv, _ := bodyServer(t, `{}`)
	c, _ := newTestClient(t, srv, nil)
	if err := c.Probe(context.Background(), 10*time.Second); !errors.Is(err, ErrNotCollection) {
		t.Fatalf("Probe = %v; want ErrNotCollection", err)
	}
}

// endlessServer streams head and then chunk forever (until the client
// hangs up), counting requests. Every 256 KiB written it calls sample, if
// set.
func endlessServer(t testing.TB, head, chunk string, sample func()) (*httptest.Server, *atomic.Int32) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if _, err := io.WriteString(w, head); err != nil {
			return
		}
		block := strings.Repeat(chunk, max(1, 32<<10/len(chunk)))
		for written := 0; ; written += len(block) {
			if _, err := io.WriteString(w, block); err != nil {
				return
			}
			if sample != nil && written%(256<<10) < len(block) {
				sample()
			}
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

// Defect 4 (issue 11): the only bound was 256 MiB per response, read whole
// into memory, and 100,000 pages per listing.
func TestResponseSizeCap(t *testing.T) {
	big := `{"totalCount":1,"items":[{"id":"a","friendlyName":"` + strings.Repeat("x", 2<<20) + `"}]}`
	tiny := `{"totalCount":1,"items":[` + strings.Repeat(`{"id":"a"},`, 20000) + `{"id":"b"}]}` // 220 KB of bytes, 14 MB of Subscriptions
	for _, tt := range []struct {
		name  string
		srv   func(t *testing.T) (*httptest.Server, *atomic.Int32)
		limit int64 // 0: the default
		says  string
	}{
		{"a 2 MiB body over a 1 MiB cap", func(t *testing.T) (*httptest.Server, *atomic.Int32) { return bodyServer(t, big) }, 1 << 20, "1 MiB per-response limit"},
		{"tiny items charged at their size", func(t *testing.T) (*httptest.Server, *atomic.Int32) { return bodyServer(t, tiny) }, 1 << 20, "1 MiB per-response limit"},
		{"an endless body, default cap", func(t *testing.T) (*httptest.Server, *atomic.Int32) {
			return endlessServer(t, `{"totalCount":1,"items":[`, `{"id":"x","quantity":1},`, nil)
		}, 0, "16 MiB per-response limit"},
		{"an endless string, default cap", func(t *testing.T) (*httptest.Server, *atomic.Int32) {
			return endlessServer(t, `{"totalCount":1,"items":[{"id":"`, `xxxxxxxx`, nil)
		}, 0, "16 MiB per-response limit"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv, hits := tt.srv(t)
			c, _ := newTestClient(t, srv, func(o *Options) { o.MaxResponseBytes = tt.limit })
			got, err := c.ListSubscriptions(context.Background(), "c1", SubscriptionFilter{})
			var le *LimitError
			if got != nil || !errors.As(err, &le) || !errors.Is(err, ErrLimit) {
				t.Fatalf("got %d subscriptions, err %v; want a *LimitError", len(got), err)
			}
			want := tt.limit
			if want == 0 {
				want = DefaultMaxResponseBytes
			}
			if le.Option != LimitResponseBytes || le.Limit != want || le.RequestID == "" {
				t.Errorf("LimitError = %+v", le)
			}
			for _, s := range []string{tt.says, "raise Options.MaxResponseBytes", "/v1/customers/c1/subscriptions", "request-id"} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
			if hits.Load() != 1 {
				t.Errorf("%d attempts; a body over the cap is not retried", hits.Load())
			}
		})
	}
	// Just under the cap passes.
	srv, _ := bodyServer(t, big)
	c, _ := newTestClient(t, srv, func(o *Options) { o.MaxResponseBytes = 3 << 20 })
	if got, err := c.ListSubscriptions(context.Background(), "c1", SubscriptionFilter{}); err != nil || len(got) != 1 {
		t.Fatalf("a 2 MiB body under a 3 MiB cap: %d, %v", len(got), err)
	}
}

// endlessPaging serves customer pages of perPage new customers each, with a
// continuation token that changes every page, forever.
func endlessPaging(t *testing.T, perPage int, pad int) (*httptest.Server, *atomic.Int32) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		page := 0
		fmt.Sscanf(r.Header.Get("MS-ContinuationToken"), "page-%d", &page)
		var items []string
		for i := 0; i < perPage; i++ {
			items = append(items, fmt.Sprintf(`{"id":"c-%d-%d","companyProfile":{"companyName":%q}}`, page, i, strings.Repeat("n", pad)))
		}
		fmt.Fprintf(w, `{"totalCount":%d,"items":[%s],"links":{"next":{"uri":"/v1/customers?size=500&seekOperation=Next","headers":[{"key":"MS-ContinuationToken","value":"page-%d"}]}}}`,
			perPage, strings.Join(items, ","), page+1)
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

func TestListingBounds(t *testing.T) {
	for _, tt := range []struct {
		name         string
		perPage, pad int
		mod          func(*Options)
		option       string
		limit        int64
		requests     int32
		says         string
	}{
		{"endless pages, default MaxPages", 1, 0, nil, LimitPages, DefaultMaxPages, DefaultMaxPages, "more than 1000 pages"},
		{"MaxItems", 500, 0, func(o *Options) { o.MaxItems = 1200 }, LimitItems, 1200, 3, "more than 1200 items (at page 3)"},
		{"MaxListingBytes", 100, 1000, func(o *Options) { o.MaxListingBytes = 300 << 10 }, LimitListingBytes, 300 << 10, 3, "300 KiB per-listing limit at page 3"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv, hits := endlessPaging(t, tt.perPage, tt.pad)
			c, _ := newTestClient(t, srv, tt.mod)
			got, err := c.ListCustomers(context.Background())
			var le *LimitError
			if got != nil || !errors.As(err, &le) {
				t.Fatalf("got %d customers, err %v; want a *LimitError", len(got), err)
			}
			if le.Option != tt.option || le.Limit != tt.limit {
				t.Errorf("LimitError = %+v; want option %s, limit %d", le, tt.option, tt.limit)
			}
			for _, s := range []string{tt.says, "raise Options." + tt.option, "customers"} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
			if hits.Load() != tt.requests {
				t.Errorf("%d requests, want %d", hits.Load(), tt.requests)
			}
		})
	}
	// A listing of exactly MaxItems items and MaxPages pages is complete.
	srv := pagingServer(t, 1000, "", nil)
	defer srv.Close()
	c, _ := newTestClient(t, srv, func(o *Options) { o.PageSize = 100; o.MaxItems = 1000; o.MaxPages = 10 })
	if got, err := c.ListCustomers(context.Background()); err != nil || len(got) != 1000 {
		t.Fatalf("a listing at the bounds: %d, %v", len(got), err)
	}
}

// endlessShapes are bodies that never end, each stressing another part of
// the decoder: items, one value, a property it skips.
var endlessShapes = []struct{ name, head, chunk string }{
	{"endless items", `{"totalCount":1,"items":[`, `{"id":"x","quantity":1},`},
	{"endless tiny items", `{"totalCount":1,"items":[`, `{},`},
	{"endless string", `{"totalCount":1,"items":[{"id":"`, `xxxxxxxx`},
	{"endless unknown property", `{"totalCount":1,"junk":[`, `{"k":"` + strings.Repeat("v", 100) + `"},`},
	{"endless white space", `{"totalCount":1,"items":[{"id":"a"}`, "        "},
}

// peakHeap runs callers concurrent subscription listings against an
// endless body and returns the largest heap in use above the baseline,
// sampled by the server every 256 KiB it streams (so the samples follow
// the reading, not a timer).
func peakHeap(t testing.TB, callers int, limit int64, head, chunk string) uint64 {
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	var peak atomic.Uint64
	sample := func() {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		for {
			p := peak.Load()
			if m.HeapAlloc <= p || peak.CompareAndSwap(p, m.HeapAlloc) {
				return
			}
		}
	}
	srv, _ := endlessServer(t, head, chunk, sample)
	c, err := New(Options{BaseURL: srv.URL, HTTPClient: srv.Client(), MaxResponseBytes: limit,
		TokenSource:       oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "t"}),
		RequestsPerMinute: 1e6, Burst: callers})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, callers)
	for i := range callers {
		wg.Go(func() {
			_, errs[i] = c.ListSubscriptions(context.Background(), fmt.Sprint("c", i), SubscriptionFilter{})
		})
	}
	wg.Wait()
	sample()
	for _, err := range errs {
		if !errors.Is(err, ErrLimit) && !errors.Is(err, ErrNotCollection) {
			t.Fatalf("an endless body ended in %v; want a limit error", err)
		}
	}
	if p := peak.Load(); p > base.HeapAlloc {
		return p - base.HeapAlloc
	}
	return 0
}

// Defect 4: N concurrent endless bodies took N x ~750 MB. Each caller now
// stops at its per-response bound: peak heap stays within callers x a few
// times MaxResponseBytes (bytes read and their decoded copy, plus garbage
// the collector has not reclaimed yet), whatever the body's shape.
func TestEndlessBodiesPeakHeap(t *testing.T) {
	const callers = 8
	const limit = 2 << 20
	for _, sh := range endlessShapes {
		t.Run(sh.name, func(t *testing.T) {
			peak := peakHeap(t, callers, limit, sh.head, sh.chunk)
			bound := uint64(callers*6*limit + 32<<20)
			t.Logf("peak heap %.1f MiB for %d endless bodies (bound %.0f MiB)", float64(peak)/(1<<20), callers, float64(bound)/(1<<20))
			if peak > bound {
				t.Errorf("peak heap %.1f MiB over %.0f MiB for %d callers at %d MiB per response", float64(peak)/(1<<20), float64(bound)/(1<<20), callers, limit>>20)
			}
		})
	}
}

// BenchmarkEndlessBodies reports the peak heap of 8 concurrent callers
// reading endless bodies with the default per-response bound.
func BenchmarkEndlessBodies(b *testing.B) {
	for _, sh := range endlessShapes {
		b.Run(sh.name, func(b *testing.B) {
			var peak uint64
			for b.Loop() {
				peak = max(peak, peakHeap(b, 8, 0, sh.head, sh.chunk))
			}
			b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
		})
	}
}

// Defect 5 (issue 11): redirects were followed to any origin, with the
// bearer token (net/http forwards Authorization to the same host on
// another port), and the other origin's body was trusted.
func TestRedirectOffOriginRefused(t *testing.T) {
	var evilHits atomic.Int32
	var evilAuth atomic.Value
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		evilHits.Add(1)
		evilAuth.Store(r.Header.Get("Authorization"))
		io.WriteString(w, `{"totalCount":0,"items":[]}`)
	}))
	defer evil.Close()
	for _, tt := range []struct {
		name   string
		status int
		hc     func(*httptest.Server) *http.Client
	}{
		{"302", http.StatusFound, nil},
		{"301", http.StatusMovedPermanently, nil},
		{"307", http.StatusTemporaryRedirect, nil},
		{"308", http.StatusPermanentRedirect, nil},
		{"caller's CheckRedirect allows all", http.StatusFound, func(s *httptest.Server) *http.Client {
			hc := s.Client()
			hc.CheckRedirect = func(*http.Request, []*http.Request) error { return nil }
			return hc
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			evilHits.Store(0)
			var hits atomic.Int32
			api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				hits.Add(1)
				http.Redirect(w, r, evil.URL+"/v1/customers/c1/subscriptions?sig=topsecret-sig", tt.status)
			}))
			defer api.Close()
			c, _ := newTestClient(t, api, func(o *Options) {
				if tt.hc != nil {
					o.HTTPClient = tt.hc(api)
				}
			})
			got, err := c.ListSubscriptions(context.Background(), "c1", SubscriptionFilter{})
			if evilHits.Load() != 0 {
				t.Fatalf("the other origin got %d requests (Authorization %q)", evilHits.Load(), evilAuth.Load())
			}
			var re *RedirectError
			if got != nil || !errors.As(err, &re) || !errors.Is(err, ErrRedirect) {
				t.Fatalf("got %v, %v; want a *RedirectError", got, err)
			}
			u, _ := url.Parse(evil.URL)
			if re.Location != "http://"+u.Host || re.StatusCode != tt.status || re.Endpoint != "subscriptions" || re.RequestID == "" {
				t.Errorf("RedirectError = %+v", re)
			}
			for _, want := range []string{"http://" + u.Host, "another origin", "/v1/customers/c1/subscriptions", fmt.Sprintf("HTTP %d", tt.status), "request-id"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			if strings.Contains(err.Error(), "topsecret") || strings.Contains(err.Error(), "sig=") {
				t.Errorf("error names the Location's query: %v", err)
			}
			if hits.Load() != 1 {
				t.Errorf("%d attempts; a redirect off origin is not retried", hits.Load())
			}
		})
	}
}

// Redirects within the base origin still work, through the caller's
// CheckRedirect, which the client neither drops nor modifies.
func TestRedirectSameOriginFollowed(t *testing.T) {
	var auth atomic.Value
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/customers/c1/subscriptions" {
			http.Redirect(w, r, "/v1/moved/subscriptions", http.StatusTemporaryRedirect)
			return
		}
		auth.Store(r.Header.Get("Authorization"))
		io.WriteString(w, `{"totalCount":1,"items":[{"id":"s1"}]}`)
	}))
	defer api.Close()
	var callerChecks atomic.Int32
	hc := api.Client()
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { callerChecks.Add(1); return nil }
	c, _ := newTestClient(t, api, func(o *Options) { o.HTTPClient = hc })
	got, err := c.ListSubscriptions(context.Background(), "c1", SubscriptionFilter{})
	if err != nil || len(got) != 1 || auth.Load() != "Bearer secret-token" {
		t.Fatalf("got %v, %v (Authorization %q)", got, err, auth.Load())
	}
	if callerChecks.Load() != 1 {
		t.Errorf("the caller's CheckRedirect ran %d times, want 1", callerChecks.Load())
	}
	// The caller's client is unchanged: its CheckRedirect is still its own.
	if err := hc.CheckRedirect(nil, nil); err != nil || callerChecks.Load() != 2 {
		t.Errorf("the caller's http.Client was modified")
	}
}

func TestOriginOf(t *testing.T) {
	for _, tt := range []struct{ a, b string }{
		{"https://API.partnercenter.microsoft.com", "https://api.partnercenter.microsoft.com:443/v1/x?y"},
		{"http://127.0.0.1", "http://127.0.0.1:80"},
		{"http://[::1]:8080/a", "http://[::1]:8080/b"},
	} {
		ua, _ := url.Parse(tt.a)
		ub, _ := url.Parse(tt.b)
		if originOf(ua) != originOf(ub) {
			t.Errorf("origins of %s and %s differ: %s, %s", tt.a, tt.b, originOf(ua), originOf(ub))
		}
	}
	for _, tt := range []struct{ a, b string }{
		{"https://host", "http://host"},
		{"http://host:8080", "http://host:8081"},
		{"https://host", "https://host.evil"},
		{"https://host", "https://host:8443"},
	} {
		ua, _ := url.Parse(tt.a)
		ub, _ := url.Parse(tt.b)
		if originOf(ua) == originOf(ub) {
			t.Errorf("%s and %s have the same origin %s", tt.a, tt.b, originOf(ua))
		}
	}
}

// statusServer answers with status (and Retry-After retryAfter, when set)
// for the first n requests (all when n < 0), then with an empty collection.
func statusServer(t *testing.T, status int, retryAfter string, n int32) (*httptest.Server, *atomic.Int32) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h := hits.Add(1); n < 0 || h <= n {
			if status == 0 { // a connection reset
				conn, _, _ := w.(http.Hijacker).Hijack()
				conn.Close()
				return
			}
			if retryAfter != "" {
				w.Header().Set("Retry-After", retryAfter)
			}
			w.WriteHeader(status)
			fmt.Fprintf(w, `{"code":%d,"description":"failing"}`, status)
			return
		}
		io.WriteString(w, `{"totalCount":0,"items":[]}`)
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

// Defect 7 (issue 11): a customer answering 500 kept a run busy for the
// whole 3-minute budget (13+ attempts). A persistently failing request now
// gives up after 1 + MaxRetries attempts, within seconds of simulated time.
func TestRetriesBoundedPerRequest(t *testing.T) {
	for _, tt := range []struct {
		name       string
		status     int
		retryAfter string
		maxRetries int
		attempts   int32
	}{
		{"500, default", 500, "", 0, 4},
		{"502", 502, "", 0, 4},
		{"503 without Retry-After", 503, "", 0, 4},
		{"503 with Retry-After counts", 503, "2", 0, 4},
		{"408", 408, "", 0, 4},
		{"connection reset", 0, "", 0, 4},
		{"429 without Retry-After counts", 429, "", 0, 4},
		{"MaxRetries 5", 500, "", 5, 6},
		{"MaxRetries negative: no retry", 500, "", -1, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv, hits := statusServer(t, tt.status, tt.retryAfter, -1)
			c, ft := newTestClient(t, srv, func(o *Options) { o.MaxRetries = tt.maxRetries })
			_, err := c.ListSubscriptions(context.Background(), "c1", SubscriptionFilter{})
			var re *RetryError
			if !errors.As(err, &re) || !errors.Is(err, ErrGaveUp) || re.Reason != GaveUpRetries {
				t.Fatalf("err = %v; want a *RetryError for the retry limit", err)
			}
			if hits.Load() != tt.attempts || re.Attempts != int(tt.attempts) {
				t.Errorf("%d attempts (error says %d), want %d", hits.Load(), re.Attempts, tt.attempts)
			}
			if want := fmt.Sprintf("giving up after %d attempts", tt.attempts); !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "/v1/customers/c1/subscriptions") {
				t.Errorf("error %q does not say %q and name the path", err, want)
			}
			if tt.status >= 500 && !errors.Is(err, ErrServer) {
				t.Errorf("err = %v; the last APIError is not reachable", err)
			}
			if ft.total() > 30*time.Second {
				t.Errorf("waited %v of simulated time; want a persistent failure to end within ~30s", ft.total())
			}
		})
	}
}

// Partner Center's throttling (429 with a Retry-After) is normal and does
// not use up MaxRetries: ten 429s in a row are waited out within the
// budget, and the request succeeds.
func TestThrottlingDoesNotCountAsRetries(t *testing.T) {
	for _, ra := range []string{"header", "message"} {
		t.Run(ra, func(t *testing.T) {
			var hits atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if hits.Add(1) <= 10 {
					if ra == "header" {
						w.Header().Set("Retry-After", "3")
					}
					w.WriteHeader(429)
					io.WriteString(w, `{"statusCode":429,"message":"Rate limit is exceeded. Try again in 3 seconds."}`)
					return
				}
				io.WriteString(w, `{"totalCount":0,"items":[]}`)
			}))
			defer srv.Close()
			c, ft := newTestClient(t, srv, nil)
			if _, err := c.ListSubscriptions(context.Background(), "c1", SubscriptionFilter{}); err != nil {
				t.Fatalf("throttled request failed: %v", err)
			}
			if hits.Load() != 11 || ft.total() < 30*time.Second {
				t.Errorf("%d attempts, %v waited; want 11 attempts honouring 10 x 3s", hits.Load(), ft.total())
			}
		})
	}
}

// Defect 6 (issue 11): Retry-After was unbounded: "Retry-After: 86400" made
// every worker wait 24 h despite a 5 s retry budget.
func TestRetryAfterBoundedByBudget(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) // newTestClient's fake clock
	const budget = 5 * time.Second
	for _, tt := range []struct {
		name        string
		status      int
		header      string
		message     string        // 429 body message, when no header is sent
		giveUp      time.Duration // >0: fails at once, asked to wait this long
		waitAtLeast time.Duration // else: succeeds on the second attempt after this wait
	}{
		{"a day", 429, "86400", "", 24 * time.Hour, 0},
		{"a day on 503", 503, "86400", "", 24 * time.Hour, 0},
		{"a day in the message", 429, "", "Rate limit is exceeded. Try again in 86400 seconds.", 24 * time.Hour, 0},
		{"six seconds", 429, "6", "", 6 * time.Second, 0},
		{"huge", 429, "99999999999999999999", "", maxRetryAfter, 0},
		{"huge in the message", 429, "", "Try again in 99999999999999999999 seconds", maxRetryAfter, 0},
		{"HTTP date in two days", 429, now.Add(48 * time.Hour).Format(http.TimeFormat), "", 48 * time.Hour, 0},
		{"three seconds", 429, "3", "", 0, 3 * time.Second},
		{"fractional", 429, "4.5", "", 0, 4500 * time.Millisecond},
		{"HTTP date in two seconds", 429, now.Add(2 * time.Second).Format(http.TimeFormat), "", 0, 2 * time.Second},
		{"HTTP date in the past", 429, now.Add(-time.Hour).Format(http.TimeFormat), "", 0, 0},
		{"negative", 429, "-5", "", 0, 0},
		{"NaN", 429, "NaN", "", 0, 0},
		{"Inf", 429, "+Inf", "", 0, 0},
		{"exponent", 429, "1e30", "", 0, 0},
		{"garbage", 429, "soon", "", 0, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var hits atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if hits.Add(1) == 1 {
					if tt.header != "" {
						w.Header().Set("Retry-After", tt.header)
					}
					w.WriteHeader(tt.status)
					fmt.Fprintf(w, `{"statusCode":%d,"message":%q}`, tt.status, tt.message)
					return
				}
				io.WriteString(w, `{"totalCount":0,"items":[]}`)
			}))
			defer srv.Close()
			c, ft := newTestClient(t, srv, func(o *Options) { o.RetryBudget = budget })
			_, err := c.ListSubscriptions(context.Background(), "c1", SubscriptionFilter{})
			if ft.total() > budget {
				t.Errorf("waited %v with a %v retry budget", ft.total(), budget)
			}
			if tt.giveUp == 0 {
				if err != nil || hits.Load() != 2 || ft.total() < tt.waitAtLeast {
					t.Fatalf("err %v after %d attempts and %v; want success on the 2nd attempt after at least %v", err, hits.Load(), ft.total(), tt.waitAtLeast)
				}
				return
			}
			var re *RetryError
			if !errors.As(err, &re) || re.Reason != GaveUpRetryAfter || !errors.Is(err, ErrThrottled) {
				t.Fatalf("err = %v; want a *RetryError for a Retry-After beyond the budget", err)
			}
			if re.RetryAfter != tt.giveUp || re.Attempts != 1 || hits.Load() != 1 || ft.total() != 0 {
				t.Errorf("RetryError %+v after %d attempts and %v of waiting; want to give up at once on a %v wait", re, hits.Load(), ft.total(), tt.giveUp)
			}
			for _, want := range []string{"retry after " + tt.giveUp.String(), "5s retry budget", "fails for now", fmt.Sprintf("HTTP %d", tt.status), "request-id"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
		})
	}
}

// The pause a huge Retry-After imposes on every caller is capped at one
// retry budget, and a caller whose budget ends first fails at once instead
// of waiting.
func TestSharedPauseBoundedByBudget(t *testing.T) {
	var hits atomic.Int32
	retryAfter := "4"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) == 1 {
			w.Header().Set("Retry-After", retryAfter)
			w.WriteHeader(429)
			return
		}
		io.WriteString(w, `{"totalCount":0,"items":[]}`)
	}))
	defer srv.Close()
	c, ft := newTestClient(t, srv, func(o *Options) { o.RetryBudget = 5 * time.Second })
	ctx := context.Background()
	// A 4 s Retry-After is more than this 3 s caller may wait: it fails, and
	// the pause it announced (within the client's 5 s budget) holds the
	// others back.
	if err := c.Probe(ctx, 3*time.Second); !errors.Is(err, ErrThrottled) {
		t.Fatalf("first request: %v", err)
	}
	// A caller with a 2 s budget is not held back by the 4 s pause: it fails
	// without sending anything.
	err := c.Probe(ctx, 2*time.Second)
	var re *RetryError
	if !errors.As(err, &re) || re.Reason != GaveUpPause || re.Attempts != 0 || !errors.Is(err, ErrThrottled) || hits.Load() != 1 {
		t.Fatalf("short-budget caller: %v (%d requests); want a *RetryError for the pause, nothing sent", err, hits.Load())
	}
	if !strings.Contains(err.Error(), "held back for another 4s") || !strings.Contains(err.Error(), "2s left") {
		t.Errorf("error %q does not explain the pause", err)
	}
	if ft.total() != 0 {
		t.Errorf("waited %v so far; want no wait", ft.total())
	}
	// A caller with a full budget waits out the pause and succeeds.
	if _, err := c.ListSubscriptions(ctx, "c2", SubscriptionFilter{}); err != nil {
		t.Fatalf("second request: %v", err)
	}
	if ft.total() != 4*time.Second {
		t.Errorf("the second caller waited %v; want the 4s pause", ft.total())
	}

	// A Retry-After longer than the client's whole budget (a day) fails its
	// request and holds nobody back: the others are polled at once.
	hits.Store(0)
	retryAfter = "86400"
	waited := ft.total()
	if _, err := c.ListSubscriptions(ctx, "c3", SubscriptionFilter{}); !errors.Is(err, ErrThrottled) {
		t.Fatalf("a day's Retry-After: %v", err)
	}
	if _, err := c.ListSubscriptions(ctx, "c4", SubscriptionFilter{}); err != nil || hits.Load() != 2 {
		t.Fatalf("the next customer after a day's Retry-After: %v (%d requests); want it polled at once", err, hits.Load())
	}
	if ft.total() != waited {
		t.Errorf("waited %v for a Retry-After nobody would wait for", ft.total()-waited)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		in   string
		want time.Duration
	}{
		{"", 0}, {"0", 0}, {"7", 7 * time.Second}, {" 7 ", 7 * time.Second}, {"1.5", 1500 * time.Millisecond},
		{"86400", 24 * time.Hour}, {"31622400", maxRetryAfter}, {"9223372036854775807", maxRetryAfter}, {"99999999999999999999999", maxRetryAfter},
		{"-1", 0}, {"NaN", 0}, {"nan", 0}, {"Inf", 0}, {"-Inf", 0}, {"1e9", 0}, {"0x10", 0}, {"7s", 0}, {".5", 0},
		{now.Add(time.Minute).Format(http.TimeFormat), time.Minute},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
		{now.AddDate(5, 0, 0).Format(http.TimeFormat), maxRetryAfter},
		{"Mon, 99 Foo 2026 00:00:00 GMT", 0},
	} {
		if got := parseRetryAfter(tt.in, now); got != tt.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
	for _, tt := range []struct {
		in   string
		want time.Duration
	}{
		{"Try again in 57 seconds.", 57 * time.Second}, {"try again in 1 second", time.Second},
		{"Try again in 9999999999 seconds", maxRetryAfter}, {"Try again in 99999999999999999999 seconds", maxRetryAfter}, {"later", 0},
	} {
		if got := retryAfterFromMessage(tt.in); got != tt.want {
			t.Errorf("retryAfterFromMessage(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

// Endless throttling cannot keep a request alive past its budget either.
func TestEndlessThrottlingEndsWithinBudget(t *testing.T) {
	srv, hits := statusServer(t, 429, "1", -1)
	c, ft := newTestClient(t, srv, func(o *Options) { o.RetryBudget = 10 * time.Second })
	_, err := c.ListSubscriptions(context.Background(), "c1", SubscriptionFilter{})
	var re *RetryError
	if !errors.As(err, &re) || re.Reason != GaveUpRetryAfter || !errors.Is(err, ErrThrottled) {
		t.Fatalf("err = %v; want a *RetryError once the budget cannot cover the next wait", err)
	}
	if ft.total() > 10*time.Second || hits.Load() != 11 {
		t.Errorf("%d attempts and %v of waiting; want 11 attempts within the 10s budget", hits.Load(), ft.total())
	}
}
