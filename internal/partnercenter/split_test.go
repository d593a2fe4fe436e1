package partnercenter

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unsafe"
)

// objectOrNull is a model that accepts every object (and null, which
// encoding/json hands to UnmarshalJSON): what SplitCollection promises to
// accept is what the typed reader accepts for such a model.
type objectOrNull json.RawMessage

func (o *objectOrNull) UnmarshalJSON(b []byte) error {
	if b[0] != '{' && string(b) != "null" {
		return fmt.Errorf("not an object: %.20q", b)
	}
	*o = append(objectOrNull(nil), b...)
	return nil
}

// checkSplit compares SplitCollection with the typed reader on one body:
// same acceptance (for objectOrNull and, item decoding aside, for
// Subscription), same items byte for byte, same envelope, and for valid
// JSON the same verdict on its shape.
func checkSplit(t *testing.T, b []byte) {
	t.Helper()
	got, err := SplitCollection(b)
	ref, refErr := decodeCollection[objectOrNull](newDecoder(bytes.NewReader(b)), &itemBudget{})
	if (err == nil) != (refErr == nil) {
		t.Fatalf("splitter err %v, typed reader err %v, on %.200q", err, refErr, b)
	}
	body := bytes.TrimPrefix(b, utf8BOM)
	if err != nil {
		if json.Valid(body) && errors.Is(err, ErrNotCollection) != errors.Is(refErr, ErrNotCollection) {
			t.Fatalf("valid JSON: splitter err %v, typed reader err %v: not the same verdict on its shape, on %.200q", err, refErr, b)
		}
		return
	}
	for i, it := range got.Items {
		if !json.Valid(it) {
			t.Fatalf("item %d is not valid JSON: %.200q", i, it)
		}
	}
	if len(got.Items) != len(ref.Items) || got.Items == nil {
		t.Fatalf("%d items (nil %v), typed reader %d, on %.200q", len(got.Items), got.Items == nil, len(ref.Items), b)
	}
	for i := range got.Items {
		if !bytes.Equal(got.Items[i], ref.Items[i]) {
			t.Fatalf("item %d: %q, typed reader %q", i, got.Items[i], ref.Items[i])
		}
	}
	if got.TotalCount != ref.TotalCount || !reflect.DeepEqual(got.Links, ref.Links) || got.Attributes != ref.Attributes {
		t.Fatalf("envelope %+v %+v %+v, typed reader %+v %+v %+v", got.TotalCount, got.Links, got.Attributes, ref.TotalCount, ref.Links, ref.Attributes)
	}
	// The promise to the lazy listing: typed decoding of the accepted
	// items, one by one, succeeds exactly when the typed listing does.
	_, subErr := decodeCollection[Subscription](newDecoder(bytes.NewReader(b)), &itemBudget{})
	var itemErr error
	for _, it := range got.Items {
		var s Subscription
		if itemErr = json.Unmarshal(it, &s); itemErr != nil {
			break
		}
	}
	if (subErr == nil) != (itemErr == nil) {
		t.Fatalf("typed listing err %v, items decoded one by one err %v, on %.200q", subErr, itemErr, b)
	}
}

// FuzzSplitCollection checks the structural splitter against the typed
// reader (checkSplit) on any body.
func FuzzSplitCollection(f *testing.F) {
	seedCorpus(f, "*", append(notCollections,
		`{"items":[{"id":"a"},null]}`, `{"items":[1]}`, `{"items":["a"]}`, `{"items":[[]]}`, `{"items":[{}],"totalCount":"2"}`,
		`{"items":[{"quantity":"x"}]}`, `{"items":[{"id":"a"}],"links":{"next":{"uri":7}}}`, `{"items":[],"links":null,"attributes":{"etag":"e"}}`,
		`{"ITEMS":[{}],"x":[[[{"y":[1,2.5e-3,-0,true,false,null,"\u00e9\n"]}]]]}`, `{"item\u0073":[{}]}`, `{"it\"ems":[]}`,
		`{"items":[{"a":"\x01"}]}`, `{"items":[{"a":"\xff\xfe"}]}`, `{"items":[{"a":01}]}`, `{"items":[{"a":1.}]}`, `{"items":[{"a":-}]}`,
		`{"items":[{"a":1e}]}`, `{"items":[{"a":"\u12"}]}`, `{"items":[{"a":"\q"}]}`, `{"items":[{},]}`, `{"items":[{}],}`, `{,"items":[]}`,
		`{"items":[{}]`, `{"items":[{"a":tru}]}`, `{"items" [{}]}`, `{"items":[{}] "x":1}`, " \t\r\n{\"items\":[ {} , {} ]} \n", `{"items":[]}x`,
		`[`, `"abc`, `12x`, `nul`, `nullx`, `{"items":[`, `{"items":tru`, `{"items":"x`, `{"items":[],"items":[]}`,
		`{"totalCount":1e2,"items":[{}]}`, `{"totalCount":null,"items":[]}`, `{"links":{"next":{"uri":"/a"}},"links":{"self":{"uri":"/b"}},"items":[]}`,
	)...)
	f.Fuzz(func(t *testing.T, b []byte) {
		checkSplit(t, b)
	})
}

func TestSplitCollectionDepth(t *testing.T) {
	nest := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	for _, tc := range []struct {
		name string
		body string
		ok   bool
	}{
		{"item at the depth bound", `{"items":[{"a":` + nest(maxNestingDepth-1) + `}]}`, true},
		{"item over the depth bound", `{"items":[{"a":` + nest(maxNestingDepth) + `}]}`, false},
		{"links over the depth bound", `{"items":[],"links":{"x":` + nest(maxNestingDepth) + `}}`, false},
		// The typed reader skips unknown properties token by token,
		// without a bound; so does the splitter, without recursion.
		{"unknown property far deeper", `{"items":[],"x":` + nest(5*maxNestingDepth) + `}`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkSplit(t, []byte(tc.body))
			if _, err := SplitCollection([]byte(tc.body)); (err == nil) != tc.ok {
				t.Fatalf("err %v, want ok %v", err, tc.ok)
			}
		})
	}
}

func TestSplitCollectionErrors(t *testing.T) {
	for _, tc := range []struct {
		body  string
		shape bool // ErrNotCollection
		trunc bool // io.ErrUnexpectedEOF
	}{
		{body: `null`, shape: true},
		{body: `[{"id":"a"}]`, shape: true},
		{body: `{"totalCount":2}`, shape: true},
		{body: `{"items":{}}`, shape: true},
		{body: `{"totalCount":3,"items":[]}`, shape: true},
		{body: `{"items":[],"Items":[]}`, shape: true},
		{body: "\uFEFF{\"items\":null}", shape: true},
		{body: ``, trunc: true},
		{body: `{"items":[{"id":"a"}`, trunc: true},
		{body: `{"items":[{"id":"a`, trunc: true},
		{body: `{"items":[{"id":"a"}]`, trunc: true},
		{body: `{"items":[{"id":"a"}]}}`},
		{body: `{"items":[{"id":"a"} {"id":"b"}]}`},
		{body: `{"items":[7]}`},
	} {
		t.Run(tc.body, func(t *testing.T) {
			_, err := SplitCollection([]byte(tc.body))
			if err == nil || errors.Is(err, ErrNotCollection) != tc.shape || errors.Is(err, io.ErrUnexpectedEOF) != tc.trunc {
				t.Fatalf("err %v; want shape %v, truncated %v", err, tc.shape, tc.trunc)
			}
			checkSplit(t, []byte(tc.body))
		})
	}
}

// TestSplitCollectionBounds: the splitter counts and bounds items as the
// typed reader does, and items are sub-slices of the body.
func TestSplitCollectionBounds(t *testing.T) {
	body := []byte(`{"items":[{"id":"a"},{"id":"b"},{"id":"c"}]}`)
	b := &itemBudget{maxItm: 2}
	if _, err := splitCollection(body, b, 1); !errors.Is(err, errTooManyItems) {
		t.Fatalf("3 items over a bound of 2: err %v", err)
	}
	b = &itemBudget{limit: int64(len(body)) + 2*700}
	b.n = int64(len(body))
	if _, err := splitCollection(body, b, 700); !errors.Is(err, errOverBudget) {
		t.Fatalf("3 items charged over the byte bound: err %v", err)
	}
	b = &itemBudget{limit: int64(len(body)) + 3*700}
	b.n = int64(len(body))
	if _, err := splitCollection(body, b, 700); err != nil || b.items != 3 {
		t.Fatalf("3 items charged at the byte bound: err %v, %d counted", err, b.items)
	}
	c, err := splitCollection(body, &itemBudget{}, 1)
	if err != nil || len(c.Items) != 3 {
		t.Fatal(err)
	}
	if &c.Items[0][0] != &body[10] || cap(c.Items[0]) != len(c.Items[0]) {
		t.Fatal("items are not capped sub-slices of the body")
	}
}

// TestReadCollectionCompacts: items that are a small part of their body
// are copied out, so that a padded body is not retained by its listing.
func TestReadCollectionCompacts(t *testing.T) {
	padded := `{"pad":"` + strings.Repeat("x", 1000) + `","items":[{"id":"a"},{"id":"b"}]}`
	c, err := readCollection(&itemBudget{r: strings.NewReader(padded)}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if string(c.Items[0]) != `{"id":"a"}` || string(c.Items[1]) != `{"id":"b"}` || cap(c.Items[0]) != len(c.Items[0]) {
		t.Fatalf("items %q", c.Items)
	}
	if d := uintptr(unsafe.Pointer(&c.Items[1][0])) - uintptr(unsafe.Pointer(&c.Items[0][0])); d != uintptr(len(c.Items[0])) {
		t.Fatalf("items are %d bytes apart; want them copied next to each other", d)
	}
}

// BenchmarkSplitSubscriptions is the item listings' per-page cost next to
// BenchmarkDecodeSubscriptions (the typed decode of the same body).
func BenchmarkSplitSubscriptions(b *testing.B) {
	body := benchCollection(10)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := SplitCollection(body); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*10)/b.Elapsed().Seconds(), "subs/s")
}

// TestItemListingsAsTypedListings: an item listing fails where the typed
// listing fails, in the same way (shape, limit, attempts), and otherwise
// returns exactly the raw JSON the typed items keep. The one documented
// difference: an item whose properties have the wrong types is returned
// (it fails when decoded).
func TestItemListingsAsTypedListings(t *testing.T) {
	big := `{"totalCount":1,"items":[{"id":"a","friendlyName":"` + strings.Repeat("x", 2<<20) + `"}]}`
	tiny := `{"totalCount":1,"items":[` + strings.Repeat(`{"id":"a"},`, 20000) + `{"id":"b"}]}`
	bodies := append(slices.Clone(notCollections),
		`{"totalCount":0,"items":[]}`, "\uFEFF"+`{"totalCount":0,"items":[],"links":{"self":{"uri":"/x"}}}`,
		`{"TotalCount":2,"Items":[{"Id":"a"},{"Id":"b"}],"futureField":{"x":[1,{"y":null}]}}`,
		`{"items":[{"id":"a"},null]}`, `{"items":[{"id":"a"},7]}`, `{"items":[{"id":"a"}`, `{"items":[{"id":"a",}]}`,
		big, tiny, string(benchCollection(3)))
	for i, body := range bodies {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			srv, hits := bodyServer(t, body)
			c, _ := newTestClient(t, srv, func(o *Options) { o.MaxResponseBytes = 1 << 20 })
			typed, terr := c.ListSubscriptions(context.Background(), "c1", SubscriptionFilter{})
			th := hits.Swap(0)
			items, err := c.ListSubscriptionItems(context.Background(), "c1", SubscriptionFilter{})
			if (err == nil) != (terr == nil) || hits.Load() != th {
				t.Fatalf("items err %v after %d attempts; typed err %v after %d", err, hits.Load(), terr, th)
			}
			var le, tle *LimitError
			var de *DecodeError
			if errors.Is(err, ErrNotCollection) != errors.Is(terr, ErrNotCollection) || errors.As(err, &le) != errors.As(terr, &tle) ||
				errors.As(terr, &de) && !errors.As(err, &de) {
				t.Fatalf("items err %v; typed err %v", err, terr)
			}
			if le != nil && (le.Option != tle.Option || le.Limit != tle.Limit) {
				t.Fatalf("limit %+v; typed %+v", le, tle)
			}
			if len(items) != len(typed) || (err == nil) != (items != nil) {
				t.Fatalf("%d items (nil %v); typed %d", len(items), items == nil, len(typed))
			}
			for j := range items {
				if !bytes.Equal(items[j], typed[j].Raw) {
					t.Fatalf("item %d: %.100q; typed raw %.100q", j, items[j], typed[j].Raw)
				}
			}
		})
	}
	srv, _ := bodyServer(t, `{"items":[{"id":"a"},{"id":"b","quantity":"seven"}]}`)
	c, _ := newTestClient(t, srv, nil)
	if _, err := c.ListSubscriptions(context.Background(), "c1", SubscriptionFilter{}); err == nil {
		t.Fatal("typed listing decoded a quantity that is a string")
	}
	items, err := c.ListSubscriptionItems(context.Background(), "c1", SubscriptionFilter{})
	if err != nil || len(items) != 2 {
		t.Fatalf("item listing: %d items, %v; want both, undecoded", len(items), err)
	}
}
