package partnercenter

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// The item listings (ListSubscriptionItems, ...) read a page without
// decoding its items: one pass over the body checks that it is valid JSON
// and a collection, decodes the envelope, and cuts each item out as its raw
// JSON. Typed decoding is left to whoever needs it, which is the point: a
// poller compares each item's bytes with what it stored and decodes only
// the items that are new or changed (see internal/diff).

// maxNestingDepth is encoding/json's: a value nested deeper is not valid
// JSON to it, and so not to the splitter.
const maxNestingDepth = 10000

// SplitCollection reads one collection page held whole in body exactly as
// the item listings read each page (without their bounds): body must be a
// JSON object with an items array, by the same rules as the typed listings
// (see ErrNotCollection), valid JSON throughout (encoding/json's rules,
// nesting depth included), and its items must be objects or null; each
// item is returned as its raw JSON, a sub-slice of body (so body must not
// be modified while they are used), in order. A leading UTF-8 byte order
// mark is skipped. It accepts exactly the bodies the typed listings accept
// for a model that accepts every object: an item whose properties have the
// wrong types (a quantity that is a string) is accepted here and fails
// only when it is decoded.
func SplitCollection(body []byte) (Collection[json.RawMessage], error) {
	return splitCollection(body, nil, 0)
}

// readCollection is the item listings' page reader: it reads the whole body
// through b (which bounds it) and splits it, charging each item at
// itemSize, the in-memory size of the model it may be decoded into, so
// that the item listing crosses its bounds exactly where the typed
// listing does. Reading the body whole keeps the splitter one tight pass
// over memory; a response is bounded by MaxResponseBytes, so this holds at
// most about twice that (the buffer growing), as streaming did.
func readCollection(b *itemBudget, itemSize int64) (Collection[json.RawMessage], error) {
	body, err := io.ReadAll(b)
	if err != nil {
		return Collection[json.RawMessage]{}, err
	}
	c, err := splitCollection(body, b, itemSize)
	if err != nil {
		return c, err
	}
	// Items alias the body: when they are a small part of it (a body
	// padded with large unknown properties), copy them out so the listing
	// does not retain the padding.
	var n int
	for _, it := range c.Items {
		n += len(it)
	}
	if n < len(body)/2 {
		buf := make([]byte, 0, n)
		for i, it := range c.Items {
			buf = append(buf, it...)
			c.Items[i] = buf[len(buf)-len(it) : len(buf) : len(buf)]
		}
	}
	return c, nil
}

// splitCollection is SplitCollection within b (may be nil), which counts
// and bounds the items as decodeCollection does, each charged at itemSize. It reports problems in
// the order decodeCollection meets them, so that a body refused for its
// shape is refused with ErrNotCollection, a truncated one with
// io.ErrUnexpectedEOF, and one over the item bound with errTooManyItems.
func splitCollection(body []byte, b *itemBudget, itemSize int64) (Collection[json.RawMessage], error) {
	var c Collection[json.RawMessage]
	s := &scanner{b: bytes.TrimPrefix(body, utf8BOM)}
	s.ws()
	if s.eof() {
		return c, io.ErrUnexpectedEOF
	}
	if s.peek() != '{' {
		what, err := s.describe()
		if err != nil {
			return c, err
		}
		return c, notCollection("the body is %s, not an object with an items array", what)
	}
	s.i++
	seenItems := false
members:
	for first := true; ; first = false {
		s.ws()
		if s.eof() {
			return c, io.ErrUnexpectedEOF
		}
		if first && s.peek() == '}' {
			s.i++
			break
		}
		if !first {
			switch s.peek() {
			case '}':
				s.i++
				break members
			case ',':
				s.i++
				s.ws()
			default:
				return c, s.syntax("after object key:value pair")
			}
		}
		key, err := s.key()
		if err != nil {
			return c, err
		}
		switch {
		case strings.EqualFold(key, "items"):
			if seenItems {
				return c, notCollection("items appears twice")
			}
			seenItems = true
			s.ws()
			if s.eof() {
				return c, io.ErrUnexpectedEOF
			}
			if s.peek() != '[' {
				what, err := s.describe()
				if err != nil {
					return c, err
				}
				return c, notCollection("items is %s, not an array", what)
			}
			if err := s.items(&c, b, itemSize); err != nil {
				return c, err
			}
		case strings.EqualFold(key, "totalCount"):
			err = s.decode(&c.TotalCount)
		case strings.EqualFold(key, "links"):
			err = s.decode(&c.Links)
		case strings.EqualFold(key, "attributes"):
			err = s.decode(&c.Attributes)
		default:
			// Skipped token by token by the typed reader: no depth
			// bound applies.
			_, _, err = s.value(0)
		}
		if err != nil {
			return c, err
		}
	}
	s.ws()
	if !s.eof() {
		return c, fmt.Errorf("invalid data after the top-level value at byte %d", s.i)
	}
	switch {
	case !seenItems:
		return c, notCollection("the object has no items property")
	case len(c.Items) == 0 && c.TotalCount > 0:
		return c, notCollection("items is empty but totalCount is %d", c.TotalCount)
	}
	if c.Items == nil {
		c.Items = []json.RawMessage{}
	}
	return c, nil
}

// items reads the items array (s is at its '[') into c, counting and
// bounding them in b.
func (s *scanner) items(c *Collection[json.RawMessage], b *itemBudget, itemSize int64) error {
	s.i++
	s.ws()
	if s.eof() {
		return io.ErrUnexpectedEOF
	}
	if s.peek() == ']' {
		s.i++
		return nil
	}
	for {
		if b != nil && b.maxItm > 0 && b.items >= b.maxItm {
			return errTooManyItems
		}
		start, end, err := s.value(maxNestingDepth)
		if err != nil {
			return err
		}
		item := s.b[start:end:end]
		if item[0] != '{' && item[0] != 'n' {
			// What encoding/json refuses to decode into a model.
			return fmt.Errorf("item %d is %s, not an object", len(c.Items), describeRaw(item))
		}
		if b != nil {
			b.items++
			if !b.charge(itemSize) {
				return errOverBudget
			}
		}
		c.Items = append(c.Items, item)
		s.ws()
		if s.eof() {
			return io.ErrUnexpectedEOF
		}
		switch s.peek() {
		case ',':
			s.i++
		case ']':
			s.i++
			return nil
		default:
			return s.syntax("after array element")
		}
	}
}

// decode decodes the next value into v, as the typed reader's dec.Decode
// does (same depth bound, same errors for the wrong type).
func (s *scanner) decode(v any) error {
	start, end, err := s.value(maxNestingDepth)
	if err != nil {
		return err
	}
	return json.Unmarshal(s.b[start:end], v)
}

// scanner walks JSON held in memory, checking it by encoding/json's rules:
// RFC 8259 grammar, no control characters in strings, any bytes >= 0x80
// (encoding/json does not refuse invalid UTF-8 either).
type scanner struct {
	b     []byte
	i     int
	stack []byte // open containers of the value being read: '{' or '['
}

func (s *scanner) eof() bool  { return s.i >= len(s.b) }
func (s *scanner) peek() byte { return s.b[s.i] }

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// syntax is a syntax error at the current byte (or the premature end).
func (s *scanner) syntax(context string) error {
	if s.eof() {
		return io.ErrUnexpectedEOF
	}
	return &syntaxError{Offset: int64(s.i), msg: fmt.Sprintf("invalid character %s %s", quoteByte(s.b[s.i]), context)}
}

// syntaxError is malformed JSON, at Offset bytes into the body (after a
// byte order mark).
type syntaxError struct {
	Offset int64
	msg    string
}

func (e *syntaxError) Error() string { return fmt.Sprintf("%s (byte %d)", e.msg, e.Offset) }

func quoteByte(c byte) string {
	switch {
	case c == '\'':
		return `'\''`
	case c == '"':
		return `'"'`
	case c < 0x20 || c >= 0x7f:
		return fmt.Sprintf("%q", []byte{c})
	}
	return "'" + string(c) + "'"
}

// key reads an object key and its colon, and returns the key unescaped.
func (s *scanner) key() (string, error) {
	start := s.i
	escaped, err := s.keyColon()
	if err != nil {
		return "", err
	}
	raw := bytes.TrimRight(s.b[start:s.i-1], " \t\n\r")
	if !escaped {
		return string(raw[1 : len(raw)-1]), nil
	}
	var k string
	if err := json.Unmarshal(raw, &k); err != nil {
		return "", err
	}
	return k, nil
}

// keyColon reads an object key and its colon without decoding the key.
func (s *scanner) keyColon() (escaped bool, err error) {
	if s.eof() {
		return false, io.ErrUnexpectedEOF
	}
	if s.peek() != '"' {
		return false, s.syntax("looking for beginning of object key string")
	}
	if escaped, err = s.str(); err != nil {
		return false, err
	}
	s.ws()
	if s.eof() {
		return false, io.ErrUnexpectedEOF
	}
	if s.peek() != ':' {
		return false, s.syntax("after object key")
	}
	s.i++
	return escaped, nil
}

// describe names the value at s.i for a shape error, as describeToken
// names the typed reader's token: it reads only that token (an array's
// '[' but a whole string or literal), and fails when the token itself is
// malformed.
func (s *scanner) describe() (string, error) {
	switch c := s.peek(); {
	case c == '[':
		return "an array", nil
	case c == '{':
		return "an object", nil
	case c == '"':
		if _, err := s.str(); err != nil {
			return "", err
		}
		return "a string", nil
	case c == 't':
		return "a boolean", s.literal("true")
	case c == 'f':
		return "a boolean", s.literal("false")
	case c == 'n':
		return "null", s.literal("null")
	case c == '-' || c >= '0' && c <= '9':
		return "a number", s.number()
	}
	return "", s.syntax("looking for beginning of value")
}

// value reads one JSON value after optional white space and returns where
// it starts and ends. maxDepth bounds its nesting (0: unbounded); the
// scanner is iterative, so no input can exhaust the stack.
func (s *scanner) value(maxDepth int) (start, end int, err error) {
	s.ws()
	start = s.i
	s.stack = s.stack[:0]
	for {
		// A value is expected at s.i.
		s.ws()
		if s.eof() {
			return 0, 0, io.ErrUnexpectedEOF
		}
		switch c := s.peek(); {
		case c == '{' || c == '[':
			s.stack = append(s.stack, c)
			if maxDepth > 0 && len(s.stack) > maxDepth {
				return 0, 0, &syntaxError{Offset: int64(s.i), msg: "exceeded max depth"}
			}
			s.i++
			s.ws()
			if s.eof() {
				return 0, 0, io.ErrUnexpectedEOF
			}
			if close := closer(c); s.peek() == close {
				s.i++
				s.stack = s.stack[:len(s.stack)-1]
				break
			}
			if c == '{' {
				if _, err := s.keyColon(); err != nil {
					return 0, 0, err
				}
			}
			continue
		case c == '"':
			if _, err := s.str(); err != nil {
				return 0, 0, err
			}
		case c == 't':
			err = s.literal("true")
		case c == 'f':
			err = s.literal("false")
		case c == 'n':
			err = s.literal("null")
		case c == '-' || c >= '0' && c <= '9':
			err = s.number()
		default:
			return 0, 0, s.syntax("looking for beginning of value")
		}
		if err != nil {
			return 0, 0, err
		}
		// A value ended: close containers until one continues.
		for {
			if len(s.stack) == 0 {
				return start, s.i, nil
			}
			s.ws()
			if s.eof() {
				return 0, 0, io.ErrUnexpectedEOF
			}
			top := s.stack[len(s.stack)-1]
			c := s.peek()
			if c == closer(top) {
				s.i++
				s.stack = s.stack[:len(s.stack)-1]
				continue
			}
			if c != ',' {
				if top == '{' {
					return 0, 0, s.syntax("after object key:value pair")
				}
				return 0, 0, s.syntax("after array element")
			}
			s.i++
			if top == '{' {
				s.ws()
				if _, err := s.keyColon(); err != nil {
					return 0, 0, err
				}
			}
			break
		}
	}
}

func closer(open byte) byte {
	if open == '{' {
		return '}'
	}
	return ']'
}

// strPlain marks the bytes a string may hold without a closer look.
var strPlain = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// str reads a string (s.i is at its opening quote) and reports whether it
// holds escapes.
func (s *scanner) str() (escaped bool, err error) {
	b := s.b
	i := s.i + 1
	for {
		for i < len(b) && strPlain[b[i]] {
			i++
		}
		if i >= len(b) {
			s.i = i
			return false, io.ErrUnexpectedEOF
		}
		switch c := b[i]; c {
		case '"':
			s.i = i + 1
			return escaped, nil
		case '\\':
			escaped = true
			i++
			if i >= len(b) {
				s.i = i
				return false, io.ErrUnexpectedEOF
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i++
			case 'u':
				i++
				for range 4 {
					if i >= len(b) {
						s.i = i
						return false, io.ErrUnexpectedEOF
					}
					if !isHex(b[i]) {
						s.i = i
						return false, s.syntax("in \\u hexadecimal character escape")
					}
					i++
				}
			default:
				s.i = i
				return false, s.syntax("in string escape code")
			}
		default: // a control character
			s.i = i
			return false, s.syntax("in string literal")
		}
	}
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func (s *scanner) literal(word string) error {
	for j := 0; j < len(word); j++ {
		if s.eof() {
			return io.ErrUnexpectedEOF
		}
		if s.peek() != word[j] {
			return s.syntax("in literal " + word + " (expecting " + quoteByte(word[j]) + ")")
		}
		s.i++
	}
	return nil
}

// number reads -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?. What follows
// it is the caller's to check, as in encoding/json.
func (s *scanner) number() error {
	digits := func() int {
		n := 0
		for !s.eof() && s.peek() >= '0' && s.peek() <= '9' {
			s.i++
			n++
		}
		return n
	}
	need := func(context string) error {
		if digits() == 0 {
			return s.syntax(context)
		}
		return nil
	}
	if s.peek() == '-' {
		s.i++
		if s.eof() {
			return io.ErrUnexpectedEOF
		}
	}
	switch c := s.peek(); {
	case c == '0':
		s.i++
	case c >= '1' && c <= '9':
		digits()
	default:
		return s.syntax("in numeric literal")
	}
	if !s.eof() && s.peek() == '.' {
		s.i++
		if err := need("after decimal point in numeric literal"); err != nil {
			return err
		}
	}
	if !s.eof() && (s.peek() == 'e' || s.peek() == 'E') {
		s.i++
		if !s.eof() && (s.peek() == '+' || s.peek() == '-') {
			s.i++
		}
		if err := need("in exponent of numeric literal"); err != nil {
			return err
		}
	}
	return nil
}
