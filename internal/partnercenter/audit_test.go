package partnercenter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// auditRec renders a minimal documented record.
func auditRec(id, cust, op string) string {
	return fmt.Sprintf(`{"id":%q,"partnerId":"p","customerId":%q,"resourceType":"subscription","operationType":%q,`+
		`"operationDate":"2026-01-01T10:00:00.0000000Z","operationStatus":"succeeded",`+
		`"customizedData":[{"key":"SubscriptionId","value":"sub-%s"}],"attributes":{"objectType":"AuditRecord"}}`, id, cust, op, id)
}

// auditBody renders one page.
func auditBody(items []string, token, next string) string {
	b := `{"totalCount":` + fmt.Sprint(len(items)) + `,"items":[` + strings.Join(items, ",") + `]`
	if token != "" {
		b += `,"continuationToken":` + fmt.Sprintf("%q", token)
	}
	b += `,"links":{"self":{"uri":"/auditrecords","method":"GET","headers":[]}`
	if next != "" {
		b += `,"next":` + next
	}
	return b + `},"attributes":{"objectType":"Collection"}}`
}

// auditRequest is what a test server saw.
type auditRequest struct {
	path, query, token string
}

// auditServer serves pages[i] to the i-th request and records requests.
func auditServer(t *testing.T, pages ...string) (*httptest.Server, func() []auditRequest) {
	t.Helper()
	var mu sync.Mutex
	var got []auditRequest
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		i := len(got)
		got = append(got, auditRequest{r.URL.Path, r.URL.RawQuery, r.Header.Get("MS-ContinuationToken")})
		mu.Unlock()
		if i >= len(pages) {
			http.Error(w, `{"code":500,"description":"no such page"}`, http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, pages[i])
	}))
	t.Cleanup(srv.Close)
	return srv, func() []auditRequest {
		mu.Lock()
		defer mu.Unlock()
		return append([]auditRequest(nil), got...)
	}
}

// collect lists q and returns the record ids page by page.
func collect(c *Client, q AuditQuery) ([][]string, error) {
	var pages [][]string
	err := c.ListAuditRecords(context.Background(), q, func(p AuditPage) error {
		if p.Number != len(pages)+1 {
			return fmt.Errorf("page number %d, want %d", p.Number, len(pages)+1)
		}
		var ids []string
		for _, r := range p.Records {
			ids = append(ids, r.ID)
		}
		pages = append(pages, ids)
		return nil
	})
	return pages, err
}

var day1 = AuditQuery{StartDate: time.Date(2026, 1, 1, 23, 0, 0, 0, time.UTC), EndDate: time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)}

func TestAuditQueryPath(t *testing.T) {
	for _, tc := range []struct {
		name string
		q    AuditQuery
		want url.Values
	}{
		{"days only, default size", day1, url.Values{"startDate": {"2026-01-01"}, "endDate": {"2026-01-02"}, "size": {"500"}}},
		{"UTC day of a zoned time", AuditQuery{StartDate: time.Date(2026, 1, 2, 0, 30, 0, 0, time.FixedZone("CET", 3600))},
			url.Values{"startDate": {"2026-01-01"}, "size": {"500"}}},
		{"no dates", AuditQuery{Size: 50}, url.Values{"size": {"50"}}},
		{"filter", AuditQuery{Size: 10, Filter: &AuditFilter{Field: AuditFieldCustomerID, Value: "c-1", Operator: AuditOperatorEquals}},
			url.Values{"size": {"10"}, "filter": {`{"Field":"CustomerId","Value":"c-1","Operator":"equals"}`}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.q.Path()
			path, raw, _ := strings.Cut(p, "?")
			got, err := url.ParseQuery(raw)
			if err != nil || path != "/v1/auditrecords" || !equalValues(got, tc.want) {
				t.Fatalf("%s: %v, want %v", p, got, tc.want)
			}
		})
	}
}

func equalValues(a, b url.Values) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

func TestAuditQueryRefusedBeforeSending(t *testing.T) {
	srv, reqs := auditServer(t)
	c, _ := newTestClient(t, srv, nil)
	for _, q := range []AuditQuery{
		{StartDate: day1.EndDate, EndDate: day1.StartDate},
		{Size: -1},
		{Filter: &AuditFilter{Value: "x"}},
	} {
		if _, err := collect(c, q); err == nil {
			t.Errorf("%+v accepted", q)
		}
	}
	if n := len(reqs()); n != 0 {
		t.Fatalf("%d requests sent for refused queries", n)
	}
}

func TestAuditPaging(t *testing.T) {
	next := func(uri, tok string) string {
		h := "[]"
		if tok != "" {
			h = fmt.Sprintf(`[{"key":"MS-ContinuationToken","value":%q}]`, tok)
		}
		return fmt.Sprintf(`{"uri":%q,"method":"GET","headers":%s}`, uri, h)
	}
	a, b, c := auditRec("a", "c1", "update_subscription"), auditRec("b", "c2", "create_order"), auditRec("c", "c1", "add_customer")
	for _, tc := range []struct {
		name  string
		pages []string
		want  [][]string
		reqs  []auditRequest // after the first
	}{
		{"one page", []string{auditBody([]string{a, b}, "", "")}, [][]string{{"a", "b"}}, nil},
		{"empty", []string{auditBody(nil, "", "")}, [][]string{nil}, nil},
		{"next links as documented (no /v1), token in their headers", []string{
			auditBody([]string{a}, "t1", next("/auditrecords?size=500&seekOperation=Next", "t1")),
			auditBody([]string{b}, "t2", next("/auditrecords?size=500&seekOperation=Next", "t2")),
			auditBody([]string{c}, "", ""),
		}, [][]string{{"a"}, {"b"}, {"c"}}, []auditRequest{
			{"/v1/auditrecords", "size=500&seekOperation=Next", "t1"},
			{"/v1/auditrecords", "size=500&seekOperation=Next", "t2"},
		}},
		{"a next link without the token header: the body's token is sent", []string{
			auditBody([]string{a}, "t1", next("/v1/auditrecords?seekOperation=Next", "")),
			auditBody([]string{b}, "", ""),
		}, [][]string{{"a"}, {"b"}}, []auditRequest{{"/v1/auditrecords", "seekOperation=Next", "t1"}}},
		{"a token without a next link: the query continues with it", []string{
			auditBody([]string{a}, "t1", ""),
			auditBody([]string{b}, "", ""),
		}, [][]string{{"a"}, {"b"}}, []auditRequest{{"/v1/auditrecords", "endDate=2026-01-02&size=500&startDate=2026-01-01&seekOperation=Next", "t1"}}},
		{"a null token ends the listing", []string{strings.Replace(auditBody([]string{a}, "", ""), `"items"`, `"continuationToken":null,"items"`, 1)},
			[][]string{{"a"}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, reqs := auditServer(t, tc.pages...)
			cl, _ := newTestClient(t, srv, nil)
			got, err := collect(cl, day1)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.EqualFunc(got, tc.want, slices.Equal[[]string]) {
				t.Fatalf("pages %v, want %v", got, tc.want)
			}
			r := reqs()
			if len(r) != len(tc.pages) || r[0].path != "/v1/auditrecords" || r[0].token != "" ||
				r[0].query != "endDate=2026-01-02&size=500&startDate=2026-01-01" {
				t.Fatalf("requests %+v", r)
			}
			if !slices.Equal(r[1:], tc.reqs) {
				t.Fatalf("continuations %+v, want %+v", r[1:], tc.reqs)
			}
		})
	}
}

// TestAuditMalformedPage: a page that is not a collection of records is
// an error naming the listing and the page, never "no records".
func TestAuditMalformedPage(t *testing.T) {
	a := auditRec("a", "c1", "update_subscription")
	good := auditBody([]string{a}, "t1", `{"uri":"/auditrecords?seekOperation=Next","headers":[{"key":"MS-ContinuationToken","value":"t1"}]}`)
	for _, tc := range []struct {
		name, body string
		shape      bool // ErrNotCollection (valid JSON of the wrong shape)
	}{
		{"null", `null`, true},
		{"empty object", `{}`, true},
		{"an array", `[]`, true},
		{"items null", `{"totalCount":3,"items":null}`, true},
		{"items empty while totalCount says 3", `{"totalCount":3,"items":[]}`, true},
		{"a null record", `{"totalCount":1,"items":[null]}`, true},
		{"a number record", `{"totalCount":1,"items":[` + a + `,7]}`, true},
		{"a token that is a number", `{"totalCount":1,"items":[` + a + `],"continuationToken":5}`, true},
		{"items twice", `{"items":[],"Items":[` + a + `]}`, true},
		{"not JSON", `{"totalCount":1,"items":[` + a, false},
		{"a record of the wrong types", `{"totalCount":1,"items":[{"customerId":7}]}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The malformed page is the second one: the first is handed
			// over, then the listing fails.
			pages := []string{good}
			for i := 0; i < maxDecodeAttempts; i++ {
				pages = append(pages, tc.body)
			}
			srv, reqs := auditServer(t, pages...)
			c, _ := newTestClient(t, srv, nil)
			got, err := collect(c, day1)
			if err == nil {
				t.Fatalf("a malformed page was accepted: %v", got)
			}
			var de *DecodeError
			if !errors.Is(err, ErrAuditPage) || !errors.As(err, &de) || de.Endpoint != "auditrecords" || errors.Is(err, ErrNotCollection) != tc.shape {
				t.Fatalf("error %v (ErrAuditPage %v, ErrNotCollection %v)", err, errors.Is(err, ErrAuditPage), errors.Is(err, ErrNotCollection))
			}
			if !strings.Contains(err.Error(), "listing audit records") || !strings.Contains(err.Error(), "page 2") {
				t.Fatalf("error does not name the listing and the page: %v", err)
			}
			if len(got) != 1 || len(reqs()) != 1+maxDecodeAttempts {
				t.Fatalf("%d pages handed over, %d requests", len(got), len(reqs()))
			}
		})
	}
}

func TestAuditListingErrors(t *testing.T) {
	a := auditRec("a", "c1", "update_subscription")
	loop := auditBody([]string{a}, "same", `{"uri":"/auditrecords?seekOperation=Next","headers":[{"key":"MS-ContinuationToken","value":"same"}]}`)
	t.Run("a server that loops", func(t *testing.T) {
		srv, _ := auditServer(t, loop, loop, loop)
		c, _ := newTestClient(t, srv, nil)
		if _, err := collect(c, day1); err == nil || !strings.Contains(err.Error(), "looping") {
			t.Fatalf("%v", err)
		}
	})
	t.Run("MaxPages", func(t *testing.T) {
		var pages []string
		for i := 0; i < 5; i++ {
			pages = append(pages, auditBody([]string{a}, fmt.Sprint("t", i), ""))
		}
		srv, reqs := auditServer(t, pages...)
		c, _ := newTestClient(t, srv, func(o *Options) { o.MaxPages = 3 })
		_, err := collect(c, day1)
		var le *LimitError
		if !errors.As(err, &le) || le.Option != LimitPages || le.Page != 4 || len(reqs()) != 3 {
			t.Fatalf("%v after %d requests", err, len(reqs()))
		}
	})
	t.Run("MaxItems over the listing", func(t *testing.T) {
		srv, _ := auditServer(t, auditBody([]string{a, a}, "t1", ""), auditBody([]string{a, a}, "", ""))
		c, _ := newTestClient(t, srv, func(o *Options) { o.MaxItems = 3 })
		_, err := collect(c, day1)
		var le *LimitError
		if !errors.As(err, &le) || le.Option != LimitItems || le.Page != 2 {
			t.Fatalf("%v", err)
		}
	})
	t.Run("MaxResponseBytes per page", func(t *testing.T) {
		srv, _ := auditServer(t, auditBody([]string{a, a, a, a}, "", ""))
		c, _ := newTestClient(t, srv, func(o *Options) { o.MaxResponseBytes = 600 })
		_, err := collect(c, day1)
		var le *LimitError
		if !errors.As(err, &le) || le.Option != LimitResponseBytes {
			t.Fatalf("%v", err)
		}
	})
	t.Run("the callback's error stops the listing", func(t *testing.T) {
		srv, reqs := auditServer(t, auditBody([]string{a}, "t1", ""), auditBody([]string{a}, "", ""))
		c, _ := newTestClient(t, srv, nil)
		stop := errors.New("stop")
		err := c.ListAuditRecords(context.Background(), day1, func(AuditPage) error { return stop })
		if err != stop || len(reqs()) != 1 {
			t.Fatalf("%v after %d requests", err, len(reqs()))
		}
	})
	t.Run("400 (startDate older than 90 days) is not retried", func(t *testing.T) {
		var hits int
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits++
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"code":400,"description":"The startDate is more than 90 days ago.","data":[],"source":"PartnerFD"}`)
		}))
		defer srv.Close()
		c, _ := newTestClient(t, srv, nil)
		_, err := collect(c, day1)
		var ae *APIError
		if !errors.Is(err, ErrBadRequest) || !errors.As(err, &ae) || ae.Endpoint != "auditrecords" || hits != 1 || errors.Is(err, ErrAuditPage) {
			t.Fatalf("%v after %d requests", err, hits)
		}
	})
	t.Run("throttled page: Retry-After waited out", func(t *testing.T) {
		var hits int
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits++
			if hits == 2 {
				w.Header().Set("Retry-After", "7")
				w.WriteHeader(http.StatusTooManyRequests)
				io.WriteString(w, `{"statusCode":429,"message":"Rate limit is exceeded. Try again in 7 seconds."}`)
				return
			}
			tok := ""
			if hits == 1 {
				tok = "t1"
			}
			io.WriteString(w, auditBody([]string{a}, tok, ""))
		}))
		defer srv.Close()
		c, ft := newTestClient(t, srv, nil)
		got, err := collect(c, day1)
		if err != nil || len(got) != 2 || hits != 3 || ft.total() < 7*time.Second {
			t.Fatalf("%v: %d pages, %d requests, waited %s", err, len(got), hits, ft.total())
		}
	})
	t.Run("a next link to another host is not followed", func(t *testing.T) {
		srv, reqs := auditServer(t, auditBody([]string{a}, "t1", `{"uri":"https://evil.example/v1/auditrecords","headers":[]}`))
		c, _ := newTestClient(t, srv, nil)
		if _, err := collect(c, day1); err == nil || len(reqs()) != 1 {
			t.Fatalf("%v after %d requests", err, len(reqs()))
		}
	})
}

// TestAuditCorpus reads the documented activity-log response: as
// published (a literal "..." in items) it is malformed; with the elision
// removed it is three records whose documented fields all arrive.
func TestAuditCorpus(t *testing.T) {
	body, err := os.ReadFile(filepath.Join(corpusDir(t), "partner-center", "auditrecords-collection-01.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		body []byte
		ok   bool
	}{
		{"as published", body, false},
		{"elision removed", regexp.MustCompile(`,\s*\.\.\.\s*`).ReplaceAll(body, nil), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, _ := auditServer(t, string(tc.body), string(tc.body), string(tc.body))
			c, _ := newTestClient(t, srv, nil)
			var recs []AuditRecord
			err := c.ListAuditRecords(context.Background(), day1, func(p AuditPage) error {
				recs = append(recs, p.Records...)
				if p.TotalCount != 17 {
					return fmt.Errorf("totalCount %d", p.TotalCount)
				}
				return nil
			})
			if !tc.ok {
				if !errors.Is(err, ErrAuditPage) || len(recs) != 0 {
					t.Fatalf("the published body was read: %v, %d records", err, len(recs))
				}
				return
			}
			if err != nil || len(recs) != 3 {
				t.Fatalf("%v, %d records", err, len(recs))
			}
			lic, order, cust := recs[0], recs[1], recs[2]
			if lic.OperationType != AuditOpUpdateCustomerUserLicenses || lic.ApplicationID != "FulfillmentService" || lic.CustomerName != "" ||
				lic.OperationDate.T != time.Date(2020, 9, 2, 23, 26, 19, 775393400, time.UTC) || lic.ResourceNewValue != "" {
				t.Fatalf("license record %+v", lic)
			}
			if v, ok := lic.Data("customeruserid"); !ok || v != "933808c7-b165-496c-a24e-1a4b7846fab4" {
				t.Fatalf("CustomerUserId %q", v)
			}
			if order.OperationType != AuditOpCreateOrder || order.OriginalCorrelationID != "96514ebe-c1b2-4865-cb46-2c2d20a2e911" ||
				!slices.Equal(order.SubscriptionIDs(), []string{"f428d44a-d08b-348b-579e-ce92a6362c7b"}) {
				t.Fatalf("order record %+v", order)
			}
			var o struct{ ID string }
			if json.Unmarshal([]byte(order.ResourceNewValue), &o) != nil || o.ID != "Ia80ZLkXp6eWOqpp35pBQJLhqv9IiGVZ1" {
				t.Fatalf("order resourceNewValue %.80s", order.ResourceNewValue)
			}
			if kv := order.CustomizedData[len(order.CustomizedData)-1]; kv.Key != "PartnerOnRecord-0" || !kv.Null || kv.Value != "" {
				t.Fatalf("null value %+v", kv)
			}
			if cust.OperationType != AuditOpAddCustomer || cust.CustomerName != "CustomMetersStagingTest" || cust.SubscriptionIDs() != nil ||
				cust.DedupKey() != "id:"+cust.ID || !slices.Equal(cust.Participants, []string{cust.PartnerID}) {
				t.Fatalf("customer record %+v", cust)
			}
			for _, r := range recs {
				if !KnownAuditOperationType(r.OperationType) || r.Attributes.ObjectType != "AuditRecord" || len(r.Raw) == 0 {
					t.Fatalf("record %+v", r)
				}
			}
		})
	}
}

func TestAuditRecordHelpers(t *testing.T) {
	var r AuditRecord
	raw := `{"customerId":"c","resourceType":"subscription","resourceOldValue":"{\"Id\":\"old\"}",` +
		`"resourceNewValue":{"Id":"as-json"},"customizedData":[{"key":"k","value":3},{"key":"n","value":null},` +
		`{"key":"SubscriptionId-1","value":"s1"},{"key":"SubscriptionId-x","value":"no"},{"key":"subscriptionid","value":"S1"}],` +
		`"operationDate":"not a date"}`
	if err := json.Unmarshal([]byte(raw), &r); err != nil {
		t.Fatal(err)
	}
	if r.ResourceNewValue != `{"Id":"as-json"}` || r.ResourceOldValue != `{"Id":"old"}` || r.OperationDate.Valid() || r.OperationDate.Raw != "not a date" {
		t.Fatalf("%+v", r)
	}
	if v, _ := r.Data("K"); v != "3" {
		t.Fatalf("number value %q", v)
	}
	if ids := r.SubscriptionIDs(); !slices.Equal(ids, []string{"s1"}) {
		t.Fatalf("ids %v", ids)
	}
	r.CustomizedData = nil
	if ids := r.SubscriptionIDs(); !slices.Equal(ids, []string{"as-json"}) {
		t.Fatalf("ids from the resource value %v", ids)
	}
	k1 := r.DedupKey()
	var again AuditRecord
	_ = json.Unmarshal([]byte(strings.ReplaceAll(raw, `,"`, `, "`)), &again) // other white space, same content
	if k2 := again.DedupKey(); k1 != k2 || !strings.HasPrefix(k1, "sha256:") {
		t.Fatalf("content keys %s %s", k1, k2)
	}
	out, err := json.Marshal(KeyValue{Key: "n", Null: true})
	if err != nil || string(out) != `{"key":"n","value":null}` {
		t.Fatalf("%s %v", out, err)
	}
	if KnownAuditOperationType("pcsim_undocumented_operation") || !KnownAuditOperationType("UPDATE_SUBSCRIPTION") {
		t.Fatal("KnownAuditOperationType")
	}
}
