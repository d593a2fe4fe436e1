package pcsim

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Webhooks: the registration API (GET/POST/PUT/DELETE
// /webhooks/v1/registration, GET /webhooks/v1/registration/events, POST
// /webhooks/v1/registration/validationEvents and GET .../{correlationId})
// and signed callbacks to the registered URL, as "Partner Center webhooks"
// and "Partner Center webhook events" document them. One registration per
// partner. The simulator's choices where the docs are silent: POST when a
// registration exists answers 409, PUT or DELETE when none exists and GET
// of none answer 404, DELETE answers 204. See WebhookConfig for the delay
// and the loss.

// EndpointWebhooks counts the registration API in Stats.Requests.
const EndpointWebhooks = "webhooks"

// Event names the simulator sends.
const (
	WebhookTestCreated         = "test-created"
	WebhookSubscriptionUpdated = "subscription-updated"
	WebhookResellerAccepted    = "reseller-relationship-accepted-by-customer"
)

// webhookBase is the documented base of ResourceUri.
const webhookBase = "https://api.partnercenter.microsoft.com"

// DefaultWebhookAttempts is Partner Center's documented number of delivery
// attempts before an event goes to its offline queue.
const DefaultWebhookAttempts = 10

// maxWebhookQueue bounds the callbacks waiting for delivery; beyond it
// they are dropped (counted).
const maxWebhookQueue = 4096

// WebhookSigner is the key and certificate chain (leaf first) callbacks are
// signed with. CertURL is sent as X-MS-Certificate-Url; "" means the
// simulator's own GET /webhooks/cert/{leaf CN}.cer (serving the chain as
// PEM) on the scheme and host the registration request reached.
type WebhookSigner struct {
	Key     *rsa.PrivateKey
	Chain   []*x509.Certificate
	CertURL string
}

// WebhookConfig configures callbacks. The zero value delivers every
// callback at once, with up to DefaultWebhookAttempts attempts.
type WebhookConfig struct {
	// Off sends nothing (changes made while it is set never get a
	// callback); the registration API still answers.
	Off bool `json:"off,omitempty"`
	// Delay is the wall time between a change and its callback's first
	// delivery attempt (a network delivery, so wall time; waited with
	// Options.Sleep), fixed when the change is made.
	Delay time.Duration `json:"delay,omitempty"`
	// LossRate is the share of callbacks never sent, drawn from the
	// seeded generator in change order (so which changes lose their
	// callback is deterministic under the seed).
	LossRate float64 `json:"lossRate,omitempty"`
	// Attempts bounds the delivery attempts of one callback (a non-2xx
	// answer or a transport error is retried after RetryDelay); 0 means
	// DefaultWebhookAttempts.
	Attempts int `json:"attempts,omitempty"`
	// RetryDelay is the wall time between attempts; 0 means one second.
	RetryDelay time.Duration `json:"retryDelay,omitempty"`
}

func (c WebhookConfig) validate() error {
	switch {
	case c.Delay < 0 || c.RetryDelay < 0:
		return invalid("webhook delay and retryDelay must not be negative")
	case !(c.LossRate >= 0 && c.LossRate <= 1):
		return invalid("webhook lossRate must be between 0 and 1, got %v", c.LossRate)
	case c.Attempts < 0 || c.Attempts > 100:
		return invalid("webhook attempts must be between 0 (%d) and 100, got %d", DefaultWebhookAttempts, c.Attempts)
	}
	return nil
}

type webhookConfigPlain WebhookConfig

type webhookConfigJSON struct {
	*webhookConfigPlain
	Delay      jsonDuration `json:"delay,omitempty"`
	RetryDelay jsonDuration `json:"retryDelay,omitempty"`
}

// MarshalJSON writes the durations as Go duration strings.
func (c WebhookConfig) MarshalJSON() ([]byte, error) {
	p := webhookConfigPlain(c)
	return json.Marshal(webhookConfigJSON{&p, jsonDuration(c.Delay), jsonDuration(c.RetryDelay)})
}

// UnmarshalJSON reads the durations as strings or nanoseconds and refuses
// unknown properties.
func (c *WebhookConfig) UnmarshalJSON(b []byte) error {
	var p webhookConfigPlain
	aux := webhookConfigJSON{webhookConfigPlain: &p}
	if err := strictUnmarshal(b, &aux); err != nil {
		return fmt.Errorf("webhooks: %w", err)
	}
	p.Delay, p.RetryDelay = time.Duration(aux.Delay), time.Duration(aux.RetryDelay)
	*c = WebhookConfig(p)
	return nil
}

// WebhookRegistration is the partner's registration as the API renders it.
type WebhookRegistration struct {
	SubscriberID  string   `json:"SubscriberId"`
	WebhookURL    string   `json:"WebhookUrl"`
	WebhookEvents []string `json:"WebhookEvents"`
}

// WebhookStatus is the configuration, the registration and the counters.
type WebhookStatus struct {
	Config       WebhookConfig        `json:"config"`
	Registration *WebhookRegistration `json:"registration,omitempty"`
	Queued       uint64               `json:"queued"`    // callbacks queued for delivery
	Delivered    uint64               `json:"delivered"` // answered 2xx
	Failed       uint64               `json:"failed"`    // given up after Attempts
	Attempts     uint64               `json:"attempts"`  // HTTP attempts
	Lost         uint64               `json:"lost"`      // not sent (LossRate)
	Dropped      uint64               `json:"dropped"`   // queue full, or unregistered before delivery
	Pending      int                  `json:"pending"`   // waiting in the queue
}

// WebhookDelivery is one callback delivered or given up, for tests and the
// chaos suite: which mutation it announced and how it went.
type WebhookDelivery struct {
	MutationSeq uint64 `json:"mutationSeq"` // 0 for a validation event
	EventName   string `json:"eventName"`
	Body        string `json:"body"`
	Status      int    `json:"status"`   // the last answer's status; 0 for a transport error
	Attempts    int    `json:"attempts"` // attempts made
	Delivered   bool   `json:"delivered"`
}

type webhookValidation struct {
	CorrelationID string                    `json:"correlationId"`
	PartnerID     string                    `json:"partnerId"`
	Status        string                    `json:"status"`
	CallbackURL   string                    `json:"callbackUrl"`
	Results       []webhookValidationResult `json:"results"`
}

type webhookValidationResult struct {
	ResponseCode    string `json:"responseCode"`
	ResponseMessage string `json:"responseMessage"`
	SystemError     bool   `json:"systemError"`
	DateTimeUtc     string `json:"dateTimeUtc"`
}

type webhookJob struct {
	mutSeq uint64
	event  string
	url    string
	body   []byte
	due    time.Time // wall
	corr   string    // validation event's correlation id
}

// webhookState is guarded by its own mutex (deliveries run outside Sim.mu);
// rng is drawn from under Sim.mu only (in change order).
type webhookState struct {
	mu                                                 sync.Mutex
	cfg                                                WebhookConfig
	reg                                                *WebhookRegistration
	origin                                             string // scheme://host the registration request reached
	rng                                                *rand.Rand
	subscriber                                         string
	queue                                              []webhookJob
	running                                            bool
	idle                                               chan struct{} // closed when the worker exits
	validations                                        map[string]*webhookValidation
	valOrder                                           []string
	valTimes                                           []time.Time // wall times of validation requests (throttle)
	log                                                []WebhookDelivery
	queued, delivered, failed, attempts, lost, dropped uint64
}

const maxWebhookLog = 1000

func newWebhookState(seed int64, cfg WebhookConfig) *webhookState {
	r := seeded(seed, 0x776562686f6f6b)
	if cfg.validate() != nil {
		cfg = WebhookConfig{Off: cfg.Off}
	}
	return &webhookState{cfg: cfg, rng: r, subscriber: guid(r), validations: map[string]*webhookValidation{}}
}

// SetWebhooks replaces the callback configuration; it fails with
// ErrInvalid (and keeps the one in force) for negative durations, a
// lossRate outside [0, 1] or attempts outside [0, 100].
func (s *Sim) SetWebhooks(c WebhookConfig) error {
	if err := c.validate(); err != nil {
		return err
	}
	w := s.webhooks
	w.mu.Lock()
	defer w.mu.Unlock()
	w.cfg = c
	return nil
}

// WebhookStatus returns the configuration, the registration and counters.
func (s *Sim) WebhookStatus() WebhookStatus {
	w := s.webhooks
	w.mu.Lock()
	defer w.mu.Unlock()
	st := WebhookStatus{Config: w.cfg, Queued: w.queued, Delivered: w.delivered, Failed: w.failed,
		Attempts: w.attempts, Lost: w.lost, Dropped: w.dropped, Pending: len(w.queue)}
	if w.reg != nil {
		r := *w.reg
		r.WebhookEvents = append([]string(nil), r.WebhookEvents...)
		st.Registration = &r
	}
	return st
}

// WebhookLog returns the last callbacks finished (delivered or given up),
// oldest first, at most 1000.
func (s *Sim) WebhookLog() []WebhookDelivery {
	w := s.webhooks
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]WebhookDelivery{}, w.log...)
}

// DrainWebhooks waits until no callback is queued or being delivered, or
// ctx is done.
func (s *Sim) DrainWebhooks(ctx context.Context) error {
	w := s.webhooks
	for {
		w.mu.Lock()
		idle, running := w.idle, w.running
		w.mu.Unlock()
		if !running {
			return nil
		}
		select {
		case <-idle:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// webhookMutation queues the callback of m, if its change has one and a
// registration asks for it. Sim.mu held (the loss draw is in change
// order).
func (s *Sim) webhookMutation(m *Mutation) {
	if s.cause == CauseHostile {
		return
	}
	var event, uri, name string
	switch m.Op {
	case "subscription.created", "subscription.quantity", "subscription.status", "subscription.autorenew",
		"subscription.renewed", "subscription.trialconverted", "subscription.scheduled":
		// Commerce-level changes ("Subscription Updated Event"), by the
		// partner or by Microsoft.
		event, name = WebhookSubscriptionUpdated, "subscription"
		uri = webhookBase + "/webhooks/v1/customers/" + m.CustomerID + "/subscriptions/" + m.ResourceID
	case "customer.added":
		event, name = WebhookResellerAccepted, "Customer"
		uri = webhookBase + "/v1/customers/" + m.CustomerID
	default:
		return
	}
	w := s.webhooks
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cfg.Off || w.reg == nil || !containsFold(w.reg.WebhookEvents, event) {
		return
	}
	if w.cfg.LossRate > 0 && w.rng.Float64() < w.cfg.LossRate {
		w.lost++
		return
	}
	body := webhookBody(event, uri, name, "", tick100ns(m.At))
	w.enqueueLocked(s, webhookJob{mutSeq: m.Seq, event: event, url: w.reg.WebhookURL, body: body,
		due: s.wall.Now().Add(w.cfg.Delay)})
}

// webhookBody renders a callback in the documented property order.
func webhookBody(event, uri, name, audit string, at time.Time) []byte {
	var b bytes.Buffer
	q := func(v string) string {
		if v == "" {
			return "null"
		}
		return strconv.Quote(v)
	}
	fmt.Fprintf(&b, "{\n    \"EventName\": %s,\n    \"ResourceUri\": %s,\n    \"ResourceName\": %s,\n    \"AuditUri\": %s,\n    \"ResourceChangeUtcDate\": %s\n}",
		q(event), q(uri), q(name), q(audit), strconv.Quote(at.UTC().Format("2006-01-02T15:04:05.0000000")+"+00:00"))
	return b.Bytes()
}

// enqueueLocked queues j and starts the worker. w.mu held.
func (w *webhookState) enqueueLocked(s *Sim, j webhookJob) {
	if len(w.queue) >= maxWebhookQueue {
		w.dropped++
		return
	}
	w.queued++
	w.queue = append(w.queue, j)
	if !w.running {
		w.running = true
		w.idle = make(chan struct{})
		go s.webhookWorker(w.idle)
	}
}

// webhookWorker delivers queued callbacks in order, then exits.
func (s *Sim) webhookWorker(idle chan struct{}) {
	w := s.webhooks
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-s.streamStop:
			cancel()
		case <-idle:
		}
	}()
	for {
		w.mu.Lock()
		if len(w.queue) == 0 || ctx.Err() != nil {
			w.running = false
			w.queue = nil
			close(idle)
			w.mu.Unlock()
			return
		}
		j := w.queue[0]
		w.queue = w.queue[1:]
		cfg := w.cfg
		w.mu.Unlock()
		if d := j.due.Sub(s.wall.Now()); d > 0 {
			if s.sleep(ctx, d) != nil {
				continue
			}
		}
		s.deliver(ctx, j, cfg)
	}
}

// deliver makes up to cfg.Attempts attempts of j.
func (s *Sim) deliver(ctx context.Context, j webhookJob, cfg WebhookConfig) {
	w := s.webhooks
	attempts := cfg.Attempts
	if attempts <= 0 {
		attempts = DefaultWebhookAttempts
	}
	retry := cfg.RetryDelay
	if retry <= 0 {
		retry = time.Second
	}
	rec := WebhookDelivery{MutationSeq: j.mutSeq, EventName: j.event, Body: string(j.body)}
	for rec.Attempts < attempts && ctx.Err() == nil {
		if rec.Attempts > 0 && s.sleep(ctx, retry) != nil {
			break
		}
		rec.Attempts++
		status, msg := s.attempt(ctx, j)
		rec.Status = status
		w.mu.Lock()
		w.attempts++
		if v := w.validations[j.corr]; v != nil {
			code := http.StatusText(status)
			if status == http.StatusOK {
				code = "OK"
			}
			v.Results = append(v.Results, webhookValidationResult{ResponseCode: code, ResponseMessage: msg,
				SystemError: status == 0, DateTimeUtc: s.wall.Now().UTC().Format("2006-01-02T15:04:05.0000000")})
			if status >= 200 && status < 300 {
				v.Status = "completed"
			}
		}
		w.mu.Unlock()
		if status >= 200 && status < 300 {
			rec.Delivered = true
			break
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if rec.Delivered {
		w.delivered++
	} else {
		w.failed++
		if v := w.validations[j.corr]; v != nil {
			v.Status = "failed"
		}
	}
	w.log = append(w.log, rec)
	if len(w.log) > maxWebhookLog {
		w.log = append([]WebhookDelivery(nil), w.log[len(w.log)-maxWebhookLog:]...)
	}
}

// attempt POSTs j once, signed; it returns the status (0 for a transport
// error or no signer) and a message.
func (s *Sim) attempt(ctx context.Context, j webhookJob) (int, string) {
	sg := s.opts.WebhookSigner
	if sg == nil || sg.Key == nil || len(sg.Chain) == 0 {
		return 0, "the simulator has no webhook signer (Options.WebhookSigner)"
	}
	sum := sha256.Sum256(j.body)
	sig, err := rsa.SignPKCS1v15(nil, sg.Key, crypto.SHA256, sum[:])
	if err != nil {
		return 0, err.Error()
	}
	certURL := sg.CertURL
	if certURL == "" {
		w := s.webhooks
		w.mu.Lock()
		certURL = w.origin + "/webhooks/cert/" + sg.Chain[0].Subject.CommonName + ".cer"
		w.mu.Unlock()
	}
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, j.url, bytes.NewReader(j.body))
	if err != nil {
		return 0, err.Error()
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Signature "+base64.StdEncoding.EncodeToString(sig))
	req.Header.Set("X-MS-Certificate-Url", certURL)
	req.Header.Set("X-MS-Signature-Algorithm", "rsa-sha256")
	hc := s.opts.WebhookClient
	if hc == nil {
		hc = http.DefaultClient
	}
	c := *hc
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// ---- the registration API ----

func (s *Sim) serveWebhooks(w http.ResponseWriter, r *http.Request) {
	path := strings.ToLower(strings.TrimSuffix(r.URL.Path, "/"))
	h := w.Header()
	h.Set("Content-Type", contentTypeJSON)
	if c := r.Header.Get("MS-CorrelationId"); c != "" {
		h.Set("MS-CorrelationId", c)
	}
	if strings.HasPrefix(path, "/webhooks/cert/") {
		s.serveWebhookCert(w, r, path)
		return
	}
	if !s.authorized(r) {
		h.Set("WWW-Authenticate", "Bearer")
		s.write(w, EndpointWebhooks, http.StatusUnauthorized, errorBody(http.StatusUnauthorized, "Authorization has been denied for this request."))
		return
	}
	ws := s.webhooks
	fail := func(status int, msg string) { s.write(w, EndpointWebhooks, status, errorBody(status, msg)) }
	ok := func(v any) { s.write(w, EndpointWebhooks, http.StatusOK, rawJSON(v)) }
	switch {
	case path == "/webhooks/v1/registration/events" && r.Method == http.MethodGet:
		ok([]string{WebhookSubscriptionUpdated, WebhookTestCreated, "usagerecords-thresholdExceeded", WebhookResellerAccepted})
	case path == "/webhooks/v1/registration":
		switch r.Method {
		case http.MethodGet:
			ws.mu.Lock()
			reg := ws.reg
			ws.mu.Unlock()
			if reg == nil {
				fail(http.StatusNotFound, "No webhook registration exists for this partner.")
				return
			}
			ok(struct {
				WebhookURL    string   `json:"WebhookUrl"`
				WebhookEvents []string `json:"WebhookEvents"`
			}{reg.WebhookURL, reg.WebhookEvents})
		case http.MethodPost, http.MethodPut:
			var in struct {
				WebhookURL    string   `json:"WebhookUrl"`
				WebhookEvents []string `json:"WebhookEvents"`
			}
			b, err := io.ReadAll(io.LimitReader(r.Body, 1<<16))
			if err == nil {
				err = json.Unmarshal(b, &in)
			}
			if err != nil || in.WebhookURL == "" || len(in.WebhookEvents) == 0 {
				fail(http.StatusBadRequest, "The request body must carry WebhookUrl and WebhookEvents.")
				return
			}
			if u := strings.ToLower(in.WebhookURL); !strings.HasPrefix(u, "https://") && !strings.HasPrefix(u, "http://") {
				fail(http.StatusBadRequest, "WebhookUrl must be an absolute http(s) URL.")
				return
			}
			ws.mu.Lock()
			if r.Method == http.MethodPost && ws.reg != nil {
				ws.mu.Unlock()
				fail(http.StatusConflict, "A webhook registration already exists for this partner; update it with PUT.")
				return
			}
			if r.Method == http.MethodPut && ws.reg == nil {
				ws.mu.Unlock()
				fail(http.StatusNotFound, "No webhook registration exists for this partner; create one with POST.")
				return
			}
			ws.reg = &WebhookRegistration{SubscriberID: ws.subscriber, WebhookURL: in.WebhookURL, WebhookEvents: in.WebhookEvents}
			ws.origin = requestOrigin(r)
			reg := *ws.reg
			ws.mu.Unlock()
			ok(reg)
		case http.MethodDelete:
			ws.mu.Lock()
			had := ws.reg != nil
			ws.reg = nil
			ws.mu.Unlock()
			if !had {
				fail(http.StatusNotFound, "No webhook registration exists for this partner.")
				return
			}
			w.WriteHeader(http.StatusNoContent)
			s.count(EndpointWebhooks, strconv.Itoa(http.StatusNoContent))
		default:
			h.Set("Allow", "GET, POST, PUT, DELETE")
			fail(http.StatusMethodNotAllowed, "The requested resource does not support http method '"+r.Method+"'.")
		}
	case path == "/webhooks/v1/registration/validationevents" && r.Method == http.MethodPost:
		now := s.wall.Now()
		partner := s.auditPartner() // before ws.mu: Sim.mu is taken first
		ws.mu.Lock()
		if ws.reg == nil || !containsFold(ws.reg.WebhookEvents, WebhookTestCreated) {
			ws.mu.Unlock()
			fail(http.StatusBadRequest, "Register for the \"test-created\" event before sending a validation event.")
			return
		}
		// Documented: 2 requests per minute.
		recent := ws.valTimes[:0]
		for _, t := range ws.valTimes {
			if now.Sub(t) < time.Minute {
				recent = append(recent, t)
			}
		}
		ws.valTimes = recent
		if len(recent) >= 2 {
			ws.mu.Unlock()
			h.Set("Retry-After", "60")
			fail(http.StatusTooManyRequests, "Rate limit is exceeded: 2 validation events per minute.")
			return
		}
		ws.valTimes = append(ws.valTimes, now)
		corr := guid(ws.rng)
		v := &webhookValidation{CorrelationID: corr, PartnerID: partner, Status: "pending",
			CallbackURL: ws.reg.WebhookURL, Results: []webhookValidationResult{}}
		ws.validations[corr] = v
		ws.valOrder = append(ws.valOrder, corr)
		if len(ws.valOrder) > 100 {
			delete(ws.validations, ws.valOrder[0])
			ws.valOrder = ws.valOrder[1:]
		}
		body := webhookBody(WebhookTestCreated, webhookBase+"/webhooks/v1/registration/validationEvents/"+corr, "test", "", tick100ns(s.Now()))
		ws.enqueueLocked(s, webhookJob{event: WebhookTestCreated, url: ws.reg.WebhookURL, body: body, due: now, corr: corr})
		ws.mu.Unlock()
		ok(map[string]string{"correlationId": corr})
	case strings.HasPrefix(path, "/webhooks/v1/registration/validationevents/") && r.Method == http.MethodGet:
		corr := r.URL.Path[strings.LastIndex(strings.TrimSuffix(r.URL.Path, "/"), "/")+1:]
		corr = strings.TrimSuffix(corr, "/")
		ws.mu.Lock()
		v := ws.validations[strings.ToLower(corr)]
		var out webhookValidation
		if v != nil {
			out = *v
			out.Results = append([]webhookValidationResult{}, v.Results...)
		}
		ws.mu.Unlock()
		if v == nil {
			fail(http.StatusNotFound, "No validation event "+corr+" (they are kept 7 days).")
			return
		}
		ok(out)
	default:
		fail(http.StatusNotFound, "No webhook endpoint "+r.URL.Path+".")
	}
}

// auditPartner is the partner id the activity log uses.
func (s *Sim) auditPartner() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.audit.partner
}

// serveWebhookCert serves the signer's chain as PEM, unauthenticated (it is
// public, as Microsoft's blob is).
func (s *Sim) serveWebhookCert(w http.ResponseWriter, r *http.Request, path string) {
	sg := s.opts.WebhookSigner
	if r.Method != http.MethodGet || sg == nil || len(sg.Chain) == 0 ||
		path != "/webhooks/cert/"+strings.ToLower(sg.Chain[0].Subject.CommonName)+".cer" {
		s.write(w, EndpointWebhooks, http.StatusNotFound, errorBody(http.StatusNotFound, "No certificate "+r.URL.Path+"."))
		return
	}
	var b bytes.Buffer
	for _, c := range sg.Chain {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	w.Header().Set("Content-Type", "application/x-pem-file")
	s.write(w, EndpointWebhooks, http.StatusOK, b.Bytes())
}

// requestOrigin is the scheme and host r reached.
func requestOrigin(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}
