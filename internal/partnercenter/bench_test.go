package partnercenter

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// benchCollection renders a subscriptions collection of n NCE-shaped items,
// the size and shape of one customer's listing.
func benchCollection(n int) []byte {
	var items []string
	for i := 0; i < n; i++ {
		items = append(items, fmt.Sprintf(`{"id":"bbbb1b1b-cc2c-dd3d-ee4e-ffffff5f%04d","offerId":"CFQ7TTC0LH18:0001:CFQ7TTC0P0WS",
"offerName":"Microsoft 365 Business Basic","friendlyName":"Microsoft 365 Business Basic","productType":{"id":"OnlineServicesNCE","displayName":"OnlineServicesNCE"},
"quantity":%d,"unitType":"Licenses","hasPurchasableAddons":false,"creationDate":"2024-06-05T19:26:38.3667635Z","effectiveStartDate":"2024-06-05T00:00:00Z",
"commitmentEndDate":"2025-06-04T00:00:00Z","commitmentEndDateTime":"2025-06-04T23:59:59Z","cancellationAllowedUntilDate":"2024-06-12T19:27:03.440527Z",
"billingCycleEndDate":"2024-07-04T00:00:00Z","billingCycleEndDateTime":"2024-07-04T23:59:59Z","status":"active","autoRenewEnabled":true,"isTrial":false,
"billingType":"license","billingCycle":"monthly","termDuration":"P1Y","renewalTermDuration":"","isMicrosoftProduct":true,"partnerId":"4847383",
"attentionNeeded":false,"actionTaken":false,"contractType":"subscription","links":{"product":{"uri":"/products/CFQ7TTC0LH18?country=US","method":"GET","headers":[]},
"sku":{"uri":"/products/CFQ7TTC0LH18/skus/0001?country=US","method":"GET","headers":[]},"availability":{"uri":"/products/CFQ7TTC0LH18/skus/0001/availabilities/CFQ7TTC0P0WS?country=US","method":"GET","headers":[]},
"self":{"uri":"/customers/c501c3c4-d776-40ef-9ecf-9cefb59442c1/subscriptions/bbbb1b1b","method":"GET","headers":[]}},"publisherName":"Microsoft Corporation",
"orderId":"79d9f5e2f43a","attributes":{"objectType":"Subscription"}}`, i, 1+i%50))
	}
	return []byte(`{"totalCount":` + fmt.Sprint(n) + `,"items":[` + strings.Join(items, ",") + `],"links":{"self":{"uri":"/customers/c/subscriptions","method":"GET","headers":[]}},"attributes":{"objectType":"Collection"}}`)
}

// BenchmarkDecodeSubscriptions decodes one customer's 10-subscription
// collection; subs/s is the figure.
func BenchmarkDecodeSubscriptions(b *testing.B) {
	body := benchCollection(10)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		var c Collection[Subscription]
		if err := json.Unmarshal(body, &c); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*10)/b.Elapsed().Seconds(), "subs/s")
}
