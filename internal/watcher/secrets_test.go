package watcher

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pcwatch/pcwatch/internal/clock"
	"github.com/pcwatch/pcwatch/internal/natstest"
	"github.com/pcwatch/pcwatch/internal/pcsim"
	"github.com/pcwatch/pcwatch/internal/state"
	"github.com/pcwatch/pcwatch/internal/stream"
)

const (
	testClientSecret = "cl1ent~Secret/with+odd=chars&"
	testRefreshToken = "0.AAAArefresh-token-of-the-partner-admin_xyz"
	testAccessToken  = "eyJ0eXAiOiJKV1QiLCJhbGciOi.access-token-sig"
)

// encodings a test looks for: a leak in any of them fails.
func leakForms(s string) []string {
	return []string{s, url.QueryEscape(s), url.PathEscape(s), base64.StdEncoding.EncodeToString([]byte(s)),
		base64.RawURLEncoding.EncodeToString([]byte(s)), fmt.Sprintf("%x", s)}
}

func assertNoSecrets(t *testing.T, where string, text []byte) {
	t.Helper()
	for _, s := range []string{testClientSecret, testRefreshToken, testAccessToken} {
		for _, f := range leakForms(s) {
			if bytes.Contains(text, []byte(f)) {
				t.Errorf("%s holds a secret (%q)", where, f)
			}
		}
	}
}

// echoForm is a hostile token endpoint's refusal: the request body echoed
// into the error description, raw and decoded, plus base64 of it.
func echoForm(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	vals, _ := url.ParseQuery(string(body))
	desc := fmt.Sprintf("AADSTS7000215: Invalid client secret provided. Request: %s; decoded: secret=%s refresh=%s; b64=%s",
		body, vals.Get("client_secret"), vals.Get("refresh_token"), base64.StdEncoding.EncodeToString(body))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusUnauthorized)
	json.NewEncoder(w).Encode(map[string]string{"error": "invalid_client: " + string(body), "error_description": desc})
}

func appUserEnv(tokenURL string) func(string) string {
	env := map[string]string{"PCWATCH_PC_TENANT_ID": "contoso.onmicrosoft.com", "PCWATCH_PC_CLIENT_ID": "11111111-2222-3333-4444-555555555555",
		"PCWATCH_PC_CLIENT_SECRET": testClientSecret, "PCWATCH_PC_REFRESH_TOKEN": testRefreshToken, "PCWATCH_PC_TOKEN_URL": tokenURL}
	return func(k string) string { return env[k] }
}

// Defect 3 of issue 11: a token endpoint that echoes the request put the
// client secret (URL-encoded) and the refresh token into stderr, logs and
// the returned error. Now nothing of them leaves, in any encoding.
func TestTokenEndpointEchoIsRedacted(t *testing.T) {
	tokens := httptest.NewServer(http.HandlerFunc(echoForm))
	defer tokens.Close()
	sim := httptest.NewServer(pcsim.New(pcsim.Options{Seed: 1, Customers: 2, Token: testAccessToken}))
	defer sim.Close()
	var logs, stderr bytes.Buffer
	c := Default()
	c.PCURL, c.DataDir, c.NATSPort, c.Listen, c.Once, c.RetryBudget = sim.URL, t.TempDir(), -1, "", true, time.Second
	err := Run(context.Background(), Options{Config: c, Getenv: appUserEnv(tokens.URL), Logger: NewLogger(&logs, "json", "debug"), Stderr: &stderr})
	var se *StartupError
	if !errors.As(err, &se) {
		t.Fatalf("Run = %v, want a StartupError (credentials refused)", err)
	}
	if !strings.Contains(err.Error(), "invalid_client") {
		t.Errorf("the error lost what the endpoint said: %v", err)
	}
	assertNoSecrets(t, "the returned error", []byte(err.Error()))
	assertNoSecrets(t, "the logs", logs.Bytes())
	assertNoSecrets(t, "stderr", stderr.Bytes())
}

// A Partner Center (or a proxy in front of it) that echoes the request's
// credentials in an error body: the access token and the client secret stay
// out of the logs, stderr, the state file (which /api/state shows) and the
// ops.customer-poll-failed event.
func TestEchoedCredentialsStayInside(t *testing.T) {
	tokens := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"token_type":"Bearer","access_token":%q,"expires_in":3600}`, testAccessToken)
	}))
	defer tokens.Close()
	clk := clock.NewFake(time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC))
	sim := pcsim.New(pcsim.Options{Seed: 1, Customers: 3, Token: testAccessToken, Clock: clk})
	victim := sim.State().Customers[1].ID
	hostile := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, victim) {
			auth := r.Header.Get("Authorization")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			json.NewEncoder(w).Encode(map[string]any{"code": 400, "description": fmt.Sprintf("rejected %s (b64 %s) for app secret %s",
				auth, base64.StdEncoding.EncodeToString([]byte(auth)), url.QueryEscape(testClientSecret))})
			return
		}
		sim.ServeHTTP(w, r)
	}))
	defer hostile.Close()
	ns := natstest.Start(t)
	var logs, stderr bytes.Buffer
	c := Default()
	c.PCURL, c.DataDir, c.NATS.URL, c.Listen, c.Once, c.FailureThreshold = hostile.URL, t.TempDir(), ns.ClientURL(), "", true, 1
	err := Run(context.Background(), Options{Config: c, Getenv: appUserEnv(tokens.URL), Clock: clk, Logger: NewLogger(&logs, "text", "debug"), Stderr: &stderr})
	if !errors.Is(err, ErrPartial) {
		t.Fatalf("Run = %v, want ErrPartial (one customer failed)", err)
	}
	if !strings.Contains(stderr.String(), victim) || !strings.Contains(stderr.String(), "[REDACTED]") {
		t.Errorf("stderr does not name the failing customer with the echo redacted:\n%s", stderr.String())
	}
	assertNoSecrets(t, "the logs", logs.Bytes())
	assertNoSecrets(t, "stderr", stderr.Bytes())
	assertNoSecrets(t, "the returned error", []byte(err.Error()))

	db, err := os.ReadFile(filepath.Join(c.DataDir, state.FileName))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(db, []byte("[REDACTED]")) {
		t.Error("the state file holds no redacted failure message: was the failure recorded?")
	}
	assertNoSecrets(t, "the state file", db)

	nc := natstest.Connect(t, ns.ClientURL())
	var failed int
	for _, m := range natstest.ReadStream(t, nc, stream.Name) {
		assertNoSecrets(t, "event "+m.Subject, m.Data)
		if m.Subject == "pcwatch.ops.customer-poll-failed" {
			failed++
		}
	}
	if failed != 1 {
		t.Errorf("%d ops.customer-poll-failed events, want 1", failed)
	}
}

// Partner Center data that carries a secret (a subscription named with the
// access token and the URL-encoded client secret, by a hostile or careless
// admin): the events published from it are redacted. The state file keeps
// Partner Center's answers as they came (they are what the next listing is
// compared with); it is the watcher's own private file (mode 0600).
func TestSecretsInPartnerCenterDataAreRedactedFromEvents(t *testing.T) {
	tokens := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"token_type":"Bearer","access_token":%q,"expires_in":3600}`, testAccessToken)
	}))
	defer tokens.Close()
	clk := clock.NewFake(time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC))
	sim := pcsim.New(pcsim.Options{Seed: 1, Customers: 3, Token: testAccessToken, Clock: clk})
	cust := sim.State().Customers[2]
	sub := cust.Subscriptions[0].ID
	if err := sim.Rename(cust.ID, sub, "named "+testAccessToken+" and "+url.QueryEscape(testClientSecret)); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim)
	defer srv.Close()
	ns := natstest.Start(t)
	c := Default()
	c.PCURL, c.DataDir, c.NATS.URL, c.Listen, c.Once = srv.URL, t.TempDir(), ns.ClientURL(), "", true
	c.CreatedOnFirstSighting = true // the first listing's events carry the subscription
	if err := Run(context.Background(), Options{Config: c, Getenv: appUserEnv(tokens.URL), Clock: clk, Logger: NewLogger(io.Discard, "text", "error")}); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, m := range natstest.ReadStream(t, natstest.Connect(t, ns.ClientURL()), stream.Name) {
		assertNoSecrets(t, "event "+m.Subject, m.Data)
		if strings.Contains(m.Subject, sub) && bytes.Contains(m.Data, []byte("named [REDACTED] and [REDACTED]")) {
			found = true
		}
	}
	if !found {
		t.Error("no event carries the renamed subscription with the secrets redacted")
	}
}
