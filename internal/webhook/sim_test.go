package webhook_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/pcwatch/pcwatch/internal/clock"
	"github.com/pcwatch/pcwatch/internal/pcsim"
	"github.com/pcwatch/pcwatch/internal/webhook"
)

// simEnv is a simulator served over TLS (its certificate URL is https),
// signing with goodSigner, and a watcher-side handler trusting the test CA
// and the simulator's host.
type simEnv struct {
	*env
	sim    *pcsim.Sim
	simSrv *httptest.Server
	client *webhook.Client
	sleeps []time.Duration
	smu    sync.Mutex
}

func newSimEnv(t *testing.T, cfg pcsim.WebhookConfig) *simEnv {
	t.Helper()
	pki(t)
	se := &simEnv{}
	se.sim = pcsim.New(pcsim.Options{Seed: 7, Customers: 3, Clock: clock.NewFake(epoch), Webhooks: cfg, WebhookSigner: goodSigner,
		Sleep: func(ctx context.Context, d time.Duration) error {
			se.smu.Lock()
			se.sleeps = append(se.sleeps, d)
			se.smu.Unlock()
			return ctx.Err()
		}})
	se.simSrv = httptest.NewTLSServer(se.sim)
	t.Cleanup(se.simSrv.Close)
	u, _ := url.Parse(se.simSrv.URL)
	se.env = newEnv(t, func(o *webhook.Options) {
		o.Verifier = webhook.NewVerifier(webhook.VerifierOptions{AllowedHosts: []string{u.Host}, Roots: trusted.Roots,
			HTTPClient: se.simSrv.Client(), Clock: o.Clock})
	})
	se.env.known = map[string]bool{}
	for _, c := range se.sim.State().Customers {
		se.env.known[c.ID] = true
	}
	c, err := webhook.NewClient(webhook.ClientOptions{BaseURL: se.simSrv.URL, HTTPClient: se.simSrv.Client(),
		TokenSource: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "t"})})
	if err != nil {
		t.Fatal(err)
	}
	se.client = c
	return se
}

func (se *simEnv) commands(out *bytes.Buffer) webhook.Commands {
	if out == nil {
		out = &bytes.Buffer{}
	}
	return webhook.Commands{Client: se.client, Out: out, URL: se.srv.URL + "/webhooks/partner-center", AllowHTTP: true,
		Sleep: func(ctx context.Context, d time.Duration) error {
			return se.sim.DrainWebhooks(ctx)
		}}
}

// changeSeats changes one subscription's seats and returns its ids.
func (se *simEnv) changeSeats(t *testing.T) (string, string) {
	t.Helper()
	for _, c := range se.sim.State().Customers {
		for _, s := range c.Subscriptions {
			if _, err := se.sim.Mutate(pcsim.MutateRequest{Op: "increaseSeats", CustomerID: c.ID, SubscriptionID: s.ID, N: 1}); err == nil {
				return c.ID, s.ID
			}
		}
	}
	t.Fatal("no subscription accepts a seat increase")
	return "", ""
}

func TestSimSignedCallbacksVerifiedEndToEnd(t *testing.T) {
	se := newSimEnv(t, pcsim.WebhookConfig{Delay: 90 * time.Second})
	var out bytes.Buffer
	cmds := se.commands(&out)
	ctx := context.Background()
	if err := cmds.Register(ctx); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "registered: "+cmds.URL) {
		t.Errorf("register output:\n%s", out.String())
	}
	cust, sub := se.changeSeats(t)
	if err := se.sim.DrainWebhooks(ctx); err != nil {
		t.Fatal(err)
	}
	hs := se.hints()
	if len(hs) != 1 || hs[0].CustomerID != cust || len(hs[0].Subscriptions) != 1 || hs[0].Subscriptions[0] != sub {
		t.Fatalf("hints %+v, want one of %s/%s (metrics %v, deliveries %+v)", hs, cust, sub, se.m.n, se.sim.WebhookLog())
	}
	if a := hs[0].Actors[sub]; a == nil || a.OperationType != webhook.EventSubscriptionUpdated || a.Source != webhook.Source {
		t.Errorf("actor %+v", a)
	}
	se.smu.Lock()
	slept := append([]time.Duration(nil), se.sleeps...)
	se.smu.Unlock()
	if len(slept) == 0 || slept[0] <= 0 || slept[0] > 90*time.Second {
		t.Errorf("the delivery did not wait out the delay: %v", slept)
	}

	// A new customer is announced as the documented relationship event.
	res, err := se.sim.Mutate(pcsim.MutateRequest{Op: "addCustomer"})
	if err != nil {
		t.Fatal(err)
	}
	se.mu.Lock()
	se.known[res.ID] = true
	se.mu.Unlock()
	if err := se.sim.DrainWebhooks(ctx); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, h := range se.hints() {
		if h.CustomerID == res.ID {
			found = h.Actors[""] != nil && h.Actors[""].OperationType == webhook.EventResellerAccepted
		}
	}
	if !found {
		t.Errorf("no hint of the new customer %s: %+v", res.ID, se.hints())
	}

	// test: the validation event is delivered and answered 200 (no hint).
	out.Reset()
	if err := cmds.Test(ctx); err != nil {
		t.Fatalf("test: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "status: completed") || !strings.Contains(out.String(), " OK") {
		t.Errorf("test output:\n%s", out.String())
	}
	if se.m.get(webhook.ResultIgnored+"/"+webhook.ReasonTestEvent) != 1 {
		t.Errorf("metrics %v", se.m.n)
	}
	st := se.sim.WebhookStatus()
	if st.Delivered != 3 || st.Failed != 0 {
		t.Errorf("sim status %+v", st)
	}
}

func TestSimLossAndOff(t *testing.T) {
	for _, cfg := range []pcsim.WebhookConfig{{LossRate: 1}, {Off: true}} {
		se := newSimEnv(t, cfg)
		if err := se.commands(nil).Register(context.Background()); err != nil {
			t.Fatal(err)
		}
		se.changeSeats(t)
		if err := se.sim.DrainWebhooks(context.Background()); err != nil {
			t.Fatal(err)
		}
		if hs := se.hints(); len(hs) != 0 {
			t.Errorf("%+v: hints %+v", cfg, hs)
		}
		st := se.sim.WebhookStatus()
		if st.Queued != 0 || (cfg.LossRate == 1 && st.Lost != 1) {
			t.Errorf("%+v: status %+v", cfg, st)
		}
	}
}

func TestSimForgedCallbackRejected(t *testing.T) {
	// The simulator signs with a leaf of the untrusted CA: every callback
	// is refused and retried until the attempts run out.
	pki(t)
	se := newSimEnv(t, pcsim.WebhookConfig{Attempts: 2})
	bad := *foreign
	se.sim = pcsim.New(pcsim.Options{Seed: 7, Customers: 3, Clock: clock.NewFake(epoch), WebhookSigner: &bad,
		Webhooks: pcsim.WebhookConfig{Attempts: 2}, Sleep: func(ctx context.Context, _ time.Duration) error { return ctx.Err() }})
	se.simSrv.Config.Handler = se.sim
	se.known = map[string]bool{}
	for _, c := range se.sim.State().Customers {
		se.known[c.ID] = true
	}
	if err := se.commands(nil).Register(context.Background()); err != nil {
		t.Fatal(err)
	}
	se.changeSeats(t)
	if err := se.sim.DrainWebhooks(context.Background()); err != nil {
		t.Fatal(err)
	}
	if hs := se.hints(); len(hs) != 0 {
		t.Errorf("hints %+v", hs)
	}
	if st := se.sim.WebhookStatus(); st.Failed != 1 || st.Attempts != 2 {
		t.Errorf("status %+v", st)
	}
	if se.m.get(webhook.ResultRejected+"/"+webhook.ReasonCertificateUntrusted) != 2 {
		t.Errorf("metrics %v , want both attempts refused as untrusted", se.m.n)
	}
}

func TestRegisterRefusesForeignURL(t *testing.T) {
	se := newSimEnv(t, pcsim.WebhookConfig{})
	ctx := context.Background()
	other := "https://other-tool.example.com/hook"
	if _, err := se.client.Create(ctx, webhook.Registration{WebhookURL: other, WebhookEvents: []string{"subscription-updated"}}); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmds := se.commands(&out)
	if err := cmds.Register(ctx); !errors.Is(err, webhook.ErrForeignRegistration) || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("register over a foreign URL: %v", err)
	}
	if err := cmds.Unregister(ctx); !errors.Is(err, webhook.ErrForeignRegistration) {
		t.Fatalf("unregister a foreign URL: %v", err)
	}
	if reg, _ := se.client.Get(ctx); reg == nil || reg.WebhookURL != other {
		t.Fatalf("the foreign registration changed: %+v", reg)
	}
	out.Reset()
	if err := cmds.Status(ctx); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "owner: another tool") {
		t.Errorf("status:\n%s", out.String())
	}
	cmds.Force = true
	out.Reset()
	if err := cmds.Register(ctx); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "replaced: "+other) {
		t.Errorf("register --force:\n%s", out.String())
	}
	if reg, _ := se.client.Get(ctx); reg == nil || reg.WebhookURL != cmds.URL {
		t.Fatalf("not replaced: %+v", reg)
	}
	cmds.Force = false
	if err := cmds.Unregister(ctx); err != nil {
		t.Fatal(err)
	}
	if reg, err := se.client.Get(ctx); err != nil || reg != nil {
		t.Fatalf("after unregister: %+v, %v", reg, err)
	}
	out.Reset()
	if err := cmds.Status(ctx); err != nil || !strings.Contains(out.String(), "registration: none") {
		t.Errorf("status after unregister: %v\n%s", err, out.String())
	}
}

func TestRegistrationClientErrors(t *testing.T) {
	se := newSimEnv(t, pcsim.WebhookConfig{})
	ctx := context.Background()
	// test-created is required before a validation event.
	cmds := se.commands(nil)
	cmds.Events = []string{"subscription-updated"}
	if err := cmds.Register(ctx); err != nil {
		t.Fatal(err)
	}
	var ae *webhook.APIError
	if err := cmds.Test(ctx); !errors.As(err, &ae) || ae.Status != http.StatusBadRequest {
		t.Fatalf("test without test-created: %v", err)
	}
	// A bad token is named with its fix.
	bad, _ := webhook.NewClient(webhook.ClientOptions{BaseURL: se.simSrv.URL, HTTPClient: se.simSrv.Client(),
		TokenSource: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: " "})})
	if _, err := bad.Get(ctx); !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized || !strings.Contains(err.Error(), "PCWATCH_PC_") {
		t.Fatalf("bad token: %v", err)
	}
	if err := (webhook.Commands{Client: se.client, URL: "http://insecure.example.com/x"}).Register(ctx); err == nil || !strings.Contains(err.Error(), "https") {
		t.Fatalf("http URL accepted: %v", err)
	}
}
