package pcsim

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"testing"
	"time"
)

// deadURL refuses connections: deliveries fail at once.
const deadURL = "http://127.0.0.1:1/hook"

func register(t *testing.T, s *Sim, events string) {
	t.Helper()
	rec := call(s, http.MethodPost, "/webhooks/v1/registration", nil, `{"WebhookUrl":"`+deadURL+`","WebhookEvents":`+events+`}`)
	if rec.Code != http.StatusOK {
		t.Fatalf("register: %d %s", rec.Code, rec.Body.Bytes())
	}
}

func TestWebhookRegistrationAPI(t *testing.T) {
	s, _, _ := testSim(t, Options{Seed: 1, Customers: 1})
	body := `{"WebhookUrl":"https://a.example.com/hook","WebhookEvents":["subscription-updated","test-created"]}`
	steps := []struct {
		method, path, body string
		want               int
	}{
		{http.MethodGet, "/webhooks/v1/registration", "", 404},
		{http.MethodPut, "/webhooks/v1/registration", body, 404},
		{http.MethodDelete, "/webhooks/v1/registration", "", 404},
		{http.MethodPost, "/webhooks/v1/registration", `{"WebhookUrl":""}`, 400},
		{http.MethodPost, "/webhooks/v1/registration", `{"WebhookUrl":"ftp://x","WebhookEvents":["a"]}`, 400},
		{http.MethodPost, "/webhooks/v1/registration", body, 200},
		{http.MethodPost, "/webhooks/v1/registration", body, 409},
		{http.MethodGet, "/webhooks/v1/registration", "", 200},
		{http.MethodPut, "/webhooks/v1/registration", body, 200},
		{http.MethodGet, "/webhooks/v1/registration/events", "", 200},
		{http.MethodPatch, "/webhooks/v1/registration", "", 405},
		{http.MethodGet, "/webhooks/v1/nothing", "", 404},
		{http.MethodDelete, "/webhooks/v1/registration", "", 204},
		{http.MethodGet, "/webhooks/v1/registration", "", 404},
	}
	for i, st := range steps {
		rec := call(s, st.method, st.path, nil, st.body)
		if rec.Code != st.want {
			t.Fatalf("step %d %s %s: %d, want %d: %s", i, st.method, st.path, rec.Code, st.want, rec.Body.Bytes())
		}
		if i == 5 {
			reg := decode[WebhookRegistration](t, rec.Body.Bytes())
			if reg.SubscriberID == "" || reg.WebhookURL != "https://a.example.com/hook" || len(reg.WebhookEvents) != 2 {
				t.Errorf("registration %+v", reg)
			}
		}
	}
	if rec := call(s, http.MethodGet, "/webhooks/v1/registration", http.Header{}, ""); rec.Code != http.StatusUnauthorized {
		t.Errorf("without a token: %d", rec.Code)
	}
}

func TestWebhookValidationThrottleAndReport(t *testing.T) {
	s, _, wall := testSim(t, Options{Seed: 1, Customers: 1, Webhooks: WebhookConfig{Attempts: 2}})
	if rec := call(s, http.MethodPost, "/webhooks/v1/registration/validationEvents", nil, ""); rec.Code != http.StatusBadRequest {
		t.Fatalf("without a registration: %d", rec.Code)
	}
	register(t, s, `["test-created"]`)
	var corr string
	for i := 0; i < 2; i++ {
		rec := call(s, http.MethodPost, "/webhooks/v1/registration/validationEvents", nil, "")
		if rec.Code != http.StatusOK {
			t.Fatalf("validation %d: %d %s", i, rec.Code, rec.Body.Bytes())
		}
		corr = decode[map[string]string](t, rec.Body.Bytes())["correlationId"]
	}
	if rec := call(s, http.MethodPost, "/webhooks/v1/registration/validationEvents", nil, ""); rec.Code != http.StatusTooManyRequests {
		t.Fatalf("third in a minute: %d, want 429", rec.Code)
	}
	wall.Advance(61 * time.Second)
	if rec := call(s, http.MethodPost, "/webhooks/v1/registration/validationEvents", nil, ""); rec.Code != http.StatusOK {
		t.Fatalf("a minute later: %d", rec.Code)
	}
	if err := s.DrainWebhooks(context.Background()); err != nil {
		t.Fatal(err)
	}
	v := decode[webhookValidation](t, mustGet(t, s, "/webhooks/v1/registration/validationEvents/"+corr))
	if v.Status != "failed" || len(v.Results) != 2 || !v.Results[0].SystemError || v.CallbackURL != deadURL {
		t.Errorf("report %+v", v)
	}
	if code, _ := get(s, "/webhooks/v1/registration/validationEvents/nope"); code != http.StatusNotFound {
		t.Errorf("unknown correlation id: %d", code)
	}
}

func TestWebhookLossDeterministicUnderSeed(t *testing.T) {
	run := func() ([]uint64, WebhookStatus) {
		s, _, _ := testSim(t, Options{Seed: 42, Customers: 20, Webhooks: WebhookConfig{LossRate: 0.5, Attempts: 1}})
		register(t, s, `["subscription-updated","reseller-relationship-accepted-by-customer"]`)
		s.RandomMutations(200)
		if err := s.DrainWebhooks(context.Background()); err != nil {
			t.Fatal(err)
		}
		var seqs []uint64
		for _, d := range s.WebhookLog() {
			seqs = append(seqs, d.MutationSeq)
		}
		return seqs, s.WebhookStatus()
	}
	a, sa := run()
	b, sb := run()
	if sa.Lost == 0 || sa.Queued == 0 || sa.Lost != sb.Lost || sa.Queued != sb.Queued || len(a) != len(b) {
		t.Fatalf("not deterministic or degenerate: %+v vs %+v", sa, sb)
	}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("delivery %d: mutation %d vs %d", i, a[i], b[i])
		}
	}
}

func TestAdminWebhooks(t *testing.T) {
	s, _, _ := testSim(t, Options{Seed: 1, Customers: 1})
	var st WebhookStatus
	admin(t, s, http.MethodPost, "/admin/webhooks", `{"delay":"2s","lossRate":0.25,"off":true}`, 200, &st)
	if st.Config.Delay != 2*time.Second || st.Config.LossRate != 0.25 || !st.Config.Off {
		t.Errorf("config %+v", st.Config)
	}
	admin(t, s, http.MethodPost, "/admin/webhooks", `{"lossRate":2}`, 400, nil)
	admin(t, s, http.MethodPost, "/admin/webhooks", `{"bogus":1}`, 400, nil)
	admin(t, s, http.MethodGet, "/admin/webhooks", "", 200, &st)
	if st.Config.Delay != 2*time.Second {
		t.Errorf("a refused config replaced the one in force: %+v", st.Config)
	}
	admin(t, s, http.MethodGet, "/admin/webhooks/deliveries", "", 200, nil)
	admin(t, s, http.MethodDelete, "/admin/webhooks", "", 405, nil)
}

func TestWebhookCertificateServed(t *testing.T) {
	pki, err := NewTestPKI("Microsoft Corporation", t0)
	if err != nil {
		t.Fatal(err)
	}
	sg, err := pki.Signer("pcnotifications-dispatch.microsoft.com", "")
	if err != nil {
		t.Fatal(err)
	}
	s, _, _ := testSim(t, Options{Seed: 1, WebhookSigner: sg})
	rec := call(s, http.MethodGet, "/webhooks/cert/pcnotifications-dispatch.microsoft.com.cer", http.Header{}, "")
	if rec.Code != http.StatusOK {
		t.Fatalf("cert: %d", rec.Code)
	}
	blk, _ := pem.Decode(rec.Body.Bytes())
	if blk == nil {
		t.Fatal("not PEM")
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: pki.Roots, CurrentTime: t0, DNSName: "pcnotifications-dispatch.microsoft.com"}); err != nil {
		t.Errorf("served leaf does not verify: %v", err)
	}
	if rec := call(s, http.MethodGet, "/webhooks/cert/other.cer", http.Header{}, ""); rec.Code != http.StatusNotFound {
		t.Errorf("other cert: %d", rec.Code)
	}
}
