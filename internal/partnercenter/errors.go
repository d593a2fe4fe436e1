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

// DecodeError is a response body that could not be read as the expected
// JSON: malformed, truncated or of the wrong shape.
type DecodeError struct {
	Endpoint      string
	Method        string
	Path          string
	StatusCode    int
	RequestID     string
	CorrelationID string
	Err           error
}

// Error names the endpoint, the HTTP status and the request id.
func (e *DecodeError) Error() string {
	return fmt.Sprintf("partner center %s %s: HTTP %d: response body is not valid JSON: %v [request-id %s, correlation-id %s]",
		e.Method, e.Path, e.StatusCode, e.Err, e.RequestID, e.CorrelationID)
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
