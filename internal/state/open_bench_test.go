package state_test

import (
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pcwatch/pcwatch/internal/clock"
	"github.com/pcwatch/pcwatch/internal/diff"
	pc "github.com/pcwatch/pcwatch/internal/partnercenter"
	"github.com/pcwatch/pcwatch/internal/pcsim"
	"github.com/pcwatch/pcwatch/internal/resource"
	"github.com/pcwatch/pcwatch/internal/state"
)

// BenchmarkOpen100k is what Open's check costs at start-up for the state
// file of 10,000 customers x 10 subscriptions, built as the performance
// harness builds its baseline (the simulator's listings through the diff):
//
//	go test -run=NONE -bench=Open100k -benchtime=5x ./internal/state/
//
// It reports the file size; ns/op is one Open (lock, structure and record
// checks) and Close.
func BenchmarkOpen100k(b *testing.B) {
	path := filepath.Join(b.TempDir(), state.FileName)
	if keep := os.Getenv("PCW100K_KEEP"); keep != "" {
		path = keep
	}
	build100k(b, path, 10000, 10)
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		st, err := state.Open(path, state.Options{})
		if err != nil {
			b.Fatal(err)
		}
		st.Close()
	}
	b.ReportMetric(float64(fi.Size())/(1<<20), "file-MB")
}

func build100k(b *testing.B, path string, customers, subs int) {
	b.Helper()
	now := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	sim := pcsim.New(pcsim.Options{Seed: 1, Customers: customers, SubscriptionsPerCustomer: subs, Clock: clock.NewFake(now), Token: "t"})
	st, err := state.Open(path, state.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	for _, c := range sim.State().Customers {
		rr := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/v1/customers/"+c.ID+"/subscriptions", nil)
		req.Header.Set("Authorization", "Bearer t")
		sim.ServeHTTP(rr, req)
		var coll pc.Collection[pc.Subscription]
		if err := json.Unmarshal(rr.Body.Bytes(), &coll); err != nil {
			b.Fatal(err)
		}
		if _, err := diff.CommitCustomer(st, &diff.Listing{CustomerID: c.ID, CustomerName: c.CompanyName,
			Kinds: []*resource.Kind{resource.Subscriptions}, Entities: resource.SubscriptionEntities(coll.Items)},
			diff.Options{Source: "bench", Now: now, Cycle: 1}); err != nil {
			b.Fatal(err)
		}
	}
}
