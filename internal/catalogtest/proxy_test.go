package catalogtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// pcProxy stands between the Partner Center client and the simulator and
// edits single items of 200 collection responses: the changes Partner
// Center makes that the simulator has no operation for (a customer's
// profile, a managed service's name, a product entering or leaving a
// catalog view). Items are edited in place, byte for byte, so everything
// else reaches the client exactly as the simulator rendered it.
type pcProxy struct {
	next http.Handler

	mu    sync.Mutex
	edits map[string]itemEdit // by name
	errs  []string
}

// itemEdit changes one item of one collection response.
type itemEdit struct {
	path       string // request path, compared case-insensitively
	targetView string // products: the targetView query parameter
	itemID     string
	hide       bool   // drop the item from the collection
	old, new   string // else replace old by new inside the item, once
}

func newProxy(next http.Handler) *pcProxy {
	return &pcProxy{next: next, edits: map[string]itemEdit{}}
}

func (p *pcProxy) set(name string, e itemEdit) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.edits[name] = e
}

func (p *pcProxy) drop(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.edits, name)
}

// problems returns edits that matched a response but could not be applied.
func (p *pcProxy) problems() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.errs...)
}

func (p *pcProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := httptest.NewRecorder()
	p.next.ServeHTTP(rec, r)
	body := rec.Body.Bytes()
	if rec.Code == http.StatusOK {
		body = p.apply(r, body)
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(rec.Code)
	_, _ = w.Write(body)
}

var totalCount = regexp.MustCompile(`"totalCount":(\d+)`)

func (p *pcProxy) apply(r *http.Request, body []byte) []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	names := make([]string, 0, len(p.edits))
	for n := range p.edits {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		e := p.edits[name]
		if !strings.EqualFold(r.URL.Path, e.path) || (e.targetView != "" && !strings.EqualFold(r.URL.Query().Get("targetView"), e.targetView)) {
			continue
		}
		var coll struct {
			Items []json.RawMessage `json:"items"`
		}
		if err := json.Unmarshal(body, &coll); err != nil {
			p.errs = append(p.errs, fmt.Sprintf("edit %s: %s is not a collection: %v", name, r.URL, err))
			continue
		}
		found := false
		for _, it := range coll.Items {
			var id struct {
				ID string `json:"id"`
			}
			if json.Unmarshal(it, &id) != nil || !strings.EqualFold(id.ID, e.itemID) {
				continue
			}
			found = true
			i := bytes.Index(body, it)
			if i < 0 {
				p.errs = append(p.errs, fmt.Sprintf("edit %s: item %s not found verbatim in %s", name, e.itemID, r.URL))
				break
			}
			if e.hide {
				start, end := i, i+len(it)
				switch {
				case end < len(body) && body[end] == ',':
					end++
				case start > 0 && body[start-1] == ',':
					start--
				}
				body = append(append([]byte(nil), body[:start]...), body[end:]...)
				body = totalCount.ReplaceAllFunc(body, func(m []byte) []byte {
					n, _ := strconv.Atoi(string(totalCount.FindSubmatch(m)[1]))
					return []byte(`"totalCount":` + strconv.Itoa(n-1))
				})
				break
			}
			edited := bytes.Replace(it, []byte(e.old), []byte(e.new), 1)
			if bytes.Equal(edited, it) {
				p.errs = append(p.errs, fmt.Sprintf("edit %s: %q not in item %s of %s", name, e.old, e.itemID, r.URL))
				break
			}
			body = append(append(append([]byte(nil), body[:i]...), edited...), body[i+len(it):]...)
			break
		}
		if !found {
			p.errs = append(p.errs, fmt.Sprintf("edit %s: no item %s in %s", name, e.itemID, r.URL))
		}
	}
	return body
}
