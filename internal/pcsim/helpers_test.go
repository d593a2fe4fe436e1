package pcsim

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pcwatch/pcwatch/internal/clock"
)

// t0 is the business clock's start in tests.
var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// testSim builds a simulator on fake business and wall clocks.
func testSim(t testing.TB, o Options) (*Sim, *clock.Fake, *clock.Fake) {
	t.Helper()
	biz := clock.NewFake(t0)
	wall := clock.NewFake(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	o.Clock, o.Wall = biz, wall
	if o.Sleep == nil {
		o.Sleep = func(context.Context, time.Duration) error { return nil }
	}
	return New(o), biz, wall
}

// call serves one request in-process.
func call(h http.Handler, method, path string, hdr http.Header, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	for k, v := range hdr {
		req.Header[k] = v
	}
	if req.Header.Get("Authorization") == "" && hdr == nil {
		req.Header.Set("Authorization", "Bearer test")
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// get does an authorised GET and returns status and body.
func get(h http.Handler, path string) (int, []byte) {
	rec := call(h, http.MethodGet, path, nil, "")
	return rec.Code, rec.Body.Bytes()
}

// mustGet fails the test unless GET answers 200.
func mustGet(t testing.TB, h http.Handler, path string) []byte {
	t.Helper()
	code, body := get(h, path)
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, code, body)
	}
	return body
}

func decode[T any](t testing.TB, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decode %T: %v\n%s", v, err, b)
	}
	return v
}

// admin calls the admin API and decodes the answer into out (if non-nil).
func admin(t testing.TB, h http.Handler, method, path, body string, wantCode int, out any) []byte {
	t.Helper()
	rec := call(h, method, path, http.Header{}, body)
	if rec.Code != wantCode {
		t.Fatalf("%s %s %s: got %d, want %d: %s", method, path, body, rec.Code, wantCode, rec.Body.Bytes())
	}
	if out != nil {
		if err := json.Unmarshal(rec.Body.Bytes(), out); err != nil {
			t.Fatalf("%s %s: decode: %v\n%s", method, path, err, rec.Body.Bytes())
		}
	}
	return rec.Body.Bytes()
}

// findSub returns the first subscription in state matching pred.
func findSub(t testing.TB, s *Sim, pred func(CustomerState, SubscriptionState) bool) (string, SubscriptionState) {
	t.Helper()
	for _, c := range s.State().Customers {
		for _, sub := range c.Subscriptions {
			if pred(c, sub) {
				return c.ID, sub
			}
		}
	}
	t.Fatal("no subscription matches")
	return "", SubscriptionState{}
}

// topLevel decodes a JSON object into its properties.
func topLevel(t testing.TB, b []byte) map[string]json.RawMessage {
	t.Helper()
	return decode[map[string]json.RawMessage](t, b)
}

// keyOrder lists an object's top-level property names in order.
func keyOrder(t testing.TB, b []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not an object: %v %s", err, b)
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	return keys
}

// corpusFile reads a documented response body, skipping the test when the
// shared corpus is not beside the repository.
func corpusFile(t testing.TB, name string) []byte {
	t.Helper()
	dir := filepath.Join("..", "..", "..", "shared", "corpus")
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("corpus not available at %s", dir)
	}
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func readAll(t testing.TB, r io.Reader) []byte {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
