package partnercenter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/pcwatch/pcwatch/internal/clock"
)

// fakeTime is the injected clock of a test client: Sleep advances it
// instead of waiting, and records every wait.
type fakeTime struct {
	clk   *clock.Fake
	mu    sync.Mutex
	waits []time.Duration
}

func (f *fakeTime) sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f.mu.Lock()
	f.waits = append(f.waits, d)
	f.mu.Unlock()
	f.clk.Advance(d)
	return nil
}

func (f *fakeTime) total() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	var t time.Duration
	for _, w := range f.waits {
		t += w
	}
	return t
}

func newTestClient(t *testing.T, srv *httptest.Server, mod func(*Options)) (*Client, *fakeTime) {
	t.Helper()
	ft := &fakeTime{clk: clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))}
	o := Options{
		BaseURL:           srv.URL,
		TokenSource:       oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "secret-token", TokenType: "Bearer"}),
		HTTPClient:        srv.Client(),
		RequestsPerMinute: 6000,
		Burst:             100,
		Clock:             ft.clk,
		Sleep:             ft.sleep,
	}
	if mod != nil {
		mod(&o)
	}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return c, ft
}

func TestRequestHeaders(t *testing.T) {
	var got http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		fmt.Fprint(w, `{"totalCount":0,"items":[]}`)
	}))
	defer srv.Close()
	c, _ := newTestClient(t, srv, func(o *Options) { o.Locale = "fr-FR" })
	ctx := WithCorrelationID(context.Background(), "corr-1")
	if _, err := c.ListSubscriptions(ctx, "cust-1", SubscriptionFilter{}); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{
		"Authorization":    "Bearer secret-token",
		"Accept":           "application/json",
		"Ms-Correlationid": "corr-1",
		"X-Locale":         "fr-FR",
	} {
		if got.Get(k) != want {
			t.Errorf("header %s = %q, want %q", k, got.Get(k), want)
		}
	}
	if len(got.Get("MS-RequestId")) != 36 {
		t.Errorf("MS-RequestId = %q, want a UUID", got.Get("MS-RequestId"))
	}
}

func TestEndpointsAndFilters(t *testing.T) {
	var paths []string
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.URL.RequestURI())
		mu.Unlock()
		if strings.Contains(r.URL.Path, "/subscriptions/") {
			fmt.Fprint(w, `{"id":"s1","quantity":3,"refundableQuantity":{"totalQuantity":1,"details":[{"quantity":1,"allowedUntilDateTime":"2026-01-02T00:00:00Z"}]}}`)
			return
		}
		fmt.Fprint(w, `{"totalCount":1,"items":[{"id":"x"}]}`)
	}))
	defer srv.Close()
	c, _ := newTestClient(t, srv, nil)
	ctx := context.Background()
	if _, err := c.ListSubscriptions(ctx, "c1", SubscriptionFilter{MPNID: "4847383"}); err != nil {
		t.Fatal(err)
	}
	s, err := c.GetSubscription(ctx, "c1", "s1")
	if err != nil || s.RefundableQuantity.TotalQuantity != 1 {
		t.Fatalf("GetSubscription = %+v, %v", s, err)
	}
	if _, err := c.ListManagedServices(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ListProducts(ctx, "c1", "OnlineServices"); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"/v1/customers/c1/subscriptions?mpn_id=4847383",
		"/v1/customers/c1/subscriptions/s1",
		"/v1/customers/c1/managedservices",
		"/v1/customers/c1/products?targetView=OnlineServices",
	}
	if fmt.Sprint(paths) != fmt.Sprint(want) {
		t.Errorf("paths = %v, want %v", paths, want)
	}
}

// pagingServer serves n customers in pages of size, with next links that
// carry /v1 and a continuation token header, as Partner Center does.
func pagingServer(t *testing.T, n int, prefix string, fail func(page int) int) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		size := 0
		fmt.Sscan(r.URL.Query().Get("size"), &size)
		start := 0
		if r.URL.Query().Get("seekOperation") == "Next" {
			tok := r.Header.Get("MS-ContinuationToken")
			if _, err := fmt.Sscanf(tok, "pos-%d", &start); err != nil {
				http.Error(w, `{"code":400,"description":"bad continuation token"}`, 400)
				return
			}
		}
		if !strings.HasPrefix(r.URL.Path, prefix+"/v1/customers") {
			http.Error(w, "wrong path "+r.URL.Path, 404)
			return
		}
		if fail != nil {
			if code := fail(start / size); code != 0 {
				w.WriteHeader(code)
				fmt.Fprint(w, `{"code":"5000","description":"boom"}`)
				return
			}
		}
		end := min(start+size, n)
		var items []string
		for i := start; i < end; i++ {
			items = append(items, fmt.Sprintf(`{"id":"c%05d","companyProfile":{"companyName":"n%d"}}`, i, i))
		}
		next := ""
		if end < n {
			next = fmt.Sprintf(`,"next":{"uri":"/v1/customers?size=%d&seekOperation=Next","method":"GET","headers":[{"key":"MS-ContinuationToken","value":"pos-%d"}]}`, size, end)
		}
		fmt.Fprintf(w, `{"totalCount":%d,"items":[%s],"links":{"self":{"uri":"/v1/customers?size=%d"}%s}}`, len(items), strings.Join(items, ","), size, next)
	}))
}

func TestListCustomersPaging(t *testing.T) {
	for _, prefix := range []string{"", "/proxy/pc"} {
		t.Run("prefix="+prefix, func(t *testing.T) {
			srv := pagingServer(t, 1234, prefix, nil)
			defer srv.Close()
			c, _ := newTestClient(t, srv, func(o *Options) { o.BaseURL = srv.URL + prefix; o.PageSize = 100 })
			got, err := c.ListCustomers(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1234 {
				t.Fatalf("got %d customers, want 1234", len(got))
			}
			for i, cu := range got {
				if cu.ID != fmt.Sprintf("c%05d", i) {
					t.Fatalf("customer %d = %s", i, cu.ID)
				}
			}
			if st := c.Stats(); st.Requests != 13 {
				t.Errorf("requests = %d, want 13 pages", st.Requests)
			}
		})
	}
}

func TestListCustomersMidListingFailure(t *testing.T) {
	t.Run("transient 5xx is retried", func(t *testing.T) {
		var failures atomic.Int32
		srv := pagingServer(t, 300, "", func(page int) int {
			if page == 1 && failures.Add(1) <= 2 {
				return 503
			}
			return 0
		})
		defer srv.Close()
		c, _ := newTestClient(t, srv, func(o *Options) { o.PageSize = 100 })
		got, err := c.ListCustomers(context.Background())
		if err != nil || len(got) != 300 {
			t.Fatalf("got %d, %v", len(got), err)
		}
		if c.Stats().Retries != 2 {
			t.Errorf("retries = %d, want 2", c.Stats().Retries)
		}
	})
	t.Run("persistent 5xx fails the whole listing", func(t *testing.T) {
		srv := pagingServer(t, 300, "", func(page int) int {
			if page == 2 {
				return 500
			}
			return 0
		})
		defer srv.Close()
		c, ft := newTestClient(t, srv, func(o *Options) { o.PageSize = 100; o.RetryBudget = time.Minute })
		got, err := c.ListCustomers(context.Background())
		if err == nil || got != nil {
			t.Fatalf("got %d customers and err %v; want no customers and an error", len(got), err)
		}
		var ae *APIError
		if !errors.As(err, &ae) || ae.StatusCode != 500 || ae.Code != "5000" || ae.RequestID == "" {
			t.Fatalf("error %v is not the page's APIError", err)
		}
		for _, want := range []string{"page 3", "after 200 items", "discarded", "HTTP 500", "request-id", "giving up after 4 attempts", "Options.MaxRetries"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not mention %q", err, want)
			}
		}
		if ft.total() > time.Minute || c.Stats().Retries != DefaultMaxRetries {
			t.Errorf("gave up after %d retries and %v of waiting; want %d retries within the 1m budget", c.Stats().Retries, ft.total(), DefaultMaxRetries)
		}
	})
}

func TestRetryAfterAndRequestIDReuse(t *testing.T) {
	var mu sync.Mutex
	var ids []string
	var n int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		ids = append(ids, r.Header.Get("MS-RequestId"))
		n++
		switch n {
		case 1:
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(429)
			fmt.Fprint(w, `{"statusCode":429,"message":"Rate limit is exceeded. Try again in 7 seconds."}`)
		case 2:
			w.WriteHeader(429) // no header: the message tells
			fmt.Fprint(w, `{"statusCode":429,"message":"Rate limit is exceeded. Try again in 11 seconds."}`)
		default:
			fmt.Fprint(w, `{"totalCount":0,"items":[]}`)
		}
	}))
	defer srv.Close()
	c, ft := newTestClient(t, srv, nil)
	if _, err := c.ListManagedServices(context.Background(), "c"); err != nil {
		t.Fatal(err)
	}
	if ids[0] != ids[1] || ids[1] != ids[2] {
		t.Errorf("request ids differ across retries: %v", ids)
	}
	if ft.total() < 18*time.Second {
		t.Errorf("waited %v in total, want at least 7s + 11s", ft.total())
	}
	if st := c.Stats(); st.Throttled != 2 || st.Requests != 3 {
		t.Errorf("stats = %+v", st)
	}
	// A new logical request gets a new id.
	if _, err := c.ListManagedServices(context.Background(), "c"); err != nil {
		t.Fatal(err)
	}
	if ids[3] == ids[0] {
		t.Error("a new logical request reused the previous request id")
	}
}

func TestTypedErrorsNotRetried(t *testing.T) {
	tests := []struct {
		status   int
		body     string
		sentinel error
	}{
		{400, `{"code":2000,"description":"Tenant Id must be a GUID."}`, ErrBadRequest},
		{401, `{"code":"401","description":"token expired"}`, ErrUnauthorized},
		{403, `{"code":400036,"description":"Access to the requested targetView is not allowed."}`, ErrForbidden},
		{404, `{"code":600026,"description":"Customer not found"}`, ErrNotFound},
		{409, `{"code":1,"description":"conflict"}`, ErrConflict},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.status), func(t *testing.T) {
			var hits atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				hits.Add(1)
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			}))
			defer srv.Close()
			c, _ := newTestClient(t, srv, nil)
			_, err := c.ListProducts(context.Background(), "c1", "Azure")
			if !errors.Is(err, tt.sentinel) {
				t.Fatalf("err = %v, want %v", err, tt.sentinel)
			}
			var ae *APIError
			if !errors.As(err, &ae) || ae.Endpoint != "products" || ae.Description == "" || ae.CorrelationID == "" {
				t.Fatalf("APIError details missing: %+v", ae)
			}
			if hits.Load() != 1 {
				t.Errorf("%d attempts, want 1 (not retried)", hits.Load())
			}
			if strings.Contains(err.Error(), "secret-token") {
				t.Error("error leaks the bearer token")
			}
		})
	}
}

func TestMalformedAndTruncatedBodies(t *testing.T) {
	t.Run("malformed", func(t *testing.T) {
		var hits atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			fmt.Fprint(w, `{"totalCount":2,"items":[{"id":"a"},{"id":"b"},]}`)
		}))
		defer srv.Close()
		c, _ := newTestClient(t, srv, nil)
		_, err := c.ListSubscriptions(context.Background(), "c1", SubscriptionFilter{})
		var de *DecodeError
		if !errors.As(err, &de) {
			t.Fatalf("err = %v, want a DecodeError", err)
		}
		for _, want := range []string{"/v1/customers/c1/subscriptions", "HTTP 200", "not valid JSON", "request-id " + de.RequestID} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not mention %q", err, want)
			}
		}
		if hits.Load() != maxDecodeAttempts {
			t.Errorf("%d attempts, want %d", hits.Load(), maxDecodeAttempts)
		}
	})
	t.Run("truncated then whole", func(t *testing.T) {
		var hits atomic.Int32
		body := `{"totalCount":1,"items":[{"id":"a","quantity":1}]}`
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if hits.Add(1) == 1 {
				w.Header().Set("Content-Length", fmt.Sprint(len(body)))
				io.WriteString(w, body[:len(body)/2])
				hj := w.(http.Hijacker)
				conn, _, _ := hj.Hijack()
				conn.Close()
				return
			}
			io.WriteString(w, body)
		}))
		defer srv.Close()
		c, _ := newTestClient(t, srv, nil)
		got, err := c.ListSubscriptions(context.Background(), "c1", SubscriptionFilter{})
		if err != nil || len(got) != 1 {
			t.Fatalf("got %v, %v", got, err)
		}
	})
	t.Run("always truncated", func(t *testing.T) {
		body := `{"totalCount":1,"items":[{"id":"a","quantity":1}]}`
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", fmt.Sprint(len(body)))
			io.WriteString(w, body[:10])
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
		}))
		defer srv.Close()
		c, _ := newTestClient(t, srv, func(o *Options) { o.RetryBudget = 10 * time.Second })
		_, err := c.ListSubscriptions(context.Background(), "c1", SubscriptionFilter{})
		if err == nil || !strings.Contains(err.Error(), "reading HTTP 200 response body") || !strings.Contains(err.Error(), "request-id") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestContextCancellationStopsRetries(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(503)
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	var attempts atomic.Int32
	c, _ := newTestClient(t, srv, func(o *Options) {
		o.Observer = observerFunc(func() {
			if attempts.Add(1) == 2 {
				cancel()
			}
		})
	})
	_, err := c.ListCustomers(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if attempts.Load() != 2 {
		t.Errorf("%d attempts after cancel, want 2", attempts.Load())
	}
}

type observerFunc func()

func (f observerFunc) ObserveRequest(string, int, time.Duration)  { f() }
func (f observerFunc) ObserveRetry(string, string, time.Duration) {}

func TestResolveNextLink(t *testing.T) {
	c, err := New(Options{BaseURL: "https://pc.example.com/prefix/v1/", TokenSource: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "x"})})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ in, want, err string }{
		{"/v1/customers?size=40&seekOperation=Next", "/v1/customers?size=40&seekOperation=Next", ""},
		{"/customers/c1/subscriptions", "/v1/customers/c1/subscriptions", ""},
		{"customers?size=1", "/v1/customers?size=1", ""},
		{"https://pc.example.com/prefix/v1/customers?size=1", "/v1/customers?size=1", ""},
		{"https://evil.example.net/v1/customers", "", "another host"},
	}
	for _, tt := range tests {
		got, err := c.resolve(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("resolve(%q) err = %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("resolve(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	if c.BaseURL() != "https://pc.example.com/prefix" {
		t.Errorf("BaseURL = %q", c.BaseURL())
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	ts := oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "x"})
	for _, o := range []Options{
		{BaseURL: "api.partnercenter.microsoft.com", TokenSource: ts},
		{BaseURL: "ftp://x", TokenSource: ts},
		{BaseURL: GlobalBaseURL},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) succeeded", o.BaseURL)
		}
	}
}

func TestRateLimiterPacesCallers(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"totalCount":0,"items":[]}`)
	}))
	defer srv.Close()
	c, ft := newTestClient(t, srv, func(o *Options) { o.RequestsPerMinute = 60; o.Burst = 1 })
	for i := 0; i < 11; i++ {
		if _, err := c.ListManagedServices(context.Background(), "c"); err != nil {
			t.Fatal(err)
		}
	}
	// 60/min with burst 1: the first request is free, each next one waits 1s.
	if got := ft.total(); got < 10*time.Second-time.Millisecond || got > 10*time.Second+time.Millisecond {
		t.Errorf("waited %v for 11 requests at 1/s, want 10s", got)
	}
}

func TestCredentialsFromEnv(t *testing.T) {
	dir := t.TempDir()
	secretFile := dir + "/secret"
	if err := writeFile(secretFile, "  file-secret\n"); err != nil {
		t.Fatal(err)
	}
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	tests := []struct {
		name string
		env  map[string]string
		mode string
		err  string
	}{
		{"static", map[string]string{"PCWATCH_PC_TOKEN": "t"}, ModeStatic, ""},
		{"app-only", map[string]string{"PCWATCH_PC_TENANT_ID": "tn", "PCWATCH_PC_CLIENT_ID": "ci", "PCWATCH_PC_CLIENT_SECRET": "s"}, ModeAppOnly, ""},
		{"app+user from file", map[string]string{"PCWATCH_PC_TENANT_ID": "tn", "PCWATCH_PC_CLIENT_ID": "ci", "PCWATCH_PC_CLIENT_SECRET_FILE": secretFile, "PCWATCH_PC_REFRESH_TOKEN": "rt"}, ModeAppUser, ""},
		{"none", map[string]string{}, "", "no Partner Center credentials"},
		{"incomplete", map[string]string{"PCWATCH_PC_CLIENT_ID": "ci"}, "", "missing PCWATCH_PC_TENANT_ID, PCWATCH_PC_CLIENT_SECRET"},
		{"missing file", map[string]string{"PCWATCH_PC_TOKEN_FILE": dir + "/nope"}, "", "PCWATCH_PC_TOKEN_FILE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := CredentialsFromEnv(env(tt.env))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || c.Mode() != tt.mode {
				t.Fatalf("mode %q, err %v; want %q", c.Mode(), err, tt.mode)
			}
			if tt.name == "app+user from file" && c.ClientSecret != "file-secret" {
				t.Errorf("secret from file = %q", c.ClientSecret)
			}
			for _, s := range []string{c.String(), fmt.Sprint(c.LogValue())} {
				if strings.Contains(s, "file-secret") || strings.Contains(s, "rt") && c.RefreshToken == "rt" && strings.Contains(s, "refresh") {
					t.Errorf("credentials render a secret: %s", s)
				}
			}
		})
	}
}

func TestTokenExchange(t *testing.T) {
	var mu sync.Mutex
	var forms []url.Values
	tokenSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		mu.Lock()
		forms = append(forms, r.PostForm)
		mu.Unlock()
		if r.PostForm.Get("client_secret") != "the-secret" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(400)
			fmt.Fprintf(w, `{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided. Got %s\r\nTrace ID: x"}`, r.PostForm.Get("client_secret"))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"access_token":"pc-access","token_type":"Bearer","expires_in":3600}`)
	}))
	defer tokenSrv.Close()
	var authz []string
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		authz = append(authz, r.Header.Get("Authorization"))
		mu.Unlock()
		fmt.Fprint(w, `{"totalCount":0,"items":[]}`)
	}))
	defer api.Close()

	creds := Credentials{TenantID: "tn", ClientID: "ci", ClientSecret: "the-secret", RefreshToken: "rt-1", TokenURL: tokenSrv.URL}
	ts, err := creds.TokenSource(context.Background(), Clouds["global"], tokenSrv.Client())
	if err != nil {
		t.Fatal(err)
	}
	c, _ := newTestClient(t, api, func(o *Options) { o.TokenSource = ts })
	for i := 0; i < 3; i++ {
		if _, err := c.ListManagedServices(context.Background(), "c"); err != nil {
			t.Fatal(err)
		}
	}
	if len(forms) != 1 {
		t.Fatalf("%d token requests for 3 calls, want 1 (cached)", len(forms))
	}
	f := forms[0]
	if f.Get("grant_type") != "refresh_token" || f.Get("refresh_token") != "rt-1" || f.Get("resource") != "https://api.partnercenter.microsoft.com" || f.Get("client_id") != "ci" {
		t.Errorf("token request form = %v", f)
	}
	if authz[2] != "Bearer pc-access" {
		t.Errorf("Authorization = %q", authz[2])
	}

	bad := creds
	bad.ClientSecret = "wrong-secret"
	ts, _ = bad.TokenSource(context.Background(), Clouds["global"], tokenSrv.Client())
	c, _ = newTestClient(t, api, func(o *Options) { o.TokenSource = ts })
	_, err = c.ListManagedServices(context.Background(), "c")
	if err == nil || !strings.Contains(err.Error(), "invalid_client") || !strings.Contains(err.Error(), "AADSTS7000215") {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(err.Error(), "wrong-secret") || strings.Contains(err.Error(), "rt-1") {
		t.Errorf("token error leaks a secret: %v", err)
	}
	var ae *AuthError
	if !errors.Is(err, ErrUnauthorized) || !errors.As(err, &ae) || ae.StatusCode != 400 {
		t.Errorf("err = %v, want an AuthError matching ErrUnauthorized", err)
	}
	if len(forms) != 2 || c.Stats().Retries != 0 {
		t.Errorf("refused token was retried: %d token requests, %d retries", len(forms), c.Stats().Retries)
	}
}
