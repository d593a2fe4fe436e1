package webhook_test

import (
	"bytes"
	"errors"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pcwatch/pcwatch/internal/state"
	"github.com/pcwatch/pcwatch/internal/webhook"
)

func TestValidCallbackStoresDurableHintWithActor(t *testing.T) {
	e := newEnv(t, nil)
	body := e.body(custA, subA)
	if got := e.post(http.MethodPost, body, e.signed(body, goodSigner, "good")); got != http.StatusOK {
		t.Fatalf("status %d, want 200", got)
	}
	hs := e.hints()
	if len(hs) != 1 {
		t.Fatalf("hints %+v, want one", hs)
	}
	h := hs[0]
	if h.CustomerID != custA || len(h.Subscriptions) != 1 || h.Subscriptions[0] != subA || h.Origin != webhook.Source {
		t.Errorf("hint %+v", h)
	}
	a := h.Actors[subA]
	if a == nil || a.Source != webhook.Source || a.OperationType != webhook.EventSubscriptionUpdated ||
		!a.OperationDate.Equal(e.clock.Now().Add(-time.Minute)) {
		t.Errorf("actor %+v", a)
	}
	if e.m.get(webhook.ResultAccepted+"/"+webhook.ReasonHinted) != 1 || e.kicks != 1 {
		t.Errorf("metrics %v, kicks %d", e.m.n, e.kicks)
	}
	// The certificate is cached: a second callback fetches nothing.
	body2 := e.body(custA, "other-sub")
	if got := e.post(http.MethodPost, body2, e.signed(body2, goodSigner, "good")); got != http.StatusOK {
		t.Fatalf("second status %d", got)
	}
	e.certs.mu.Lock()
	fetches := e.certs.fetches
	e.certs.mu.Unlock()
	if fetches != 1 {
		t.Errorf("certificate fetched %d times, want 1 (cached)", fetches)
	}
}

func TestRejected(t *testing.T) {
	pki(t)
	type req struct {
		method string
		body   []byte
		hdr    http.Header
	}
	cases := []struct {
		name   string
		make   func(e *env) req
		status int
		reason string
	}{
		{"forged signature", func(e *env) req {
			b := e.body(custA, subA)
			h := e.signed(b, goodSigner, "good")
			b = bytes.Replace(b, []byte(subA), []byte("b1b2c3d4-0000-4000-8000-000000000009"), 1)
			return req{http.MethodPost, b, h}
		}, 401, webhook.ReasonBadSignature},
		{"signed by another key", func(e *env) req {
			b := e.body(custA, subA)
			h := e.signed(b, foreign, "foreign")
			h.Set("X-MS-Certificate-Url", e.certs.url("good", goodSigner))
			return req{http.MethodPost, b, h}
		}, 401, webhook.ReasonBadSignature},
		{"wrong cert host", func(e *env) req {
			b := e.body(custA, subA)
			h := e.signed(b, goodSigner, "good")
			h.Set("X-MS-Certificate-Url", strings.Replace(h.Get("X-MS-Certificate-Url"), "127.0.0.1", "localhost", 1))
			return req{http.MethodPost, b, h}
		}, 401, webhook.ReasonCertificateHost},
		{"http cert url", func(e *env) req {
			b := e.body(custA, subA)
			h := e.signed(b, goodSigner, "good")
			h.Set("X-MS-Certificate-Url", strings.Replace(h.Get("X-MS-Certificate-Url"), "https:", "http:", 1))
			return req{http.MethodPost, b, h}
		}, 401, webhook.ReasonCertificateHost},
		{"untrusted CA", func(e *env) req {
			b := e.body(custA, subA)
			return req{http.MethodPost, b, e.signed(b, foreign, "foreign")}
		}, 401, webhook.ReasonCertificateUntrusted},
		{"wrong cert name", func(e *env) req {
			b := e.body(custA, subA)
			return req{http.MethodPost, b, e.signed(b, wrongNameSigner, "wrongname")}
		}, 401, webhook.ReasonCertificateName},
		{"no signature", func(e *env) req {
			b := e.body(custA, subA)
			h := e.signed(b, goodSigner, "good")
			h.Del("Authorization")
			return req{http.MethodPost, b, h}
		}, 401, webhook.ReasonNoSignature},
		{"bearer scheme", func(e *env) req {
			b := e.body(custA, subA)
			h := e.signed(b, goodSigner, "good")
			h.Set("Authorization", "Bearer abc")
			return req{http.MethodPost, b, h}
		}, 401, webhook.ReasonNoSignature},
		{"algorithm", func(e *env) req {
			b := e.body(custA, subA)
			h := e.signed(b, goodSigner, "good")
			h.Set("X-MS-Signature-Algorithm", "rsa-sha1")
			return req{http.MethodPost, b, h}
		}, 401, webhook.ReasonAlgorithm},
		{"no cert url", func(e *env) req {
			b := e.body(custA, subA)
			h := e.signed(b, goodSigner, "good")
			h.Del("X-MS-Certificate-Url")
			return req{http.MethodPost, b, h}
		}, 401, webhook.ReasonNoCertificateURL},
		{"cert not found", func(e *env) req {
			b := e.body(custA, subA)
			h := e.signed(b, goodSigner, "good")
			h.Set("X-MS-Certificate-Url", e.certs.ts.URL+"/cert/missing.cer")
			return req{http.MethodPost, b, h}
		}, 401, webhook.ReasonCertificateUnavailable},
		{"oversized body", func(e *env) req {
			b := append(e.body(custA, subA), bytes.Repeat([]byte(" "), webhook.DefaultMaxBodyBytes)...)
			return req{http.MethodPost, b, e.signed(b, goodSigner, "good")}
		}, 413, webhook.ReasonTooLarge},
		{"wrong method", func(e *env) req {
			b := e.body(custA, subA)
			return req{http.MethodPut, b, e.signed(b, goodSigner, "good")}
		}, 405, webhook.ReasonMethod},
		{"not json", func(e *env) req {
			b := e.body(custA, subA)
			h := e.signed(b, goodSigner, "good")
			h.Set("Content-Type", "text/plain")
			return req{http.MethodPost, b, h}
		}, 415, webhook.ReasonContentType},
		{"malformed json", func(e *env) req {
			b := []byte(`{"EventName":"subscription-updated",`)
			return req{http.MethodPost, b, e.signed(b, goodSigner, "good")}
		}, 400, webhook.ReasonMalformed},
		{"stale", func(e *env) req {
			b := []byte(`{"EventName":"subscription-updated","ResourceUri":"https://x/webhooks/v1/customers/` + custA +
				`/subscriptions/` + subA + `","ResourceChangeUtcDate":"2017-11-16T16:19:06.3520276+00:00"}`)
			return req{http.MethodPost, b, e.signed(b, goodSigner, "good")}
		}, 400, webhook.ReasonStale},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, nil)
			r := c.make(e)
			if got := e.post(r.method, r.body, r.hdr); got != c.status {
				t.Errorf("status %d, want %d (metrics %v)", got, c.status, e.m.n)
			}
			if hs := e.hints(); len(hs) != 0 {
				t.Errorf("hints %+v, want none", hs)
			}
			if e.m.get(webhook.ResultRejected+"/"+c.reason) != 1 || e.m.total() != 1 {
				t.Errorf("metrics %v, want one %s", e.m.n, c.reason)
			}
			if e.kicks != 0 {
				t.Errorf("kicked %d times", e.kicks)
			}
		})
	}
}

func TestReplayRejected(t *testing.T) {
	e := newEnv(t, nil)
	body := e.body(custA, subA)
	h := e.signed(body, goodSigner, "good")
	if got := e.post(http.MethodPost, body, h); got != http.StatusOK {
		t.Fatalf("first: %d", got)
	}
	// Consume the hint, as a refresh would, to see that the replay adds none.
	hs := e.hints()
	if err := e.store.Commit(&state.Change{HintsDone: []state.HintDone{{CustomerID: custA, Seq: hs[0].Seq}}}); err != nil {
		t.Fatal(err)
	}
	if got := e.post(http.MethodPost, body, h); got != http.StatusBadRequest {
		t.Fatalf("replay: %d, want 400", got)
	}
	if hs := e.hints(); len(hs) != 0 {
		t.Errorf("replay stored %+v", hs)
	}
	if e.m.get(webhook.ResultRejected+"/"+webhook.ReasonReplay) != 1 {
		t.Errorf("metrics %v", e.m.n)
	}
	// Past the window the same bytes are stale instead.
	e.clock.Advance(webhook.DefaultMaxAge + time.Hour)
	if got := e.post(http.MethodPost, body, h); got != http.StatusBadRequest {
		t.Fatalf("old replay: %d, want 400", got)
	}
	if e.m.get(webhook.ResultRejected+"/"+webhook.ReasonStale) != 1 {
		t.Errorf("metrics %v", e.m.n)
	}
}

func TestIgnoredAnswered200WithoutHint(t *testing.T) {
	pki(t)
	cases := []struct {
		name, body, reason string
	}{
		{"test event", `{"EventName":"test-created","ResourceUri":"http://api.partnercenter.microsoft.com/webhooks/v1/registration/validationEvents/c0bfd694-3075-4ec5-9a3c-733d3a890a1f","ResourceName":"test","AuditUri":null}`, webhook.ReasonTestEvent},
		{"unknown event", `{"EventName":"invoice-ready","ResourceUri":"https://api.partnercenter.microsoft.com/v1/invoices/1"}`, webhook.ReasonUnknownEvent},
		{"unknown customer", `{"EventName":"subscription-updated","ResourceUri":"https://api.partnercenter.microsoft.com/webhooks/v1/customers/00000000-0000-0000-0000-000000000000/subscriptions/x"}`, webhook.ReasonUnknownCustomer},
		{"no customer", `{"EventName":"dap-admin-relationship-terminated-by-microsoft","ResourceName":"PartnerCustomerDap","AuditUri":null}`, webhook.ReasonNoCustomer},
		{"placeholder customer", `{"EventName":"subscription-updated","ResourceUri":"http://api.partnercenter.microsoft.com/webhooks/v1/customers/{{CustomerId}}/subscriptions/{{SubscriptionId}}"}`, webhook.ReasonNoCustomer},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, nil)
			b := []byte(c.body)
			if got := e.post(http.MethodPost, b, e.signed(b, goodSigner, "good")); got != http.StatusOK {
				t.Fatalf("status %d", got)
			}
			if hs := e.hints(); len(hs) != 0 {
				t.Errorf("hints %+v", hs)
			}
			if e.m.get(webhook.ResultIgnored+"/"+c.reason) != 1 || e.kicks != 0 {
				t.Errorf("metrics %v kicks %d", e.m.n, e.kicks)
			}
		})
	}
}

// slowStore blocks commits until released.
type slowStore struct {
	release chan struct{}
	inner   webhook.Committer
}

func (s *slowStore) Commit(c *state.Change) error {
	<-s.release
	return s.inner.Commit(c)
}

func TestSlowStoreAnswers503WithinBound(t *testing.T) {
	slow := &slowStore{release: make(chan struct{})}
	e := newEnv(t, func(o *webhook.Options) {
		slow.inner = o.Store
		o.Store = slow
		o.CommitTimeout = 50 * time.Millisecond
	})
	defer close(slow.release)
	body := e.body(custA, subA)
	if got := e.post(http.MethodPost, body, e.signed(body, goodSigner, "good")); got != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", got)
	}
	if e.m.get(webhook.ResultUnavailable+"/"+webhook.ReasonStoreTimeout) != 1 || e.kicks != 0 {
		t.Errorf("metrics %v kicks %d", e.m.n, e.kicks)
	}
}

type failStore struct{}

func (failStore) Commit(*state.Change) error { return errors.New("disk full") }

func TestStoreFailureAnswers503(t *testing.T) {
	e := newEnv(t, func(o *webhook.Options) { o.Store = failStore{} })
	body := e.body(custA, subA)
	if got := e.post(http.MethodPost, body, e.signed(body, goodSigner, "good")); got != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", got)
	}
	if e.m.get(webhook.ResultUnavailable+"/"+webhook.ReasonStoreFailed) != 1 {
		t.Errorf("metrics %v", e.m.n)
	}
	// Not remembered as accepted: Partner Center's retry is taken.
}

func TestFloodAnswers429(t *testing.T) {
	slow := &slowStore{release: make(chan struct{})}
	const limit = 2
	e := newEnv(t, func(o *webhook.Options) {
		slow.inner = o.Store
		o.Store = slow
		o.MaxInFlight = limit
		o.CommitTimeout = 20 * time.Millisecond
	})
	// Two callbacks time out, but their commits still hold the slots.
	for i := 0; i < limit; i++ {
		body := e.body(custA, "sub-"+string(rune('a'+i)))
		if got := e.post(http.MethodPost, body, e.signed(body, goodSigner, "good")); got != http.StatusServiceUnavailable {
			t.Fatalf("callback %d: %d, want 503", i, got)
		}
	}
	body := e.body(custA, "sub-z")
	if got := e.post(http.MethodPost, body, e.signed(body, goodSigner, "good")); got != http.StatusTooManyRequests {
		t.Fatalf("flood: %d, want 429", got)
	}
	if e.m.get(webhook.ResultThrottled+"/"+webhook.ReasonFlood) != 1 {
		t.Errorf("metrics %v", e.m.n)
	}
	if n := e.h.InFlight(); n != limit {
		t.Errorf("in flight %d, want %d", n, limit)
	}
	close(slow.release)
	// The commits finish and free the slots: the retry is taken.
	for e.h.InFlight() > 0 {
		runtime.Gosched()
	}
	if got := e.post(http.MethodPost, body, e.signed(body, goodSigner, "good")); got != http.StatusOK {
		t.Fatalf("after the flood: %d, want 200", got)
	}
}

func TestMsSignatureHeaderAndCertificateTTL(t *testing.T) {
	e := newEnv(t, nil)
	body := e.body(custA, subA)
	h := e.signed(body, goodSigner, "good")
	// SignatureTokenToMsSignatureHeader: the token moves to x-ms-signature.
	h.Set("X-MS-Signature", h.Get("Authorization"))
	h.Del("Authorization")
	if got := e.post(http.MethodPost, body, h); got != http.StatusOK {
		t.Fatalf("x-ms-signature: %d (metrics %v)", got, e.m.n)
	}
	fetches := func() int {
		e.certs.mu.Lock()
		defer e.certs.mu.Unlock()
		return e.certs.fetches
	}
	e.clock.Advance(webhook.DefaultCertificateTTL + time.Minute)
	body2 := e.body(custA, "sub-2")
	if got := e.post(http.MethodPost, body2, e.signed(body2, goodSigner, "good")); got != http.StatusOK {
		t.Fatalf("after the TTL: %d", got)
	}
	if n := fetches(); n != 2 {
		t.Errorf("fetched %d times, want 2 (the cached certificate expired)", n)
	}
}
