package pcsim

import (
	"net/http"
	"net/http/httptest"
	"testing"

	pc "github.com/pcwatch/pcwatch/internal/partnercenter"
)

// pager lists customers over HTTP by following links.next and sending back
// its headers, as a client must.
type pager struct {
	t    *testing.T
	srv  *httptest.Server
	next *pc.Link
	done bool
}

func (p *pager) page() []string {
	p.t.Helper()
	uri, hdr := "/v1/customers?size=500", http.Header{}
	if p.next != nil {
		uri = p.next.URI
		for _, h := range p.next.Headers {
			hdr.Set(h.Key, h.Value)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, p.srv.URL+uri, nil)
	req.Header = hdr
	req.Header.Set("Authorization", "Bearer t")
	resp, err := p.srv.Client().Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	body := readAll(p.t, resp.Body)
	if resp.StatusCode != http.StatusOK {
		p.t.Fatalf("GET %s: %d %s", uri, resp.StatusCode, body)
	}
	col := decode[pc.Collection[pc.Customer]](p.t, body)
	if col.TotalCount != len(col.Items) {
		p.t.Fatalf("totalCount %d for %d items", col.TotalCount, len(col.Items))
	}
	p.next = col.Links.Next
	p.done = p.next == nil
	ids := make([]string, len(col.Items))
	for i, c := range col.Items {
		ids[i] = c.ID
	}
	return ids
}

func TestPaging(t *testing.T) {
	s, _, _ := testSim(t, Options{Seed: 1, Customers: 2500, SubscriptionsPerCustomer: 1})
	srv := httptest.NewServer(s)
	defer srv.Close()

	t.Run("all pages", func(t *testing.T) {
		p := &pager{t: t, srv: srv}
		seen := map[string]int{}
		pages := 0
		var last string
		for !p.done {
			for _, id := range p.page() {
				seen[id]++
				if id <= last {
					t.Fatalf("ids not ascending: %s after %s", id, last)
				}
				last = id
			}
			pages++
		}
		if pages != 5 || len(seen) != 2500 {
			t.Fatalf("%d pages, %d distinct customers", pages, len(seen))
		}
		for id, n := range seen {
			if n != 1 {
				t.Fatalf("customer %s listed %d times", id, n)
			}
		}
	})

	t.Run("changes mid-listing", func(t *testing.T) {
		before := map[string]bool{}
		for _, c := range s.State().Customers {
			before[c.ID] = true
		}
		p := &pager{t: t, srv: srv}
		seen := map[string]int{}
		for _, id := range p.page() {
			seen[id]++
		}
		for _, id := range p.page() {
			seen[id]++
		}
		// Remove customers on both sides of the cursor and add new ones.
		removed := map[string]bool{}
		st := s.State().Customers
		for i := 0; i < 60; i++ {
			id := st[i*41%len(st)].ID
			if !removed[id] {
				removed[id] = true
				if err := s.RemoveCustomer(id); err != nil {
					t.Fatal(err)
				}
			}
		}
		for i := 0; i < 40; i++ {
			s.AddCustomer()
		}
		for !p.done {
			for _, id := range p.page() {
				seen[id]++
			}
		}
		for id, n := range seen {
			if n != 1 {
				t.Fatalf("customer %s listed %d times", id, n)
			}
		}
		for id := range before {
			if !removed[id] && seen[id] != 1 {
				t.Fatalf("untouched customer %s was skipped", id)
			}
		}
	})

	t.Run("bad continuations", func(t *testing.T) {
		p := &pager{t: t, srv: srv}
		p.page()
		good := p.next.Headers[0].Value
		forged := []byte(good)
		forged[len(forged)/2] ^= 1
		for _, tok := range []string{string(forged), good[:len(good)-2], "", "bm90IGEgdG9rZW4"} {
			h := http.Header{"Authorization": {"Bearer t"}}
			if tok != "" {
				h.Set("MS-ContinuationToken", tok)
			}
			if rec := call(s, http.MethodGet, "/v1/customers?size=500&seekOperation=Next", h, ""); rec.Code != http.StatusBadRequest {
				t.Fatalf("token %q: %d", tok, rec.Code)
			}
		}
		other, _, _ := testSim(t, Options{Seed: 2, Customers: 3})
		h := http.Header{"Authorization": {"Bearer t"}, "Ms-Continuationtoken": {good}}
		if rec := call(other, http.MethodGet, "/v1/customers?size=500&seekOperation=Next", h, ""); rec.Code != http.StatusBadRequest {
			t.Fatalf("token of another seed accepted: %d", rec.Code)
		}
	})
}
