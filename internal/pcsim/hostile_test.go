package pcsim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pcwatch/pcwatch/internal/clock"
)

// hostileSim is a simulator with an off-origin server, both over HTTP.
func hostileSim(t *testing.T, o Options) (*Sim, *httptest.Server, *clock.Fake) {
	t.Helper()
	s, _, wall := testSim(t, o)
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	off := httptest.NewServer(s.OffOriginHandler())
	t.Cleanup(off.Close)
	s.SetOffOriginURL(off.URL)
	return s, srv, wall
}

func mustHostile(t *testing.T, s *Sim, h Hostile) {
	t.Helper()
	if err := s.SetHostile(h); err != nil {
		t.Fatalf("SetHostile: %v", err)
	}
}

// noRedirect is a client that returns redirects instead of following them.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// do sends an authorised GET of base+uri with extra headers.
func do(t *testing.T, c *http.Client, base, uri string, hdr http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+uri, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Authorization", "Bearer secret-token")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return resp, readAll(t, resp.Body)
}

// customerWith returns a customer with at least n subscriptions and m
// managed services.
func customerWith(t *testing.T, s *Sim, n, m int) string {
	t.Helper()
	for _, c := range s.State().Customers {
		if len(c.Subscriptions) >= n && len(c.ManagedServices) >= m {
			return c.ID
		}
	}
	t.Fatalf("no customer with %d subscriptions and %d managed services", n, m)
	return ""
}

func TestSetHostileRefusesBadConfigurations(t *testing.T) {
	s, _, _ := testSim(t, Options{Seed: 1, Customers: 2})
	good := Hostile{Errors: []ErrorRule{{Status: 503}}}
	mustHostile(t, s, good)
	for _, tc := range []struct {
		name string
		h    Hostile
		want string
	}{
		{"unknown endpoint", Hostile{Errors: []ErrorRule{{Scope: Scope{Endpoint: "invoices"}}}}, `endpoint "invoices"`},
		{"pages off the listing", Hostile{Malformed: []MalformedRule{{Scope: Scope{Endpoint: EndpointSubscriptions, Pages: []int{1}}}}}, "pages only apply"},
		{"negative page", Hostile{Malformed: []MalformedRule{{Scope: Scope{Pages: []int{-1}}}}}, "negative"},
		{"empty customer", Hostile{Malformed: []MalformedRule{{Scope: Scope{Customers: []string{" "}}}}}, "empty customer"},
		{"unknown shape", Hostile{Malformed: []MalformedRule{{Shapes: []string{"xml"}}}}, `shape "xml"`},
		{"redirect status", Hostile{Redirects: []RedirectRule{{Status: 200, Target: RedirectSameOrigin}}}, "not a redirect"},
		{"redirect target", Hostile{Redirects: []RedirectRule{{Target: "elsewhere"}}}, `target "elsewhere"`},
		{"off-origin without a server", Hostile{Redirects: []RedirectRule{{Target: RedirectOffOrigin}}}, "SetOffOriginURL"},
		{"error status", Hostile{Errors: []ErrorRule{{Status: 302}}}, "not a 4xx or 5xx"},
		{"negative retry-after", Hostile{Errors: []ErrorRule{{RetryAfter: -time.Second}}}, "negative"},
		{"oversized without customer", Hostile{Oversized: []OversizedRule{{}}}, "customer is required"},
		{"oversized documented field", Hostile{Oversized: []OversizedRule{{Customer: "c", Field: "quantity"}}}, "documented"},
		{"endless mode", Hostile{EndlessPaging: &EndlessPaging{Mode: "forever"}}, `mode "forever"`},
		{"slow mode", Hostile{Slow: []SlowRule{{Mode: "glacial"}}}, `mode "glacial"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := s.SetHostile(tc.h)
			if !errors.Is(err, ErrHostile) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("SetHostile: %v, want ErrHostile mentioning %q", err, tc.want)
			}
			if got := s.CurrentHostile(); len(got.Errors) != 1 || got.Errors[0].Status != 503 {
				t.Fatalf("a refused configuration replaced the one in force: %+v", got)
			}
		})
	}
}

func TestHostileMalformedShapes(t *testing.T) {
	s, srv, _ := hostileSim(t, Options{Seed: 1, Customers: 520})
	cid := customerWith(t, s, 2, 1)
	sub := s.State().Customers[0].Subscriptions[0].ID
	for _, c := range s.State().Customers {
		if c.ID == cid {
			sub = c.Subscriptions[0].ID
		}
	}
	// The second page of the listing, through the real first page.
	_, first := do(t, srv.Client(), srv.URL, "/v1/customers?size=500", nil)
	var page0 struct {
		Links struct {
			Next *struct {
				URI     string
				Headers []wireHeader
			}
		} `json:"links"`
	}
	if err := json.Unmarshal(first, &page0); err != nil || page0.Links.Next == nil {
		t.Fatalf("page 0: %v %s", err, first[:200])
	}
	nextHdr := http.Header{}
	for _, h := range page0.Links.Next.Headers {
		nextHdr.Set(h.Key, h.Value)
	}
	targets := []struct {
		name  string
		scope Scope
		uri   string
		hdr   http.Header
		count int // the real totalCount
	}{
		{"customer page 1", Scope{Endpoint: EndpointCustomers, Pages: []int{1}}, page0.Links.Next.URI, nextHdr, 20},
		{"subscriptions", Scope{Endpoint: EndpointSubscriptions, Customers: []string{cid}}, "/v1/customers/" + cid + "/subscriptions", nil, -1},
		{"managed services", Scope{Endpoint: EndpointManagedServices, Customers: []string{cid}}, "/v1/customers/" + cid + "/managedservices", nil, -1},
		{"products", Scope{Endpoint: EndpointProducts, Customers: []string{cid}}, "/v1/customers/" + cid + "/products?targetView=OnlineServices", nil, -1},
		{"subscription by id", Scope{Endpoint: EndpointSubscription, Customers: []string{cid}}, "/v1/customers/" + cid + "/subscriptions/" + sub, nil, 1},
	}
	for _, tg := range targets {
		mustHostile(t, s, Hostile{})
		resp, real := do(t, srv.Client(), srv.URL, tg.uri, tg.hdr)
		if resp.StatusCode != 200 {
			t.Fatalf("%s without hostile mode: %d %s", tg.name, resp.StatusCode, real)
		}
		want := tg.count
		if want < 0 {
			want = max(decode[struct{ TotalCount int }](t, real).TotalCount, 1)
		}
		var realItems struct {
			Items []json.RawMessage `json:"items"`
			Links json.RawMessage   `json:"links"`
		}
		_ = json.Unmarshal(real, &realItems)
		for _, shape := range AllShapes {
			t.Run(tg.name+"/"+shape, func(t *testing.T) {
				mustHostile(t, s, Hostile{Malformed: []MalformedRule{{Scope: tg.scope, Shapes: []string{shape}}}})
				resp, body := do(t, srv.Client(), srv.URL, tg.uri, tg.hdr)
				if resp.StatusCode != 200 || !json.Valid(body) || resp.Header.Get("Content-Type") != contentTypeJSON {
					t.Fatalf("status %d, valid JSON %v, content type %q: %s", resp.StatusCode, json.Valid(body), resp.Header.Get("Content-Type"), body)
				}
				scalar := map[string]string{ShapeNull: "null", ShapeEmptyObject: "{}", ShapeEmptyArray: "[]", ShapeString: `"Request accepted."`, ShapeNumber: "200"}
				if w, ok := scalar[shape]; ok {
					if string(body) != w {
						t.Fatalf("body %s, want %s", body, w)
					}
					return
				}
				top := topLevel(t, body)
				if got := decode[int](t, top["totalCount"]); got != want {
					t.Errorf("totalCount %d, want %d (the real count, at least 1)", got, want)
				}
				if tg.name != "subscription by id" && !bytes.Equal(top["links"], realItems.Links) {
					t.Errorf("links %s, want the real ones %s", top["links"], realItems.Links)
				}
				items, has := top["items"]
				switch shape {
				case ShapeItemsMissing:
					if has {
						t.Errorf("items present: %s", items)
					}
				case ShapeItemsNull:
					if string(items) != "null" {
						t.Errorf("items %s, want null", items)
					}
				case ShapeItemsEmpty:
					if string(items) != "[]" {
						t.Errorf("items %s, want []", items)
					}
				case ShapeItemsNotArray:
					if len(items) == 0 || items[0] != '{' {
						t.Errorf("items %s, want an object", items)
					}
					if len(realItems.Items) > 0 && !bytes.Equal(items, realItems.Items[0]) {
						t.Errorf("items %s, want the first real item", items)
					}
				}
			})
		}
	}
	mustHostile(t, s, Hostile{})
	if st := s.Stats(); st.Faults["hostile-malformed"] != int64(len(targets)*len(AllShapes)) {
		t.Errorf("hostile-malformed counted %d, want %d", st.Faults["hostile-malformed"], len(targets)*len(AllShapes))
	}
}

func TestHostileMalformedRotatesAndKeepsItsScope(t *testing.T) {
	s, _, _ := testSim(t, Options{Seed: 1, Customers: 3})
	cs := s.State().Customers
	hit, other := cs[0].ID, cs[1].ID
	before := mustGet(t, s, "/v1/customers/"+other+"/subscriptions")
	mustHostile(t, s, Hostile{Malformed: []MalformedRule{{Scope: Scope{Customers: []string{strings.ToUpper(hit)}}}}})
	var got []string
	for range len(AllShapes) + 2 {
		body := mustGet(t, s, "/v1/customers/"+hit+"/subscriptions")
		got = append(got, string(body[:min(len(body), 14)]))
	}
	if got[0] != "null" || got[1] != "{}" || got[2] != "[]" || got[len(AllShapes)] != "null" || got[len(AllShapes)+1] != "{}" {
		t.Errorf("rotation: %q", got)
	}
	if b := mustGet(t, s, "/v1/customers/"+other+"/subscriptions"); !bytes.Equal(b, before) {
		t.Errorf("a customer out of scope was served differently:\n%s\nwant\n%s", b, before)
	}
	if code, body := get(s, "/v1/customers"); code != 200 || !bytes.Contains(body, []byte(`"items":[{`)) {
		t.Errorf("a scope with customers matched the listing: %d %.80s", code, body)
	}
	mustHostile(t, s, Hostile{})
	if b := mustGet(t, s, "/v1/customers/"+hit+"/subscriptions"); !bytes.Equal(b, mustGet(t, New(Options{Seed: 1, Customers: 3, Clock: clock.NewFake(t0), Wall: clock.NewFake(t0)}), "/v1/customers/"+hit+"/subscriptions")) {
		t.Errorf("hostile mode off: the body differs from a fresh simulator's")
	}
}

func TestHostileRedirects(t *testing.T) {
	s, srv, _ := hostileSim(t, Options{Seed: 1, Customers: 4})
	cs := s.State().Customers
	off, same := cs[0].ID, cs[1].ID
	mustHostile(t, s, Hostile{Redirects: []RedirectRule{
		{Scope: Scope{Endpoint: EndpointSubscriptions, Customers: []string{off}}},
		{Scope: Scope{Endpoint: EndpointManagedServices, Customers: []string{off}}, Status: 307, Target: RedirectOffOrigin},
		{Scope: Scope{Endpoint: EndpointSubscriptions, Customers: []string{same}}, Status: 307, Target: RedirectSameOrigin},
		{Scope: Scope{Endpoint: EndpointCustomers, Pages: []int{0}}, Status: 302},
	}})
	offURL := s.CurrentOffOriginStats().URL
	for _, tc := range []struct {
		uri, location string
		status        int
	}{
		{"/v1/customers/" + off + "/subscriptions?mpn_id=1", offURL + "/v1/customers/" + off + "/subscriptions?mpn_id=1", 302},
		{"/v1/customers/" + off + "/managedservices", offURL + "/v1/customers/" + off + "/managedservices", 307},
		{"/v1/customers/" + same + "/subscriptions", "/v1/customers/" + same + "/subscriptions?pcsim-redirected=1", 307},
		{"/v1/customers?size=2", offURL + "/v1/customers?size=2", 302},
	} {
		resp, _ := do(t, noRedirect, srv.URL, tc.uri, nil)
		if resp.StatusCode != tc.status || resp.Header.Get("Location") != tc.location {
			t.Errorf("GET %s: %d Location %q, want %d %q", tc.uri, resp.StatusCode, resp.Header.Get("Location"), tc.status, tc.location)
		}
	}
	if code, _ := get(s, "/v1/customers/"+cs[2].ID+"/subscriptions"); code != 200 {
		t.Errorf("a customer out of scope: %d", code)
	}
	// Followed: the same origin serves the real listing; the other origin
	// an empty but well-formed one, and it notes the bearer token that a
	// careless client forwarded (net/http does, to the same host).
	want := mustGet(t, s, "/v1/customers/"+same+"/subscriptions?pcsim-redirected=1")
	if resp, body := do(t, srv.Client(), srv.URL, "/v1/customers/"+same+"/subscriptions", nil); resp.StatusCode != 200 || !bytes.Equal(body, want) {
		t.Errorf("same-origin redirect followed: %d %.100s", resp.StatusCode, body)
	}
	s.ResetOffOriginStats()
	resp, body := do(t, srv.Client(), srv.URL, "/v1/customers/"+off+"/subscriptions", nil)
	col := topLevel(t, body)
	if resp.StatusCode != 200 || string(col["totalCount"]) != "0" || string(col["items"]) != "[]" {
		t.Errorf("off-origin listing: %d %s", resp.StatusCode, body)
	}
	req, _ := http.NewRequest(http.MethodGet, offURL+"/v1/customers/"+off+"/subscriptions/x", nil)
	r2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r2.StatusCode != 404 {
		t.Errorf("off-origin by id: %d", r2.StatusCode)
	}
	st := s.CurrentOffOriginStats()
	if st.Requests != 2 || st.WithAuthorization != 1 || !slices.Equal(st.Paths, []string{"/v1/customers/" + off + "/subscriptions", "/v1/customers/" + off + "/subscriptions/x"}) {
		t.Errorf("off-origin stats %+v", st)
	}
	if f := s.Stats().Faults; f["hostile-redirect-off-origin"] != 4 || f["hostile-redirect-same-origin"] != 2 {
		t.Errorf("faults %v", f)
	}
}

func TestHostileErrors(t *testing.T) {
	s, _, _ := testSim(t, Options{Seed: 1, Customers: 3})
	cs := s.State().Customers
	mustHostile(t, s, Hostile{Errors: []ErrorRule{
		{Scope: Scope{Endpoint: EndpointSubscriptions, Customers: []string{cs[0].ID}}, Status: 429, RetryAfter: 24 * time.Hour},
		{Scope: Scope{Endpoint: EndpointManagedServices, Customers: []string{cs[0].ID}}, Status: 503, RetryAfter: 86400 * time.Second},
		{Scope: Scope{Customers: []string{cs[1].ID}}},
		{Scope: Scope{Endpoint: EndpointSubscriptions, Customers: []string{cs[2].ID}}, Status: 401, EchoAuthorization: true},
		{Scope: Scope{Endpoint: EndpointManagedServices, Customers: []string{cs[2].ID}}, Status: 429, EchoAuthorization: true},
	}})
	hdr := http.Header{"Authorization": {"Bearer eyJ.secret.token"}}
	for _, tc := range []struct {
		uri, retryAfter, body string
		status                int
	}{
		{"/v1/customers/" + cs[0].ID + "/subscriptions", "86400", `{"statusCode":429,"message":"Rate limit is exceeded. Try again in 86400 seconds."}`, 429},
		{"/v1/customers/" + cs[0].ID + "/managedservices", "86400", `{"code":503,"description":"The service is temporarily unavailable. Please try again later.","data":[],"source":"PartnerFD"}`, 503},
		{"/v1/customers/" + cs[1].ID + "/subscriptions", "", `{"code":500,"description":"Injected failure: 500 Internal Server Error.","data":[],"source":"PartnerFD"}`, 500},
		{"/v1/customers/" + cs[2].ID + "/subscriptions", "", `{"code":401,"description":"Unauthorized. Request GET /v1/customers/` + cs[2].ID + `/subscriptions with Authorization: Bearer eyJ.secret.token","data":["Bearer eyJ.secret.token"],"source":"PartnerFD"}`, 401},
		{"/v1/customers/" + cs[2].ID + "/managedservices", "", `{"statusCode":429,"message":"Rate limit is exceeded. Try again in 1 seconds. Request GET /v1/customers/` + cs[2].ID + `/managedservices with Authorization: Bearer eyJ.secret.token"}`, 429},
	} {
		for i := range 3 { // persistent: every request, not once
			rec := call(s, "GET", tc.uri, hdr, "")
			if rec.Code != tc.status || rec.Header().Get("Retry-After") != tc.retryAfter || rec.Body.String() != tc.body {
				t.Errorf("GET %s #%d: %d Retry-After %q\n%s\nwant %d %q\n%s", tc.uri, i, rec.Code, rec.Header().Get("Retry-After"), rec.Body.String(), tc.status, tc.retryAfter, tc.body)
			}
		}
	}
	if code, _ := get(s, "/v1/customers/"+cs[0].ID); code != 200 {
		t.Errorf("an endpoint out of scope: %d", code)
	}
	if code, _ := get(s, "/v1/customers"); code != 200 {
		t.Errorf("the listing: %d", code)
	}
}

func TestHostileOversized(t *testing.T) {
	s, _, wall := testSim(t, Options{Seed: 1, Customers: 3})
	cs := s.State().Customers
	cid, first, second := cs[0].ID, cs[0].Subscriptions[0].ID, cs[0].Subscriptions[1].ID
	mustHostile(t, s, Hostile{Oversized: []OversizedRule{
		{Customer: cid},
		{Customer: cid, Subscription: second, Field: "pcsimPadding", Bytes: 1 << 20, Every: time.Second},
	}})
	seq0 := s.State().Seq
	type sub struct {
		ID           string `json:"id"`
		FriendlyName string `json:"friendlyName"`
		Padding      string `json:"pcsimPadding"`
	}
	list := func() map[string]sub {
		col := decode[struct{ Items []sub }](t, mustGet(t, s, "/v1/customers/"+cid+"/subscriptions"))
		out := map[string]sub{}
		for _, it := range col.Items {
			out[it.ID] = it
		}
		return out
	}
	a := list()
	if n := len(a[first].FriendlyName); n != DefaultOversizedBytes {
		t.Fatalf("friendlyName is %d bytes, want %d", n, DefaultOversizedBytes)
	}
	if n := len(a[second].Padding); n != 1<<20 {
		t.Fatalf("pcsimPadding is %d bytes, want %d", n, 1<<20)
	}
	b := list() // the same wall instant: friendlyName changes, the padding (Every 1s) does not
	if b[first].FriendlyName == a[first].FriendlyName || b[second].Padding != a[second].Padding {
		t.Errorf("second listing: friendlyName changed %v, padding changed %v; want true, false",
			b[first].FriendlyName != a[first].FriendlyName, b[second].Padding != a[second].Padding)
	}
	wall.Advance(time.Second)
	byID := decode[sub](t, mustGet(t, s, "/v1/customers/"+cid+"/subscriptions/"+second))
	if byID.Padding == b[second].Padding || len(byID.Padding) != 1<<20 {
		t.Errorf("get by id after Every: the padding did not change")
	}
	// Every change is in the log, caused by the hostile mode.
	muts := s.Log(seq0)
	var ops []string
	for _, m := range muts {
		if m.Cause != CauseHostile || m.CustomerID != cid {
			t.Errorf("mutation %d: cause %s, customer %s", m.Seq, m.Cause, m.CustomerID)
		}
		ops = append(ops, m.Op+" "+m.ResourceID)
	}
	want := []string{"subscription.friendlyname " + first, "subscription.field " + second,
		"subscription.friendlyname " + first, "subscription.friendlyname " + first, "subscription.field " + second}
	if !slices.Equal(ops, want) {
		t.Errorf("log %q, want %q", ops, want)
	}
	if muts[0].Field != "friendlyName" || muts[0].New != a[first].FriendlyName || muts[2].Old != a[first].FriendlyName {
		t.Errorf("friendlyname mutations: field %s; new value is the one served %v, the next change's old value too %v",
			muts[0].Field, muts[0].New == a[first].FriendlyName, muts[2].Old == a[first].FriendlyName)
	}
	st := s.State()
	if got := st.Customers[0].Subscriptions[0].FriendlyName; got != muts[3].New {
		t.Errorf("state friendlyName is %d bytes and not the last value set", len(got))
	}
	// Other customers are not touched; clearing the rule stops the changes
	// and leaves the value.
	if code, body := get(s, "/v1/customers/"+cs[1].ID+"/subscriptions"); code != 200 || len(body) > 100_000 {
		t.Errorf("another customer: %d, %d bytes", code, len(body))
	}
	mustHostile(t, s, Hostile{})
	n := len(s.Log(0))
	if c := list(); len(c[first].FriendlyName) != DefaultOversizedBytes || len(s.Log(0)) != n {
		t.Errorf("after clearing: %d bytes, %d new mutations", len(c[first].FriendlyName), len(s.Log(0))-n)
	}
}

// listing follows the customer listing over HTTP for at most pages pages.
type listing struct {
	ids    [][]string
	tokens []string
	done   bool
	status int
}

func followListing(t *testing.T, srv *httptest.Server, pages int) listing {
	t.Helper()
	var l listing
	uri, hdr := "/v1/customers?size=500", http.Header{}
	for range pages {
		resp, body := do(t, srv.Client(), srv.URL, uri, hdr)
		if l.status = resp.StatusCode; resp.StatusCode != 200 {
			return l
		}
		var col struct {
			TotalCount int `json:"totalCount"`
			Items      []struct {
				ID string `json:"id"`
			} `json:"items"`
			Links struct {
				Next *struct {
					URI     string       `json:"uri"`
					Headers []wireHeader `json:"headers"`
				} `json:"next"`
			} `json:"links"`
		}
		if err := json.Unmarshal(body, &col); err != nil || col.TotalCount != len(col.Items) {
			t.Fatalf("page %d: %v, totalCount %d for %d items", len(l.ids), err, col.TotalCount, len(col.Items))
		}
		var ids []string
		for _, it := range col.Items {
			ids = append(ids, it.ID)
		}
		l.ids = append(l.ids, ids)
		if col.Links.Next == nil {
			l.done = true
			return l
		}
		uri, hdr = col.Links.Next.URI, http.Header{}
		for _, h := range col.Links.Next.Headers {
			hdr.Set(h.Key, h.Value)
		}
		l.tokens = append(l.tokens, hdr.Get("MS-ContinuationToken"))
	}
	return l
}

func TestHostileEndlessPaging(t *testing.T) {
	s, srv, _ := hostileSim(t, Options{Seed: 1, Customers: 520, SubscriptionsPerCustomer: 1})
	real := followListing(t, srv, 10)
	if !real.done || len(real.ids) != 2 || len(real.ids[1]) != 20 {
		t.Fatalf("the real listing: done %v, %d pages", real.done, len(real.ids))
	}
	known := map[string]bool{}
	for _, p := range real.ids {
		for _, id := range p {
			known[id] = true
		}
	}
	distinct := func(t *testing.T, tokens []string) {
		seen := map[string]bool{}
		for i, tok := range tokens {
			if seen[tok] {
				t.Fatalf("continuation token %d repeats an earlier one", i)
			}
			seen[tok] = true
		}
	}

	t.Run("new ids", func(t *testing.T) {
		mustHostile(t, s, Hostile{EndlessPaging: &EndlessPaging{Mode: EndlessNewIDs}})
		l := followListing(t, srv, 60)
		if l.done || len(l.ids) != 60 {
			t.Fatalf("the listing ended after %d pages (status %d)", len(l.ids), l.status)
		}
		if !slices.Equal(l.ids[0], real.ids[0]) {
			t.Errorf("page 0 is not the real first page")
		}
		distinct(t, l.tokens)
		seen := map[string]bool{}
		for p, ids := range l.ids[1:] {
			if len(ids) != DefaultEndlessPageSize {
				t.Fatalf("endless page %d has %d customers, want %d", p+1, len(ids), DefaultEndlessPageSize)
			}
			for _, id := range ids {
				if known[id] || seen[id] {
					t.Fatalf("endless page %d: id %s is not new", p+1, id)
				}
				seen[id] = true
			}
		}
		// Deterministic: the same pages again.
		if again := followListing(t, srv, 5); !slices.EqualFunc(again.ids, l.ids[:5], slices.Equal[[]string]) {
			t.Errorf("a second listing differs")
		}
		// A made-up customer does not exist.
		if code, _ := get(s, "/v1/customers/"+l.ids[3][0]); code != 404 {
			t.Errorf("GET of an endless customer: %d", code)
		}
	})

	t.Run("repeat", func(t *testing.T) {
		mustHostile(t, s, Hostile{EndlessPaging: &EndlessPaging{Mode: EndlessRepeat, FromPage: 2}})
		l := followListing(t, srv, 30)
		if l.done || len(l.ids) != 30 {
			t.Fatalf("the listing ended after %d pages", len(l.ids))
		}
		distinct(t, l.tokens)
		for p, ids := range l.ids[1:] {
			if !slices.Equal(ids, real.ids[1]) {
				t.Fatalf("page %d is not page 1 again", p+1)
			}
		}
	})

	t.Run("small page size from page 1", func(t *testing.T) {
		mustHostile(t, s, Hostile{EndlessPaging: &EndlessPaging{Mode: EndlessNewIDs, FromPage: 1, PageSize: 3}})
		l := followListing(t, srv, 4)
		if len(l.ids) != 4 || len(l.ids[0]) != 500 || len(l.ids[1]) != 3 {
			t.Fatalf("pages %d", len(l.ids))
		}
		if l.ids[1][0] == real.ids[1][0] {
			t.Errorf("page 1 is the real one")
		}
	})

	t.Run("cleared mid-listing", func(t *testing.T) {
		mustHostile(t, s, Hostile{EndlessPaging: &EndlessPaging{Mode: EndlessNewIDs}})
		l := followListing(t, srv, 3)
		mustHostile(t, s, Hostile{})
		hdr := http.Header{"Ms-Continuationtoken": {l.tokens[len(l.tokens)-1]}}
		resp, body := do(t, srv.Client(), srv.URL, "/v1/customers?size=500&seekOperation=Next", hdr)
		if resp.StatusCode != 400 || !strings.Contains(string(body), "expired") {
			t.Errorf("an endless continuation after clearing: %d %s", resp.StatusCode, body)
		}
		if l := followListing(t, srv, 10); !l.done || len(l.ids) != 2 {
			t.Errorf("after clearing the listing does not end: %d pages", len(l.ids))
		}
	})
}

func TestHostileDuplicateCustomer(t *testing.T) {
	for _, tc := range []struct {
		name      string
		customers int
		different bool
		pick      func(st State) string
	}{
		{"identical across pages", 520, false, func(State) string { return "" }},
		{"different across pages", 520, true, func(st State) string { return st.Customers[7].ID }},
		{"single page", 5, false, func(st State) string { return st.Customers[2].ID }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, srv, _ := hostileSim(t, Options{Seed: 1, Customers: tc.customers, SubscriptionsPerCustomer: 1})
			st := s.State()
			id := tc.pick(st)
			want := id
			if want == "" {
				want = st.Customers[0].ID
			}
			mustHostile(t, s, Hostile{DuplicateCustomer: &DuplicateCustomer{Customer: id, Different: tc.different}})
			// Fetch the raw pages to compare the two copies.
			var copies []json.RawMessage
			var pagesOf []int
			uri, hdr := "/v1/customers?size=500", http.Header{}
			for page := 0; ; page++ {
				_, body := do(t, srv.Client(), srv.URL, uri, hdr)
				var col struct {
					TotalCount int               `json:"totalCount"`
					Items      []json.RawMessage `json:"items"`
					Links      struct {
						Next *struct {
							URI     string       `json:"uri"`
							Headers []wireHeader `json:"headers"`
						} `json:"next"`
					} `json:"links"`
				}
				if err := json.Unmarshal(body, &col); err != nil || col.TotalCount != len(col.Items) {
					t.Fatalf("page %d: %v", page, err)
				}
				for _, it := range col.Items {
					if decode[struct{ ID string }](t, it).ID == want {
						copies = append(copies, it)
						pagesOf = append(pagesOf, page)
					}
				}
				if col.Links.Next == nil {
					break
				}
				uri, hdr = col.Links.Next.URI, http.Header{}
				for _, h := range col.Links.Next.Headers {
					hdr.Set(h.Key, h.Value)
				}
			}
			if len(copies) != 2 {
				t.Fatalf("customer %s listed %d times", want, len(copies))
			}
			if tc.customers > 500 && pagesOf[0] == pagesOf[1] {
				t.Errorf("both copies on page %d", pagesOf[0])
			}
			if same := bytes.Equal(copies[0], copies[1]); same == tc.different {
				t.Errorf("copies identical %v, want %v:\n%s\n%s", same, !tc.different, copies[0], copies[1])
			}
			if tc.different && !bytes.Contains(copies[1], []byte(" (listed twice)")) {
				t.Errorf("the second copy: %s", copies[1])
			}
		})
	}
}

// recordSleep is an Options.Sleep that records what it was asked to wait.
type recordSleep struct {
	mu sync.Mutex
	ds []time.Duration
}

func (r *recordSleep) sleep(ctx context.Context, d time.Duration) error {
	r.mu.Lock()
	r.ds = append(r.ds, d)
	r.mu.Unlock()
	return ctx.Err()
}

func TestHostileTrickle(t *testing.T) {
	rs := &recordSleep{}
	s, srv, _ := hostileSim(t, Options{Seed: 1, Customers: 3, Sleep: rs.sleep})
	cid := s.State().Customers[0].ID
	uri := "/v1/customers/" + cid + "/subscriptions"
	want := mustGet(t, s, uri)
	mustHostile(t, s, Hostile{Slow: []SlowRule{{Scope: Scope{Endpoint: EndpointSubscriptions}, Mode: SlowTrickle, ChunkBytes: 100, Interval: 250 * time.Millisecond}}})
	resp, body := do(t, srv.Client(), srv.URL, uri, nil)
	if resp.StatusCode != 200 || !bytes.Equal(body, want) || resp.ContentLength != int64(len(want)) {
		t.Fatalf("trickled body: %d, %d bytes (Content-Length %d), want the real %d", resp.StatusCode, len(body), resp.ContentLength, len(want))
	}
	chunks := (len(want) + 99) / 100
	rs.mu.Lock()
	ds := append([]time.Duration(nil), rs.ds...)
	rs.mu.Unlock()
	if len(ds) != chunks-1 || slices.ContainsFunc(ds, func(d time.Duration) bool { return d != 250*time.Millisecond }) {
		t.Errorf("waits %v, want %d of 250ms (%d chunks)", ds, chunks-1, chunks)
	}
	if code, _ := get(s, "/v1/customers/"+cid); code != 200 {
		t.Errorf("out of scope: %d", code)
	}
}

func TestHostileEndlessBody(t *testing.T) {
	s, srv, _ := hostileSim(t, Options{Seed: 1, Customers: 3})
	cid := s.State().Customers[0].ID
	mustHostile(t, s, Hostile{Slow: []SlowRule{{Scope: Scope{Customers: []string{cid}, Endpoint: EndpointManagedServices}, Mode: SlowEndless}}})
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v1/customers/"+cid+"/managedservices", nil)
	req.Header.Set("Authorization", "Bearer t")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.ContentLength != -1 {
		t.Fatalf("status %d, Content-Length %d", resp.StatusCode, resp.ContentLength)
	}
	const n = 8 << 20
	head := make([]byte, n)
	if _, err := io.ReadFull(resp.Body, head); err != nil {
		t.Fatalf("reading %d bytes of an endless body: %v", n, err)
	}
	resp.Body.Close()
	if !bytes.HasPrefix(head, []byte(`{"totalCount":2147483647,"items":[{"id":"pcsim-endless-0",`)) || bytes.Contains(head, []byte("]")) {
		t.Errorf("the body does not look like a collection that never ends: %.120s", head)
	}
	// The items are well-formed JSON objects, one after the other.
	rest := head[len(`{"totalCount":2147483647,"items":[`):]
	if n := bytes.Count(rest, []byte(`{"id":"pcsim-endless-`)); n < 10000 {
		t.Errorf("only %d items in %d bytes", n, len(rest))
	}
	var first struct{ ID, FriendlyName string }
	if err := json.NewDecoder(bytes.NewReader(rest)).Decode(&first); err != nil || first.ID != "pcsim-endless-0" {
		t.Errorf("first item: %v %+v", err, first)
	}
	if st := s.Stats(); st.Requests[EndpointManagedServices]["endless"] != 1 || st.Faults["hostile-endless-body"] != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestRunEndsEndlessBodiesOnShutdown(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan *Sim, 1)
	urls := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, RunOptions{Addr: "127.0.0.1:0", Sim: Options{Seed: 1, Customers: 2, Clock: clock.NewFake(t0)},
			Ready: func(url string, s *Sim) { urls <- url; ready <- s }})
	}()
	var url string
	select {
	case url = <-urls:
	case err := <-done:
		t.Fatalf("Run returned early: %v", err)
	}
	s := <-ready
	off := s.CurrentOffOriginStats().URL
	if off == "" || off == url {
		t.Fatalf("off-origin URL %q (main %q)", off, url)
	}
	resp, err := http.Get(off + "/v1/customers")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || s.CurrentOffOriginStats().Requests != 1 {
		t.Fatalf("off-origin server: %d, %+v", resp.StatusCode, s.CurrentOffOriginStats())
	}
	mustHostile(t, s, Hostile{Slow: []SlowRule{{Mode: SlowEndless}}})
	req, _ := http.NewRequest(http.MethodGet, url+"/v1/customers", nil)
	req.Header.Set("Authorization", "Bearer t")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	drained := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, resp.Body)
		drained <- err
	}()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run with an endless body in flight: %v", err)
	}
	<-drained
	resp.Body.Close()
}

func TestAdminHostile(t *testing.T) {
	s, _, _ := testSim(t, Options{Seed: 1, Customers: 2})
	s.SetOffOriginURL("http://127.0.0.1:1/")
	var got Hostile
	admin(t, s, "POST", "/admin/hostile", `{
		"malformed": [{"scope": {"endpoint": "subscriptions", "customers": ["A"]}, "shapes": ["null", "itemsEmpty"]}],
		"redirects": [{"scope": {"endpoint": "customers", "pages": [1]}, "status": 307}],
		"errors": [{"scope": {"customers": ["B"]}, "status": 429, "retryAfter": "24h", "echoAuthorization": true}],
		"oversized": [{"customer": "C", "field": "pcsimPadding", "every": "1.5s"}],
		"endlessPaging": {"mode": "repeat", "fromPage": 2},
		"duplicateCustomer": {"different": true},
		"slow": [{"scope": {"endpoint": "managedservices"}, "mode": "trickle", "chunkBytes": 10, "interval": 50000000}]
	}`, 200, &got)
	want := Hostile{
		Malformed:         []MalformedRule{{Scope: Scope{Endpoint: "subscriptions", Customers: []string{"A"}}, Shapes: []string{"null", "itemsEmpty"}}},
		Redirects:         []RedirectRule{{Scope: Scope{Endpoint: "customers", Pages: []int{1}}, Status: 307}},
		Errors:            []ErrorRule{{Scope: Scope{Customers: []string{"B"}}, Status: 429, RetryAfter: 24 * time.Hour, EchoAuthorization: true}},
		Oversized:         []OversizedRule{{Customer: "C", Field: "pcsimPadding", Every: 1500 * time.Millisecond}},
		EndlessPaging:     &EndlessPaging{Mode: EndlessRepeat, FromPage: 2},
		DuplicateCustomer: &DuplicateCustomer{Different: true},
		Slow:              []SlowRule{{Scope: Scope{Endpoint: "managedservices"}, Mode: SlowTrickle, ChunkBytes: 10, Interval: 50 * time.Millisecond}},
	}
	gotJSON, _ := json.Marshal(got)
	wantJSON, _ := json.Marshal(want)
	if !bytes.Equal(gotJSON, wantJSON) {
		t.Fatalf("POST /admin/hostile answered\n%s\nwant\n%s", gotJSON, wantJSON)
	}
	if cur, _ := json.Marshal(s.CurrentHostile()); !bytes.Equal(cur, wantJSON) {
		t.Fatalf("in force: %s", cur)
	}
	if b := admin(t, s, "GET", "/admin/hostile", "", 200, nil); !bytes.Contains(b, []byte(`"retryAfter":"24h0m0s"`)) || !bytes.Contains(b, []byte(`"every":"1.5s"`)) {
		t.Errorf("GET /admin/hostile: %s", b)
	}
	for _, bad := range []string{
		`{"bogus": 1}`,
		`{"errors": [{"scope": {"endpoint": "subscriptions", "customer": "typo"}}]}`,
		`{"errors": [{"retryAfter": "a day"}]}`,
		`{"slow": [{"mode": "trickle", "speed": 1}]}`,
		`{"endlessPaging": {"mode": "sometimes"}}`,
		`not json`,
	} {
		body := admin(t, s, "POST", "/admin/hostile", bad, 400, nil)
		if !bytes.Contains(body, []byte(`"error"`)) {
			t.Errorf("%s: %s", bad, body)
		}
	}
	if cur, _ := json.Marshal(s.CurrentHostile()); !bytes.Equal(cur, wantJSON) {
		t.Errorf("a refused body changed the configuration: %s", cur)
	}
	got = Hostile{}
	admin(t, s, "POST", "/admin/hostile", `{}`, 200, &got)
	if !got.IsZero() || !s.CurrentHostile().IsZero() {
		t.Errorf("{} did not clear: %+v", got)
	}
	var st OffOriginStats
	admin(t, s, "GET", "/admin/offorigin", "", 200, &st)
	if st.URL != "http://127.0.0.1:1" || st.Requests != 0 {
		t.Errorf("off-origin stats %+v", st)
	}
	admin(t, s, "DELETE", "/admin/offorigin", "", 204, nil)
	admin(t, s, "PUT", "/admin/hostile", "{}", 405, nil)
}

// FuzzHostileJSON: the admin decoder of a hostile configuration never
// panics, and what it accepts and SetHostile takes round-trips.
func FuzzHostileJSON(f *testing.F) {
	for _, seed := range []string{`{}`, `{"errors":[{"status":429,"retryAfter":"24h"}]}`, `{"malformed":[{"shapes":["null"]}]}`,
		`{"endlessPaging":{"mode":"newIds","pageSize":-1}}`, `{"slow":[{"mode":"endless","interval":1e300}]}`, `null`, `[]`, `"x"`} {
		f.Add([]byte(seed))
	}
	s := New(Options{Seed: 1})
	s.SetOffOriginURL("http://127.0.0.1:1")
	f.Fuzz(func(t *testing.T, b []byte) {
		var h Hostile
		if strictUnmarshal(b, &h) != nil {
			return
		}
		if s.SetHostile(h) != nil {
			return
		}
		out, err := json.Marshal(s.CurrentHostile())
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		var back Hostile
		if err := strictUnmarshal(out, &back); err != nil {
			t.Fatalf("round trip of %s: %v", out, err)
		}
		again, _ := json.Marshal(back)
		if !bytes.Equal(out, again) {
			t.Fatalf("round trip changed\n%s\n%s", out, again)
		}
	})
}
