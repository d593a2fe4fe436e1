package pcsim

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	pc "github.com/pcwatch/pcwatch/internal/partnercenter"
)

func TestRateLimit(t *testing.T) {
	s, _, wall := testSim(t, Options{Seed: 1, Customers: 3})
	s.SetFaults(Faults{RateLimit: RateLimit{Requests: 2, Per: time.Minute}})
	for i := 0; i < 2; i++ {
		if code, _ := get(s, "/v1/customers"); code != 200 {
			t.Fatalf("request %d: %d", i, code)
		}
	}
	rec := call(s, "GET", "/v1/customers", nil, "")
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") != "30" ||
		rec.Body.String() != `{"statusCode":429,"message":"Rate limit is exceeded. Try again in 30 seconds."}` {
		t.Fatalf("429: %d %v %s", rec.Code, rec.Header(), rec.Body.String())
	}
	wall.Advance(29 * time.Second)
	if code, _ := get(s, "/v1/customers"); code != 429 {
		t.Fatalf("before refill: %d", code)
	}
	if rec := call(s, "GET", "/v1/customers", nil, ""); rec.Header().Get("Retry-After") != "1" {
		t.Fatalf("Retry-After rounds up to at least 1: %q", rec.Header().Get("Retry-After"))
	}
	wall.Advance(time.Second)
	if code, _ := get(s, "/v1/customers"); code != 200 {
		t.Fatalf("after refill: %d", code)
	}
	s.SetFaults(Faults{RateLimit: RateLimit{Requests: 1, Per: time.Hour, RetryAfter: 57 * time.Second}})
	get(s, "/v1/customers")
	rec = call(s, "GET", "/v1/customers", nil, "")
	var body struct {
		StatusCode int    `json:"statusCode"`
		Message    string `json:"message"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || rec.Header().Get("Retry-After") != "57" ||
		body.StatusCode != 429 || body.Message != "Rate limit is exceeded. Try again in 57 seconds." {
		t.Fatalf("configured Retry-After: %v %s", rec.Header(), rec.Body.String())
	}
	if st := s.Stats(); st.Throttled != 4 || st.Requests["customers"]["429"] != 4 || st.Requests["customers"]["200"] != 4 || st.Faults["ratelimit"] != 4 {
		t.Fatalf("stats %+v", st)
	}
	// Admin requests are never throttled.
	admin(t, s, "GET", "/admin/stats", "", 200, nil)
}

func TestFailCustomerPage(t *testing.T) {
	s, _, _ := testSim(t, Options{Seed: 1, Customers: 1200, SubscriptionsPerCustomer: 1})
	s.SetFaults(Faults{FailCustomerPage: PageFault{Page: 2, Times: 2, Status: 503}})
	fetch := func(next *pc.Link) *httptest.ResponseRecorder {
		if next == nil {
			return call(s, "GET", "/v1/customers?size=500", nil, "")
		}
		h := http.Header{"Authorization": {"Bearer t"}}
		for _, x := range next.Headers {
			h.Set(x.Key, x.Value)
		}
		return call(s, "GET", next.URI, h, "")
	}
	var next *pc.Link
	for page := 0; page < 2; page++ {
		rec := fetch(next)
		if rec.Code != 200 {
			t.Fatalf("page %d: %d", page, rec.Code)
		}
		next = decode[pc.Collection[pc.Customer]](t, rec.Body.Bytes()).Links.Next
	}
	for i := 0; i < 2; i++ {
		rec := fetch(next)
		if rec.Code != 503 || rec.Header().Get("Retry-After") == "" {
			t.Fatalf("page 2 attempt %d: %d %v", i, rec.Code, rec.Header())
		}
	}
	if rec := fetch(next); rec.Code != 200 || len(decode[pc.Collection[pc.Customer]](t, rec.Body.Bytes()).Items) != 200 {
		t.Fatalf("page 2 after the failures: %d", rec.Code)
	}
	s.SetFaults(Faults{FailCustomerPage: PageFault{Page: 2, Times: -1}})
	for i := 0; i < 5; i++ {
		if rec := fetch(next); rec.Code != 500 {
			t.Fatalf("until cleared, attempt %d: %d", i, rec.Code)
		}
	}
	if rec := fetch(nil); rec.Code != 200 {
		t.Fatalf("page 0 must not fail: %d", rec.Code)
	}
	s.SetFaults(Faults{})
	if rec := fetch(next); rec.Code != 200 {
		t.Fatalf("after clearing: %d", rec.Code)
	}
}

func TestMalformedAndErrorRates(t *testing.T) {
	s, _, _ := testSim(t, Options{Seed: 1, Customers: 5})
	cid := s.State().Customers[0].ID
	s.SetFaults(Faults{MalformedRate: 1})
	for _, path := range []string{"/v1/customers", "/v1/customers/" + cid + "/subscriptions", "/v1/customers/" + cid} {
		code, body := get(s, path)
		if code != 200 || json.Valid(body) {
			t.Fatalf("%s malformed: %d valid=%v", path, code, json.Valid(body))
		}
	}
	s.SetFaults(Faults{ErrorRate: 0.3})
	fails, retry := 0, 0
	for i := 0; i < 400; i++ {
		rec := call(s, "GET", "/v1/customers/"+cid+"/subscriptions", nil, "")
		switch rec.Code {
		case 200:
		case 500, 502:
			fails++
		case 503:
			fails++
			if rec.Header().Get("Retry-After") != "" {
				retry++
			}
		default:
			t.Fatalf("status %d", rec.Code)
		}
		if rec.Code >= 500 && !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("5xx body: %s", rec.Body.Bytes())
		}
	}
	if fails < 80 || fails > 160 || retry == 0 {
		t.Fatalf("error rate 0.3 gave %d of 400 (503s with Retry-After: %d)", fails, retry)
	}
	if s.Stats().Faults["error"] != int64(fails) {
		t.Fatalf("stats %+v", s.Stats())
	}
}

func TestInjectQueue(t *testing.T) {
	s, _, _ := testSim(t, Options{Seed: 1, Customers: 5})
	cid := s.State().Customers[0].ID
	s.Inject(Rule{PathPrefix: "/V1/customers/" + cid, Status: 500, Times: 2})
	s.Inject(Rule{PathPrefix: "/v1/customers", Status: 429, Body: `{"statusCode":429,"message":"Rate limit is exceeded. Try again in 3 seconds."}`, RetryAfter: 3 * time.Second})
	want := []struct {
		path  string
		code  int
		retry string
	}{
		{"/v1/customers/" + cid + "/subscriptions", 500, ""},
		{"/v1/customers", 429, "3"},
		{"/v1/customers/" + cid + "/managedservices", 500, ""},
		{"/v1/customers/" + cid + "/managedservices", 200, ""},
		{"/v1/customers", 200, ""},
	}
	for i, w := range want {
		rec := call(s, "GET", w.path, nil, "")
		if rec.Code != w.code || rec.Header().Get("Retry-After") != w.retry {
			t.Fatalf("request %d %s: %d %q, want %d %q", i, w.path, rec.Code, rec.Header().Get("Retry-After"), w.code, w.retry)
		}
		if w.code == 500 {
			var e map[string]any
			if json.Unmarshal(rec.Body.Bytes(), &e) != nil || e["code"] != float64(500) {
				t.Fatalf("default body %s", rec.Body.Bytes())
			}
		}
	}
	s.Inject(Rule{Status: 502, Times: 5})
	s.ClearInjected()
	if code, _ := get(s, "/v1/customers"); code != 200 {
		t.Fatal("ClearInjected left rules")
	}
	if s.Stats().Faults["inject"] != 3 {
		t.Fatalf("stats %+v", s.Stats())
	}
}

func TestLatencyUsesInjectedSleep(t *testing.T) {
	var mu sync.Mutex
	var slept []time.Duration
	fail := false
	sleep := func(ctx context.Context, d time.Duration) error {
		mu.Lock()
		defer mu.Unlock()
		slept = append(slept, d)
		if fail {
			return context.Canceled
		}
		return nil
	}
	s, _, _ := testSim(t, Options{Seed: 1, Customers: 2, Sleep: sleep})
	s.SetFaults(Faults{Latency: 250 * time.Millisecond})
	get(s, "/v1/customers")
	get(s, "/v1/customers")
	if len(slept) != 2 || slept[0] != 250*time.Millisecond {
		t.Fatalf("slept %v", slept)
	}
	fail = true
	get(s, "/v1/customers")
	if s.Stats().Requests["customers"]["canceled"] != 1 {
		t.Fatalf("stats %+v", s.Stats())
	}
	// The default sleeper honours cancellation.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := sleepCtx(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("sleepCtx: %v", err)
	}
}

func TestTruncateAndReset(t *testing.T) {
	s, _, _ := testSim(t, Options{Seed: 1, Customers: 20})
	srv := httptest.NewServer(s)
	defer srv.Close()
	client := srv.Client()
	doGet := func() (*http.Response, error) {
		req, _ := http.NewRequest("GET", srv.URL+"/v1/customers", nil)
		req.Header.Set("Authorization", "Bearer t")
		return client.Do(req)
	}
	full := len(mustGet(t, s, "/v1/customers"))

	s.SetFaults(Faults{TruncateRate: 1})
	resp, err := doGet()
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ContentLength != int64(full) || !errors.Is(err, io.ErrUnexpectedEOF) || len(body) != full/2 {
		t.Fatalf("truncate: status %d, Content-Length %d (full %d), read %d bytes, err %v", resp.StatusCode, resp.ContentLength, full, len(body), err)
	}

	s.SetFaults(Faults{ResetRate: 1})
	if resp, err := doGet(); err == nil {
		resp.Body.Close()
		t.Fatalf("reset: got a response %d", resp.StatusCode)
	}
	s.SetFaults(Faults{})
	resp, err = doGet()
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("after clearing faults: %v", err)
	}
	resp.Body.Close()
	st := s.Stats()
	if st.Requests["customers"]["truncated"] != 1 || st.Requests["customers"]["reset"] != 1 || st.Faults["truncate"] != 1 || st.Faults["reset"] != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestFaultsJSON(t *testing.T) {
	f := Faults{RateLimit: RateLimit{Requests: 5, Per: time.Second, RetryAfter: 2 * time.Second}, Latency: 1500 * time.Millisecond,
		ErrorRate: 0.1, FailCustomerPage: PageFault{Page: 1, Times: -1, Status: 500}}
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"latency":"1.5s"`) || !strings.Contains(string(b), `"per":"1s"`) {
		t.Fatalf("durations not strings: %s", b)
	}
	var back Faults
	if err := json.Unmarshal(b, &back); err != nil || back != f {
		t.Fatalf("round trip: %v %+v", err, back)
	}
	if err := json.Unmarshal([]byte(`{"latency": 1000000}`), &back); err != nil || back.Latency != time.Millisecond {
		t.Fatalf("nanoseconds: %v %v", err, back.Latency)
	}
	for _, bad := range []string{`{"latncy":"1s"}`, `{"latency":"soon"}`, `{"rateLimit":{"per":"x"}}`, `{"rateLimit":{"requets":1}}`} {
		if err := json.Unmarshal([]byte(bad), &back); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	var r Rule
	if err := json.Unmarshal([]byte(`{"pathPrefix":"/v1","status":503,"retryAfter":"2s","times":2}`), &r); err != nil || r.RetryAfter != 2*time.Second || r.Times != 2 {
		t.Fatalf("rule: %v %+v", err, r)
	}
	if got := retrySeconds(1500 * time.Millisecond); got != 2 {
		t.Fatalf("retrySeconds rounds up: %d", got)
	}
}
