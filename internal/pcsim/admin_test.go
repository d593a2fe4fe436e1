package pcsim

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pcwatch/pcwatch/internal/clock"
)

func TestAdminAPI(t *testing.T) {
	s, _, _ := testSim(t, Options{Seed: 3, Customers: 30, Token: "secret"})
	var st State
	admin(t, s, "GET", "/admin/state", "", 200, &st)
	if len(st.Customers) != 30 || !st.At.Equal(t0) || st.Seq != 0 {
		t.Fatalf("state: %d customers at %v seq %d", len(st.Customers), st.At, st.Seq)
	}
	var withJSON State
	admin(t, s, "GET", "/admin/state?json=1", "", 200, &withJSON)
	if len(withJSON.Customers[0].JSON) == 0 || len(withJSON.Customers[0].Subscriptions[0].JSON) == 0 {
		t.Fatal("state?json=1 carries no renderings")
	}

	cust := st.Customers[0].ID
	var res MutateResponse
	admin(t, s, "POST", "/admin/mutate", fmt.Sprintf(`{"op":"purchase","customerId":%q,"purchase":{"quantity":3,"termDuration":"P1M"}}`, cust), 200, &res)
	if res.ID == "" || len(res.Mutations) != 1 || res.Mutations[0].Op != "subscription.created" {
		t.Fatalf("purchase: %+v", res)
	}
	sub := res.ID
	steps := []struct {
		body   string
		code   int
		op     string
		pcCode int
	}{
		{fmt.Sprintf(`{"op":"increaseSeats","customerId":%q,"subscriptionId":%q,"n":2}`, cust, sub), 200, "subscription.quantity", 0},
		{fmt.Sprintf(`{"op":"DecreaseSeats","customerId":%q,"subscriptionId":%q,"n":1}`, cust, sub), 200, "subscription.quantity", 0},
		{fmt.Sprintf(`{"op":"setAutoRenew","customerId":%q,"subscriptionId":%q,"enabled":false}`, cust, sub), 200, "subscription.autorenew", 0},
		{fmt.Sprintf(`{"op":"rename","customerId":%q,"subscriptionId":%q,"friendlyName":"Ops"}`, cust, sub), 200, "subscription.friendlyname", 0},
		{fmt.Sprintf(`{"op":"setAttentionNeeded","customerId":%q,"subscriptionId":%q,"enabled":true}`, cust, sub), 200, "subscription.attention", 0},
		{fmt.Sprintf(`{"op":"setAutoRenew","customerId":%q,"subscriptionId":%q,"enabled":true}`, cust, sub), 200, "subscription.autorenew", 0},
		{fmt.Sprintf(`{"op":"scheduleNextTerm","customerId":%q,"subscriptionId":%q,"instructions":{"quantity":2}}`, cust, sub), 200, "subscription.scheduled", 0},
		{fmt.Sprintf(`{"op":"clearScheduledNextTerm","customerId":%q,"subscriptionId":%q}`, cust, sub), 200, "subscription.scheduled", 0},
		{fmt.Sprintf(`{"op":"setUnknownField","customerId":%q,"subscriptionId":%q,"field":"brandNew","value":{"a":1}}`, cust, sub), 200, "subscription.field", 0},
		{fmt.Sprintf(`{"op":"suspend","customerId":%q,"subscriptionId":%q}`, cust, sub), 200, "subscription.status", 0},
		{fmt.Sprintf(`{"op":"reactivate","customerId":%q,"subscriptionId":%q}`, cust, sub), 200, "subscription.status", 0},
		{fmt.Sprintf(`{"op":"addManagedService","customerId":%q,"serviceId":"PowerBI"}`, cust), 200, "managedservice.added", 0},
		{fmt.Sprintf(`{"op":"removeManagedService","customerId":%q,"serviceId":"PowerBI"}`, cust), 200, "managedservice.removed", 0},
		{fmt.Sprintf(`{"op":"cancel","customerId":%q,"subscriptionId":%q}`, cust, sub), 200, "subscription.status", 0},
		{fmt.Sprintf(`{"op":"removeSubscription","customerId":%q,"subscriptionId":%q}`, cust, sub), 200, "subscription.removed", 0},
		{`{"op":"addCustomer"}`, 200, "customer.added", 0},
		// Errors.
		{`{"op":"teleport"}`, 400, "", 0},
		{`{"op":"increaseSeats"`, 400, "", 0},
		{`{"op":"increaseSeats","customerID2":"x"}`, 400, "", 0},
		{`{"op":"increaseSeats","customerId":"x"}`, 400, "", 0},
		{fmt.Sprintf(`{"op":"increaseSeats","customerId":%q,"subscriptionId":"nope","n":1}`, cust), 404, "", 0},
		{fmt.Sprintf(`{"op":"setAutoRenew","customerId":%q,"subscriptionId":%q}`, cust, sub), 400, "", 0},
	}
	for _, step := range steps {
		var r MutateResponse
		var e adminError
		out := any(&r)
		if step.code != 200 {
			out = &e
		}
		admin(t, s, "POST", "/admin/mutate", step.body, step.code, out)
		if step.code == 200 && (len(r.Mutations) != 1 || r.Mutations[0].Op != step.op) {
			t.Fatalf("%s: %+v", step.body, r)
		}
		if step.code != 200 && (e.Error == "" || e.Code != step.pcCode) {
			t.Fatalf("%s: error body %+v", step.body, e)
		}
	}
	// A refused NCE decrease answers 409 with Partner Center's code.
	_, old := findSub(t, s, func(c CustomerState, x SubscriptionState) bool {
		return x.Kind == KindNCEAnnual && x.Status == "active" && x.CancellationAllowedUntil.Before(t0) && x.RefundableQuantity == 0 && x.Quantity > 1
	})
	var oldCust string
	for _, c := range s.State().Customers {
		for _, x := range c.Subscriptions {
			if x.ID == old.ID {
				oldCust = c.ID
			}
		}
	}
	var e adminError
	admin(t, s, "POST", "/admin/mutate", fmt.Sprintf(`{"op":"decreaseSeats","customerId":%q,"subscriptionId":%q,"n":1}`, oldCust, old.ID), 409, &e)
	if e.Code != 800090 {
		t.Fatalf("409 body %+v", e)
	}

	var log []Mutation
	admin(t, s, "GET", "/admin/mutations?since=3", "", 200, &log)
	if len(log) == 0 || log[0].Seq != 4 {
		t.Fatalf("mutations since 3: %+v", log)
	}
	admin(t, s, "GET", "/admin/mutations?since=x", "", 400, nil)

	var rnd MutateResponse
	admin(t, s, "POST", "/admin/random", `{"n":5}`, 200, &rnd)
	if len(rnd.Mutations) < 5 || rnd.Mutations[0].Cause != CauseRandom {
		t.Fatalf("random: %+v", rnd)
	}
	admin(t, s, "POST", "/admin/random", `{"n":-1}`, 400, nil)

	var f Faults
	admin(t, s, "POST", "/admin/faults", `{"latency":"10ms","rateLimit":{"requests":100,"per":"1s","retryAfter":"2s"},"errorRate":0.01}`, 200, &f)
	if f.Latency != 10*time.Millisecond || f.RateLimit.Per != time.Second || f.ErrorRate != 0.01 || s.CurrentFaults() != f {
		t.Fatalf("faults: %+v", f)
	}
	admin(t, s, "GET", "/admin/faults", "", 200, &f)
	admin(t, s, "POST", "/admin/faults", `{"latency":"10 parsecs"}`, 400, nil)
	admin(t, s, "POST", "/admin/faults", `{}`, 200, &f)
	if f != (Faults{}) || s.CurrentFaults() != (Faults{}) {
		t.Fatalf("{} did not clear: %+v", f)
	}

	admin(t, s, "POST", "/admin/inject", `{"pathPrefix":"/v1/customers","status":503,"retryAfter":"2s"}`, 200, nil)
	admin(t, s, "POST", "/admin/inject", `{"status":42}`, 400, nil)
	rec := call(s, "GET", "/v1/customers", http.Header{"Authorization": {"Bearer secret"}}, "")
	if rec.Code != 503 || rec.Header().Get("Retry-After") != "2" {
		t.Fatalf("injected: %d %v", rec.Code, rec.Header())
	}
	admin(t, s, "POST", "/admin/inject", `{"status":500,"times":3}`, 200, nil)
	admin(t, s, "DELETE", "/admin/inject", "", 204, nil)
	if rec := call(s, "GET", "/v1/customers", http.Header{"Authorization": {"Bearer secret"}}, ""); rec.Code != 200 {
		t.Fatalf("after DELETE /admin/inject: %d", rec.Code)
	}

	var stats Stats
	admin(t, s, "GET", "/admin/stats", "", 200, &stats)
	if stats.Requests["customers"]["503"] != 1 || stats.Requests["customers"]["200"] != 1 || stats.Faults["inject"] != 1 || stats.Total != 2 {
		t.Fatalf("stats: %+v", stats)
	}
	admin(t, s, "DELETE", "/admin/stats", "", 204, nil)
	if s.Stats().Total != 0 {
		t.Fatal("stats not reset")
	}

	var adv struct {
		Now       time.Time  `json:"now"`
		Mutations []Mutation `json:"mutations"`
	}
	admin(t, s, "POST", "/admin/advance", `{"duration":"720h"}`, 200, &adv)
	if !adv.Now.Equal(t0.Add(720*time.Hour)) || len(adv.Mutations) == 0 || adv.Mutations[0].Cause != CauseLifecycle {
		t.Fatalf("advance: now %v, %d mutations", adv.Now, len(adv.Mutations))
	}
	admin(t, s, "POST", "/admin/advance", `{"duration":"-1h"}`, 400, nil)
	admin(t, s, "POST", "/admin/advance", `{"duration":"1h","extra":1}`, 400, nil)

	admin(t, s, "GET", "/admin/nothing", "", 404, nil)
	admin(t, s, "PUT", "/admin/state", "", 405, nil)
	admin(t, s, "GET", "/admin/mutate", "", 405, nil)

	real := New(Options{Seed: 1, Customers: 1, Clock: clock.Accelerated{Start: t0, Epoch: time.Now(), Speed: 1}})
	body := admin(t, real, "POST", "/admin/advance", `{"duration":"1h"}`, 409, nil)
	if !strings.Contains(string(body), "clock.Fake") {
		t.Fatalf("409 body %s", body)
	}
}

func TestRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, RunOptions{
			Addr:        "127.0.0.1:0",
			Sim:         Options{Seed: 1, Customers: 5, Clock: clock.NewFake(t0)},
			MutateEvery: time.Hour,
			Mutations:   1,
			Ready:       func(url string, _ *Sim) { ready <- url },
		})
	}()
	var url string
	select {
	case url = <-ready:
	case err := <-done:
		t.Fatalf("Run returned early: %v", err)
	}
	req, _ := http.NewRequest("GET", url+"/v1/customers", nil)
	req.Header.Set("Authorization", "Bearer t")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if err := Run(context.Background(), RunOptions{Addr: "256.0.0.1:99999"}); err == nil {
		t.Fatal("bad address accepted")
	}
}

func TestAdminFreeze(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	sim := New(Options{Seed: 1, Customers: 3, Clock: clk})
	srv := httptest.NewServer(sim)
	defer srv.Close()
	resp, err := http.Post(srv.URL+"/admin/freeze", "application/json", nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("freeze: %v %v", resp, err)
	}
	resp.Body.Close()
	at := sim.Now()
	clk.Advance(90 * 24 * time.Hour)
	if !sim.Now().Equal(at) {
		t.Errorf("time moved after freeze: %v -> %v", at, sim.Now())
	}
	if muts := sim.Advance(); len(muts) != 0 {
		t.Errorf("%d lifecycle transitions after freeze", len(muts))
	}
}
