package pcsim

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"sync/atomic"
	"time"
)

// TestPKI is a throw-away certificate authority for webhook signing in
// tests and demos: never a production trust anchor. Keys are random (Go's
// key generation ignores seeded sources), so certificates differ between
// runs; which callbacks are sent does not.
type TestPKI struct {
	Root  *x509.Certificate
	Roots *x509.CertPool // holds Root only
	key   crypto.Signer
	// Organization is the organization of the root (the issuer of the
	// leaves), e.g. "Microsoft Corporation" to pass the documented check.
	Organization string
	serial       atomic.Int64
}

// NewTestPKI makes a root CA named O=org, valid from a day before notBefore
// for ten years (pass the business clock's reading, so a fake clock in the
// past still verifies).
func NewTestPKI(org string, notBefore time.Time) (*TestPKI, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{Organization: []string{org}, CommonName: org + " pcsim Test Root"},
		NotBefore:             notBefore.Add(-24 * time.Hour),
		NotAfter:              notBefore.Add(10 * 365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	root, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	p := &TestPKI{Root: root, Roots: x509.NewCertPool(), key: key, Organization: org}
	p.Roots.AddCert(root)
	p.serial.Store(1)
	return p, nil
}

// Signer issues an RSA-2048 leaf for name (its common name and DNS name)
// and returns it as a WebhookSigner with the chain [leaf] (the root is the
// trust anchor, not sent) and certURL as its X-MS-Certificate-Url ("" for
// the simulator's own).
func (p *TestPKI) Signer(name, certURL string) (*WebhookSigner, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(p.serial.Add(1)),
		Subject:      pkix.Name{Organization: []string{p.Organization}, CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    p.Root.NotBefore,
		NotAfter:     p.Root.NotAfter.Add(-time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.Root, key.Public(), p.key)
	if err != nil {
		return nil, fmt.Errorf("issuing the test leaf %s: %w", name, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &WebhookSigner{Key: key, Chain: []*x509.Certificate{leaf}, CertURL: certURL}, nil
}
