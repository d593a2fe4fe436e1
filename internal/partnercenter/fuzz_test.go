package partnercenter

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// seedCorpus adds the documented bodies (when available) and a few
// hand-written edge cases to a fuzz target.
func seedCorpus(f *testing.F, glob string, extra ...string) {
	for _, s := range extra {
		f.Add([]byte(s))
	}
	d := filepath.Join("..", "..", "..", "shared", "corpus")
	for _, sub := range []string{"partner-center", "repaired"} {
		files, _ := filepath.Glob(filepath.Join(d, sub, glob))
		for _, p := range files {
			if b, err := os.ReadFile(p); err == nil {
				f.Add(b)
			}
		}
	}
}

// notCollections are valid JSON bodies that are not a well-formed
// collection: every collection target is seeded with them.
var notCollections = []string{
	`null`, `{}`, `[]`, `[{"id":"a"}]`, `"items"`, `0`, `true`,
	`{"items":null}`, `{"totalCount":2}`, `{"items":{}}`, `{"items":"x"}`, `{"items":1}`,
	`{"totalCount":3,"items":[]}`, `{"TotalCount":1,"Items":[]}`, `{"items":[],"Items":[{"id":"a"}]}`,
	`{"items":[{"id":"a"}]} {"items":[]}`, "\uFEFF{\"items\":null}",
}

// fuzzCollection checks the client's collection reader against the body:
// it never panics; what it accepts is a JSON object whose items property
// is an array (with at least one element when totalCount is positive),
// and the items it returns are exactly those of that array, decoded as
// encoding/json decodes them. The typed view also stays stable under
// re-encoding (roundTrip).
func fuzzCollection[T any](f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		roundTrip[Collection[T]](t, b)
		got, err := decodeCollection[T](newDecoder(bytes.NewReader(b)), &itemBudget{})
		if err != nil {
			return
		}
		body := bytes.TrimPrefix(b, utf8BOM)
		var ref struct {
			Items      *[]json.RawMessage `json:"items"`
			TotalCount int                `json:"totalCount"`
		}
		if err := json.Unmarshal(body, &ref); err != nil {
			t.Fatalf("accepted a body encoding/json refuses (%v): %q", err, b)
		}
		if bytes.TrimSpace(body)[0] != '{' || ref.Items == nil {
			t.Fatalf("accepted a body that is not an object with an items array: %q", b)
		}
		if len(got.Items) != len(*ref.Items) {
			t.Fatalf("returned %d items for a body with %d: %q", len(got.Items), len(*ref.Items), b)
		}
		if ref.TotalCount > 0 && len(got.Items) == 0 {
			t.Fatalf("accepted no items with totalCount %d: %q", ref.TotalCount, b)
		}
		if got.Items == nil {
			t.Fatalf("accepted collection has nil items")
		}
		var old Collection[T]
		if err := json.Unmarshal(body, &old); err != nil {
			t.Fatalf("encoding/json refuses the accepted body: %v", err)
		}
		for i := range got.Items {
			if !reflect.DeepEqual(got.Items[i], old.Items[i]) {
				t.Fatalf("item %d differs from encoding/json's:\n%#v\n%#v", i, got.Items[i], old.Items[i])
			}
		}
		if got.TotalCount != old.TotalCount || !reflect.DeepEqual(got.Links, old.Links) {
			t.Fatalf("envelope differs from encoding/json's: %+v vs %+v", got, old)
		}
	})
}

// roundTrip checks that whatever encoding/json accepts as a T re-encodes
// and decodes again (the typed view is stable).
func roundTrip[T any](t *testing.T, b []byte) {
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		return
	}
	out, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("re-encoding a decoded value: %v", err)
	}
	var again T
	if err := json.Unmarshal(out, &again); err != nil {
		t.Fatalf("decoding a re-encoded value: %v\n%s", err, out)
	}
}

func FuzzSubscriptionCollection(f *testing.F) {
	seedCorpus(f, "subscription*", append(notCollections, `{"items":[{"id":"a","quantity":1,"billingCycle":3}]}`, `{"Items":[{"Id":"a","CreationDate":"2015-11-25T06: 41: 12Z"}]}`, `{"totalCount":37,"items":[{"id":"a"}]}`)...)
	fuzzCollection[Subscription](f)
}

// FuzzSubscription checks the single-subscription reader: what it accepts
// is one JSON object with an id, decoded as encoding/json decodes it.
func FuzzSubscription(f *testing.F) {
	seedCorpus(f, "subscription-*", append(notCollections, `{"id":"a","productType":{"subType":"x"}}`, `{"refundableQuantity":{"details":[{"allowedUntilDateTime":null}]}}`, `{"id":""}`)...)
	f.Fuzz(func(t *testing.T, b []byte) {
		roundTrip[Subscription](t, b)
		var s Subscription
		if err := decodeSubscription(newDecoder(bytes.NewReader(b)), &s); err != nil {
			return
		}
		body := bytes.TrimPrefix(b, utf8BOM)
		var old Subscription
		if err := json.Unmarshal(body, &old); err != nil {
			t.Fatalf("accepted a body encoding/json refuses (%v): %q", err, b)
		}
		if bytes.TrimSpace(body)[0] != '{' || s.ID == "" {
			t.Fatalf("accepted a body that is not an object with an id: %q", b)
		}
		if !reflect.DeepEqual(s, old) {
			t.Fatalf("differs from encoding/json's:\n%#v\n%#v", s, old)
		}
	})
}

func FuzzCustomerCollection(f *testing.F) {
	seedCorpus(f, "customer*", append(notCollections, `{"items":[{"id":"c","companyProfile":{}}],"links":{"next":{"uri":"/v1/customers","headers":[{"key":"MS-ContinuationToken","value":"x"}]}}}`)...)
	fuzzCollection[Customer](f)
}

func FuzzManagedServiceCollection(f *testing.F) {
	seedCorpus(f, "managedservices*", append(notCollections, `{"items":[{"id":"Exchange","name":"Exchange","groupName":"Office"}]}`)...)
	fuzzCollection[ManagedService](f)
}

func FuzzProductCollection(f *testing.F) {
	seedCorpus(f, "product*", append(notCollections, `{"items":[{"id":"p","dynamicAttributes":{"isMicrosoftProduct":true}}]}`)...)
	fuzzCollection[Product](f)
}

func FuzzErrorBody(f *testing.F) {
	seedCorpus(f, "error-*", `{"statusCode":429,"message":"Try again in 5 seconds"}`, `{"code":true}`)
	f.Fuzz(func(t *testing.T, b []byte) {
		var e APIError
		e.parseErrorBody(b)
		_ = e.Error()
		_ = retryAfterFromMessage(e.Message)
	})
}

func FuzzParseTime(f *testing.F) {
	for _, s := range []string{"2024-06-12T19:27:03.440527Z", "2015-11-25T06: 41: 12Z", "2023-03-13T23:59:59", "2019-01-09T00:21:45.9263727+00:00", "2023-03-13"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, ok := ParseTime(s)
		if ok && v.Location().String() != "UTC" {
			t.Fatalf("ParseTime(%q) not UTC", s)
		}
		if !ok && !v.IsZero() {
			t.Fatalf("ParseTime(%q) failed but returned %v", s, v)
		}
	})
}

// FuzzParseRetryAfter checks that no Retry-After value, header or message,
// yields a negative wait or one beyond maxRetryAfter.
func FuzzParseRetryAfter(f *testing.F) {
	for _, s := range []string{"7", "1.5", "-1", "NaN", "+Inf", "1e30", "99999999999999999999", "Wed, 21 Oct 2015 07:28:00 GMT", "Fri, 31 Dec 9999 23:59:59 GMT", ""} {
		f.Add(s)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		for _, d := range []time.Duration{parseRetryAfter(s, now), retryAfterFromMessage("Try again in " + s + " seconds")} {
			if d < 0 || d > maxRetryAfter {
				t.Fatalf("Retry-After %q gave %v", s, d)
			}
		}
	})
}
