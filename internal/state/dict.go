package state

import (
	"sync"

	"github.com/klauspost/compress/zstd"
)

// Snapshot records are stored compressed with zstd and a built-in
// dictionary of typical Partner Center JSON (and deadline facts): a
// subscription of ~1.3 KB becomes ~270 bytes, so the state file — which
// bbolt maps into memory and every cycle reads — is a fifth of the size.
//
// The dictionary is part of the file format: records written with
// dictionary 1 can only be read with exactly these bytes. Never edit it; a
// better dictionary needs a new record version.
const dictID = 1

var dictionary = []byte(`{"id":"","offerId":"CFQ7TTC0LH18:0001:CFQ7TTC0P0WS","offerName":"Microsoft 365 Business Basic","friendlyName":"Microsoft 365 Business Basic","productType":{"id":"OnlineServicesNCE","displayName":"OnlineServicesNCE"},"quantity":1,"unitType":"Licenses","hasPurchasableAddons":false,"creationDate":"2026-01-01T00:00:00.0000000Z","effectiveStartDate":"2026-01-01T00:00:00Z","commitmentEndDate":"2027-01-01T00:00:00Z","commitmentEndDateTime":"2027-01-01T23:59:59Z","cancellationAllowedUntilDate":"2026-01-08T00:00:00.0000000Z","billingCycleEndDate":"2026-02-01T00:00:00Z","billingCycleEndDateTime":"2026-02-01T23:59:59Z","status":"active","autoRenewEnabled":true,"isTrial":false,"billingType":"license","billingCycle":"monthly","termDuration":"P1Y","renewalTermDuration":"","isMicrosoftProduct":true,"partnerId":"","attentionNeeded":false,"actionTaken":false,"contractType":"subscription","links":{"product":{"uri":"/products/CFQ7TTC0LH18?country=US","method":"GET","headers":[]},"sku":{"uri":"/products/CFQ7TTC0LH18/skus/0001?country=US","method":"GET","headers":[]},"availability":{"uri":"/products/CFQ7TTC0LH18/skus/0001/availabilities/CFQ7TTC0P0WS?country=US","method":"GET","headers":[]},"self":{"uri":"/customers//subscriptions/","method":"GET","headers":[]}},"publisherName":"Microsoft Corporation","orderId":"","attributes":{"objectType":"Subscription"}}
{"id":"","entitlementId":"","offerId":"","offerName":"Office 365 E3","friendlyName":"","quantity":10,"unitType":"none","parentSubscriptionId":"","creationDate":"2025-01-01T00:00:00Z","effectiveStartDate":"2025-01-01T00:00:00Z","commitmentEndDate":"2026-01-01T00:00:00Z","status":"suspended","autoRenewEnabled":false,"billingType":"usage","billingCycle":"annual","termDuration":"P1M","isTrial":true,"productType":{"id":"Azure","displayName":"Azure"},"unitType":"Usage-based","billingCycle":"one_time","links":{"offer":{"uri":"/offers/?country=US","method":"GET","headers":[]},"parentSubscription":{"uri":"","method":"GET","headers":[]}},"attributes":{"etag":"","objectType":"Subscription"},"scheduledNextTermInstructions":{"product":{"productId":"","skuId":"","availabilityId":"","billingCycle":"annual","termDuration":"P1Y"},"quantity":1},"refundableQuantity":{"totalQuantity":1,"details":[{"quantity":1,"allowedUntilDateTime":"2026-01-08T00:00:00.0000000Z"}]},"suspensionReasons":["CustomerCancellation"],"status":"expired","status":"disabled","status":"deleted","Software","triennial","P3Y","License(s)"}
{"id":"","companyProfile":{"tenantId":"","domain":".onmicrosoft.com","companyName":"","attributes":{"objectType":"CustomerCompanyProfile"}},"relationshipToPartner":"reseller","allowDelegatedAccess":true,"associatedPartnerId":"","attributes":{"objectType":"Customer"}}
{"id":"Exchange","name":"Exchange","groupName":"Office","links":{"adminService":{"uri":"https://portal.office.com/Partner/BeginClientSession.aspx?CTID=&CSDEST=","method":"GET","headers":[]},"serviceHealth":{"uri":"","method":"GET","headers":[]},"serviceTicket":{"uri":"","method":"GET","headers":[]}},"attributes":{"objectType":"ManagedService"}}
{"id":"","title":"","description":"","productType":{"id":"OnlineServices","displayName":"OnlineServices"},"isMicrosoftProduct":true,"links":{"skus":{"uri":"/products//skus?country=US","method":"GET","headers":[]},"self":{"uri":"/products/?country=US","method":"GET","headers":[]}},"attributes":{"objectType":"Product"}}
{"nce":true,"status":"active","quantity":1,"autoRenew":true,"trial":true,"term":"P1Y","partnerId":"","cancelBy":"2026-01-08T00:00:00Z","cancelSeenOpen":"2026-01-08T00:00:00Z","commitmentEnd":"2027-01-01T23:59:59Z","refund":[{"quantity":1,"until":"2026-01-08T00:00:00Z"}],"refundFromList":true,"refundFetchedAt":"2026-01-01T00:00:00Z","refundFetchedQty":1,"lastIncreaseAt":"2026-01-01T00:00:00Z"}`)

var (
	zOnce sync.Once
	zEnc  *zstd.Encoder
	zDec  *zstd.Decoder
	zErr  error
)

// codec returns the shared encoder and decoder; both are safe for
// concurrent use through EncodeAll and DecodeAll.
func codec() (*zstd.Encoder, *zstd.Decoder, error) {
	zOnce.Do(func() {
		zEnc, zErr = zstd.NewWriter(nil, zstd.WithEncoderDictRaw(dictID, dictionary), zstd.WithEncoderConcurrency(1),
			zstd.WithEncoderLevel(zstd.SpeedFastest))
		if zErr == nil {
			zDec, zErr = zstd.NewReader(nil, zstd.WithDecoderDictRaw(dictID, dictionary), zstd.WithDecoderConcurrency(0))
		}
	})
	return zEnc, zDec, zErr
}

func compress(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	enc, _, err := codec()
	if err != nil {
		panic("state: zstd encoder: " + err.Error())
	}
	return enc.EncodeAll(b, nil)
}

func decompress(b []byte) ([]byte, error) {
	if len(b) == 0 {
		return nil, nil
	}
	_, dec, err := codec()
	if err != nil {
		return nil, err
	}
	return dec.DecodeAll(b, nil)
}
