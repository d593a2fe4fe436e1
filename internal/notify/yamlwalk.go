package notify

import (
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

var configType = reflect.TypeFor[Config]()

// walker goes through the YAML tree alongside the Config type before it is
// decoded. It reports unknown keys with their full key path and records the
// line of every key path, so that later errors (from the decoder or from
// validation) can name both.
type walker struct {
	lines map[string]int      // key path -> line
	keys  map[string][]string // mapping key path -> its keys, in file order
	refs  []nodeRef
}

type nodeRef struct {
	line  int
	path  string
	value string
}

var plainKeyRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// keyPath appends key k to path p, quoting keys that are not plain words
// (template globs, odd channel names).
func keyPath(p, k string) string {
	if !plainKeyRE.MatchString(k) {
		k = strconv.Quote(k)
	}
	if p == "" {
		return k
	}
	return p + "." + k
}

var (
	durationType  = reflect.TypeFor[Duration]()
	timeType      = reflect.TypeFor[time.Time]()
	unmarshalType = reflect.TypeFor[yaml.Unmarshaler]()
)

func (w *walker) note(n *yaml.Node, p string) {
	if _, ok := w.lines[p]; !ok {
		w.lines[p] = n.Line
	}
	w.refs = append(w.refs, nodeRef{line: n.Line, path: p, value: n.Value})
}

// walk checks node n against type t at key path p.
func (w *walker) walk(n *yaml.Node, t reflect.Type, p string) *ConfigError {
	w.note(n, p)
	if n.Kind == yaml.AliasNode {
		// Not followed: aliases can nest exponentially (and recursively);
		// the decoder checks what they point to.
		return nil
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == timeType {
		// yaml's own time error names neither the line nor the key.
		if n.Kind == yaml.ScalarNode && !validYAMLTime(n) {
			return &ConfigError{Line: n.Line, Path: p, Msg: fmt.Sprintf("%q is not a date-time: write it as RFC 3339, e.g. 2026-12-31T18:00:00Z or 2026-12-31T18:00:00+01:00 (a date alone, 2026-12-31, means midnight UTC)", n.Value)}
		}
		return nil
	}
	if t == durationType || reflect.PointerTo(t).Implements(unmarshalType) {
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return nil // the decoder reports the type mismatch
		}
		fields := map[string]reflect.Type{}
		var names []string
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if !f.IsExported() || tag == "" || tag == "-" {
				continue
			}
			fields[tag] = f.Type
			names = append(names, tag)
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			cp := keyPath(p, k.Value)
			w.keys[p] = append(w.keys[p], k.Value)
			ft, ok := fields[k.Value]
			if !ok {
				msg := "unknown key"
				if s := closest(k.Value, names); s != "" {
					msg += fmt.Sprintf(" (did you mean %s?)", s)
				}
				return &ConfigError{Line: k.Line, Path: cp, Msg: msg + "; known keys: " + strings.Join(names, ", ")}
			}
			w.lines[cp] = k.Line
			if err := w.walk(val, ft, cp); err != nil {
				return err
			}
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return nil
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			cp := keyPath(p, k.Value)
			w.keys[p] = append(w.keys[p], k.Value)
			w.lines[cp] = k.Line
			if err := w.walk(val, t.Elem(), cp); err != nil {
				return err
			}
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return nil
		}
		for i, item := range n.Content {
			if err := w.walk(item, t.Elem(), fmt.Sprintf("%s[%d]", p, i)); err != nil {
				return err
			}
		}
	}
	return nil
}

var (
	backtickRE = regexp.MustCompile("`([^`]*)`")
	dupKeyRE   = regexp.MustCompile(`mapping key "([^"]*)" already defined`)
)

// pathAt returns the key path of the node at line that the decoder's
// message is about (it quotes the offending value in backticks, or names a
// duplicate key).
func (w *walker) pathAt(line int, msg string) string {
	var want, key string
	if m := backtickRE.FindStringSubmatch(msg); m != nil {
		want = m[1]
	}
	if m := dupKeyRE.FindStringSubmatch(msg); m != nil {
		key = m[1]
	}
	best := ""
	for _, r := range w.refs {
		if r.line != line {
			continue
		}
		if want != "" && r.value == want {
			return r.path
		}
		if key != "" && (r.path == key || strings.HasSuffix(r.path, "."+key)) {
			return r.path
		}
		if best == "" || len(r.path) > len(best) {
			best = r.path
		}
	}
	return best
}

// closest suggests the known key within edit distance 2 of k.
func closest(k string, names []string) string {
	best, bestD := "", 3
	for _, n := range names {
		if d := editDistance(k, n); d < bestD {
			best, bestD = n, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = slices.Min([]int{prev[j] + 1, cur[j-1] + 1, prev[j-1] + cost})
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// validYAMLTime reports whether the decoder will read n as a time.Time.
func validYAMLTime(n *yaml.Node) bool {
	var t time.Time
	return n.Decode(&t) == nil
}
