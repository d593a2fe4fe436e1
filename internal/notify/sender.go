package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/pcwatch/pcwatch/internal/cli"
	"github.com/pcwatch/pcwatch/internal/clock"
	"github.com/pcwatch/pcwatch/internal/events"
)

// Failure reasons: the reason label of the failures metric and the
// Pcwatch-Dlq-Reason header. The set is closed.
const (
	ReasonNetwork     = "network"      // connection refused, reset, DNS, TLS
	ReasonTimeout     = "timeout"      // the channel's timeout passed
	ReasonHTTP408     = "http_408"     // request timeout
	ReasonHTTP429     = "http_429"     // throttled
	ReasonHTTP5xx     = "http_5xx"     // server error
	ReasonHTTP4xx     = "http_4xx"     // any other 4xx: permanent
	ReasonRedirect    = "http_3xx"     // redirects are not followed: permanent
	ReasonSMTPTemp    = "smtp_4xx"     // transient SMTP reply
	ReasonSMTPPerm    = "smtp_5xx"     // permanent SMTP reply
	ReasonNATS        = "nats_publish" // the nats channel could not publish
	ReasonRender      = "render"       // a template failed on this event
	ReasonRejected    = "rejected"     // the payload cannot be sent (too large, bad subject)
	ReasonUndecodable = "undecodable"  // the message is not a pcwatch CloudEvent
	ReasonDedupe      = "dedupe_store" // the deliveries bucket could not be read or written
	ReasonConfig      = "config"       // replay: the channel is no longer configured
)

// SendError is a failed send. Permanent errors go to the dead-letter queue
// at once; the others are retried with backoff, honouring RetryAfter, until
// delivery.max_attempts. Its message never holds a secret: URLs are reduced
// to scheme and host.
type SendError struct {
	Channel    string
	Reason     string // one of the Reason constants
	Status     int    // HTTP status or SMTP reply code; 0 if none
	Permanent  bool
	RetryAfter time.Duration // the receiver's Retry-After; valid when HasRetryAfter
	// HasRetryAfter is set when the receiver sent a usable Retry-After.
	HasRetryAfter bool
	Err           error
}

func (e *SendError) Error() string {
	kind := "temporary"
	if e.Permanent {
		kind = "permanent"
	}
	msg := fmt.Sprintf("channel %s: %s failure (%s)", e.Channel, kind, e.Reason)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *SendError) Unwrap() error { return e.Err }

// Temporary reports whether a retry may succeed.
func (e *SendError) Temporary() bool { return !e.Permanent }

// notification is one event on its way to one channel.
type notification struct {
	Event   *events.Event
	Data    *events.Data
	Body    []byte        // the CloudEvent JSON as received
	Message *TemplateData // the rendered message
	Subject string        // the NATS subject it came on ("" for tests)
	Attempt int           // 1 for the first attempt
	// Notice is set on a follow-up sent from an alert record (a reminder,
	// a resolved notice, a warning held by a silence); ID is then its own
	// delivery id, which receivers deduplicate on.
	Notice *Notice
	ID     string
	// Group is set on a grouped message: its events, in order (Event is
	// the first, Body their CloudEvents JSON batch, Message.Group the rows).
	Group []*events.Event
}

// deliveryID is the id receivers deduplicate on: the event id, or a
// notice's own id.
func (n *notification) deliveryID() string {
	if n.ID != "" {
		return n.ID
	}
	return n.Event.ID
}

// sender delivers notifications to one channel. send must respect ctx and
// return a *SendError on failure.
type sender interface {
	send(ctx context.Context, n *notification) error
	// target describes the destination without secrets.
	target() string
}

// senderDeps are what senders need from the process.
type senderDeps struct {
	http  *http.Client
	conn  *nats.Conn
	clock clock.Clock
}

func newSender(ch *Channel, deps senderDeps) (sender, error) {
	if deps.clock == nil {
		deps.clock = clock.Real{}
	}
	if deps.http == nil {
		deps.http = newHTTPClient()
	}
	switch ch.Kind {
	case KindWebhook:
		return newWebhook(ch, deps)
	case KindSlack:
		return pace(&slackSender{ch: ch, post: poster{hc: deps.http, ch: ch.name, clk: deps.clock, url: ch.url}}, KindSlack, deps.clock, nil), nil
	case KindTeams:
		return pace(&teamsSender{ch: ch, post: poster{hc: deps.http, ch: ch.name, clk: deps.clock, url: ch.url}}, KindTeams, deps.clock, nil), nil
	case KindEmail:
		return &emailSender{ch: ch, clk: deps.clock}, nil
	case KindNATS:
		if deps.conn == nil {
			return nil, fmt.Errorf("channel %s: a nats channel needs a NATS connection", ch.name)
		}
		return newNATSSender(ch, deps.conn)
	}
	return nil, fmt.Errorf("channel %s: unknown kind %q", ch.name, ch.Kind)
}

// newHTTPClient returns the client senders share: no redirects (a
// redirected webhook is a configuration problem, and following a POST
// redirect may turn it into a GET).
func newHTTPClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 8
	return &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// redactURL reduces a URL to its scheme and host: webhook URLs of Slack and
// Teams carry their token in the path or query.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return "(url)"
	}
	return u.Scheme + "://" + u.Host
}

// poster sends JSON bodies to an HTTP endpoint and classifies the answer.
type poster struct {
	hc  *http.Client
	ch  string
	clk clock.Clock
	url secret
}

func (p poster) target() string { return redactURL(p.url.value()) }

// post sends body and returns nil on any 2xx.
func (p poster) post(ctx context.Context, body []byte, hdr http.Header) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url.value(), bytes.NewReader(body))
	if err != nil {
		return &SendError{Channel: p.ch, Reason: ReasonRejected, Permanent: true, Err: fmt.Errorf("building the request to %s: %v", p.target(), scrub(err.Error(), p.url.value()))}
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("User-Agent", "pcwatch-notifier/1")
	resp, err := p.hc.Do(req)
	if err != nil {
		return p.transportError(ctx, err)
	}
	defer resp.Body.Close()
	excerpt, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // keep the connection reusable
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	return p.statusError(resp, excerpt)
}

func (p poster) transportError(ctx context.Context, err error) error {
	// A *url.Error repeats the URL, token included: keep only its cause.
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	msg := scrub(err.Error(), p.url.value())
	reason := ReasonNetwork
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || ctx.Err() == context.DeadlineExceeded || errors.As(err, &ne) && ne.Timeout() {
		reason = ReasonTimeout
	}
	return &SendError{Channel: p.ch, Reason: reason, Err: fmt.Errorf("POST %s: %s", p.target(), msg)}
}

func (p poster) statusError(resp *http.Response, excerpt []byte) error {
	code := resp.StatusCode
	e := &SendError{Channel: p.ch, Status: code}
	switch {
	case code == http.StatusRequestTimeout:
		e.Reason = ReasonHTTP408
	case code == http.StatusTooManyRequests:
		e.Reason = ReasonHTTP429
	case code >= 500:
		e.Reason = ReasonHTTP5xx
	case code >= 300 && code < 400:
		e.Reason, e.Permanent = ReasonRedirect, true
	default:
		e.Reason, e.Permanent = ReasonHTTP4xx, true
	}
	if !e.Permanent {
		e.RetryAfter, e.HasRetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), p.clk.Now())
	}
	msg := fmt.Sprintf("POST %s: HTTP %d", p.target(), code)
	if s := strings.TrimSpace(cli.OneLine(scrub(string(excerpt), p.url.value()))); s != "" {
		msg += ": " + truncate(200, s)
	}
	if e.HasRetryAfter {
		msg += fmt.Sprintf(" (retry after %s)", e.RetryAfter)
	}
	e.Err = errors.New(msg)
	return e
}

// scrub removes a secret URL (and its path and query) from text.
func scrub(s, secretURL string) string {
	if secretURL == "" {
		return s
	}
	s = strings.ReplaceAll(s, secretURL, redactURL(secretURL))
	if u, err := url.Parse(secretURL); err == nil {
		if len(u.Path) > 1 {
			s = strings.ReplaceAll(s, u.Path, "/…")
		}
		if u.RawQuery != "" {
			s = strings.ReplaceAll(s, u.RawQuery, "…")
		}
	}
	return s
}

// maxRetryAfter caps what a receiver may ask for.
const maxRetryAfter = time.Hour

// parseRetryAfter reads a Retry-After header: delay-seconds or an HTTP
// date.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	var d time.Duration
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 {
			return 0, false
		}
		d = time.Duration(min(n, int64(maxRetryAfter/time.Second))) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = max(t.Sub(now), 0)
	} else {
		return 0, false
	}
	return min(d, maxRetryAfter), true
}

// retryDelay is how long to wait before attempt+1: the receiver's
// Retry-After when it sent one, else exponential backoff from initial,
// doubling per attempt up to max, with ±20% jitter from rnd (in [0,1)).
func retryDelay(attempt int, se *SendError, initial, maxD time.Duration, rnd float64) time.Duration {
	if se != nil && se.HasRetryAfter {
		return se.RetryAfter
	}
	d := initial
	for i := 1; i < attempt && d < maxD; i++ {
		d *= 2
	}
	d = min(d, maxD)
	jitter := time.Duration((rnd*0.4 - 0.2) * float64(d))
	return max(d+jitter, 0)
}
