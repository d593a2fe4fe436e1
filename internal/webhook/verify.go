package webhook

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/pcwatch/pcwatch/internal/clock"
)

// Documented values of the callback's authentication ("Partner Center
// webhooks", "How to authenticate the callback" and its sample
// AuthorizeSignatureAttribute).
const (
	// DefaultCertificateHost is the host of the documented
	// X-MS-Certificate-Url
	// (https://3psostorageacct.blob.core.windows.net/cert/pcnotifications-dispatch.microsoft.com.cer).
	DefaultCertificateHost = "3psostorageacct.blob.core.windows.net"
	// DefaultCertificateName is the name the signing certificate is
	// issued to. Inferred from the documented certificate file name; the
	// docs only say to verify the certificate's "Organization".
	DefaultCertificateName = "pcnotifications-dispatch.microsoft.com"
	// DefaultIssuerOrganization is what the documented sample requires of
	// the certificate's issuer ("O=Microsoft Corporation").
	DefaultIssuerOrganization = "Microsoft Corporation"
	// SignatureAlgorithm is the only X-MS-Signature-Algorithm accepted.
	SignatureAlgorithm = "rsa-sha256"
)

// Defaults of VerifierOptions.
const (
	DefaultFetchTimeout        = 5 * time.Second
	DefaultMaxCertificateBytes = 64 << 10
	DefaultCertificateTTL      = time.Hour
	DefaultFailureTTL          = 30 * time.Second
	DefaultMaxCertificates     = 16
	minRSABits                 = 2048
)

// VerifierOptions configure how a callback's signature and certificate are
// checked. The zero value is the documented production setting: the
// certificate is fetched only from DefaultCertificateHost over https, must
// chain to the system roots, be issued by DefaultIssuerOrganization and
// to DefaultCertificateName.
type VerifierOptions struct {
	// AllowedHosts are the hosts X-MS-Certificate-Url may name: "host"
	// (port 443) or "host:port". Default {DefaultCertificateHost}.
	AllowedHosts []string
	// Roots the certificate must chain to; nil means the system roots.
	Roots *x509.CertPool
	// Intermediates are extra issuing certificates (besides those the
	// certificate URL serves after the leaf): Go does not fetch missing
	// issuers, so a leaf served alone needs its issuing CA here.
	Intermediates *x509.CertPool
	// CertificateNames: the leaf must be issued to one of them (a DNS
	// name, or the subject's common name). Default
	// {DefaultCertificateName}.
	CertificateNames []string
	// IssuerOrganization must be one of the leaf issuer's organizations.
	// Default DefaultIssuerOrganization.
	IssuerOrganization string
	// HTTPClient fetches certificates; redirects are never followed.
	// Default: a client with the default transport.
	HTTPClient *http.Client
	// FetchTimeout bounds one certificate fetch. Default
	// DefaultFetchTimeout.
	FetchTimeout time.Duration
	// MaxCertificateBytes bounds a fetched certificate file. Default
	// DefaultMaxCertificateBytes.
	MaxCertificateBytes int64
	// CertificateTTL is how long a verified certificate is kept per URL
	// (never past its NotAfter). Default DefaultCertificateTTL.
	CertificateTTL time.Duration
	// FailureTTL is how long a URL whose certificate failed is not fetched
	// again (a flood of forged callbacks naming an allowed host must not
	// become a flood of fetches). Default DefaultFailureTTL.
	FailureTTL time.Duration
	// MaxCertificates bounds the cache; beyond it the oldest entry goes.
	// Default DefaultMaxCertificates.
	MaxCertificates int
	// Clock is the time chains are verified at and the cache ages by;
	// default the wall clock.
	Clock clock.Clock
}

// Verifier checks callback signatures. Safe for concurrent use.
type Verifier struct {
	o     VerifierOptions
	hc    *http.Client
	clock clock.Clock

	mu    sync.Mutex
	cache map[string]*certEntry
}

type certEntry struct {
	done    chan struct{} // closed when the fetch finished
	key     *rsa.PublicKey
	err     *rejection
	expires time.Time
	added   time.Time
}

// NewVerifier applies o's defaults.
func NewVerifier(o VerifierOptions) *Verifier {
	if len(o.AllowedHosts) == 0 {
		o.AllowedHosts = []string{DefaultCertificateHost}
	}
	if len(o.CertificateNames) == 0 {
		o.CertificateNames = []string{DefaultCertificateName}
	}
	if o.IssuerOrganization == "" {
		o.IssuerOrganization = DefaultIssuerOrganization
	}
	if o.FetchTimeout <= 0 {
		o.FetchTimeout = DefaultFetchTimeout
	}
	if o.MaxCertificateBytes <= 0 {
		o.MaxCertificateBytes = DefaultMaxCertificateBytes
	}
	if o.CertificateTTL <= 0 {
		o.CertificateTTL = DefaultCertificateTTL
	}
	if o.FailureTTL <= 0 {
		o.FailureTTL = DefaultFailureTTL
	}
	if o.MaxCertificates <= 0 {
		o.MaxCertificates = DefaultMaxCertificates
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	hc := &http.Client{}
	if o.HTTPClient != nil {
		c := *o.HTTPClient
		hc = &c
	}
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &Verifier{o: o, hc: hc, clock: o.Clock, cache: map[string]*certEntry{}}
}

// rejection is why a callback was refused: a Reason (a fixed set, for
// metrics) and the HTTP status answered.
type rejection struct {
	reason string
	status int
	err    error
}

func (r *rejection) Error() string { return r.reason + ": " + r.err.Error() }
func (r *rejection) Unwrap() error { return r.err }

func reject(status int, reason, format string, a ...any) *rejection {
	return &rejection{reason: reason, status: status, err: fmt.Errorf(format, a...)}
}

// signature returns the base64 signature of a callback's headers: the
// Authorization header ("Signature <base64>") or, when the registration
// set SignatureTokenToMsSignatureHeader, x-ms-signature (the same form).
func signature(h http.Header) ([]byte, *rejection) {
	v := h.Get("Authorization")
	if v == "" {
		v = h.Get("X-MS-Signature")
	}
	if v == "" {
		return nil, reject(http.StatusUnauthorized, ReasonNoSignature, "no Authorization or x-ms-signature header")
	}
	scheme, b64, ok := strings.Cut(strings.TrimSpace(v), " ")
	if !ok || !strings.EqualFold(scheme, "Signature") {
		return nil, reject(http.StatusUnauthorized, ReasonNoSignature, "the signature header's scheme is not \"Signature\"")
	}
	b64 = strings.TrimSpace(b64)
	if len(b64) > 4096 {
		return nil, reject(http.StatusUnauthorized, ReasonBadSignature, "a signature of %d characters", len(b64))
	}
	sig, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, reject(http.StatusUnauthorized, ReasonBadSignature, "the signature is not base64: %v", err)
	}
	return sig, nil
}

// Verify checks that sig is the X-MS-Signature-Algorithm alg signature of
// body by the certificate at certURL. The returned error is a *rejection.
func (v *Verifier) Verify(ctx context.Context, body, sig []byte, alg, certURL string) error {
	if !strings.EqualFold(strings.TrimSpace(alg), SignatureAlgorithm) {
		return reject(http.StatusUnauthorized, ReasonAlgorithm, "signature algorithm %q (want %s)", clip(alg), SignatureAlgorithm)
	}
	key, rj := v.key(ctx, certURL)
	if rj != nil {
		return rj
	}
	sum := sha256.Sum256(body)
	if err := rsa.VerifyPKCS1v15(key, crypto.SHA256, sum[:], sig); err != nil {
		return reject(http.StatusUnauthorized, ReasonBadSignature, "the signature does not match the body")
	}
	return nil
}

// checkCertURL refuses certificate URLs off the allow-list.
func (v *Verifier) checkCertURL(raw string) (*url.URL, *rejection) {
	if raw == "" {
		return nil, reject(http.StatusUnauthorized, ReasonNoCertificateURL, "no X-MS-Certificate-Url header")
	}
	if len(raw) > MaxResourceURILength {
		return nil, reject(http.StatusUnauthorized, ReasonCertificateHost, "a certificate URL of %d bytes", len(raw))
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.User != nil || u.Host == "" {
		return nil, reject(http.StatusUnauthorized, ReasonCertificateHost, "certificate URL %q is not an https URL without credentials", clip(raw))
	}
	host, port := strings.ToLower(u.Hostname()), u.Port()
	for _, a := range v.o.AllowedHosts {
		a = strings.ToLower(a)
		if h, p, err := net.SplitHostPort(a); err == nil {
			if h == host && p == port {
				return u, nil
			}
			continue
		}
		if a == host && (port == "" || port == "443") {
			return u, nil
		}
	}
	return nil, reject(http.StatusUnauthorized, ReasonCertificateHost, "certificate URL host %q is not allowed (allowed: %s)", clip(u.Host), strings.Join(v.o.AllowedHosts, ", "))
}

// key returns the verified public key of the certificate at raw, from the
// cache or fetched (one fetch per URL at a time).
func (v *Verifier) key(ctx context.Context, raw string) (*rsa.PublicKey, *rejection) {
	u, rj := v.checkCertURL(raw)
	if rj != nil {
		return nil, rj
	}
	k := u.String()
	now := v.clock.Now()
	v.mu.Lock()
	e := v.cache[k]
	if e != nil {
		select {
		case <-e.done:
			if now.After(e.expires) {
				delete(v.cache, k)
				e = nil
			}
		default:
		}
	}
	if e == nil {
		e = &certEntry{done: make(chan struct{}), added: now}
		v.evictLocked()
		v.cache[k] = e
		v.mu.Unlock()
		var notAfter time.Time
		e.key, notAfter, e.err = v.fetch(u)
		if e.err != nil {
			e.expires = v.clock.Now().Add(v.o.FailureTTL)
		} else {
			e.expires = v.clock.Now().Add(v.o.CertificateTTL)
			if notAfter.Before(e.expires) {
				e.expires = notAfter
			}
		}
		close(e.done)
	} else {
		v.mu.Unlock()
	}
	select {
	case <-e.done:
	case <-ctx.Done():
		return nil, reject(http.StatusServiceUnavailable, ReasonCertificateUnavailable, "waiting for the certificate: %v", ctx.Err())
	}
	return e.key, e.err
}

// evictLocked makes room for one entry, dropping the oldest finished one.
func (v *Verifier) evictLocked() {
	for len(v.cache) >= v.o.MaxCertificates {
		var oldK string
		var old *certEntry
		for k, e := range v.cache {
			select {
			case <-e.done:
			default:
				continue
			}
			if old == nil || e.added.Before(old.added) {
				oldK, old = k, e
			}
		}
		if old == nil {
			return // all in flight: bounded by the in-flight limit anyway
		}
		delete(v.cache, oldK)
	}
}

// fetch downloads and verifies the certificate at u. It runs on its own
// deadline, not the callback's: the result is shared by every waiter.
func (v *Verifier) fetch(u *url.URL) (*rsa.PublicKey, time.Time, *rejection) {
	ctx, cancel := context.WithTimeout(context.Background(), v.o.FetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, time.Time{}, reject(http.StatusUnauthorized, ReasonCertificateHost, "certificate URL: %v", err)
	}
	resp, err := v.hc.Do(req)
	if err != nil {
		return nil, time.Time{}, reject(http.StatusServiceUnavailable, ReasonCertificateUnavailable, "fetching the certificate from %s: %v", u.Host, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		status := http.StatusUnauthorized
		if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests {
			status = http.StatusServiceUnavailable
		}
		return nil, time.Time{}, reject(status, ReasonCertificateUnavailable, "fetching the certificate from %s: HTTP %d", u.Host, resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, v.o.MaxCertificateBytes+1))
	if err != nil {
		return nil, time.Time{}, reject(http.StatusServiceUnavailable, ReasonCertificateUnavailable, "reading the certificate from %s: %v", u.Host, err)
	}
	if int64(len(b)) > v.o.MaxCertificateBytes {
		return nil, time.Time{}, reject(http.StatusUnauthorized, ReasonCertificateUntrusted, "the certificate file at %s exceeds %d bytes", u.Host, v.o.MaxCertificateBytes)
	}
	return v.verifyCertificate(b)
}

// ParseCertificates reads a certificate file: PEM (any number of
// CERTIFICATE blocks) or DER (one or more concatenated certificates).
// The first certificate is the leaf.
func ParseCertificates(b []byte) ([]*x509.Certificate, error) {
	if strings.Contains(string(b[:min(len(b), 1024)]), "-----BEGIN") {
		var out []*x509.Certificate
		rest := b
		for {
			var blk *pem.Block
			blk, rest = pem.Decode(rest)
			if blk == nil {
				break
			}
			if blk.Type != "CERTIFICATE" {
				continue
			}
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return nil, err
			}
			out = append(out, c)
		}
		if len(out) == 0 {
			return nil, errors.New("no CERTIFICATE block in the PEM file")
		}
		return out, nil
	}
	cs, err := x509.ParseCertificates(b)
	if err == nil && len(cs) == 0 {
		err = errors.New("no certificate")
	}
	return cs, err
}

func (v *Verifier) verifyCertificate(b []byte) (*rsa.PublicKey, time.Time, *rejection) {
	certs, err := ParseCertificates(b)
	if err != nil {
		return nil, time.Time{}, reject(http.StatusUnauthorized, ReasonCertificateUntrusted, "the certificate does not parse: %v", err)
	}
	leaf := certs[0]
	inter := x509.NewCertPool()
	if v.o.Intermediates != nil {
		inter = v.o.Intermediates.Clone()
	}
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: v.o.Roots, Intermediates: inter, CurrentTime: v.clock.Now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, time.Time{}, reject(http.StatusUnauthorized, ReasonCertificateUntrusted, "the certificate does not chain to a trusted root: %v", err)
	}
	okOrg := false
	for _, o := range leaf.Issuer.Organization {
		if o == v.o.IssuerOrganization {
			okOrg = true
		}
	}
	if !okOrg {
		return nil, time.Time{}, reject(http.StatusUnauthorized, ReasonCertificateName, "the certificate's issuer %q is not O=%s", clip(leaf.Issuer.String()), v.o.IssuerOrganization)
	}
	okName := false
	for _, n := range v.o.CertificateNames {
		if leaf.VerifyHostname(n) == nil || strings.EqualFold(leaf.Subject.CommonName, n) {
			okName = true
		}
	}
	if !okName {
		return nil, time.Time{}, reject(http.StatusUnauthorized, ReasonCertificateName, "the certificate is issued to %q, not %s", clip(leaf.Subject.CommonName), strings.Join(v.o.CertificateNames, " or "))
	}
	key, ok := leaf.PublicKey.(*rsa.PublicKey)
	if !ok || key.N.BitLen() < minRSABits {
		return nil, time.Time{}, reject(http.StatusUnauthorized, ReasonCertificateUntrusted, "the certificate's key is not RSA of at least %d bits", minRSABits)
	}
	return key, leaf.NotAfter, nil
}
