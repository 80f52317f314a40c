package frontproxy

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
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/authenticatorfactory"
	"k8s.io/apiserver/pkg/authentication/request/headerrequest"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/server/dynamiccertificates"
	"k8s.io/client-go/util/cert"

	"github.com/etcdaas/etcdaas/pkg/pki"
)

// frontProxyName is the common name kube-apiserver's proxy client certificate has in the
// tests, and the only allowed name unless a test says otherwise.
const frontProxyName = "front-proxy-client"

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

// requestHeaderConfig is the request-header configuration of an aggregated server with the
// default header names and allowedNames.
func requestHeaderConfig(ca dynamiccertificates.CAContentProvider, allowedNames headerrequest.StringSliceProvider) *authenticatorfactory.RequestHeaderConfig {
	return &authenticatorfactory.RequestHeaderConfig{
		CAContentProvider:   ca,
		UsernameHeaders:     headerrequest.StaticStringSlice{"X-Remote-User"},
		UIDHeaders:          headerrequest.StaticStringSlice{"X-Remote-Uid"},
		GroupHeaders:        headerrequest.StaticStringSlice{"X-Remote-Group"},
		ExtraHeaderPrefixes: headerrequest.StaticStringSlice{"X-Remote-Extra-"},
		AllowedClientNames:  allowedNames,
	}
}

// harness is an Authenticator wrapping the delegating authenticator k8s.io/apiserver builds
// from the same configuration, with a clock and a count of chain verifications.
type harness struct {
	*Authenticator
	clock time.Time
	// verifications counts the chains verified (not answered from the cache).
	verifications int
	// delegated counts the requests the wrapped authenticator saw.
	delegated int
}

func newHarness(t *testing.T, config *authenticatorfactory.RequestHeaderConfig) *harness {
	t.Helper()
	next, _, err := authenticatorfactory.DelegatingAuthenticatorConfig{RequestHeaderConfig: config}.New()
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{clock: time.Now()}
	counted := authenticator.RequestFunc(func(req *http.Request) (*authenticator.Response, bool, error) {
		h.delegated++
		return next.AuthenticateRequest(req)
	})
	h.Authenticator = New(config, counted)
	h.now = func() time.Time { return h.clock }
	verify := h.verify
	h.verify = func(chain []*x509.Certificate, opts x509.VerifyOptions) (validity, bool) {
		h.verifications++
		return verify(chain, opts)
	}
	return h
}

// newFrontProxyHarness is a harness whose front-proxy CA bundle is ca, in a provider the test
// may swap, allowing the name frontProxyName.
func newFrontProxyHarness(t *testing.T, ca *pki.CA) (*harness, *swappableCA) {
	t.Helper()
	provider := newSwappableCA(t, ca)
	return newHarness(t, requestHeaderConfig(provider, headerrequest.StaticStringSlice{frontProxyName})), provider
}

// authenticate authenticates a request presenting chain and naming userName in its headers.
func (h *harness) authenticate(t *testing.T, chain []*x509.Certificate, userName string, groups ...string) (user.Info, error) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "https://etcdaas.example/apis/etcdaas.dev/v1beta1/etcdinstances", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.TLS = &tls.ConnectionState{PeerCertificates: chain}
	req.Header.Set("X-Remote-User", userName)
	for _, g := range groups {
		req.Header.Add("X-Remote-Group", g)
	}
	resp, ok, err := h.AuthenticateRequest(req)
	if err != nil || !ok {
		return nil, err
	}
	if req.Header.Get("X-Remote-User") != "" {
		t.Errorf("the authenticated request still carries X-Remote-User: the headers must be cleared")
	}
	return resp.User, nil
}

func mustAuthenticate(t *testing.T, h *harness, chain []*x509.Certificate, userName string, groups ...string) user.Info {
	t.Helper()
	u, err := h.authenticate(t, chain, userName, groups...)
	if err != nil || u == nil {
		t.Fatalf("authenticating %s: user %v, error %v; want the user of the headers", userName, u, err)
	}
	return u
}

func mustReject(t *testing.T, h *harness, chain []*x509.Certificate, why string) {
	t.Helper()
	if u, err := h.authenticate(t, chain, "mallory"); u != nil || err == nil {
		t.Fatalf("%s: authenticated as %v (error %v), want an error", why, u, err)
	}
}

func newCA(t *testing.T, name string) *pki.CA {
	t.Helper()
	ca, err := pki.NewCA(name)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// issue is a client certificate for commonName from ca, valid for validity.
func issue(t *testing.T, ca *pki.CA, commonName string, validity time.Duration) *x509.Certificate {
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

// intermediate is a CA signed by root, valid for validity.
func intermediate(t *testing.T, root *pki.CA, validity time.Duration) *pki.CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	template := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano()), Subject: pkix.Name{CommonName: "front-proxy-intermediate"},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(validity),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, root.Cert, key.Public(), root.Key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &pki.CA{Cert: c, Key: key}
}

func TestVerifiedChainIsRememberedAndHeadersReadPerRequest(t *testing.T) {
	ca := newCA(t, "front-proxy-ca")
	h, _ := newFrontProxyHarness(t, ca)
	chain := []*x509.Certificate{issue(t, ca, frontProxyName, time.Hour)}

	alice := mustAuthenticate(t, h, chain, "alice", "dev")
	if alice.GetName() != "alice" || !slices.Equal(alice.GetGroups(), []string{"dev", user.AllAuthenticated}) {
		t.Fatalf("first request: user %q groups %q, want alice in dev and %s", alice.GetName(), alice.GetGroups(), user.AllAuthenticated)
	}
	bob := mustAuthenticate(t, h, chain, "bob")
	if bob.GetName() != "bob" || !slices.Equal(bob.GetGroups(), []string{user.AllAuthenticated}) {
		t.Fatalf("second request: user %q groups %q, want bob (the headers are read on every request)", bob.GetName(), bob.GetGroups())
	}
	if h.verifications != 1 || h.delegated != 0 {
		t.Fatalf("%d verifications and %d delegated requests for two requests with one chain, want 1 and 0", h.verifications, h.delegated)
	}
}

func TestCachedChainIsRejectedAfterTheCAChanges(t *testing.T) {
	oldCA, newCA := newCA(t, "front-proxy-ca"), newCA(t, "front-proxy-ca-2")
	h, provider := newFrontProxyHarness(t, oldCA)
	oldChain := []*x509.Certificate{issue(t, oldCA, frontProxyName, time.Hour)}
	mustAuthenticate(t, h, oldChain, "alice")

	// The bundle changes and no listener is told (yet): the remembered chain must not answer.
	provider.set(t, newCA)
	mustReject(t, h, oldChain, "the old CA's chain after the bundle changed")
	if h.verifications != 2 {
		t.Fatalf("%d verifications, want the old chain verified again against the new bundle", h.verifications)
	}
	newChain := []*x509.Certificate{issue(t, newCA, frontProxyName, time.Hour)}
	mustAuthenticate(t, h, newChain, "alice")
	mustReject(t, h, oldChain, "the old CA's chain, asked again")
}

func TestCAFileChangeDropsRememberedChains(t *testing.T) {
	oldCA, newCA := newCA(t, "front-proxy-ca"), newCA(t, "front-proxy-ca-2")
	file := filepath.Join(t.TempDir(), "requestheader-ca.crt")
	if err := os.WriteFile(file, oldCA.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	provider, err := dynamiccertificates.NewDynamicCAContentFromFile("requestheader-client-ca-file", file)
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, requestHeaderConfig(provider, headerrequest.StaticStringSlice{frontProxyName}))
	oldChain := []*x509.Certificate{issue(t, oldCA, frontProxyName, time.Hour)}
	mustAuthenticate(t, h, oldChain, "alice")
	if n := h.Authenticator.verified.Len(); n != 1 {
		t.Fatalf("%d chains remembered, want 1", n)
	}

	if err := os.WriteFile(file, newCA.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := provider.RunOnce(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := h.Authenticator.verified.Len(); n != 0 {
		t.Fatalf("%d chains remembered after the CA file changed, want none", n)
	}
	mustReject(t, h, oldChain, "the old CA's chain after the CA file changed")
}

func TestExpiredChainIsRejected(t *testing.T) {
	root := newCA(t, "front-proxy-ca")
	h, _ := newFrontProxyHarness(t, root)
	leaf := issue(t, root, frontProxyName, time.Hour)
	chain := []*x509.Certificate{leaf}
	mustAuthenticate(t, h, chain, "alice")

	h.clock = leaf.NotAfter
	mustAuthenticate(t, h, chain, "alice")
	if h.verifications != 1 {
		t.Fatalf("%d verifications, want the chain remembered up to its NotAfter", h.verifications)
	}
	h.clock = leaf.NotAfter.Add(time.Second)
	if _, ok := h.fromFrontProxy(request(t, chain, "alice")); ok {
		t.Fatal("an expired certificate was answered for")
	}
	if h.verifications != 2 {
		t.Fatalf("%d verifications, want the expired chain verified again (and refused)", h.verifications)
	}
}

func TestChainIsNotAnsweredForBeforeItsNotBefore(t *testing.T) {
	root := newCA(t, "front-proxy-ca")
	h, _ := newFrontProxyHarness(t, root)
	leaf := issue(t, root, frontProxyName, time.Hour)
	chain := []*x509.Certificate{leaf}
	mustAuthenticate(t, h, chain, "alice")

	// The clock stepped back before the certificate's validity.
	h.clock = leaf.NotBefore.Add(-time.Second)
	if _, ok := h.fromFrontProxy(request(t, chain, "alice")); ok {
		t.Fatal("a certificate not valid yet was answered for")
	}
	if h.verifications != 2 {
		t.Fatalf("%d verifications, want the chain verified again (and refused)", h.verifications)
	}
}

func TestChainExpiresWithItsIntermediate(t *testing.T) {
	root := newCA(t, "front-proxy-ca")
	h, _ := newFrontProxyHarness(t, root)
	inter := intermediate(t, root, 10*time.Minute)
	leaf := issue(t, inter, frontProxyName, time.Hour)
	chain := []*x509.Certificate{leaf, inter.Cert}
	mustAuthenticate(t, h, chain, "alice")
	mustAuthenticate(t, h, chain, "alice")
	if h.verifications != 1 {
		t.Fatalf("%d verifications, want the chain with its intermediate remembered", h.verifications)
	}

	h.clock = inter.Cert.NotAfter.Add(time.Second)
	if _, ok := h.fromFrontProxy(request(t, chain, "alice")); ok {
		t.Fatal("a chain whose intermediate expired was answered for")
	}
}

func TestDifferentCertificateMisses(t *testing.T) {
	ca, other := newCA(t, "front-proxy-ca"), newCA(t, "front-proxy-ca")
	h, _ := newFrontProxyHarness(t, ca)
	mustAuthenticate(t, h, []*x509.Certificate{issue(t, ca, frontProxyName, time.Hour)}, "alice")

	// The same subject and CA name, another key and signature: not the remembered chain.
	mustReject(t, h, []*x509.Certificate{issue(t, other, frontProxyName, time.Hour)}, "a certificate from an untrusted CA")
	// Another certificate of the trusted CA is verified on its own.
	mustAuthenticate(t, h, []*x509.Certificate{issue(t, ca, frontProxyName, time.Hour)}, "alice")
	if h.verifications != 3 {
		t.Fatalf("%d verifications for three different chains, want 3", h.verifications)
	}
}

func TestAllowedNamesApplyToRememberedChains(t *testing.T) {
	ca := newCA(t, "front-proxy-ca")
	provider := newSwappableCA(t, ca)
	var names atomic.Pointer[[]string]
	names.Store(&[]string{frontProxyName})
	allowed := headerrequest.StringSliceProviderFunc(func() []string { return *names.Load() })
	h := newHarness(t, requestHeaderConfig(provider, allowed))
	chain := []*x509.Certificate{issue(t, ca, frontProxyName, time.Hour)}
	mustAuthenticate(t, h, chain, "alice")

	names.Store(&[]string{"another-proxy"})
	mustReject(t, h, chain, "a remembered chain whose name is no longer allowed")
	mustReject(t, h, []*x509.Certificate{issue(t, ca, "kubelet", time.Hour)}, "a verified chain with a name never allowed")

	names.Store(&[]string{})
	mustAuthenticate(t, h, chain, "alice") // no allowed names: every verified chain
}

func TestRequestsWithoutFrontProxyUserAreDelegated(t *testing.T) {
	ca := newCA(t, "front-proxy-ca")
	h, _ := newFrontProxyHarness(t, ca)
	chain := []*x509.Certificate{issue(t, ca, frontProxyName, time.Hour)}
	if u, err := h.authenticate(t, chain, ""); u != nil || err != nil {
		t.Fatalf("no X-Remote-User: user %v error %v, want no opinion", u, err)
	}
	if u, err := h.authenticate(t, nil, "alice"); u != nil || err != nil {
		t.Fatalf("no client certificate: user %v error %v, want no opinion", u, err)
	}
	if h.delegated != 2 {
		t.Fatalf("%d requests delegated, want both", h.delegated)
	}
	if h.verifications != 0 {
		t.Fatalf("%d chains verified before delegating, want none: the delegated authenticator verifies them", h.verifications)
	}
}

func TestCacheIsBounded(t *testing.T) {
	ca := newCA(t, "front-proxy-ca")
	h, _ := newFrontProxyHarness(t, ca)
	for range DefaultCacheSize + 5 {
		mustAuthenticate(t, h, []*x509.Certificate{issue(t, ca, frontProxyName, time.Hour)}, "alice")
	}
	if n := h.Authenticator.verified.Len(); n != DefaultCacheSize {
		t.Fatalf("%d chains remembered, want at most %d", n, DefaultCacheSize)
	}
}

func request(t *testing.T, chain []*x509.Certificate, userName string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "https://etcdaas.example/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.TLS = &tls.ConnectionState{PeerCertificates: chain}
	req.Header.Set("X-Remote-User", userName)
	return req
}

// BenchmarkAuthenticateProxiedRequest authenticates a proxied request with k8s.io/apiserver's
// delegating authenticator alone and wrapped in an Authenticator (one chain, as
// kube-apiserver presents).
func BenchmarkAuthenticateProxiedRequest(b *testing.B) {
	ca, err := pki.NewCA("front-proxy-ca")
	if err != nil {
		b.Fatal(err)
	}
	kp, err := ca.Issue(pki.Request{CommonName: frontProxyName, Usage: pki.ClientUsage})
	if err != nil {
		b.Fatal(err)
	}
	chain, err := cert.ParseCertsPEM(kp.CertPEM)
	if err != nil {
		b.Fatal(err)
	}
	provider, err := dynamiccertificates.NewStaticCAContent("front-proxy-ca", ca.CertPEM)
	if err != nil {
		b.Fatal(err)
	}
	config := requestHeaderConfig(provider, headerrequest.StaticStringSlice{frontProxyName})
	delegating, _, err := authenticatorfactory.DelegatingAuthenticatorConfig{RequestHeaderConfig: config}.New()
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		auth authenticator.Request
	}{{"delegating", delegating}, {"remembered", New(config, delegating)}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			req, err := http.NewRequest(http.MethodGet, "https://etcdaas.example/", nil)
			if err != nil {
				b.Fatal(err)
			}
			req.TLS = &tls.ConnectionState{PeerCertificates: chain}
			for b.Loop() {
				req.Header = http.Header{"X-Remote-User": {"alice"}, "X-Remote-Group": {"dev"}}
				if _, ok, err := tc.auth.AuthenticateRequest(req); !ok || err != nil {
					b.Fatalf("not authenticated: %v", err)
				}
			}
		})
	}
}
