// Package webhook receives Partner Center webhook callbacks and turns them
// into durable hints (state.Hint, Origin "webhook"), and manages the
// partner's webhook registration (issue 13, item 3). It is opt-in: Partner
// Center must reach the callback URL from the internet.
//
// Hints are triggers, never state: a hinted customer is read again and
// diffed as a sweep reads it, so a callback that is late (Partner Center
// documents up to 48 hours for subscription-updated), lost, repeated or
// replayed costs at most one refresh, and a change without a callback is
// still found by the activity-log tail and the sweep.
//
// # What the documentation says, and what is inferred
//
// Documented ("Partner Center webhooks", "Partner Center webhook events"):
// callbacks are POSTs of a JSON body {EventName, ResourceUri, ResourceName,
// AuditUri, ResourceChangeUtcDate}; the signature is "Authorization:
// Signature <base64>" (or x-ms-signature when the registration sets
// SignatureTokenToMsSignatureHeader), X-MS-Signature-Algorithm is
// rsa-sha256, X-MS-Certificate-Url names the signing certificate (the
// example: https://3psostorageacct.blob.core.windows.net/cert/
// pcnotifications-dispatch.microsoft.com.cer); the receiver verifies the
// chain, the certificate's organization (the sample requires the issuer to
// contain "O=Microsoft Corporation") and the signature over the body;
// Partner Center makes 10 delivery attempts; the registration API is
// {base}/webhooks/v1/registration (GET, POST, PUT), .../events, and
// .../validationEvents (POST, then GET .../{correlationId}; 2 a minute).
//
// Inferred or chosen here: the certificate name
// pcnotifications-dispatch.microsoft.com (from the documented file name;
// VerifierOptions.CertificateNames overrides it), the allow-list of
// certificate hosts (the documented one only), DELETE of the registration
// (listed in the REST reference, not in the page above), a 404 meaning "no
// registration", the 72-hour age bound and the replay cache (the docs
// give no freshness rule), and which event names hint (HintedEvents).
//
// # Chains
//
// Go does not fetch missing issuing certificates. When the certificate URL
// serves only the leaf (as a .cer usually does), VerifierOptions.
// Intermediates must hold Microsoft's issuing CA, or verification fails
// with ReasonCertificateUntrusted; the URL may also serve a PEM bundle,
// leaf first.
package webhook
