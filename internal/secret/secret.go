// Package secret keeps configured secrets out of everything that leaves the
// process: logs, stderr, error strings stored in the state file, event
// bodies, HTTP answers.
//
// A peer that echoes a request back (a token endpoint putting the form body
// into error_description, an SMTP server repeating AUTH) hands the secret
// back in an encoding, not as typed: URL/form-encoded, base64 (SMTP AUTH
// PLAIN, HTTP Basic), JSON-escaped. A Redactor knows every secret it was
// given in each of those encodings and replaces any occurrence with
// Placeholder.
//
// Contract: a Redactor is safe for concurrent use; Add may be called at
// any time and affects later calls only. Secrets shorter than MinLen are
// ignored (redacting "a" would shred every message, and such a value is no
// secret).
package secret

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/url"
	"slices"
	"strings"
	"sync"
)

// Placeholder replaces every occurrence of a secret.
const Placeholder = "[REDACTED]"

// MinLen is the shortest value treated as a secret.
const MinLen = 4

// Redactor replaces known secrets, in every encoding they travel in, by
// Placeholder. The zero value is ready and redacts nothing; a nil
// *Redactor is valid too and redacts nothing.
type Redactor struct {
	mu       sync.RWMutex
	static   []string            // secrets given to New and Add
	rotating map[string][]string // Rotate: the last values per name
	variants []string            // every encoding, longest first
	repl     *strings.Replacer
}

// rotatingKeep is how many values of a rotating secret stay redacted: the
// current one and the one before (still valid for a while, and still in
// messages about requests that used it).
const rotatingKeep = 2

// New returns a Redactor for the given secrets (empty values are ignored).
func New(secrets ...string) *Redactor {
	r := &Redactor{}
	r.Add(secrets...)
	return r
}

// Add registers more secrets.
func (r *Redactor) Add(secrets ...string) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range secrets {
		if len(s) >= MinLen && !slices.Contains(r.static, s) {
			r.static = append(r.static, s)
		}
	}
	r.rebuild()
}

// Rotate registers the current value of a secret that changes over time
// (an access token, renewed every hour): the last two values of each name
// are redacted, older ones are forgotten, so the set stays bounded.
func (r *Redactor) Rotate(name, value string) {
	if r == nil || len(value) < MinLen {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.rotating == nil {
		r.rotating = map[string][]string{}
	}
	vals := r.rotating[name]
	if len(vals) > 0 && vals[len(vals)-1] == value {
		return
	}
	vals = append(vals, value)
	if len(vals) > rotatingKeep {
		vals = vals[len(vals)-rotatingKeep:]
	}
	r.rotating[name] = vals
	r.rebuild()
}

// rebuild recomputes the replacer; r.mu is held.
func (r *Redactor) rebuild() {
	all := slices.Clone(r.static)
	for _, vals := range r.rotating {
		all = append(all, vals...)
	}
	r.variants = r.variants[:0]
	for _, s := range all {
		for _, v := range Encodings(s) {
			if len(v) >= MinLen && !slices.Contains(r.variants, v) {
				r.variants = append(r.variants, v)
			}
		}
	}
	slices.SortFunc(r.variants, func(a, b string) int { return len(b) - len(a) })
	pairs := make([]string, 0, 2*len(r.variants))
	for _, v := range r.variants {
		pairs = append(pairs, v, Placeholder)
	}
	r.repl = strings.NewReplacer(pairs...)
}

// Empty reports whether no secret is registered.
func (r *Redactor) Empty() bool {
	if r == nil {
		return true
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.variants) == 0
}

// Encodings returns the forms a secret s may take in text that leaves the
// process or comes back from a peer: as is; URL query/form and path
// encoded (upper- and lower-case hex); base64 in its four alphabets, and
// the base64 of the SMTP AUTH PLAIN and HTTP Basic shapes is covered by the
// aligned fragments below; JSON-escaped; hex.
func Encodings(s string) []string {
	out := []string{s}
	add := func(v string) {
		if v != "" && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	q := url.QueryEscape(s)
	add(q)
	add(lowerHexEscapes(q))
	add(strings.ReplaceAll(q, "+", "%20"))
	p := url.PathEscape(s)
	add(p)
	add(lowerHexEscapes(p))
	if j, err := json.Marshal(s); err == nil {
		add(string(j[1 : len(j)-1]))
	}
	add(hex.EncodeToString([]byte(s)))
	// base64 of the secret at each of the three byte alignments it can
	// have inside a longer base64 text (AUTH PLAIN "\x00user\x00pass",
	// Basic "user:pass"): the characters that depend on the secret's bytes
	// only, without the partial groups at either end.
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		add(enc.EncodeToString([]byte(s)))
		for pad := 0; pad < 3; pad++ {
			if frag := alignedBase64(enc, s, pad); len(frag) >= 8 {
				add(frag)
			}
		}
	}
	return out
}

// alignedBase64 is the part of base64(prefix+s) that only s determines,
// for a prefix of pad bytes (mod 3).
func alignedBase64(enc *base64.Encoding, s string, pad int) string {
	b := append(bytes.Repeat([]byte{0}, pad), s...)
	full := enc.Strict().WithPadding(base64.NoPadding).EncodeToString(b)
	// Characters fully inside the secret: skip the groups touched by the
	// prefix, drop the last (possibly partial) group.
	start := 0
	if pad > 0 {
		start = 4 // the first group mixes prefix and secret bytes
	}
	whole := (len(b) / 3) * 4
	if whole <= start {
		return ""
	}
	return full[start:whole]
}

func lowerHexEscapes(s string) string {
	b := []byte(s)
	for i := 0; i+2 < len(b); i++ {
		if b[i] == '%' {
			b[i+1], b[i+2] = lower(b[i+1]), lower(b[i+2])
		}
	}
	return string(b)
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'F' {
		return c + 'a' - 'A'
	}
	return c
}

// String returns s with every known secret replaced.
func (r *Redactor) String(s string) string {
	if r == nil {
		return s
	}
	r.mu.RLock()
	repl := r.repl
	r.mu.RUnlock()
	if repl == nil {
		return s
	}
	return repl.Replace(s)
}

// Bytes returns b with every known secret replaced; b itself is not
// modified. It returns b when nothing was replaced.
func (r *Redactor) Bytes(b []byte) []byte {
	if r.Empty() {
		return b
	}
	s := r.String(string(b))
	if len(s) == len(b) && s == string(b) {
		return b
	}
	return []byte(s)
}

// Error returns err's text with every known secret replaced ("" for nil).
func (r *Redactor) Error(err error) string {
	if err == nil {
		return ""
	}
	return r.String(err.Error())
}

// Writer returns an io.Writer that redacts what it writes to w. Each Write
// is redacted on its own, so callers must write whole messages (slog
// handlers, fmt.Fprintf of a line do).
func (r *Redactor) Writer(w io.Writer) io.Writer {
	return &writer{r: r, w: w}
}

type writer struct {
	r *Redactor
	w io.Writer
}

func (w *writer) Write(p []byte) (int, error) {
	q := w.r.Bytes(p)
	if _, err := w.w.Write(q); err != nil {
		return 0, err
	}
	return len(p), nil
}

// WrapError returns err with its text redacted; errors.Is and errors.As
// still reach err and its chain (whose own texts are not redacted: print
// the wrapper). nil stays nil.
func (r *Redactor) WrapError(err error) error {
	if err == nil || r.Empty() {
		return err
	}
	return &redactedError{err: err, r: r}
}

type redactedError struct {
	err error
	r   *Redactor
}

func (e *redactedError) Error() string { return e.r.String(e.err.Error()) }
func (e *redactedError) Unwrap() error { return e.err }
