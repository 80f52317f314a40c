package certcache

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/server/dynamiccertificates"
	"k8s.io/client-go/util/cert"

	"github.com/etcdaas/etcdaas/pkg/pki"
)

// probe is a settable clock and a count of the chain verifications of a verifiedChains.
type probe struct {
	clock time.Time
	// verifications counts the chains verified (not answered from the cache).
	verifications int
}

// newProbe makes chains read the probe's clock (now, until a test moves it) and count its
// verifications.
func newProbe(chains *verifiedChains) *probe {
	p := &probe{clock: time.Now()}
	chains.now = func() time.Time { return p.clock }
	verify := chains.verify
	chains.verify = func(chain []*x509.Certificate, opts x509.VerifyOptions) (validity, bool) {
		p.verifications++
		return verify(chain, opts)
	}
	return p
}

// swappableCA is a CA content provider whose bundle a test replaces without notifying
// listeners, as happens between a provider storing new content and calling them.
type swappableCA struct {
	opts atomic.Pointer[x509.VerifyOptions]
}

func newSwappableCA(t *testing.T, ca *pki.CA) *swappableCA {
	s := &swappableCA{}
	s.set(t, ca)
	return s
}

func (s *swappableCA) set(t *testing.T, ca *pki.CA) {
	t.Helper()
	roots, err := cert.NewPoolFromBytes(ca.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	s.opts.Store(&x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
}

func (s *swappableCA) Name() string                              { return "swappable" }
func (s *swappableCA) CurrentCABundleContent() []byte            { return []byte("unused") }
func (s *swappableCA) VerifyOptions() (x509.VerifyOptions, bool) { return *s.opts.Load(), true }
func (s *swappableCA) AddListener(dynamiccertificates.Listener)  {}

func newCA(t testing.TB, name string) *pki.CA {
	t.Helper()
	ca, err := pki.NewCA(name)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// issue is a client certificate for commonName from ca, valid for validity.
func issue(t testing.TB, ca *pki.CA, commonName string, validity time.Duration) *x509.Certificate {
	t.Helper()
	kp, err := ca.Issue(pki.Request{CommonName: commonName, Usage: pki.ClientUsage, Validity: validity})
	if err != nil {
		t.Fatal(err)
	}
	certs, err := cert.ParseCertsPEM(kp.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	return certs[0]
}

// intermediate is a CA signed by root, valid from a minute ago for validity.
func intermediate(t testing.TB, root *pki.CA, validity time.Duration) *pki.CA {
	t.Helper()
	now := time.Now()
	c, key := sign(t, root, &x509.Certificate{
		Subject:   pkix.Name{CommonName: "intermediate-ca"},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(validity),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	})
	return &pki.CA{Cert: c, Key: key}
}

// clientCert is a client certificate from ca for subject, valid from notBefore to notAfter,
// for the extended key usages given (client authentication if none).
func clientCert(t testing.TB, ca *pki.CA, subject pkix.Name, notBefore, notAfter time.Time, usages ...x509.ExtKeyUsage) *x509.Certificate {
	t.Helper()
	if len(usages) == 0 {
		usages = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	c, _ := sign(t, ca, &x509.Certificate{
		Subject: subject, NotBefore: notBefore, NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: usages,
	})
	return c
}

// sign is the certificate of template (with a new serial number) for a new P-256 key,
// signed by parent, and that key.
func sign(t testing.TB, parent *pki.CA, template *x509.Certificate) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	template.SerialNumber, err = rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, template, parent.Cert, key.Public(), parent.Key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

// staticCA is the CA bundle of ca, as k8s.io/apiserver serves a bundle that does not change.
func staticCA(t testing.TB, ca *pki.CA) dynamiccertificates.CAContentProvider {
	t.Helper()
	provider, err := dynamiccertificates.NewStaticCAContent(ca.Cert.Subject.CommonName, ca.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	return provider
}

// namedAuthenticator is one of the authenticators a benchmark compares.
type namedAuthenticator struct {
	name string
	auth authenticator.Request
}

// benchmarkAuthenticators runs a sub-benchmark per authenticator: authenticating a request
// that presents chain with headers (set anew for every request, as the request-header
// authenticator clears them), which must be userName's.
func benchmarkAuthenticators(b *testing.B, chain []*x509.Certificate, headers http.Header, userName string, authenticators ...namedAuthenticator) {
	for _, a := range authenticators {
		b.Run(a.name, func(b *testing.B) {
			b.ReportAllocs()
			req, err := http.NewRequest(http.MethodGet, "https://etcdaas.example/", nil)
			if err != nil {
				b.Fatal(err)
			}
			req.TLS = &tls.ConnectionState{PeerCertificates: chain}
			for b.Loop() {
				req.Header = headers.Clone()
				if resp, ok, err := a.auth.AuthenticateRequest(req); !ok || err != nil || resp.User.GetName() != userName {
					b.Fatalf("not authenticated as %s: %v", userName, err)
				}
			}
		})
	}
}

// caFile is a CA bundle file, loaded as k8s.io/apiserver loads --client-ca-file and
// --requestheader-client-ca-file.
type caFile struct {
	path string
	*dynamiccertificates.DynamicFileCAContent
}

func newCAFile(t *testing.T, name string, ca *pki.CA) *caFile {
	t.Helper()
	f := &caFile{path: filepath.Join(t.TempDir(), name+".crt")}
	if err := os.WriteFile(f.path, ca.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	var err error
	if f.DynamicFileCAContent, err = dynamiccertificates.NewDynamicCAContentFromFile(name, f.path); err != nil {
		t.Fatal(err)
	}
	return f
}

// replace writes ca's bundle into the file and has the provider load it, which tells its
// listeners.
func (f *caFile) replace(t *testing.T, ca *pki.CA) {
	t.Helper()
	if err := os.WriteFile(f.path, ca.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := f.RunOnce(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// mustRemember checks that chains remembers n chains.
func mustRemember(t *testing.T, chains *verifiedChains, n int) {
	t.Helper()
	if got := chains.entries.Len(); got != n {
		t.Fatalf("%d chains remembered, want %d", got, n)
	}
}
