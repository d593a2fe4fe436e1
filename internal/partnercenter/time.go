package partnercenter

import (
	"bytes"
	"encoding/json"
	"strings"
	"time"
)

// Time is a Partner Center date-time as it appeared on the wire.
//
// Partner Center and its documentation send date-times with 0 to 7
// fractional digits, with "Z", with a numeric offset, with no zone at all
// (read as UTC), as bare dates, and occasionally malformed (the documented
// "2015-11-25T06: 41: 12Z"). Decoding never fails on a string: the text is
// kept in Raw, and T holds the instant when it could be read. A value that
// cannot be read has Raw set and T zero, so one odd date never makes a whole
// listing unreadable.
type Time struct {
	T   time.Time // the instant, UTC; zero if absent or unreadable
	Raw string    // the text as received; empty if absent or null
}

// NewTime returns a Time for t, rendered the way Partner Center renders
// instants (RFC 3339, UTC, 7 fractional digits trimmed of zeros).
func NewTime(t time.Time) Time {
	t = t.UTC()
	return Time{T: t, Raw: t.Format("2006-01-02T15:04:05.9999999Z")}
}

// IsZero reports whether no instant is known (absent, null or unreadable).
func (t Time) IsZero() bool { return t.T.IsZero() }

// Present reports whether the field carried a value, readable or not.
func (t Time) Present() bool { return t.Raw != "" }

// Valid reports whether the field carried a value that could be read.
func (t Time) Valid() bool { return !t.T.IsZero() }

// String returns the instant in RFC 3339, the raw text if unreadable, or "".
func (t Time) String() string {
	if t.Valid() {
		return t.T.Format(time.RFC3339Nano)
	}
	return t.Raw
}

// UnmarshalJSON accepts null, strings in any of the documented forms, and
// (defensively) numbers, which are kept raw.
func (t *Time) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || string(b) == "null" {
		*t = Time{}
		return nil
	}
	if b[0] != '"' {
		*t = Time{Raw: string(b)}
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	*t = Time{Raw: s}
	if v, ok := ParseTime(s); ok {
		t.T = v
	}
	return nil
}

// MarshalJSON writes the raw text back, so a decoded entity re-encodes to
// what was received.
func (t Time) MarshalJSON() ([]byte, error) {
	if t.Raw != "" {
		return json.Marshal(t.Raw)
	}
	if t.T.IsZero() {
		return []byte("null"), nil
	}
	return json.Marshal(t.T.UTC().Format(time.RFC3339Nano))
}

// timeLayouts are tried in order. time.Parse accepts any number of
// fractional digits after the seconds even when the layout has none.
var timeLayouts = []struct {
	layout string
	zoned  bool
}{
	{time.RFC3339, true},
	{"2006-01-02T15:04:05Z0700", true},
	{"2006-01-02T15:04:05", false},
	{"2006-01-02 15:04:05Z07:00", true},
	{"2006-01-02 15:04:05", false},
	{"2006-01-02T15:04Z07:00", true},
	{"2006-01-02T15:04", false},
	{"2006-01-02", false},
}

// ParseTime reads a Partner Center date-time leniently. Times without a zone
// are UTC. It reports false when the text is not a date-time in any known
// form.
func ParseTime(s string) (time.Time, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, false
	}
	if v, ok := parseLayouts(s); ok {
		return v, true
	}
	// The documented "2015-11-25T06: 41: 12Z": spaces inside the clock part.
	if strings.ContainsRune(s, ' ') {
		if v, ok := parseLayouts(strings.ReplaceAll(s, " ", "")); ok {
			return v, true
		}
	}
	return time.Time{}, false
}

func parseLayouts(s string) (time.Time, bool) {
	for _, l := range timeLayouts {
		var (
			v   time.Time
			err error
		)
		if l.zoned {
			v, err = time.Parse(l.layout, s)
		} else {
			v, err = time.ParseInLocation(l.layout, s, time.UTC)
		}
		if err == nil {
			return v.UTC(), true
		}
	}
	return time.Time{}, false
}
