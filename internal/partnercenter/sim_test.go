package partnercenter_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/pcwatch/pcwatch/internal/clock"
	pc "github.com/pcwatch/pcwatch/internal/partnercenter"
	"github.com/pcwatch/pcwatch/internal/pcsim"
)

// simEnv is a simulator behind a real HTTP server and a client whose waits
// advance a fake wall clock shared with the simulator's rate limiter, so
// Retry-After is honoured without the test sleeping.
type simEnv struct {
	sim    *pcsim.Sim
	client *pc.Client
	wall   *clock.Fake
	mu     sync.Mutex
	waited time.Duration
}

func newSimEnv(t *testing.T, customers int, mod func(*pc.Options)) *simEnv {
	t.Helper()
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	e := &simEnv{wall: clock.NewFake(start)}
	e.sim = pcsim.New(pcsim.Options{Seed: 7, Customers: customers, Clock: clock.NewFake(start), Wall: e.wall, Token: "sim-token"})
	srv := httptest.NewServer(e.sim)
	t.Cleanup(srv.Close)
	o := pc.Options{
		BaseURL:           srv.URL,
		TokenSource:       oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "sim-token"}),
		HTTPClient:        srv.Client(),
		RequestsPerMinute: 60000,
		Burst:             1000,
		Clock:             e.wall,
		Sleep: func(ctx context.Context, d time.Duration) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			e.mu.Lock()
			e.waited += d
			e.mu.Unlock()
			e.wall.Advance(d)
			return nil
		},
	}
	if mod != nil {
		mod(&o)
	}
	c, err := pc.New(o)
	if err != nil {
		t.Fatal(err)
	}
	e.client = c
	return e
}

func TestSimListCustomers2500(t *testing.T) {
	e := newSimEnv(t, 2500, func(o *pc.Options) { o.PageSize = 500 })
	got, err := e.client.ListCustomers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, c := range got {
		if seen[c.ID] {
			t.Fatalf("customer %s listed twice", c.ID)
		}
		seen[c.ID] = true
	}
	if len(seen) != 2500 {
		t.Fatalf("listed %d distinct customers, want 2500", len(seen))
	}
	if n := e.client.Stats().Requests; n != 5 {
		t.Errorf("%d requests, want 5 pages of 500", n)
	}
	// Every customer's subscriptions, managed services and products decode.
	ctx := context.Background()
	for _, c := range got[:25] {
		subs, err := e.client.ListSubscriptions(ctx, c.ID, pc.SubscriptionFilter{})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range subs {
			if s.ID == "" || len(s.Raw) == 0 || !s.CreationDate.Valid() {
				t.Fatalf("subscription decoded badly: %+v", s)
			}
			if s.IsNCE() {
				one, err := e.client.GetSubscription(ctx, c.ID, s.ID)
				if err != nil || one.RefundableQuantity == nil {
					t.Fatalf("GetSubscription(%s) = %+v, %v; want refundableQuantity", s.ID, one, err)
				}
			}
		}
		if _, err := e.client.ListManagedServices(ctx, c.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := e.client.ListProducts(ctx, c.ID, "OnlineServices"); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSim429StormIsHonoured(t *testing.T) {
	e := newSimEnv(t, 600, func(o *pc.Options) { o.PageSize = 50 })
	e.sim.SetFaults(pcsim.Faults{RateLimit: pcsim.RateLimit{Requests: 3, Per: 10 * time.Second, RetryAfter: 10 * time.Second}})
	ctx := context.Background()
	customers, err := e.client.ListCustomers(ctx)
	if err != nil {
		t.Fatalf("listing under a 429 storm failed: %v", err)
	}
	if len(customers) != 600 {
		t.Fatalf("listed %d, want 600", len(customers))
	}
	// Four workers share the client, its limiter and its Retry-After pause.
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < 40; i += 4 {
				if _, err := e.client.ListSubscriptions(ctx, customers[i].ID, pc.SubscriptionFilter{}); err != nil {
					errs <- err
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("request failed under the storm: %v", err)
	}
	st := e.client.Stats()
	if st.Throttled == 0 || e.sim.Stats().Throttled != int64(st.Throttled) {
		t.Errorf("client saw %d 429s, simulator sent %d", st.Throttled, e.sim.Stats().Throttled)
	}
	// 52 requests at 3 per 10s need at least ~170s of waiting.
	if e.waited < 160*time.Second {
		t.Errorf("waited %v in total; Retry-After was not honoured", e.waited)
	}
}

func TestSimMidListingFailure(t *testing.T) {
	t.Run("retried", func(t *testing.T) {
		e := newSimEnv(t, 1200, func(o *pc.Options) { o.PageSize = 500 })
		e.sim.SetFaults(pcsim.Faults{FailCustomerPage: pcsim.PageFault{Page: 1, Times: 2, Status: 503}})
		got, err := e.client.ListCustomers(context.Background())
		if err != nil || len(got) != 1200 {
			t.Fatalf("got %d, %v", len(got), err)
		}
	})
	t.Run("persistent", func(t *testing.T) {
		e := newSimEnv(t, 1200, func(o *pc.Options) { o.PageSize = 500; o.RetryBudget = 2 * time.Minute })
		e.sim.SetFaults(pcsim.Faults{FailCustomerPage: pcsim.PageFault{Page: 2, Times: -1, Status: 500}})
		got, err := e.client.ListCustomers(context.Background())
		if got != nil || err == nil {
			t.Fatalf("got %d customers, err %v; want the listing to fail as a whole", len(got), err)
		}
		var ae *pc.APIError
		if !errors.As(err, &ae) || ae.StatusCode != 500 || !errors.Is(err, pc.ErrServer) {
			t.Fatalf("err = %v", err)
		}
		for _, want := range []string{"listing customers failed at page 3 after 1000 items", "HTTP 500", "request-id", "giving up after 4 attempts"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
		}
	})
}

func TestSimBadBodies(t *testing.T) {
	for _, tt := range []struct {
		name   string
		faults pcsim.Faults
		want   string
	}{
		{"malformed", pcsim.Faults{MalformedRate: 1}, "not valid JSON"},
		{"truncated", pcsim.Faults{TruncateRate: 1}, "reading HTTP 200 response body"},
		{"reset", pcsim.Faults{ResetRate: 1}, "giving up after"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newSimEnv(t, 10, func(o *pc.Options) { o.RetryBudget = 20 * time.Second })
			customers, err := e.client.ListCustomers(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			e.sim.SetFaults(tt.faults)
			_, err = e.client.ListSubscriptions(context.Background(), customers[0].ID, pc.SubscriptionFilter{})
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "/v1/customers/"+customers[0].ID+"/subscriptions") {
				t.Fatalf("err = %v; want it to say %q and name the endpoint", err, tt.want)
			}
			// Once the fault clears, the same client works.
			e.sim.SetFaults(pcsim.Faults{})
			if _, err := e.client.ListSubscriptions(context.Background(), customers[0].ID, pc.SubscriptionFilter{}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestSimMPNFilterAndAuth(t *testing.T) {
	e := newSimEnv(t, 60, nil)
	ctx := context.Background()
	customers, _ := e.client.ListCustomers(ctx)
	found := false
	for _, c := range customers {
		all, err := e.client.ListSubscriptions(ctx, c.ID, pc.SubscriptionFilter{})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range all {
			if s.PartnerID == "" {
				continue
			}
			only, err := e.client.ListSubscriptions(ctx, c.ID, pc.SubscriptionFilter{MPNID: s.PartnerID})
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range only {
				if o.PartnerID != s.PartnerID {
					t.Fatalf("mpn_id=%s returned partner %s", s.PartnerID, o.PartnerID)
				}
			}
			found = len(only) > 0 && len(only) <= len(all)
			break
		}
		if found {
			break
		}
	}
	if !found {
		t.Fatal("no reseller subscription in the dataset")
	}
	bad, _ := pc.New(pc.Options{BaseURL: e.client.BaseURL(), TokenSource: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "wrong"})})
	if _, err := bad.ListCustomers(ctx); !errors.Is(err, pc.ErrUnauthorized) {
		t.Errorf("wrong token: %v, want ErrUnauthorized", err)
	}
	if _, err := e.client.ListSubscriptions(ctx, "00000000-0000-0000-0000-000000000000", pc.SubscriptionFilter{}); !errors.Is(err, pc.ErrNotFound) {
		t.Errorf("unknown customer: %v, want ErrNotFound", err)
	}
	if _, err := e.client.ListProducts(ctx, customers[0].ID, "AzureReservationsCosmosDb"); !errors.Is(err, pc.ErrForbidden) {
		t.Errorf("forbidden target view: %v, want ErrForbidden", err)
	}
}
