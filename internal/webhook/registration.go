package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"

	pc "github.com/pcwatch/pcwatch/internal/partnercenter"
)

// The registration API ("Partner Center webhooks", Webhook APIs): one
// registration per partner tenant, under {base}/webhooks/v1/registration,
// authenticated with the same bearer token as the rest of the API.
const registrationPath = "/webhooks/v1/registration"

// Defaults of ClientOptions.
const (
	DefaultRequestTimeout   = 30 * time.Second
	DefaultMaxResponseBytes = 1 << 20
)

// ClientOptions configure a registration Client.
type ClientOptions struct {
	// BaseURL is the API root, as partnercenter.Options.BaseURL (default
	// partnercenter.GlobalBaseURL; a simulator's URL in tests).
	BaseURL string
	// TokenSource supplies bearer tokens (partnercenter.Credentials.
	// TokenSource). Required.
	TokenSource oauth2.TokenSource
	// HTTPClient sends the requests; redirects are refused (a token must
	// not follow one). Default: the default transport.
	HTTPClient *http.Client
	// Timeout bounds one request. Default DefaultRequestTimeout.
	Timeout time.Duration
	// MaxResponseBytes bounds a response body. Default
	// DefaultMaxResponseBytes.
	MaxResponseBytes int64
}

// Client manages the partner's webhook registration. Safe for concurrent
// use. It does not retry: its callers are one-shot commands.
type Client struct {
	base    *url.URL
	ts      oauth2.TokenSource
	hc      *http.Client
	timeout time.Duration
	max     int64
}

// Registration is the partner's registration.
type Registration struct {
	SubscriberID  string   `json:"SubscriberId,omitempty"`
	WebhookURL    string   `json:"WebhookUrl"`
	WebhookEvents []string `json:"WebhookEvents"`
}

// ValidationStatus is the state of a validation (test) event.
type ValidationStatus struct {
	CorrelationID string             `json:"correlationId"`
	PartnerID     string             `json:"partnerId"`
	Status        string             `json:"status"` // documented: "completed"
	CallbackURL   string             `json:"callbackUrl"`
	Results       []ValidationResult `json:"results"`
}

// ValidationResult is one delivery attempt of a validation event.
type ValidationResult struct {
	ResponseCode    string `json:"responseCode"`
	ResponseMessage string `json:"responseMessage"`
	SystemError     bool   `json:"systemError"`
	DateTimeUtc     string `json:"dateTimeUtc"`
}

// APIError is a registration API answer other than 2xx.
type APIError struct {
	Op      string // e.g. "GET /webhooks/v1/registration"
	Status  int
	Message string // the body's description or message, clipped
}

func (e *APIError) Error() string {
	fix := ""
	switch e.Status {
	case http.StatusUnauthorized:
		fix = ": the token was refused; check the PCWATCH_PC_* credentials"
	case http.StatusForbidden:
		fix = ": the credentials lack the rights; managing webhooks needs an admin agent role"
	case http.StatusTooManyRequests:
		fix = ": throttled (validation events are limited to 2 a minute); try again in a minute"
	}
	msg := ""
	if e.Message != "" {
		msg = " (" + e.Message + ")"
	}
	return fmt.Sprintf("webhook registration API: %s answered HTTP %d%s%s", e.Op, e.Status, msg, fix)
}

// NewClient checks o.
func NewClient(o ClientOptions) (*Client, error) {
	if o.BaseURL == "" {
		o.BaseURL = pc.GlobalBaseURL
	}
	u, err := url.Parse(o.BaseURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
		return nil, fmt.Errorf("webhook registration client: base URL %q is not an absolute http(s) URL without credentials (e.g. %s)", o.BaseURL, pc.GlobalBaseURL)
	}
	u.Path = strings.TrimSuffix(strings.TrimSuffix(u.Path, "/"), "/v1")
	u.RawQuery, u.Fragment = "", ""
	if o.TokenSource == nil {
		return nil, errors.New("webhook registration client: no credentials (set PCWATCH_PC_TOKEN, or PCWATCH_PC_TENANT_ID, PCWATCH_PC_CLIENT_ID and PCWATCH_PC_CLIENT_SECRET)")
	}
	hc := &http.Client{}
	if o.HTTPClient != nil {
		c := *o.HTTPClient
		hc = &c
	}
	hc.CheckRedirect = func(req *http.Request, _ []*http.Request) error {
		return fmt.Errorf("webhook registration API redirected to %s: refused (the bearer token must not follow a redirect)", req.URL.Redacted())
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultRequestTimeout
	}
	if o.MaxResponseBytes <= 0 {
		o.MaxResponseBytes = DefaultMaxResponseBytes
	}
	return &Client{base: u, ts: oauth2.ReuseTokenSource(nil, o.TokenSource), hc: hc, timeout: o.Timeout, max: o.MaxResponseBytes}, nil
}

// Get returns the registration, or nil when there is none (404).
func (c *Client) Get(ctx context.Context) (*Registration, error) {
	var r Registration
	status, err := c.do(ctx, http.MethodGet, registrationPath, nil, &r, http.StatusNotFound)
	if err != nil || status == http.StatusNotFound {
		return nil, err
	}
	return &r, nil
}

// Create registers (POST); Update replaces the registration (PUT).
func (c *Client) Create(ctx context.Context, r Registration) (*Registration, error) {
	return c.put(ctx, http.MethodPost, r)
}

// Update replaces the registration (PUT).
func (c *Client) Update(ctx context.Context, r Registration) (*Registration, error) {
	return c.put(ctx, http.MethodPut, r)
}

func (c *Client) put(ctx context.Context, method string, r Registration) (*Registration, error) {
	in := Registration{WebhookURL: r.WebhookURL, WebhookEvents: r.WebhookEvents}
	b, err := json.Marshal(in)
	if err != nil {
		return nil, err
	}
	var out Registration
	if _, err := c.do(ctx, method, registrationPath, b, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Delete removes the registration; none (404) is not an error.
func (c *Client) Delete(ctx context.Context) error {
	_, err := c.do(ctx, http.MethodDelete, registrationPath, nil, nil, http.StatusNotFound)
	return err
}

// Events lists the event names Partner Center supports.
func (c *Client) Events(ctx context.Context) ([]string, error) {
	var out []string
	_, err := c.do(ctx, http.MethodGet, registrationPath+"/events", nil, &out)
	return out, err
}

// SendValidation asks for a test-created callback and returns its
// correlation id.
func (c *Client) SendValidation(ctx context.Context) (string, error) {
	var out struct {
		CorrelationID string `json:"correlationId"`
	}
	if _, err := c.do(ctx, http.MethodPost, registrationPath+"/validationEvents", nil, &out); err != nil {
		return "", err
	}
	if out.CorrelationID == "" {
		return "", errors.New("webhook registration API: the validation event's answer carries no correlationId")
	}
	return out.CorrelationID, nil
}

// Validation returns a validation event's state.
func (c *Client) Validation(ctx context.Context, correlationID string) (*ValidationStatus, error) {
	var out ValidationStatus
	if _, err := c.do(ctx, http.MethodGet, registrationPath+"/validationEvents/"+url.PathEscape(correlationID), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// do sends one request; a 2xx body is decoded into out (when not nil and
// not empty); a status in ok (besides 2xx) is returned without error.
func (c *Client) do(ctx context.Context, method, path string, body []byte, out any, ok ...int) (int, error) {
	op := method + " " + path
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	u := *c.base
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return 0, fmt.Errorf("webhook registration API: %s: %w", op, err)
	}
	tok, err := c.ts.Token()
	if err != nil {
		return 0, fmt.Errorf("webhook registration API: getting a token: %w", err)
	}
	tok.SetAuthHeader(req)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("MS-CorrelationId", pc.NewID())
	req.Header.Set("MS-RequestId", pc.NewID())
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("webhook registration API: %s: %w", op, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, c.max+1))
	if err != nil {
		return 0, fmt.Errorf("webhook registration API: %s: reading the answer: %w", op, err)
	}
	if int64(len(b)) > c.max {
		return 0, fmt.Errorf("webhook registration API: %s: the answer exceeds %d bytes", op, c.max)
	}
	for _, s := range ok {
		if resp.StatusCode == s {
			return s, nil
		}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, &APIError{Op: op, Status: resp.StatusCode, Message: errorMessage(b)}
	}
	if out != nil && len(bytes.TrimSpace(b)) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("webhook registration API: %s: the answer does not decode: %w", op, err)
		}
	}
	return resp.StatusCode, nil
}

// errorMessage extracts a Partner Center error body's description.
func errorMessage(b []byte) string {
	var e struct {
		Description string `json:"description"`
		Message     string `json:"message"`
	}
	if json.Unmarshal(b, &e) == nil {
		if e.Description != "" {
			return clip(e.Description)
		}
		if e.Message != "" {
			return clip(e.Message)
		}
	}
	return ""
}
