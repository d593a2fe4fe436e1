package notify

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	smtpd "github.com/emersion/go-smtp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pcwatch/pcwatch/internal/clock"
	"github.com/pcwatch/pcwatch/internal/events"
)

func httpServer(t testing.TB, h http.HandlerFunc) *httptest.Server {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// notificationOf renders the sample event of typ for channel ch of cfg.
func notificationOf(t testing.TB, cfg *Config, ch string, typ events.Type) *notification {
	t.Helper()
	ev, err := SampleEvent(typ, sampleTime)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(ev)
	d, _ := ev.DecodeData()
	td, err := renderMessage(ev, d, cfg.overrides, ch)
	if err != nil {
		t.Fatal(err)
	}
	return &notification{Event: ev, Data: d, Body: body, Message: td, Subject: "pcwatch.events.x", Attempt: 1}
}

func senderOf(t testing.TB, cfg *Config, ch string, deps senderDeps) sender {
	t.Helper()
	s, err := newSender(cfg.Channels[ch], deps)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// verifyStandardWebhook checks a request the way the Standard Webhooks
// specification tells receivers to, written here independently of Sign:
// the signed content is "<webhook-id>.<webhook-timestamp>.<body>", the key
// the base64-decoded secret after "whsec_", the signature header a
// space-separated list of "v1,<base64 HMAC-SHA256>".
func verifyStandardWebhook(secret string, h http.Header, body []byte, now time.Time) error {
	id, ts, sigs := h.Get("webhook-id"), h.Get("webhook-timestamp"), h.Get("webhook-signature")
	if id == "" || ts == "" || sigs == "" {
		return errors.New("missing webhook headers")
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("bad timestamp %q", ts)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return fmt.Errorf("timestamp %s outside the tolerance", ts)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return err
	}
	mac := hmac.New(sha256.New, key)
	fmt.Fprintf(mac, "%s.%s.%s", id, ts, body)
	want := mac.Sum(nil)
	for _, s := range strings.Fields(sigs) {
		version, sig, ok := strings.Cut(s, ",")
		if !ok || version != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(sig)
		if err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return errors.New("no valid signature")
}

const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

func TestWebhookStandardSignature(t *testing.T) {
	var (
		mu     sync.Mutex
		gotErr error
		got    recorded
	)
	rc := httpServer(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		gotErr = verifyStandardWebhook(testSecret, r.Header, body, time.Now())
		got = recorded{id: r.Header.Get("webhook-id"), header: r.Header.Clone(), body: body}
		w.WriteHeader(http.StatusNoContent)
	})
	cfg := mustConfig(t, fmt.Sprintf(`
channels:
  hook: {kind: webhook, url: "%s/hooks/pcwatch?token=abc", secret_env: S, headers: {X-Team: billing}}
default: {channels: [hook]}
`, rc.URL), map[string]string{"S": testSecret})
	n := notificationOf(t, cfg, "hook", events.SubscriptionQuantityChanged)
	if err := senderOf(t, cfg, "hook", senderDeps{}).send(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if gotErr != nil {
		t.Fatalf("signature: %v", gotErr)
	}
	h := got.header
	if got.id != n.Event.ID || h.Get("X-Pcwatch-Event-Id") != n.Event.ID || h.Get("X-Pcwatch-Event-Type") != string(events.SubscriptionQuantityChanged) ||
		h.Get("Content-Type") != "application/cloudevents+json" || h.Get("X-Team") != "billing" || h.Get("X-Pcwatch-Attempt") != "1" {
		t.Errorf("headers %v", h)
	}
	if !bytes.Equal(got.body, n.Body) {
		t.Errorf("body is not the CloudEvent as received")
	}
	if ev, err := events.Decode(got.body); err != nil || ev.ID != n.Event.ID {
		t.Errorf("body does not decode: %v", err)
	}
	// A tampered body fails the same check.
	if verifyStandardWebhook(testSecret, h, append(got.body, ' '), time.Now()) == nil {
		t.Error("verification accepts a tampered body")
	}
	// Sign agrees with the independent implementation for a raw secret too.
	hd := http.Header{}
	hd.Set("webhook-id", "msg_1")
	hd.Set("webhook-timestamp", "1700000000")
	hd.Set("webhook-signature", Sign([]byte("raw-secret"), "msg_1", "1700000000", []byte(`{"a":1}`)))
	if err := verifyStandardWebhook("whsec_"+base64.StdEncoding.EncodeToString([]byte("raw-secret")), hd, []byte(`{"a":1}`), time.Unix(1700000000, 0)); err != nil {
		t.Errorf("raw secret: %v", err)
	}
}

// The example from the Standard Webhooks specification's reference
// implementations.
func TestSignKnownVector(t *testing.T) {
	key, _ := base64.StdEncoding.DecodeString("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	got := Sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", []byte(`{"test": 2432232314}`))
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Errorf("Sign = %s, want %s", got, want)
	}
}

func TestHTTPFailureClassification(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		status     int
		retryAfter string
		reason     string
		permanent  bool
		wait       time.Duration
		hasWait    bool
	}{
		{503, "0", ReasonHTTP5xx, false, 0, true},
		{503, "120", ReasonHTTP5xx, false, 2 * time.Minute, true},
		{429, now.Add(90 * time.Second).Format(http.TimeFormat), ReasonHTTP429, false, 90 * time.Second, true},
		{429, "soon", ReasonHTTP429, false, 0, false},
		{500, "", ReasonHTTP5xx, false, 0, false},
		{408, "", ReasonHTTP408, false, 0, false},
		{400, "5", ReasonHTTP4xx, true, 0, false},
		{404, "", ReasonHTTP4xx, true, 0, false},
		{410, "", ReasonHTTP4xx, true, 0, false},
		{302, "", ReasonRedirect, true, 0, false},
	} {
		rc := newReceiver(t, func(int, *http.Request) (int, http.Header) {
			h := http.Header{}
			if tc.retryAfter != "" {
				h.Set("Retry-After", tc.retryAfter)
			}
			h.Set("Location", "https://elsewhere.example/")
			return tc.status, h
		})
		p := poster{hc: newHTTPClient(), ch: "c", clk: clock.NewFake(now), url: newSecret(rc.URL + "/T123/B456/SECRETTOKEN")}
		err := p.post(context.Background(), []byte(`{}`), nil)
		var se *SendError
		if !errors.As(err, &se) {
			t.Fatalf("%d: %v", tc.status, err)
		}
		if se.Reason != tc.reason || se.Permanent != tc.permanent || se.Status != tc.status || se.HasRetryAfter != tc.hasWait || se.RetryAfter != tc.wait {
			t.Errorf("%d %q: %+v", tc.status, tc.retryAfter, se)
		}
		if strings.Contains(err.Error(), "SECRETTOKEN") || strings.Contains(err.Error(), "T123") {
			t.Errorf("error reveals the URL path: %s", err)
		}
	}
}

func TestNetworkErrorsAreRetryableAndRedacted(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	p := poster{hc: newHTTPClient(), ch: "c", clk: clock.Real{}, url: newSecret("http://" + addr + "/services/SECRETTOKEN?sig=SIG")}
	err = p.post(context.Background(), []byte(`{}`), nil)
	var se *SendError
	if !errors.As(err, &se) || se.Permanent || se.Reason != ReasonNetwork {
		t.Fatalf("refused: %#v", err)
	}
	if strings.Contains(err.Error(), "SECRETTOKEN") || strings.Contains(err.Error(), "SIG") {
		t.Errorf("error reveals the URL: %s", err)
	}
	// A receiver slower than the channel's timeout.
	release := make(chan struct{})
	rc := newReceiver(t, func(int, *http.Request) (int, http.Header) { <-release; return 200, nil })
	defer close(release)
	p.url = newSecret(rc.URL + "/services/SECRETTOKEN")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err = p.post(ctx, []byte(`{}`), nil)
	if !errors.As(err, &se) || se.Permanent || se.Reason != ReasonTimeout || strings.Contains(err.Error(), "SECRETTOKEN") {
		t.Fatalf("timeout: %v", err)
	}
}

func TestRetryDelay(t *testing.T) {
	const initial, maxD = time.Second, time.Minute
	for attempt, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 7: time.Minute, 50: time.Minute} {
		if got := retryDelay(attempt, nil, initial, maxD, 0.5); got != want {
			t.Errorf("attempt %d: %s, want %s", attempt, got, want)
		}
	}
	if lo, hi := retryDelay(2, nil, initial, maxD, 0), retryDelay(2, nil, initial, maxD, 0.999); lo != 1600*time.Millisecond || hi < 2399*time.Millisecond {
		t.Errorf("jitter range %s..%s", lo, hi)
	}
	if got := retryDelay(3, &SendError{HasRetryAfter: true, RetryAfter: 0}, initial, maxD, 0.5); got != 0 {
		t.Errorf("Retry-After 0 gives %s", got)
	}
	if got := retryDelay(1, &SendError{HasRetryAfter: true, RetryAfter: 5 * time.Minute}, initial, maxD, 0.5); got != 5*time.Minute {
		t.Errorf("Retry-After beyond retry_max gives %s", got)
	}
}

func TestSlackPayload(t *testing.T) {
	var body []byte
	rc := httpServer(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ = io.ReadAll(r.Body)
		if r.Header.Get("Content-Type") != "application/json" {
			w.WriteHeader(400)
			return
		}
		fmt.Fprint(w, "ok")
	})
	cfg := mustConfig(t, "channels:\n  s: {kind: slack, url_env: U}\ndefault: {channels: [s]}\n", map[string]string{"U": rc.URL + "/services/T/B/X"})
	n := notificationOf(t, cfg, "s", events.SubscriptionCancellationClosing)
	if err := senderOf(t, cfg, "s", senderDeps{}).send(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	var msg struct {
		Text   string `json:"text"`
		Blocks []struct {
			Type string `json:"type"`
			Text *struct {
				Type, Text string
			} `json:"text"`
			Fields   []struct{ Type, Text string } `json:"fields"`
			Elements []struct{ Type, Text string } `json:"elements"`
		} `json:"blocks"`
	}
	if err := json.Unmarshal(body, &msg); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(msg.Text, "closes in 3h58m") || !strings.Contains(msg.Text, n.Event.ID) {
		t.Errorf("fallback text %q", msg.Text)
	}
	var types []string
	for _, b := range msg.Blocks {
		types = append(types, b.Type)
	}
	if strings.Join(types, ",") != "header,section,section,context" {
		t.Fatalf("blocks %v", types)
	}
	h := msg.Blocks[0]
	if h.Text.Type != "plain_text" || len([]rune(h.Text.Text)) > 150 || !strings.Contains(h.Text.Text, "cancellation window") {
		t.Errorf("header %+v", h.Text)
	}
	if s := msg.Blocks[1]; s.Text.Type != "mrkdwn" || !strings.Contains(s.Text.Text, "Cancel or reduce seats in Partner Center") {
		t.Errorf("section %+v", s.Text)
	}
	if f := msg.Blocks[2].Fields; len(f) == 0 || len(f) > 10 || !strings.HasPrefix(f[0].Text, "*Customer*") {
		t.Errorf("fields %+v", f)
	}
	if c := msg.Blocks[3].Elements; len(c) != 1 || !strings.Contains(c[0].Text, n.Event.ID) {
		t.Errorf("context %+v", c)
	}
	// Changes get their own section, capped, and mrkdwn is escaped.
	td := *n.Message
	td.Text = "a <b> & c"
	for i := range 40 {
		td.Changes = append(td.Changes, ChangeLine{Field: fmt.Sprintf("f%d", i), Old: "1", New: "2"})
	}
	p := slackPayload(&td)
	if p.Blocks[1].Text.Text != "a &lt;b&gt; &amp; c" {
		t.Errorf("escaping: %q", p.Blocks[1].Text.Text)
	}
	if ch := p.Blocks[3].Text.Text; !strings.Contains(ch, "… and 20 more") || len(ch) > slackSectionMax {
		t.Errorf("changes section %q", ch)
	}
}

// checkAdaptiveCard checks the shape a Teams workflow expects.
func checkAdaptiveCard(t *testing.T, body []byte) map[string]any {
	t.Helper()
	if len(body) >= TeamsMaxBytes {
		t.Fatalf("payload is %d bytes, the limit is %d", len(body), TeamsMaxBytes)
	}
	m := decodeJSON(t, body)
	if m["type"] != "message" {
		t.Fatalf("type %v", m["type"])
	}
	atts, _ := m["attachments"].([]any)
	if len(atts) != 1 {
		t.Fatalf("attachments %v", m["attachments"])
	}
	att := atts[0].(map[string]any)
	if att["contentType"] != "application/vnd.microsoft.card.adaptive" {
		t.Fatalf("contentType %v", att["contentType"])
	}
	card := att["content"].(map[string]any)
	if card["type"] != "AdaptiveCard" || card["version"] != "1.4" || card["$schema"] != "http://adaptivecards.io/schemas/adaptive-card.json" {
		t.Fatalf("card header %v %v %v", card["type"], card["version"], card["$schema"])
	}
	els, _ := card["body"].([]any)
	if len(els) < 3 {
		t.Fatalf("card body %v", card["body"])
	}
	for _, e := range els {
		el := e.(map[string]any)
		switch el["type"] {
		case "TextBlock":
			if s, _ := el["text"].(string); s == "" {
				t.Errorf("empty TextBlock %v", el)
			}
		case "FactSet":
			for _, f := range el["facts"].([]any) {
				fm := f.(map[string]any)
				if _, ok := fm["title"].(string); !ok {
					t.Errorf("fact %v", fm)
				}
				if _, ok := fm["value"].(string); !ok {
					t.Errorf("fact %v", fm)
				}
			}
		default:
			t.Errorf("unexpected element %v", el["type"])
		}
	}
	return card
}

func TestTeamsCard(t *testing.T) {
	var body []byte
	rc := httpServer(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ = io.ReadAll(r.Body)
		w.WriteHeader(http.StatusAccepted)
	})
	cfg := mustConfig(t, "channels:\n  teams: {kind: teams, url_env: U}\ndefault: {channels: [teams]}\n", map[string]string{"U": rc.URL + "/workflows/x?sig=S"})
	n := notificationOf(t, cfg, "teams", events.SubscriptionRefundClosing)
	if err := senderOf(t, cfg, "teams", senderDeps{}).send(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	card := checkAdaptiveCard(t, body)
	first := card["body"].([]any)[0].(map[string]any)
	if !strings.Contains(first["text"].(string), "refund window") || first["weight"] != "Bolder" {
		t.Errorf("title block %v", first)
	}
	if !strings.Contains(string(body), n.Event.ID) {
		t.Error("the event id is not in the card")
	}
}

func TestTeamsCardStaysUnder28KB(t *testing.T) {
	ev, d := routeEvent(t, events.SubscriptionUpdated, func(d *events.Data) {
		d.Changes = nil
		for i := range 600 {
			d.Changes = append(d.Changes, events.Change{Path: fmt.Sprintf("/extension/field%03d/%s", i, strings.Repeat("x", 40)),
				Old: events.JSONValue(strings.Repeat("old value ", 30)), New: events.JSONValue(strings.Repeat("new value ", 30))})
		}
	})
	td, err := renderMessage(ev, d, nil, "teams")
	if err != nil {
		t.Fatal(err)
	}
	body, err := teamsPayload(td)
	if err != nil {
		t.Fatal(err)
	}
	checkAdaptiveCard(t, body)
	if !strings.Contains(string(body), "more changes not shown") || !strings.Contains(string(body), "field000") {
		t.Errorf("truncation note or first change missing")
	}
	// A huge text is cut too.
	td.Text = strings.Repeat("long text ", 5000)
	body, err = teamsPayload(td)
	if err != nil {
		t.Fatal(err)
	}
	checkAdaptiveCard(t, body)
}

// smtpServer is a real in-process SMTP server (go-smtp) offering STARTTLS
// and AUTH PLAIN, recording what it accepts.
type smtpServer struct {
	noAuth bool // accept mail without AUTH
	addr   string
	caFile string
	mu     sync.Mutex
	mails  []smtpMail
	auths  []string
	failRc int // answer RCPT with this code when non-zero
}

type smtpMail struct {
	from string
	to   []string
	data []byte
	tls  bool
}

type smtpSession struct {
	s    *smtpServer
	conn *smtpd.Conn
	auth bool
	m    smtpMail
}

func (s *smtpSession) AuthMechanisms() []string { return []string{sasl.Plain} }
func (s *smtpSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, user, pass string) error {
		s.s.mu.Lock()
		s.s.auths = append(s.s.auths, user+":"+pass)
		s.s.mu.Unlock()
		if user != "pcwatch" || pass != "smtp-secret" {
			return smtpd.ErrAuthFailed
		}
		s.auth = true
		return nil
	}), nil
}
func (s *smtpSession) Mail(from string, _ *smtpd.MailOptions) error {
	s.s.mu.Lock()
	noAuth := s.s.noAuth
	s.s.mu.Unlock()
	if !s.auth && !noAuth {
		return smtpd.ErrAuthRequired
	}
	_, s.m.tls = s.conn.TLSConnectionState()
	s.m.from = from
	return nil
}
func (s *smtpSession) Rcpt(to string, _ *smtpd.RcptOptions) error {
	s.s.mu.Lock()
	code := s.s.failRc
	s.s.mu.Unlock()
	if code != 0 {
		return &smtpd.SMTPError{Code: code, Message: "mailbox unavailable"}
	}
	s.m.to = append(s.m.to, to)
	return nil
}
func (s *smtpSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.m.data = b
	s.s.mu.Lock()
	s.s.mails = append(s.s.mails, s.m)
	s.s.mu.Unlock()
	return nil
}
func (s *smtpSession) Reset()        { s.m = smtpMail{} }
func (s *smtpSession) Logout() error { return nil }

// selfSignedTLS returns a server certificate for 127.0.0.1 and a PEM file
// trusting it.
func selfSignedTLS(t testing.TB) (*tls.Config, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pcwatch test SMTP"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, caFile
}

func startSMTP(t testing.TB, implicitTLS bool) *smtpServer {
	return startSMTPServer(t, implicitTLS, false)
}

func startSMTPServer(t testing.TB, implicitTLS, plain bool) *smtpServer {
	t.Helper()
	tlsCfg, caFile := selfSignedTLS(t)
	s := &smtpServer{caFile: caFile}
	srv := smtpd.NewServer(smtpd.BackendFunc(func(c *smtpd.Conn) (smtpd.Session, error) {
		return &smtpSession{s: s, conn: c}, nil
	}))
	srv.Domain = "localhost"
	srv.TLSConfig = tlsCfg
	if plain {
		srv.TLSConfig = nil // no STARTTLS offered
		srv.AllowInsecureAuth = true
	}
	srv.ReadTimeout, srv.WriteTimeout = 30*time.Second, 30*time.Second
	var ln net.Listener
	var err error
	if implicitTLS {
		ln, err = tls.Listen("tcp", "127.0.0.1:0", tlsCfg)
	} else {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return s
}

func emailConfig(t testing.TB, s *smtpServer, tlsMode string) *Config {
	host, port, _ := net.SplitHostPort(s.addr)
	return mustConfig(t, fmt.Sprintf(`
channels:
  mail:
    kind: email
    smtp: {host: "%s", port: %s, tls: %s, username: pcwatch, password_env: SMTP_PASSWORD, ca_file: "%s"}
    from: "pcwatch <alerts@pcwatch.example.com>"
    to: [billing@example.com, "Ops Team <ops@example.com>"]
default: {channels: [mail]}
`, host, port, tlsMode, s.caFile), map[string]string{"SMTP_PASSWORD": "smtp-secret"})
}

func TestEmailOverSTARTTLS(t *testing.T) {
	for _, mode := range []string{"starttls", "tls"} {
		t.Run(mode, func(t *testing.T) {
			srv := startSMTP(t, mode == "tls")
			cfg := emailConfig(t, srv, mode)
			n := notificationOf(t, cfg, "mail", events.SubscriptionCancellationClosing)
			n.Data.CustomerName = "Contoso Ltd"
			fake := clock.NewFake(time.Date(2026, 11, 22, 10, 5, 0, 0, time.UTC))
			if err := senderOf(t, cfg, "mail", senderDeps{clock: fake}).send(context.Background(), n); err != nil {
				t.Fatal(err)
			}
			srv.mu.Lock()
			defer srv.mu.Unlock()
			if len(srv.mails) != 1 || srv.auths[0] != "pcwatch:smtp-secret" {
				t.Fatalf("mails %d, auths %v", len(srv.mails), srv.auths)
			}
			m := srv.mails[0]
			if !m.tls || m.from != "alerts@pcwatch.example.com" || strings.Join(m.to, ",") != "billing@example.com,ops@example.com" {
				t.Errorf("envelope %+v", m)
			}
			msg, err := mail.ReadMessage(bytes.NewReader(m.data))
			if err != nil {
				t.Fatal(err)
			}
			h := msg.Header
			date, err := h.Date()
			if err != nil || !date.Equal(fake.Now()) {
				t.Errorf("Date %q: %v", h.Get("Date"), err)
			}
			if got, want := h.Get("Message-ID"), "<"+n.Event.ID+".mail@pcwatch.example.com>"; got != want {
				t.Errorf("Message-ID %q, want %q", got, want)
			}
			if from, err := mail.ParseAddress(h.Get("From")); err != nil || from.Address != "alerts@pcwatch.example.com" {
				t.Errorf("From %q", h.Get("From"))
			}
			if to, err := h.AddressList("To"); err != nil || len(to) != 2 || to[1].Name != "Ops Team" {
				t.Errorf("To %q: %v", h.Get("To"), err)
			}
			subject, err := new(mime.WordDecoder).DecodeHeader(h.Get("Subject"))
			if err != nil || subject != "[pcwatch] Contoso Ltd: cancellation window for Microsoft 365 E3 closes in 3h58m" {
				t.Errorf("Subject %q: %v", subject, err)
			}
			if h.Get("X-Pcwatch-Event-Id") != n.Event.ID || h.Get("Content-Type") != "text/plain; charset=utf-8" || h.Get("Auto-Submitted") != "auto-generated" {
				t.Errorf("headers %v", h)
			}
			body, _ := io.ReadAll(quotedprintable.NewReader(msg.Body))
			for _, want := range []string{"Cancel or reduce seats in Partner Center before then for a full refund.", "Customer: Contoso Ltd (3f2b9c1e", "Deadline: 2026-11-22 14:00 UTC", n.Event.ID} {
				if !strings.Contains(string(body), want) {
					t.Errorf("body lacks %q:\n%s", want, body)
				}
			}
		})
	}
}

func TestEmailFailures(t *testing.T) {
	srv := startSMTP(t, false)
	cfg := emailConfig(t, srv, "starttls")
	n := notificationOf(t, cfg, "mail", events.SubscriptionQuantityChanged)
	snd := senderOf(t, cfg, "mail", senderDeps{})
	var se *SendError
	for code, want := range map[int]struct {
		reason    string
		permanent bool
	}{450: {ReasonSMTPTemp, false}, 550: {ReasonSMTPPerm, true}} {
		srv.mu.Lock()
		srv.failRc = code
		srv.mu.Unlock()
		err := snd.send(context.Background(), n)
		if !errors.As(err, &se) || se.Reason != want.reason || se.Permanent != want.permanent || se.Status != code {
			t.Errorf("RCPT %d: %v", code, err)
		}
	}
	// Wrong password: permanent, and the password is not in the error.
	cfg.Channels["mail"].password = newSecret("wrong-password")
	srv.mu.Lock()
	srv.failRc = 0
	srv.mu.Unlock()
	err := senderOf(t, cfg, "mail", senderDeps{}).send(context.Background(), n)
	if !errors.As(err, &se) || !se.Permanent || se.Status != 535 || strings.Contains(err.Error(), "wrong-password") {
		t.Errorf("bad auth: %v", err)
	}
	// A server without STARTTLS when it is required.
	plain := emailConfig(t, srv, "starttls")
	plain.Channels["mail"].SMTP.Port = 1 // refused: network, retryable
	err = senderOf(t, plain, "mail", senderDeps{}).send(context.Background(), n)
	if !errors.As(err, &se) || se.Permanent || se.Reason != ReasonNetwork {
		t.Errorf("refused: %v", err)
	}
}

func TestEmailWithoutTLS(t *testing.T) {
	srv := startSMTPServer(t, false, true)
	n := func(cfg *Config) *notification { return notificationOf(t, cfg, "mail", events.CustomerAdded) }
	// AUTH PLAIN over plain text: net/smtp allows it to localhost only.
	cfg := emailConfig(t, srv, "none")
	if err := senderOf(t, cfg, "mail", senderDeps{}).send(context.Background(), n(cfg)); err != nil {
		t.Fatal(err)
	}
	srv.mu.Lock()
	if len(srv.mails) != 1 || srv.mails[0].tls {
		t.Errorf("mails %+v", srv.mails)
	}
	srv.mu.Unlock()
	// Requiring STARTTLS from a server that does not offer it is a
	// permanent failure that says what to change.
	cfg = emailConfig(t, srv, "starttls")
	err := senderOf(t, cfg, "mail", senderDeps{}).send(context.Background(), n(cfg))
	var se *SendError
	if !errors.As(err, &se) || !se.Permanent || !strings.Contains(err.Error(), "does not offer STARTTLS") {
		t.Errorf("starttls required: %v", err)
	}
	// Without a username there is no AUTH at all.
	srv.mu.Lock()
	srv.noAuth = true
	srv.mu.Unlock()
	cfg = emailConfig(t, srv, "none")
	cfg.Channels["mail"].SMTP.Username = ""
	if err := senderOf(t, cfg, "mail", senderDeps{}).send(context.Background(), n(cfg)); err != nil {
		t.Fatal(err)
	}
}

func TestMessageID(t *testing.T) {
	if got := MessageID("a/b c", "mail", "x <p@example.com>"); got != "<a_b_c.mail@example.com>" {
		t.Errorf("%s", got)
	}
	if got := MessageID("id", "m", "bad"); got != "<id.m@pcwatch.invalid>" {
		t.Errorf("%s", got)
	}
}

func TestNATSChannelRepublishes(t *testing.T) {
	srv := startNATS(t)
	nc := connectNATS(t, srv.ClientURL())
	sub, err := nc.SubscribeSync("workflows.pcwatch.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	cfg := mustConfig(t, "channels:\n  wf: {kind: nats, subject: \"workflows.pcwatch.{{.Type}}\"}\n  wfjs: {kind: nats, subject: \"wfjs.{{.Type}}\", jetstream: true}\ndefault: {channels: [wf, wfjs]}\n", nil)
	n := notificationOf(t, cfg, "wf", events.SubscriptionQuantityChanged)
	if err := senderOf(t, cfg, "wf", senderDeps{conn: nc}).send(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	m, err := sub.NextMsg(testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject != "workflows.pcwatch.subscription.quantity-changed" || m.Header.Get(jetstream.MsgIDHeader) != n.Event.ID ||
		m.Header.Get("Content-Type") != events.ContentType || m.Header.Get("Pcwatch-Source-Subject") != "pcwatch.events.x" || !bytes.Equal(m.Data, n.Body) {
		t.Errorf("republished %s %v", m.Subject, m.Header)
	}
	// jetstream: true waits for a stream; without one the publish fails
	// (retryable), with one it is stored once even if sent twice.
	js := jsOf(t, nc)
	wfjs := senderOf(t, cfg, "wfjs", senderDeps{conn: nc})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var se *SendError
	if err := wfjs.send(ctx, n); !errors.As(err, &se) || se.Permanent || se.Reason != ReasonNATS {
		t.Errorf("no stream: %v", err)
	}
	if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "WF", Subjects: []string{"wfjs.>"}, Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := wfjs.send(context.Background(), n); err != nil {
			t.Fatal(err)
		}
	}
	s, _ := js.Stream(context.Background(), "WF")
	if info, _ := s.Info(context.Background()); info.State.Msgs != 1 {
		t.Errorf("stream holds %d messages, want 1 (Nats-Msg-Id dedupe)", info.State.Msgs)
	}
}
