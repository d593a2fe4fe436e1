package partnercenter

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseTime(t *testing.T) {
	utc := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return v.UTC()
	}
	tests := []struct {
		in   string
		want time.Time
		ok   bool
	}{
		{"2024-06-12T19:27:03Z", utc("2024-06-12T19:27:03Z"), true},
		{"2024-06-12T19:27:03.4Z", utc("2024-06-12T19:27:03.4Z"), true},
		{"2024-06-12T19:27:03.440527Z", utc("2024-06-12T19:27:03.440527Z"), true},
		{"2021-01-14T16:57:15.0966728Z", utc("2021-01-14T16:57:15.0966728Z"), true},
		{"2019-01-09T00:21:45.9263727+00:00", utc("2019-01-09T00:21:45.9263727Z"), true},
		{"2019-01-09T02:21:45.9263727+02:00", utc("2019-01-09T00:21:45.9263727Z"), true},
		{"2019-01-09T02:21:45+0200", utc("2019-01-09T00:21:45Z"), true},
		{"2023-03-13T23:59:59", utc("2023-03-13T23:59:59Z"), true},
		{"2023-03-13T23:59:59.1234567", utc("2023-03-13T23:59:59.1234567Z"), true},
		{"2023-03-13", utc("2023-03-13T00:00:00Z"), true},
		{"2015-11-25T06: 41: 12Z", utc("2015-11-25T06:41:12Z"), true},
		{"  2024-06-12T19:27:03Z ", utc("2024-06-12T19:27:03Z"), true},
		{"", time.Time{}, false},
		{"next tuesday", time.Time{}, false},
		{"2024-13-45T00:00:00Z", time.Time{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, ok := ParseTime(tt.in)
			if ok != tt.ok || !got.Equal(tt.want) {
				t.Fatalf("ParseTime(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
			}
			if ok && got.Location() != time.UTC {
				t.Fatalf("ParseTime(%q) location %v, want UTC", tt.in, got.Location())
			}
		})
	}
}

func TestTimeJSON(t *testing.T) {
	tests := []struct {
		in        string
		present   bool
		valid     bool
		roundTrip string
	}{
		{`null`, false, false, `null`},
		{`"2024-06-12T19:27:03.440527Z"`, true, true, `"2024-06-12T19:27:03.440527Z"`},
		{`"not a date"`, true, false, `"not a date"`},
		{`12345`, true, false, `"12345"`},
	}
	for _, tt := range tests {
		var v Time
		if err := json.Unmarshal([]byte(tt.in), &v); err != nil {
			t.Fatalf("%s: %v", tt.in, err)
		}
		if v.Present() != tt.present || v.Valid() != tt.valid {
			t.Errorf("%s: present=%v valid=%v, want %v %v", tt.in, v.Present(), v.Valid(), tt.present, tt.valid)
		}
		out, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if string(out) != tt.roundTrip {
			t.Errorf("%s: marshal = %s, want %s", tt.in, out, tt.roundTrip)
		}
	}
}

func TestEnums(t *testing.T) {
	tests := []struct {
		in   string
		want BillingCycle
		is   BillingCycle
	}{
		{`"monthly"`, "monthly", BillingCycleMonthly},
		{`"Monthly"`, "Monthly", BillingCycleMonthly},
		{`"Annual"`, "Annual", BillingCycleAnnual},
		{`"ANNUAL"`, "ANNUAL", BillingCycleAnnual},
		{`"one_time"`, "one_time", BillingCycleOneTime},
		{`"OneTime"`, "OneTime", BillingCycleOneTime},
		{`"quadrennial"`, "quadrennial", ""}, // unknown: kept, no error
		{`3`, "3", ""},                       // a number: kept as text
		{`null`, "", ""},
	}
	for _, tt := range tests {
		var v BillingCycle
		if err := json.Unmarshal([]byte(tt.in), &v); err != nil {
			t.Fatalf("%s: %v", tt.in, err)
		}
		if v != tt.want {
			t.Errorf("%s: got %q, want %q", tt.in, v, tt.want)
		}
		if tt.is != "" && !v.Is(tt.is) {
			t.Errorf("%s: %q.Is(%q) = false", tt.in, v, tt.is)
		}
	}
	if BillingCycleMonthly.Is(BillingCycleAnnual) {
		t.Error("monthly Is annual")
	}
	var st SubscriptionStatus
	if err := json.Unmarshal([]byte(`"Suspended"`), &st); err != nil || !st.Is(StatusSuspended) {
		t.Errorf("status Suspended: %q %v", st, err)
	}
}

func TestDecodeSubscriptionShapes(t *testing.T) {
	camel := `{"id":"s1","offerId":"CFQ7TTC0LH18:0001:CFQ7TTC0P0WS","offerName":"Microsoft 365 Business Basic",
		"friendlyName":"M365","productType":{"id":"OnlineServicesNCE","displayName":"OnlineServicesNCE","subType":{"id":"x","displayName":"X"}},
		"quantity":2,"unitType":"Licenses","creationDate":"2024-06-05T19:26:38.3667635Z",
		"commitmentEndDate":"2024-07-04T00:00:00Z","commitmentEndDateTime":"2024-07-04T23:59:59Z",
		"cancellationAllowedUntilDate":"2024-06-12T19:27:03.440527Z","status":"Active","autoRenewEnabled":true,
		"billingCycle":"Annual","billingType":"License","termDuration":"P1Y","partnerId":"4847383",
		"suspensionReasons":["CustomerCancellation"],
		"scheduledNextTermInstructions":{"product":{"productId":"P","skuId":"S","availabilityId":"A","billingCycle":"monthly","termDuration":"P1M"},"quantity":3},
		"refundableQuantity":{"totalQuantity":1,"details":[{"quantity":1,"allowedUntilDateTime":"2024-06-14T17:41:13.4675407Z"}]},
		"refundOptions":[{"type":"Full","expiresAt":"2024-06-06T00:00:00Z"}],
		"attentionNeeded":true,"actionTaken":false,"publisherName":"Microsoft Corporation",
		"links":{"self":{"uri":"/customers/c/subscriptions/s1","method":"GET","headers":[]}},
		"attributes":{"etag":"e1","objectType":"Subscription"},
		"someFutureField":{"nested":[1,2,3]}}`
	pascal := `{"Id":"s1","Quantity":2,"Status":"suspended","AutoRenewEnabled":false,"ParentSubscriptionId":null,
		"PartnerId":null,"CommitmentEndDate":"2016-12-12T08:00:00Z","Links":{"Self":{"Uri":"/subscriptions?key=k","Method":"GET","Headers":[]}},
		"Attributes":{"Etag":"<etag>","ObjectType":"Subscription"}}`

	var s Subscription
	if err := json.Unmarshal([]byte(camel), &s); err != nil {
		t.Fatal(err)
	}
	if s.Quantity != 2 || !s.Status.Is(StatusActive) || !s.BillingCycle.Is(BillingCycleAnnual) || !s.BillingType.Is(BillingTypeLicense) {
		t.Errorf("typed view wrong: %+v", s)
	}
	if !s.IsNCE() || s.ProductType.SubType.ID != "x" || s.PartnerID != "4847383" {
		t.Errorf("NCE fields wrong: %+v", s)
	}
	if got := s.RefundableQuantity.Details[0].AllowedUntilDateTime.T; !got.Equal(time.Date(2024, 6, 14, 17, 41, 13, 467540700, time.UTC)) {
		t.Errorf("refundable detail time = %v", got)
	}
	if s.ScheduledNextTermInstructions == nil || s.ScheduledNextTermInstructions.Quantity != 3 ||
		!s.ScheduledNextTermInstructions.Product.BillingCycle.Is(BillingCycleMonthly) {
		t.Errorf("scheduled instructions wrong: %+v", s.ScheduledNextTermInstructions)
	}
	if !s.CommitmentEnd().T.Equal(time.Date(2024, 7, 4, 23, 59, 59, 0, time.UTC)) {
		t.Errorf("CommitmentEnd = %v", s.CommitmentEnd())
	}
	if !strings.Contains(string(s.Raw), "someFutureField") {
		t.Error("raw JSON lost the unknown field")
	}

	var p Subscription
	if err := json.Unmarshal([]byte(pascal), &p); err != nil {
		t.Fatal(err)
	}
	if p.ID != "s1" || p.Quantity != 2 || !p.Status.Is(StatusSuspended) || p.Attributes.Etag != "<etag>" ||
		p.Links["Self"].URI != "/subscriptions?key=k" || p.PartnerID != "" || p.IsNCE() {
		t.Errorf("PascalCase decode wrong: %+v", p)
	}
}

func TestDecodeCollections(t *testing.T) {
	body := `{"totalCount":2,"items":[
		{"id":"c1","companyProfile":{"tenantId":"t1","domain":"a.onmicrosoft.com","companyName":"A"},"relationshipToPartner":"reseller","allowDelegatedAccess":true,"associatedPartnerId":"123"},
		{"id":"c2","companyProfile":{"tenantId":"t2","domain":"b","companyName":"B"},"relationshipToPartner":"Reseller",
		 "billingProfile":{"id":"b1","email":"x@y","defaultAddress":{"country":"US"}}}],
		"links":{"self":{"uri":"/v1/customers?size=2","method":"GET","headers":[]},
		"next":{"uri":"/v1/customers?size=2&seekOperation=Next","method":"GET","headers":[{"key":"MS-ContinuationToken","value":"abc"}]}},
		"attributes":{"objectType":"Collection"}}`
	var c Collection[Customer]
	if err := json.Unmarshal([]byte(body), &c); err != nil {
		t.Fatal(err)
	}
	want := &Link{URI: "/v1/customers?size=2&seekOperation=Next", Method: "GET", Headers: []Header{{"MS-ContinuationToken", "abc"}}}
	if diff := cmp.Diff(want, c.Links.Next); diff != "" {
		t.Errorf("next link (-want +got):\n%s", diff)
	}
	if len(c.Items) != 2 || c.Items[0].AssociatedPartnerID != "123" || *c.Items[0].AllowDelegatedAccess != true ||
		c.Items[1].BillingProfile.DefaultAddress.Country != "US" || !c.Items[1].RelationshipToPartner.Is(RelationshipReseller) {
		t.Errorf("customers wrong: %+v", c.Items)
	}
	if !strings.HasPrefix(string(c.Items[1].Raw), `{"id":"c2"`) {
		t.Errorf("raw of second item = %s", c.Items[1].Raw)
	}

	prod := `{"totalCount":1,"items":[{"id":"0001","title":"Microsoft Azure plan","productType":{"id":"Azure"},"dynamicAttributes":{"isMicrosoftProduct":true}}]}`
	var pc Collection[Product]
	if err := json.Unmarshal([]byte(prod), &pc); err != nil {
		t.Fatal(err)
	}
	if !pc.Items[0].IsMicrosoftProduct || pc.Items[0].ProductType.ID != "Azure" {
		t.Errorf("product = %+v", pc.Items[0])
	}
}

func TestParseErrorBodies(t *testing.T) {
	tests := []struct {
		name string
		body string
		want APIError
	}{
		{"numeric code", `{"code":800090,"description":"Seat reduction not allowed","data":[],"source":"PartnerFD"}`,
			APIError{Code: "800090", Description: "Seat reduction not allowed"}},
		{"string code", `{"code":"2000","description":"Tenant Id must be a GUID."}`,
			APIError{Code: "2000", Description: "Tenant Id must be a GUID."}},
		{"extended", `{"code":600061,"message":"m","description":"d","errorName":"PartnerConfirmedAgreementAlreadyExists","isRetryable":false}`,
			APIError{Code: "600061", Message: "m", Description: "d", ErrorName: "PartnerConfirmedAgreementAlreadyExists", Retryable: new(bool)}},
		{"429 shape", `{ "statusCode": 429, "message": "Rate limit is exceeded. Try again in 57 seconds." }`,
			APIError{Code: "429", Message: "Rate limit is exceeded. Try again in 57 seconds."}},
		{"not json", `<html>Service Unavailable</html>`,
			APIError{Description: `unreadable error body: "<html>Service Unavailable</html>"`}},
		{"empty", ``, APIError{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var e APIError
			e.parseErrorBody([]byte(tt.body))
			if diff := cmp.Diff(tt.want, e); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	if d := retryAfterFromMessage("Rate limit is exceeded. Try again in 57 seconds."); d != 57*time.Second {
		t.Errorf("retryAfterFromMessage = %v", d)
	}
	e := &APIError{StatusCode: http.StatusNotFound}
	if !errors.Is(e, ErrNotFound) || errors.Is(e, ErrForbidden) || e.Temporary() {
		t.Error("404 classification wrong")
	}
	if !(&APIError{StatusCode: 503}).Temporary() || !errors.Is(&APIError{StatusCode: 502}, ErrServer) {
		t.Error("5xx classification wrong")
	}
}

// corpusDir is the documented response bodies shared next to the repository.
func corpusDir(t testing.TB) string {
	t.Helper()
	d := filepath.Join("..", "..", "..", "shared", "corpus")
	if _, err := os.Stat(d); err != nil {
		t.Skipf("corpus not available at %s", d)
	}
	return d
}

// TestCorpus decodes every documented body of the shapes the client reads:
// valid files must decode, and the documented-invalid ones must fail with an
// error rather than a panic or a silent partial value.
func TestCorpus(t *testing.T) {
	dir := corpusDir(t)
	files, _ := filepath.Glob(filepath.Join(dir, "partner-center", "*"))
	repaired, _ := filepath.Glob(filepath.Join(dir, "repaired", "*.json"))
	files = append(files, repaired...)
	decoded := 0
	for _, f := range files {
		name := filepath.Base(f)
		var target any
		// decode is the client's reader for the shape: the streaming
		// collection decoder and the single-subscription decoder, which
		// refuse what is not a collection or object.
		var decode func([]byte) error
		switch {
		case strings.HasPrefix(name, "subscriptions-collection"):
			target = new(Collection[Subscription])
			decode = collectionDecoder(target.(*Collection[Subscription]))
		case strings.HasPrefix(name, "subscription-") && !strings.Contains(name, "provisioning") && !strings.Contains(name, "migrations"):
			s := new(Subscription)
			target = s
			decode = func(b []byte) error { return decodeSubscription(newDecoder(bytes.NewReader(b)), s) }
		case strings.HasPrefix(name, "customers-collection"):
			target = new(Collection[Customer])
			decode = collectionDecoder(target.(*Collection[Customer]))
		case strings.HasPrefix(name, "customer-"):
			target = new(Customer)
		case strings.HasPrefix(name, "managedservices-collection"):
			target = new(Collection[ManagedService])
			decode = collectionDecoder(target.(*Collection[ManagedService]))
		case strings.HasPrefix(name, "products-collection"):
			target = new(Collection[Product])
			decode = collectionDecoder(target.(*Collection[Product]))
		case strings.HasPrefix(name, "product-"):
			target = new(Product)
		case strings.HasPrefix(name, "error-"):
			b, _ := os.ReadFile(f)
			var e APIError
			e.parseErrorBody(b)
			if strings.HasSuffix(name, ".json") && e.Code == "" {
				t.Errorf("%s: no code read from error body", name)
			}
			continue
		default:
			continue
		}
		t.Run(name, func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if decode == nil {
				decode = func(b []byte) error { return json.Unmarshal(b, target) }
			}
			err = decode(b)
			if strings.HasSuffix(name, ".txt") {
				if err == nil {
					t.Fatalf("documented-invalid body decoded without error")
				}
				return
			}
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			decoded++
			switch v := target.(type) {
			case *Subscription:
				if v.ID == "" || len(v.Raw) == 0 {
					t.Errorf("subscription without id or raw: %+v", v)
				}
			case *Collection[Subscription]:
				for _, s := range v.Items {
					if s.ID == "" || len(s.Raw) == 0 {
						t.Errorf("item without id or raw")
					}
					if !s.CreationDate.Valid() && s.CreationDate.Present() {
						t.Errorf("creationDate %q unreadable", s.CreationDate.Raw)
					}
				}
			}
		})
	}
	if decoded < 20 {
		t.Errorf("decoded only %d corpus bodies", decoded)
	}
}

// collectionDecoder decodes a body into *dst with the client's collection
// reader.
func collectionDecoder[T any](dst *Collection[T]) func([]byte) error {
	return func(b []byte) error {
		c, err := decodeCollection[T](newDecoder(bytes.NewReader(b)), &itemBudget{})
		*dst = c
		return err
	}
}

func TestCorpusNCERefundable(t *testing.T) {
	dir := corpusDir(t)
	b, err := os.ReadFile(filepath.Join(dir, "repaired", "subscription-nce-01.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s Subscription
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	if !s.IsNCE() || s.RefundableQuantity.TotalQuantity != 10 || len(s.RefundableQuantity.Details) != 1 ||
		!s.Status.Is(StatusExpired) || s.RefundOptions[0].Type != "Full" || s.TermDuration != "P1Y" {
		t.Errorf("NCE corpus subscription decoded wrong: %+v", s)
	}
}
