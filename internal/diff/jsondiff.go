// Package diff says exactly what changed between a stored snapshot and a
// complete fresh listing, and turns it into the events of the catalog.
//
// It works on the raw JSON Partner Center sent, so fields the typed model
// does not know are diffed too; volatile fields (attributes.etag, links)
// and deadline inputs (refundableQuantity, refundOptions, which change as
// time passes and feed the deadline package instead) are ignored.
package diff

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/pcwatch/pcwatch/internal/events"
)

// DefaultIgnored are the JSON Pointers whose changes are never events.
var DefaultIgnored = []string{"/attributes/etag", "/links", "/refundableQuantity", "/refundOptions"}

// Changes returns the field-level changes from oldRaw to newRaw as JSON
// Pointer paths, in path order. Object keys are compared after folding
// PascalCase to camelCase (documented bodies use both). Arrays that differ
// are reported as one change of the whole array. Paths equal to or under an
// ignored pointer are skipped.
func Changes(oldRaw, newRaw []byte, ignored []string) ([]events.Change, error) {
	o, err := decodeAny(oldRaw)
	if err != nil {
		return nil, fmt.Errorf("stored JSON: %w", err)
	}
	n, err := decodeAny(newRaw)
	if err != nil {
		return nil, fmt.Errorf("fresh JSON: %w", err)
	}
	var out []events.Change
	walk("", o, n, true, true, ignored, &out)
	return out, nil
}

func decodeAny(b []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	return fold(v), nil
}

// fold rewrites object keys PascalCase -> camelCase, recursively.
func fold(v any) any {
	switch t := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(t))
		for k, x := range t {
			m[camel(k)] = fold(x)
		}
		return m
	case []any:
		for i := range t {
			t[i] = fold(t[i])
		}
	}
	return v
}

func camel(k string) string {
	r, n := utf8.DecodeRuneInString(k)
	if !unicode.IsUpper(r) {
		return k
	}
	return string(unicode.ToLower(r)) + k[n:]
}

func ignoredPath(p string, ignored []string) bool {
	for _, ig := range ignored {
		if p == ig || strings.HasPrefix(p, ig+"/") {
			return true
		}
	}
	return false
}

func walk(path string, o, n any, hasO, hasN bool, ignored []string, out *[]events.Change) {
	if path != "" && ignoredPath(path, ignored) {
		return
	}
	om, oObj := o.(map[string]any)
	nm, nObj := n.(map[string]any)
	if hasO && hasN && oObj && nObj {
		keys := make([]string, 0, len(om)+len(nm))
		for k := range om {
			keys = append(keys, k)
		}
		for k := range nm {
			if _, ok := om[k]; !ok {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		for _, k := range keys {
			ov, okO := om[k]
			nv, okN := nm[k]
			walk(path+"/"+escape(k), ov, nv, okO, okN, ignored, out)
		}
		return
	}
	if hasO == hasN && (reflect.DeepEqual(o, n) || sameNumber(o, n)) {
		return
	}
	// An absent field and an explicit null mean the same to Partner Center.
	if (!hasO && n == nil) || (!hasN && o == nil) {
		return
	}
	c := events.Change{Path: path}
	if hasO {
		c.Old = mustJSON(o)
	}
	if hasN {
		c.New = mustJSON(n)
	}
	*out = append(*out, c)
}

// sameNumber treats 1.5 and 1.50 as the same value.
func sameNumber(o, n any) bool {
	a, ok1 := o.(json.Number)
	b, ok2 := n.(json.Number)
	if !ok1 || !ok2 {
		return false
	}
	x, err1 := a.Float64()
	y, err2 := b.Float64()
	return err1 == nil && err2 == nil && x == y
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		return json.RawMessage(`null`)
	}
	return b
}

// escape encodes a key as a JSON Pointer token (RFC 6901).
func escape(k string) string {
	if !strings.ContainsAny(k, "~/") {
		return k
	}
	return strings.ReplaceAll(strings.ReplaceAll(k, "~", "~0"), "/", "~1")
}
