package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Event is a Partner Center webhook callback body, as "Partner Center
// webhooks" (Event model) documents it: PascalCase properties, all
// optional but EventName. AuditUri is documented as "AuditUrl" in the
// property table and "AuditUri" in every example; both are read.
type Event struct {
	EventName    string `json:"EventName"`
	ResourceURI  string `json:"ResourceUri"`
	ResourceName string `json:"ResourceName"`
	AuditURI     string `json:"AuditUri"`
	// ResourceChangeUtcDate is when the resource changed (zero when the
	// callback has none or null).
	ResourceChangeUtcDate time.Time `json:"-"`
}

// MaxEventNameLength bounds EventName: documented names are under 60
// characters; a longer one is malformed, not a new event.
const MaxEventNameLength = 128

// ErrMalformed is wrapped by every error of DecodeEvent.
var ErrMalformed = errors.New("malformed webhook callback")

// wireEvent is the decoded body; Date is decoded by hand because Partner
// Center writes 7 fractional digits with or without an offset.
type wireEvent struct {
	EventName             *string `json:"EventName"`
	ResourceURI           *string `json:"ResourceUri"`
	ResourceName          *string `json:"ResourceName"`
	AuditURI              *string `json:"AuditUri"`
	AuditURL              *string `json:"AuditUrl"`
	ResourceChangeUtcDate *string `json:"ResourceChangeUtcDate"`
}

// DecodeEvent decodes a callback body. It requires one JSON object with a
// non-empty EventName of at most MaxEventNameLength characters and, when
// ResourceChangeUtcDate is present and not null, a parseable date; other
// properties are optional (the documented examples omit ResourceUri or
// ResourceName, or set them to null) and unknown ones are ignored. Property
// names match case-insensitively, as .NET's serializer writes them. Errors
// wrap ErrMalformed.
func DecodeEvent(body []byte) (Event, error) {
	var w wireEvent
	body = bytes.TrimSpace(body)
	if len(body) == 0 || body[0] != '{' {
		return Event{}, fmt.Errorf("%w: not a JSON object", ErrMalformed)
	}
	// Unmarshal refuses trailing data after the object.
	if err := json.Unmarshal(body, &w); err != nil {
		return Event{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	str := func(p *string) string {
		if p == nil {
			return ""
		}
		return strings.TrimSpace(*p)
	}
	e := Event{EventName: str(w.EventName), ResourceURI: str(w.ResourceURI), ResourceName: str(w.ResourceName),
		AuditURI: str(w.AuditURI)}
	if e.AuditURI == "" {
		e.AuditURI = str(w.AuditURL)
	}
	switch {
	case e.EventName == "":
		return Event{}, fmt.Errorf("%w: no EventName", ErrMalformed)
	case len(e.EventName) > MaxEventNameLength:
		return Event{}, fmt.Errorf("%w: EventName of %d bytes (at most %d)", ErrMalformed, len(e.EventName), MaxEventNameLength)
	}
	if d := str(w.ResourceChangeUtcDate); d != "" {
		t, err := parseDate(d)
		if err != nil {
			return Event{}, fmt.Errorf("%w: ResourceChangeUtcDate %q: %v", ErrMalformed, clip(d), err)
		}
		e.ResourceChangeUtcDate = t
	}
	return e, nil
}

// parseDate reads Partner Center's date-times: RFC 3339 with up to 9
// fractional digits, with an offset or without one (then UTC, as the
// property's name says).
func parseDate(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	t, err := time.Parse("2006-01-02T15:04:05.999999999", s)
	if err != nil {
		return time.Time{}, errors.New("not an RFC 3339 date-time")
	}
	return t.UTC(), nil
}

// clip shortens outside input for error messages and logs.
func clip(s string) string {
	const n = 80
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// Resource is what ParseResourceURI found in a ResourceUri.
type Resource struct {
	CustomerID     string // "" when the URI names no customer
	SubscriptionID string // "" when it names no subscription
}

// MaxResourceURILength bounds a ResourceUri; longer ones name nothing.
const MaxResourceURILength = 2048

// ParseResourceURI finds the customer and subscription a ResourceUri
// names. The documented forms are {base}/webhooks/v1/customers/{id}/
// subscriptions/{id} (subscription-updated) and {base}/v1/customers/{id}
// (reseller-relationship-accepted-by-customer); any path whose segments
// contain "customers/{id}", optionally followed by "subscriptions/{id}",
// is read the same way, whatever the host, scheme (the examples use http)
// or prefix. Placeholders ({{CustomerId}}), ids that are not plain tokens
// (letters, digits, '-', '_', '.'; at most 64 characters) and the
// collection path customers/usagerecords name nothing. The query is
// ignored.
func ParseResourceURI(raw string) Resource {
	if raw == "" || len(raw) > MaxResourceURILength {
		return Resource{}
	}
	u, err := url.Parse(raw)
	if err != nil {
		return Resource{}
	}
	// The escaped path: an id spelt with escapes is not a plain token.
	segs := strings.Split(strings.Trim(u.EscapedPath(), "/"), "/")
	for i := 0; i+1 < len(segs); i++ {
		if !strings.EqualFold(segs[i], "customers") {
			continue
		}
		cust := segs[i+1]
		if !plainID(cust) || strings.EqualFold(cust, "usagerecords") {
			return Resource{}
		}
		r := Resource{CustomerID: cust}
		if i+3 < len(segs) && strings.EqualFold(segs[i+2], "subscriptions") && plainID(segs[i+3]) {
			r.SubscriptionID = segs[i+3]
		}
		return r
	}
	return Resource{}
}

func plainID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}

// Event names. The documented ones ("Partner Center webhook events") that
// say a customer or its subscriptions changed are hinted; EventTest is the
// validation event; every other name is counted as unknown and answered
// 200 (Partner Center adds events; an answer other than 2xx would only
// make it retry).
const (
	EventTest                     = "test-created"
	EventSubscriptionUpdated      = "subscription-updated"
	EventResellerAccepted         = "reseller-relationship-accepted-by-customer"
	EventIndirectResellerAccepted = "indirect-reseller-relationship-accepted-by-customer"
	EventDAPApproved              = "dap-admin-relationship-approved"
	EventDAPTerminated            = "dap-admin-relationship-terminated"
	EventDAPTerminatedByMicrosoft = "dap-admin-relationship-terminated-by-microsoft"
)

// HintedEvents are the event names that become hints (when their
// ResourceUri names a customer).
var HintedEvents = []string{EventSubscriptionUpdated, EventResellerAccepted, EventIndirectResellerAccepted,
	EventDAPApproved, EventDAPTerminated, EventDAPTerminatedByMicrosoft}

// DefaultEvents are the events Register asks for when none are given: the
// hinted ones that carry a customer id (the DAP events' documented examples
// carry none) and the validation event, which Test needs.
var DefaultEvents = []string{EventSubscriptionUpdated, EventResellerAccepted, EventIndirectResellerAccepted, EventTest}

func hinted(name string) bool {
	for _, n := range HintedEvents {
		if strings.EqualFold(n, name) {
			return true
		}
	}
	return false
}
