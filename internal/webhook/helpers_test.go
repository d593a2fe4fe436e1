package webhook_test

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pcwatch/pcwatch/internal/clock"
	"github.com/pcwatch/pcwatch/internal/pcsim"
	"github.com/pcwatch/pcwatch/internal/state"
	"github.com/pcwatch/pcwatch/internal/webhook"
)

// The test PKI: a CA named like Microsoft's, a leaf named like the
// documented certificate, a leaf of the same CA with another name, and a
// CA nobody trusts with a correctly named leaf. RSA keys are slow to make:
// once per test binary.
var (
	pkiOnce                              sync.Once
	pkiErr                               error
	trusted, stranger                    *pcsim.TestPKI
	goodSigner, wrongNameSigner, foreign *pcsim.WebhookSigner
)

// epoch is the fake clock's start; the certificates are valid around it.
var epoch = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

func pki(t testing.TB) {
	t.Helper()
	pkiOnce.Do(func() {
		if trusted, pkiErr = pcsim.NewTestPKI(webhook.DefaultIssuerOrganization, epoch); pkiErr != nil {
			return
		}
		if stranger, pkiErr = pcsim.NewTestPKI(webhook.DefaultIssuerOrganization, epoch); pkiErr != nil {
			return
		}
		if goodSigner, pkiErr = trusted.Signer(webhook.DefaultCertificateName, ""); pkiErr != nil {
			return
		}
		if wrongNameSigner, pkiErr = trusted.Signer("pcnotifications-dispatch.example.com", ""); pkiErr != nil {
			return
		}
		foreign, pkiErr = stranger.Signer(webhook.DefaultCertificateName, "")
	})
	if pkiErr != nil {
		t.Fatal(pkiErr)
	}
}

// certServer serves signers' chains over TLS at /cert/{n}.cer.
type certServer struct {
	ts      *httptest.Server
	mu      sync.Mutex
	certs   map[string][]byte
	fetches int
}

func newCertServer(t *testing.T) *certServer {
	cs := &certServer{certs: map[string][]byte{}}
	cs.ts = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cs.mu.Lock()
		b, ok := cs.certs[r.URL.Path]
		cs.fetches++
		cs.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(b)
	}))
	t.Cleanup(cs.ts.Close)
	return cs
}

// url publishes s under name and returns its URL.
func (cs *certServer) url(name string, s *pcsim.WebhookSigner) string {
	var b bytes.Buffer
	for _, c := range s.Chain {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	cs.mu.Lock()
	cs.certs["/cert/"+name+".cer"] = b.Bytes()
	cs.mu.Unlock()
	return cs.ts.URL + "/cert/" + name + ".cer"
}

func (cs *certServer) host() string {
	u, _ := url.Parse(cs.ts.URL)
	return u.Host
}

// metrics counts Received calls.
type metrics struct {
	mu sync.Mutex
	n  map[string]int // "result/reason"
}

func (m *metrics) Received(result, reason string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.n == nil {
		m.n = map[string]int{}
	}
	m.n[result+"/"+reason]++
}

func (m *metrics) get(k string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.n[k]
}

func (m *metrics) total() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, v := range m.n {
		n += v
	}
	return n
}

// env is a handler on a real state file with the trusted PKI.
type env struct {
	t     *testing.T
	store *state.Store
	clock *clock.Fake
	certs *certServer
	m     *metrics
	h     *webhook.Handler
	srv   *httptest.Server
	kicks int
	mu    sync.Mutex
	known map[string]bool
}

const (
	custA = "4b2a6e33-8791-4386-bd2b-0d55baf25039"
	subA  = "a1b2c3d4-0000-4000-8000-000000000001"
)

func newEnv(t *testing.T, tweak func(*webhook.Options)) *env {
	t.Helper()
	pki(t)
	e := &env{t: t, clock: clock.NewFake(epoch), certs: newCertServer(t), m: &metrics{}, known: map[string]bool{custA: true}}
	st, err := state.Open(filepath.Join(t.TempDir(), state.FileName), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e.store = st
	v := webhook.NewVerifier(webhook.VerifierOptions{AllowedHosts: []string{e.certs.host()}, Roots: trusted.Roots,
		HTTPClient: e.certs.ts.Client(), Clock: e.clock})
	o := webhook.Options{Store: st, Verifier: v, Clock: e.clock, Metrics: e.m,
		Known: func(id string) bool { e.mu.Lock(); defer e.mu.Unlock(); return e.known[id] },
		Kick:  func() { e.mu.Lock(); e.kicks++; e.mu.Unlock() }}
	if tweak != nil {
		tweak(&o)
	}
	h, err := webhook.NewHandler(o)
	if err != nil {
		t.Fatal(err)
	}
	e.h = h
	e.srv = httptest.NewServer(h)
	t.Cleanup(e.srv.Close)
	return e
}

// body is a subscription-updated callback of customer c, subscription s
// at the fake clock's reading.
func (e *env) body(c, s string) []byte {
	return []byte(`{"EventName":"subscription-updated","ResourceUri":"http://api.partnercenter.microsoft.com/webhooks/v1/customers/` + c +
		`/subscriptions/` + s + `","ResourceName":"subscription","AuditUri":null,"ResourceChangeUtcDate":"` +
		e.clock.Now().Add(-time.Minute).Format("2006-01-02T15:04:05.0000000") + `+00:00"}`)
}

// signed returns the headers of body signed by s, its certificate
// published on the cert server.
func (e *env) signed(body []byte, s *pcsim.WebhookSigner, name string) http.Header {
	sum := sha256.Sum256(body)
	sig, err := rsa.SignPKCS1v15(nil, s.Key, crypto.SHA256, sum[:])
	if err != nil {
		e.t.Fatal(err)
	}
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("Authorization", "Signature "+base64.StdEncoding.EncodeToString(sig))
	h.Set("X-MS-Certificate-Url", e.certs.url(name, s))
	h.Set("X-MS-Signature-Algorithm", "rsa-sha256")
	return h
}

func (e *env) post(method string, body []byte, h http.Header) int {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+"/webhooks/partner-center", bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	return resp.StatusCode
}

func (e *env) hints() []state.Hint {
	e.t.Helper()
	var out []state.Hint
	if err := e.store.View(func(r *state.ReadTx) error {
		return r.Hints(func(h state.Hint) error { out = append(out, h); return nil })
	}); err != nil {
		e.t.Fatal(err)
	}
	return out
}
