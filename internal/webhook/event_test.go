package webhook_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pcwatch/pcwatch/internal/webhook"
)

// corpusDir holds documented bodies, read at test time (never copied).
const corpusDir = "../../../shared/corpus/partner-center"

func readCorpus(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(corpusDir, name))
	if err != nil {
		t.Skipf("documented corpus not available: %v", err)
	}
	return b
}

func TestDecodeDocumentedEvents(t *testing.T) {
	cases := []struct {
		file, event, customer, sub string
	}{
		{"webhook-event-test-created-01.json", "test-created", "", ""},
		{"webhook-event-subscription-updated-01.json", "subscription-updated", "", ""}, // placeholders name nothing
		{"webhook-event-reseller-relationship-accepted-01.json", "reseller-relationship-accepted-by-customer", "4b2a6e33-8791-4386-bd2b-0d55baf25039", ""},
		{"webhook-event-dap-terminated-by-microsoft-01.json", "dap-admin-relationship-terminated-by-microsoft", "", ""},
		{"webhook-event-thresholdexceeded-01.json", "usagerecords-thresholdExceeded", "", ""},
		{"webhook-event-invoice-ready-01.json", "invoice-ready", "", ""},
		{"webhook-event-azure-fraud-01.json", "azure-fraud-event-detected", "", ""},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			ev, err := webhook.DecodeEvent(readCorpus(t, c.file))
			if err != nil {
				t.Fatal(err)
			}
			if ev.EventName != c.event {
				t.Errorf("event %q, want %q", ev.EventName, c.event)
			}
			if ev.ResourceChangeUtcDate.IsZero() {
				t.Error("no ResourceChangeUtcDate")
			}
			r := webhook.ParseResourceURI(ev.ResourceURI)
			if r.CustomerID != c.customer || r.SubscriptionID != c.sub {
				t.Errorf("resource %+v, want %s/%s", r, c.customer, c.sub)
			}
		})
	}
	// The documented dap-approved example is not JSON (EN SPACE indent).
	if _, err := webhook.DecodeEvent(readCorpus(t, "webhook-event-dap-approved-01.txt")); !errors.Is(err, webhook.ErrMalformed) {
		t.Errorf("dap-approved example: %v, want ErrMalformed", err)
	}
}

func TestDecodeEvent(t *testing.T) {
	cases := []struct {
		name, body string
		ok         bool
		date       time.Time
	}{
		{"minimal", `{"EventName":"x"}`, true, time.Time{}},
		{"no zone", `{"EventName":"x","ResourceChangeUtcDate":"2017-12-08T21:39:48.2386997"}`, true, time.Date(2017, 12, 8, 21, 39, 48, 238699700, time.UTC)},
		{"offset", `{"EventName":"x","ResourceChangeUtcDate":"2017-12-08T23:39:48+02:00"}`, true, time.Date(2017, 12, 8, 21, 39, 48, 0, time.UTC)},
		{"lower case keys", `{"eventName":"x","resourceUri":null}`, true, time.Time{}},
		{"null date", `{"EventName":"x","ResourceChangeUtcDate":null}`, true, time.Time{}},
		{"no name", `{"ResourceUri":"a"}`, false, time.Time{}},
		{"name a number", `{"EventName":5}`, false, time.Time{}},
		{"bad date", `{"EventName":"x","ResourceChangeUtcDate":"2015-11-25T06: 41: 12Z"}`, false, time.Time{}},
		{"array", `[{"EventName":"x"}]`, false, time.Time{}},
		{"trailing", `{"EventName":"x"} {}`, false, time.Time{}},
		{"long name", `{"EventName":"` + strings.Repeat("a", 200) + `"}`, false, time.Time{}},
		{"empty", ``, false, time.Time{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ev, err := webhook.DecodeEvent([]byte(c.body))
			if (err == nil) != c.ok {
				t.Fatalf("err %v, want ok=%v", err, c.ok)
			}
			if err != nil && !errors.Is(err, webhook.ErrMalformed) {
				t.Errorf("error %v does not wrap ErrMalformed", err)
			}
			if !ev.ResourceChangeUtcDate.Equal(c.date) {
				t.Errorf("date %v, want %v", ev.ResourceChangeUtcDate, c.date)
			}
		})
	}
}

func TestParseResourceURI(t *testing.T) {
	cases := []struct {
		uri, cust, sub string
	}{
		{"http://api.partnercenter.microsoft.com/webhooks/v1/customers/C1/subscriptions/S1", "C1", "S1"},
		{"https://api.partnercenter.microsoft.com/v1/customers/4b2a6e33-8791-4386-bd2b-0d55baf25039", "4b2a6e33-8791-4386-bd2b-0d55baf25039", ""},
		{"https://x/v1/Customers/c/Subscriptions/s/addons", "c", "s"},
		{"https://x/v1/customers/c/subscriptions", "c", ""},
		{"https://x/v1/customers/c/subscriptions/%7B%7Bx%7D%7D", "c", ""},
		{"https://api.partnercenter.microsoft.com/v1/customers/usagerecords", "", ""},
		{"http://api.partnercenter.microsoft.com/webhooks/v1/customers/{{CustomerId}}/subscriptions/{{SubscriptionId}}", "", ""},
		{"https://api.partnercenter.microsoft.com/v1/invoices/1", "", ""},
		{"https://x/v1/customers", "", ""},
		{"", "", ""},
		{"%zz", "", ""},
	}
	for _, c := range cases {
		r := webhook.ParseResourceURI(c.uri)
		if r.CustomerID != c.cust || r.SubscriptionID != c.sub {
			t.Errorf("%q: %+v, want %q/%q", c.uri, r, c.cust, c.sub)
		}
	}
}

func FuzzDecodeEvent(f *testing.F) {
	for _, s := range []string{
		`{"EventName":"test-created","ResourceUri":"http://api.partnercenter.microsoft.com/webhooks/v1/registration/validationEvents/x","ResourceName":"test","AuditUri":null,"ResourceChangeUtcDate":"2017-11-16T16:19:06.3520276+00:00"}`,
		`{"EventName":"subscription-updated","ResourceUri":"https://x/webhooks/v1/customers/a/subscriptions/b","ResourceChangeUtcDate":"2017-12-08T21:39:48.2386997"}`,
		`{"EventName":null}`, `[]`, `{"EventName":"x","AuditUrl":"u"}`, "{\"EventName\":\"\u2002\"}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := webhook.DecodeEvent(b)
		if err != nil {
			if !errors.Is(err, webhook.ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if ev.EventName == "" || len(ev.EventName) > webhook.MaxEventNameLength {
			t.Fatalf("accepted event name %q", ev.EventName)
		}
		if !ev.ResourceChangeUtcDate.IsZero() && ev.ResourceChangeUtcDate.Location() != time.UTC {
			t.Fatalf("date not UTC: %v", ev.ResourceChangeUtcDate)
		}
		_ = webhook.ParseResourceURI(ev.ResourceURI)
	})
}

func FuzzParseResourceURI(f *testing.F) {
	for _, s := range []string{
		"http://api.partnercenter.microsoft.com/webhooks/v1/customers/C1/subscriptions/S1",
		"https://api.partnercenter.microsoft.com/v1/customers/4b2a6e33-8791-4386-bd2b-0d55baf25039",
		"https://api.partnercenter.microsoft.com/v1/customers/usagerecords", "/customers//subscriptions/", "%",
		"https://x/v1/customers/{{CustomerId}}",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r := webhook.ParseResourceURI(s)
		if r.CustomerID == "" && r.SubscriptionID != "" {
			t.Fatalf("a subscription without a customer: %+v", r)
		}
		for _, id := range []string{r.CustomerID, r.SubscriptionID} {
			if len(id) > 64 || strings.ContainsAny(id, "/{}?#% ") {
				t.Fatalf("id %q is not a plain token", id)
			}
		}
		if r.CustomerID != "" && !strings.Contains(strings.ToLower(s), "customers/"+strings.ToLower(r.CustomerID)) {
			t.Fatalf("customer %q not in %q", r.CustomerID, s)
		}
	})
}
