package deadlinequery

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

var kinds = []string{"cancellation", "refund", "renewal", "trial"}

func TestDecodeRequest(t *testing.T) {
	asOf := time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)
	cur := EncodeCursor(Key{At: asOf.Add(time.Hour), Customer: "c", Subscription: "s", Kind: "refund"}, asOf, asOf.Add(48*time.Hour))
	for _, tc := range []struct {
		in, err string
	}{
		{`{"within":"168h"}`, ""},
		{`{"within":"168h","kinds":["cancellation","refund"],"customers":["c1"],"partnerIds":["4847383"],"offers":["Microsoft 365*"],"limit":50}`, ""},
		{`{"within":"168h","cursor":"` + cur + `"}`, ""},
		{`{}`, "within: missing"},
		{`{"within":"-1h"}`, "within: want a positive Go duration"},
		{`{"within":"30000h"}`, "at most"},
		{`{"within":"1w"}`, "within: want"},
		{`{"within":"1h","limit":501}`, "limit: want 1 to 500"},
		{`{"within":"1h","limit":-1}`, "limit"},
		{`{"within":"1h","kinds":["nope"]}`, `kinds[0]: unknown deadline kind "nope"`},
		{`{"within":"1h","offers":["["]}`, "offers[0]: bad glob"},
		{`{"within":"1h","types":["["]}`, "types[0]: bad glob"},
		{`{"within":"1h","customers":[""]}`, "customers[0]: want a non-empty value"},
		{`{"within":"1h","customers":["a\u0000b"]}`, "control characters"},
		{`{"within":"1h","cursor":"garbage!"}`, "cursor: not a cursor"},
		{`{"within":"1h","cursor":"e30"}`, "cursor: not a cursor"}, // {}
		{`{"within":"1h","extra":1}`, "unknown field"},
		{`{"within":"1h"} {"within":"2h"}`, "data after"},
		{`[1,2]`, "not a deadline query"},
		{`{"within":"1h","customers":["` + strings.Repeat("x", MaxValueLen+1) + `"]}`, "at most 256 bytes"},
		{`{"within":"1h","customers":[` + strings.Repeat(`"x",`, MaxFilterValues) + `"x"]}`, "257 values"},
		{`{"within":"` + strings.Repeat(" ", MaxRequestBytes) + `"}`, "more than the 16384 allowed"},
	} {
		q, err := DecodeRequest([]byte(tc.in), kinds)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%.60s: %v", tc.in, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%.60s: error %v, want one with %q", tc.in, err, tc.err)
		case tc.err == "" && q.Limit == 0:
			t.Errorf("%.60s: limit 0", tc.in)
		}
	}
	q, err := DecodeRequest([]byte(`{"within":"168h","cursor":"`+cur+`"}`), kinds)
	if err != nil || q.After == nil || q.After.Kind != "refund" || !q.Until.Equal(asOf.Add(48*time.Hour)) || !q.AsOf.Equal(asOf) {
		t.Errorf("cursor decoded as %+v, %v", q, err)
	}
}

func TestMatches(t *testing.T) {
	d := Deadline{CustomerID: "c1", PartnerID: "p1", Offer: "Microsoft 365 E3", Kind: "refund", Type: "subscription.refund-window-closing"}
	for _, tc := range []struct {
		req  string
		want bool
	}{
		{`{"within":"1h"}`, true},
		{`{"within":"1h","kinds":["refund","trial"]}`, true},
		{`{"within":"1h","kinds":["trial"]}`, false},
		{`{"within":"1h","types":["subscription.refund-*"]}`, true},
		{`{"within":"1h","types":["subscription.trial-*"]}`, false},
		{`{"within":"1h","customers":["c2","c1"],"partnerIds":["p1"]}`, true},
		{`{"within":"1h","partnerIds":["p2"]}`, false},
		{`{"within":"1h","offers":["Microsoft 365*"]}`, true},
		{`{"within":"1h","offers":["Dynamics*"]}`, false},
	} {
		q, err := DecodeRequest([]byte(tc.req), kinds)
		if err != nil {
			t.Fatal(err)
		}
		if got := q.Matches(d); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.req, got, tc.want)
		}
	}
}

func TestCut(t *testing.T) {
	long := strings.Repeat("é", MaxFieldLen)
	c := Cut(long)
	if len(c) > MaxFieldLen || !utf8.ValidString(c) || !strings.HasSuffix(c, "…") {
		t.Errorf("Cut: %d bytes, valid %v", len(c), utf8.ValidString(c))
	}
	if Cut("short") != "short" {
		t.Error("a short value changed")
	}
}

// FuzzDecodeRequest: whatever arrives on the query subject, the decoder
// returns a checked query or a one-line error, never panics, and never
// lets a value past its bounds.
func FuzzDecodeRequest(f *testing.F) {
	asOf := time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)
	f.Add([]byte(`{"within":"168h","kinds":["cancellation"],"customers":["c1"],"offers":["M*"],"limit":50}`))
	f.Add([]byte(`{"within":"1h","cursor":"` + EncodeCursor(Key{At: asOf, Customer: "c"}, asOf, asOf.Add(time.Hour)) + `"}`))
	f.Add([]byte(`{"within":"1h","offers":["[\\"]}`))
	f.Add([]byte(`{"within":"1h","cursor":"eyJhIjp7fX0"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		q, err := DecodeRequest(b, kinds)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not one line: %q", err)
			}
			if len(err.Error()) > 600 {
				t.Fatalf("error of %d bytes: it repeats the input", len(err.Error()))
			}
			return
		}
		if q.Within <= 0 || q.Within > MaxWithin || q.Limit < 1 || q.Limit > MaxLimit {
			t.Fatalf("out of bounds: %+v", q)
		}
		for _, l := range [][]string{q.Kinds, q.Customers, q.PartnerIDs, q.Offers} {
			if len(l) > MaxFilterValues {
				t.Fatalf("%d values", len(l))
			}
			for _, v := range l {
				if v == "" || len(v) > MaxValueLen {
					t.Fatalf("value %q", v)
				}
			}
		}
		if q.After != nil && q.Until.Before(q.AsOf) {
			t.Fatalf("cursor window %v..%v", q.AsOf, q.Until)
		}
		q.Matches(Deadline{Offer: "x", Kind: "refund"})
	})
}
