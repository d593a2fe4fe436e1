package partnercenter

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Sentinel errors. An *APIError matches the sentinel of its class through
// errors.Is; use errors.As to reach its details.
var (
	ErrBadRequest   = errors.New("partner center: bad request")
	ErrUnauthorized = errors.New("partner center: unauthorized")
	ErrForbidden    = errors.New("partner center: forbidden")
	ErrNotFound     = errors.New("partner center: not found")
	ErrConflict     = errors.New("partner center: conflict")
	ErrThrottled    = errors.New("partner center: throttled")
	ErrServer       = errors.New("partner center: server error")

	// ErrNotCollection matches a *DecodeError for a 200 body that is valid
	// JSON but not a well-formed collection: not an object, no items array,
	// or no items while totalCount says there are some. Such a body is
	// never read as an empty listing.
	ErrNotCollection = errors.New("partner center: response body is not a collection")
	// ErrNotObject matches a *DecodeError for a 200 body of a single
	// resource that is not a JSON object with an id.
	ErrNotObject = errors.New("partner center: response body is not a resource object")
	// ErrLimit matches a *LimitError: a response or a listing larger than
	// the client's bounds allow.
	ErrLimit = errors.New("partner center: limit exceeded")
	// ErrRedirect matches a *RedirectError: a redirect off the API (or
	// token endpoint) origin, refused.
	ErrRedirect = errors.New("partner center: redirect to another origin refused")
	// ErrGaveUp matches a *RetryError: a request given up after its retry
	// limit, its time budget, or a Retry-After beyond that budget.
	ErrGaveUp = errors.New("partner center: request given up")
)

// APIError is a non-2xx answer from Partner Center. Error bodies come in
// several shapes: {code, description, data, source} with code a number or a
// string; the extended one adding message, errorName, isRetryable; and the
// 429 one {statusCode, message}. All are read into this one type.
type APIError struct {
	Endpoint      string        // logical endpoint, e.g. "customers", "subscriptions"
	Method        string        // HTTP method
	Path          string        // request path, without the host
	StatusCode    int           // HTTP status
	Code          string        // Partner Center error code, as text
	ErrorName     string        // errorName, when sent
	Description   string        // description
	Message       string        // message, when sent
	Retryable     *bool         // isRetryable, when sent
	RequestID     string        // MS-RequestId of the request
	CorrelationID string        // MS-CorrelationId of the request
	RetryAfter    time.Duration // Retry-After, when sent
}

// Error describes the failure without any credential.
func (e *APIError) Error() string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "partner center %s %s: HTTP %d", e.Method, e.Path, e.StatusCode)
	if e.Code != "" {
		fmt.Fprintf(&b, " code %s", e.Code)
	}
	if e.ErrorName != "" {
		fmt.Fprintf(&b, " (%s)", e.ErrorName)
	}
	switch {
	case e.Description != "":
		fmt.Fprintf(&b, ": %s", e.Description)
	case e.Message != "":
		fmt.Fprintf(&b, ": %s", e.Message)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter)
	}
	fmt.Fprintf(&b, " [request-id %s, correlation-id %s]", e.RequestID, e.CorrelationID)
	return b.String()
}

// Is maps the status to its sentinel.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrBadRequest:
		return e.StatusCode == http.StatusBadRequest
	case ErrUnauthorized:
		return e.StatusCode == http.StatusUnauthorized
	case ErrForbidden:
		return e.StatusCode == http.StatusForbidden
	case ErrNotFound:
		return e.StatusCode == http.StatusNotFound
	case ErrConflict:
		return e.StatusCode == http.StatusConflict
	case ErrThrottled:
		return e.StatusCode == http.StatusTooManyRequests
	case ErrServer:
		return e.StatusCode >= 500
	}
	return false
}

// Temporary reports whether retrying the same request may succeed.
func (e *APIError) Temporary() bool {
	return retryableStatus(e.StatusCode)
}

func retryableStatus(code int) bool {
	return code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500
}

// DecodeError is a 2xx response body that could not be read as the
// expected JSON: malformed or truncated (Err is the encoding/json error), or
// valid JSON of the wrong shape (Err matches ErrNotCollection or
// ErrNotObject). The client retries such a body a few times, then returns
// this error; the listing it belongs to fails as a whole.
type DecodeError struct {
	Endpoint      string
	Method        string
	Path          string
	StatusCode    int
	RequestID     string
	CorrelationID string
	Err           error
}

// Error names the endpoint, the path, the HTTP status and the request id.
func (e *DecodeError) Error() string {
	what := "response body is not valid JSON"
	if errors.Is(e.Err, ErrNotCollection) || errors.Is(e.Err, ErrNotObject) {
		what = "response body has the wrong shape"
	}
	return fmt.Sprintf("partner center %s %s (%s): HTTP %d: %s: %v [request-id %s, correlation-id %s]",
		e.Method, e.Path, e.Endpoint, e.StatusCode, what, e.Err, e.RequestID, e.CorrelationID)
}

// Unwrap returns the underlying decoding error.
func (e *DecodeError) Unwrap() error { return e.Err }

// flexString reads a JSON string, number or boolean as text.
type flexString string

func (f *flexString) UnmarshalJSON(b []byte) error {
	v, err := unmarshalEnum(b)
	*f = flexString(v)
	return err
}

// errorBody is the union of the documented error shapes.
type errorBody struct {
	Code        flexString `json:"code"`
	StatusCode  flexString `json:"statusCode"`
	Description string     `json:"description"`
	Message     string     `json:"message"`
	ErrorName   string     `json:"errorName"`
	IsRetryable *bool      `json:"isRetryable"`
}

// parseErrorBody fills e from an error body. A body that is not JSON leaves
// the fields empty and puts a short excerpt in Description; it never fails,
// because the HTTP status already says what went wrong.
func (e *APIError) parseErrorBody(body []byte) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return
	}
	var eb errorBody
	if err := json.Unmarshal(body, &eb); err != nil {
		const max = 200
		if len(body) > max {
			body = append(body[:max:max], "..."...)
		}
		e.Description = "unreadable error body: " + strconv.Quote(string(body))
		return
	}
	e.Code = string(eb.Code)
	if e.Code == "" {
		e.Code = string(eb.StatusCode)
	}
	e.Description = eb.Description
	e.Message = eb.Message
	e.ErrorName = eb.ErrorName
	e.Retryable = eb.IsRetryable
}

// shapeError is a body of valid JSON but the wrong shape; it matches its
// sentinel (ErrNotCollection or ErrNotObject) and says what was found.
type shapeError struct {
	sentinel error
	msg      string
}

func (e *shapeError) Error() string        { return e.msg }
func (e *shapeError) Is(target error) bool { return target == e.sentinel }

func notCollection(format string, args ...any) error {
	return &shapeError{ErrNotCollection, "not a collection: " + fmt.Sprintf(format, args...)}
}

func notObject(format string, args ...any) error {
	return &shapeError{ErrNotObject, "not a resource object: " + fmt.Sprintf(format, args...)}
}

// Limit names, as the Options fields that set them.
const (
	LimitResponseBytes = "MaxResponseBytes"
	LimitListingBytes  = "MaxListingBytes"
	LimitPages         = "MaxPages"
	LimitItems         = "MaxItems"
)

// LimitError is a response or a listing that exceeds one of the client's
// memory bounds. It is not retried: the same request would only exceed it
// again. Option names the Options field to raise if the size is legitimate.
type LimitError struct {
	Endpoint      string
	Method        string
	Path          string // the request that crossed the bound
	Option        string // LimitResponseBytes, LimitListingBytes, LimitPages or LimitItems
	Limit         int64  // the bound in force (bytes, pages or items)
	Page          int    // the listing page being read, 1-based
	RequestID     string
	CorrelationID string
	// Hint names the setting that raises the bound for the program's user
	// (e.g. "--max-pages"); default "Options.<Option>".
	Hint string
}

// Error says which bound was crossed and how to raise it.
func (e *LimitError) Error() string {
	var what string
	switch e.Option {
	case LimitResponseBytes:
		what = fmt.Sprintf("the response is larger than the %s per-response limit (decoded items count at their in-memory size)", formatBytes(e.Limit))
	case LimitListingBytes:
		what = fmt.Sprintf("the %s listing is larger than the %s per-listing limit at page %d", e.Endpoint, formatBytes(e.Limit), e.Page)
	case LimitPages:
		what = fmt.Sprintf("the %s listing has more than %d pages", e.Endpoint, e.Limit)
	case LimitItems:
		what = fmt.Sprintf("the %s listing has more than %d items (at page %d)", e.Endpoint, e.Limit, e.Page)
	default:
		what = fmt.Sprintf("limit %s (%d) exceeded", e.Option, e.Limit)
	}
	hint := e.Hint
	if hint == "" {
		hint = "Options." + e.Option
	}
	s := fmt.Sprintf("partner center %s %s (%s): %s; raise %s if this size is legitimate", e.Method, e.Path, e.Endpoint, what, hint)
	if e.RequestID != "" {
		s += fmt.Sprintf(" [request-id %s, correlation-id %s]", e.RequestID, e.CorrelationID)
	}
	return s
}

// Is matches ErrLimit.
func (e *LimitError) Is(target error) bool { return target == ErrLimit }

func formatBytes(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// RedirectError is a redirect to another origin (scheme, host and port)
// than the one the request was for. The redirect is not followed, so no
// credential reaches that origin and nothing it serves is read. Location
// holds the target's origin only: its path and query may carry secrets.
type RedirectError struct {
	Endpoint      string // "token" for the token endpoint
	Method        string // API requests only
	Path          string // API requests only: the request that was redirected, without the host
	StatusCode    int    // the redirect status, when known
	From          string // origin of the request
	Location      string // origin of the redirect target
	RequestID     string
	CorrelationID string
}

// Error names both origins, never a path or query.
func (e *RedirectError) Error() string {
	status := "a redirect"
	if e.StatusCode != 0 {
		status = fmt.Sprintf("an HTTP %d redirect", e.StatusCode)
	}
	what, check := fmt.Sprintf("partner center %s %s", e.Method, e.Path), "the base URL"
	if e.Endpoint == "token" {
		what, check = "token endpoint", "the token URL"
	}
	s := fmt.Sprintf("%s: refusing %s to another origin, %s (requests and credentials only go to %s; check %s and any proxy in between)",
		what, status, e.Location, e.From, check)
	if e.RequestID != "" {
		s += fmt.Sprintf(" [request-id %s, correlation-id %s]", e.RequestID, e.CorrelationID)
	}
	return s
}

// Is matches ErrRedirect.
func (e *RedirectError) Is(target error) bool { return target == ErrRedirect }

// Reasons a request is given up (RetryError.Reason).
const (
	GaveUpRetries    = "retries"     // Options.MaxRetries reached
	GaveUpBudget     = "budget"      // the retry budget is spent
	GaveUpDecode     = "decode"      // the body stayed malformed
	GaveUpRetryAfter = "retry-after" // the server's Retry-After exceeds what is left of the budget
	GaveUpPause      = "pause"       // the client-wide Retry-After pause exceeds what is left of the budget
)

// RetryError is a request given up: after its retry limit, when its time
// budget is spent, or at once when a Retry-After (its own, or the
// client-wide pause another request's set) would outlast what is left of
// the budget. Err is the last attempt's error (an *APIError, a
// *DecodeError or a network error; nil when no attempt was made);
// errors.Is and errors.As reach it, and the two Retry-After reasons also
// match ErrThrottled. The caller fails this request for now; a later call
// starts with a fresh budget.
type RetryError struct {
	Reason     string        // GaveUpRetries, GaveUpBudget, GaveUpDecode, GaveUpRetryAfter or GaveUpPause
	Attempts   int           // HTTP attempts made
	MaxRetries int           // the retry limit in force
	Budget     time.Duration // the retry budget of the request
	Left       time.Duration // what was left of it (GaveUpRetryAfter, GaveUpPause)
	RetryAfter time.Duration // the wait asked for (GaveUpRetryAfter, GaveUpPause)
	Err        error
}

// Error says why the request was given up, after how many attempts.
func (e *RetryError) Error() string {
	var why string
	switch e.Reason {
	case GaveUpRetries:
		why = fmt.Sprintf("giving up after %d attempts (at most %d retries, Options.MaxRetries)", e.Attempts, e.MaxRetries)
	case GaveUpDecode:
		why = fmt.Sprintf("giving up after %d attempts: the response body stayed unreadable", e.Attempts)
	case GaveUpRetryAfter:
		why = fmt.Sprintf("giving up after %d attempts: the server asks to retry after %s, more than the %s left of the %s retry budget; the request fails for now and is tried again on the next call",
			e.Attempts, e.RetryAfter, e.Left.Round(time.Millisecond), e.Budget)
	case GaveUpPause:
		why = fmt.Sprintf("giving up after %d attempts: every request is held back for another %s by a Retry-After, more than the %s left of the %s retry budget; the request fails for now and is tried again on the next call",
			e.Attempts, e.RetryAfter.Round(time.Millisecond), e.Left.Round(time.Millisecond), e.Budget)
	default:
		why = fmt.Sprintf("giving up after %d attempts within the %s retry budget", e.Attempts, e.Budget)
	}
	if e.Err == nil {
		return why
	}
	return why + ": " + e.Err.Error()
}

// Unwrap returns the last attempt's error.
func (e *RetryError) Unwrap() error { return e.Err }

// Is matches ErrGaveUp, and ErrThrottled when a Retry-After made the
// request give up.
func (e *RetryError) Is(target error) bool {
	return target == ErrGaveUp || target == ErrThrottled && (e.Reason == GaveUpRetryAfter || e.Reason == GaveUpPause)
}
