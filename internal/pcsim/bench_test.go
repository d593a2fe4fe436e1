package pcsim

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/pcwatch/pcwatch/internal/clock"
)

// BenchmarkListAll lists 10,000 customers (20 pages of 500) and the
// subscriptions of every one of them (100,000 subscriptions) through the
// handler, as a full poll does.
func BenchmarkListAll(b *testing.B) {
	s := New(Options{Seed: 1, Customers: 10000, SubscriptionsPerCustomer: 10, Clock: clock.NewFake(t0)})
	type page struct {
		Items []struct {
			ID string `json:"id"`
		} `json:"items"`
		Links struct {
			Next *struct {
				URI     string `json:"uri"`
				Headers []struct{ Key, Value string }
			} `json:"next"`
		} `json:"links"`
	}
	serve := func(path string, hdr http.Header) []byte {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.Header = hdr
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("%s: %d", path, rec.Code)
		}
		return rec.Body.Bytes()
	}
	b.ReportAllocs()
	var bytes int64
	for b.Loop() {
		bytes = 0
		uri, hdr := "/v1/customers?size=500", http.Header{"Authorization": {"Bearer t"}}
		customers := 0
		for {
			body := serve(uri, hdr)
			bytes += int64(len(body))
			var p page
			if err := json.Unmarshal(body, &p); err != nil {
				b.Fatal(err)
			}
			for _, c := range p.Items {
				bytes += int64(len(serve("/v1/customers/"+c.ID+"/subscriptions", http.Header{"Authorization": {"Bearer t"}})))
			}
			customers += len(p.Items)
			if p.Links.Next == nil {
				break
			}
			uri, hdr = p.Links.Next.URI, http.Header{"Authorization": {"Bearer t"}}
			for _, h := range p.Links.Next.Headers {
				hdr.Set(h.Key, h.Value)
			}
		}
		if customers != 10000 {
			b.Fatalf("listed %d customers", customers)
		}
	}
	b.ReportMetric(float64(bytes)/1e6, "MB/poll")
}

// BenchmarkNew measures generating 10,000 customers x 10 subscriptions.
func BenchmarkNew(b *testing.B) {
	for b.Loop() {
		New(Options{Seed: 1, Customers: 10000, SubscriptionsPerCustomer: 10, Clock: clock.NewFake(t0)})
	}
}
