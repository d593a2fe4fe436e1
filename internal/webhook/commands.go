package webhook

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/pcwatch/pcwatch/internal/clock"
)

// ErrForeignRegistration is wrapped by Register and Unregister when the
// partner's registration points at another URL: another tool may own it.
var ErrForeignRegistration = errors.New("the webhook registration points elsewhere")

// ErrValidationFailed is wrapped by Test when the test event was not
// delivered.
var ErrValidationFailed = errors.New("the test event was not delivered")

// Defaults of Commands.
const (
	DefaultTestPolls    = 10
	DefaultTestInterval = 3 * time.Second
)

// Commands are the business logic of `watcher webhooks
// status|register|unregister|test`; the CLI parses flags into it and
// calls Run (or a method). Output is plain text on Out, one fact a line.
type Commands struct {
	// Client talks to the registration API. Required.
	Client *Client
	// Out receives the output; nil discards it.
	Out io.Writer
	// URL is this watcher's public callback URL (--webhook-url): what
	// register registers and what register and unregister compare the
	// existing registration with.
	URL string
	// Events to register; default DefaultEvents.
	Events []string
	// Force replaces or removes a registration that points elsewhere.
	Force bool
	// AllowHTTP accepts an http:// URL (simulators and tests; Partner
	// Center delivers to public https endpoints).
	AllowHTTP bool
	// TestPolls and TestInterval bound test's wait for the delivery
	// report; defaults DefaultTestPolls, DefaultTestInterval. Sleep waits
	// between polls (default clock.Sleep; tests inject one).
	TestPolls    int
	TestInterval time.Duration
	Sleep        func(ctx context.Context, d time.Duration) error
}

// Run runs the subcommand args[0] ("status", "register", "unregister",
// "test").
func (c Commands) Run(ctx context.Context, args []string) error {
	if len(args) != 1 {
		return errors.New("webhooks: want one of status, register, unregister, test")
	}
	switch args[0] {
	case "status":
		return c.Status(ctx)
	case "register":
		return c.Register(ctx)
	case "unregister":
		return c.Unregister(ctx)
	case "test":
		return c.Test(ctx)
	}
	return fmt.Errorf("webhooks: unknown subcommand %q (want status, register, unregister or test)", args[0])
}

func (c Commands) out() io.Writer {
	if c.Out == nil {
		return io.Discard
	}
	return c.Out
}

// Status prints the registration (or that there is none) and whether it
// points at URL.
func (c Commands) Status(ctx context.Context) error {
	reg, err := c.Client.Get(ctx)
	if err != nil {
		return err
	}
	w := c.out()
	if reg == nil {
		fmt.Fprintln(w, "registration: none")
		return nil
	}
	fmt.Fprintln(w, "registration: present")
	if reg.SubscriberID != "" {
		fmt.Fprintf(w, "subscriber: %s\n", reg.SubscriberID)
	}
	fmt.Fprintf(w, "url: %s\n", reg.WebhookURL)
	fmt.Fprintf(w, "events: %s\n", strings.Join(reg.WebhookEvents, ", "))
	if c.URL != "" {
		if sameURL(reg.WebhookURL, c.URL) {
			fmt.Fprintln(w, "owner: this watcher (the url is --webhook-url)")
		} else {
			fmt.Fprintf(w, "owner: another tool (the url is not --webhook-url %s)\n", c.URL)
		}
	}
	return nil
}

func (c Commands) checkURL() error {
	if c.URL == "" {
		return errors.New("webhooks: no callback URL: set --webhook-url to the public URL Partner Center should POST to")
	}
	u, err := url.Parse(c.URL)
	if err != nil || u.Host == "" || u.User != nil || !(u.Scheme == "https" || (c.AllowHTTP && u.Scheme == "http")) {
		return fmt.Errorf("webhooks: --webhook-url %q is not an absolute https URL without credentials (e.g. https://pcwatch.example.com/webhooks/partner-center)", c.URL)
	}
	return nil
}

// Register makes the partner's registration point at URL with Events: POST
// when there is none, PUT when there is one of this URL (the events are
// replaced) or, with Force, of another URL; without Force a registration of
// another URL is left alone and the error wraps ErrForeignRegistration.
func (c Commands) Register(ctx context.Context) error {
	if err := c.checkURL(); err != nil {
		return err
	}
	events := c.Events
	if len(events) == 0 {
		events = DefaultEvents
	}
	cur, err := c.Client.Get(ctx)
	if err != nil {
		return err
	}
	want := Registration{WebhookURL: c.URL, WebhookEvents: events}
	var got *Registration
	switch {
	case cur == nil:
		got, err = c.Client.Create(ctx, want)
	case sameURL(cur.WebhookURL, c.URL) || c.Force:
		got, err = c.Client.Update(ctx, want)
	default:
		return fmt.Errorf("webhooks: %w: it points at %s, not %s; another tool may own it: leave it, or pass --force to replace it",
			ErrForeignRegistration, cur.WebhookURL, c.URL)
	}
	if err != nil {
		return err
	}
	w := c.out()
	if cur != nil && !sameURL(cur.WebhookURL, c.URL) {
		fmt.Fprintf(w, "replaced: %s (--force)\n", cur.WebhookURL)
	}
	fmt.Fprintf(w, "registered: %s\n", got.WebhookURL)
	fmt.Fprintf(w, "events: %s\n", strings.Join(got.WebhookEvents, ", "))
	if !slices.ContainsFunc(got.WebhookEvents, func(e string) bool { return strings.EqualFold(e, EventTest) }) {
		fmt.Fprintln(w, "note: test-created is not registered, so `webhooks test` cannot validate it")
	}
	return nil
}

// Unregister deletes the registration when it points at URL (or, with
// Force, whatever it points at); without Force a registration of another
// URL (or any, when URL is empty) is left alone and the error wraps
// ErrForeignRegistration.
func (c Commands) Unregister(ctx context.Context) error {
	cur, err := c.Client.Get(ctx)
	if err != nil {
		return err
	}
	w := c.out()
	if cur == nil {
		fmt.Fprintln(w, "registration: none (nothing to remove)")
		return nil
	}
	if !c.Force && (c.URL == "" || !sameURL(cur.WebhookURL, c.URL)) {
		return fmt.Errorf("webhooks: %w: it points at %s, not --webhook-url %q; another tool may own it: leave it, or pass --force to remove it",
			ErrForeignRegistration, cur.WebhookURL, c.URL)
	}
	if err := c.Client.Delete(ctx); err != nil {
		return err
	}
	fmt.Fprintf(w, "unregistered: %s\n", cur.WebhookURL)
	return nil
}

// Test asks Partner Center for a test-created callback and polls its
// delivery report until an attempt succeeded, the report says failed, or
// TestPolls polls passed; the error wraps ErrValidationFailed unless it
// was delivered.
func (c Commands) Test(ctx context.Context) error {
	corr, err := c.Client.SendValidation(ctx)
	if err != nil {
		return err
	}
	w := c.out()
	fmt.Fprintf(w, "test event: %s\n", corr)
	polls, interval, sleep := c.TestPolls, c.TestInterval, c.Sleep
	if polls <= 0 {
		polls = DefaultTestPolls
	}
	if interval <= 0 {
		interval = DefaultTestInterval
	}
	if sleep == nil {
		sleep = clock.Sleep
	}
	var st *ValidationStatus
	for i := 0; i < polls; i++ {
		if i > 0 {
			if err := sleep(ctx, interval); err != nil {
				return err
			}
		}
		st, err = c.Client.Validation(ctx, corr)
		if err != nil {
			return err
		}
		if delivered(st) || strings.EqualFold(st.Status, "failed") {
			break
		}
	}
	for _, r := range st.Results {
		msg := ""
		if r.ResponseMessage != "" {
			msg = " " + clip(r.ResponseMessage)
		}
		fmt.Fprintf(w, "attempt: %s %s%s\n", r.DateTimeUtc, r.ResponseCode, msg)
	}
	fmt.Fprintf(w, "status: %s\n", st.Status)
	if !delivered(st) {
		return fmt.Errorf("webhooks: %w (status %q after %d attempts): check that %s is reachable from the internet and that the watcher's webhook listener is on",
			ErrValidationFailed, st.Status, len(st.Results), st.CallbackURL)
	}
	return nil
}

func delivered(st *ValidationStatus) bool {
	for _, r := range st.Results {
		if strings.EqualFold(r.ResponseCode, "OK") {
			return true
		}
	}
	return false
}

// sameURL compares callback URLs ignoring the case of scheme and host and
// a trailing slash.
func sameURL(a, b string) bool {
	norm := func(s string) string {
		u, err := url.Parse(strings.TrimSpace(s))
		if err != nil {
			return s
		}
		u.Scheme, u.Host = strings.ToLower(u.Scheme), strings.ToLower(u.Host)
		u.Path = strings.TrimSuffix(u.Path, "/")
		return u.String()
	}
	return norm(a) == norm(b)
}
