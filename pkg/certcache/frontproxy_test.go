package certcache

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/authenticatorfactory"
	"k8s.io/apiserver/pkg/authentication/request/headerrequest"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/server/dynamiccertificates"

	"github.com/etcdaas/etcdaas/pkg/pki"
)

// frontProxyName is the common name kube-apiserver's proxy client certificate has in the
// tests, and the only allowed name unless a test says otherwise.
const frontProxyName = "front-proxy-client"

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

// harness is a FrontProxy wrapping the delegating authenticator k8s.io/apiserver builds
// from the same configuration, with a clock and a count of chain verifications.
type harness struct {
	*FrontProxy
	*probe
	// delegated counts the requests the wrapped authenticator saw.
	delegated int
}

func newHarness(t *testing.T, config *authenticatorfactory.RequestHeaderConfig) *harness {
	t.Helper()
	next, _, err := authenticatorfactory.DelegatingAuthenticatorConfig{RequestHeaderConfig: config}.New()
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{}
	counted := authenticator.RequestFunc(func(req *http.Request) (*authenticator.Response, bool, error) {
		h.delegated++
		return next.AuthenticateRequest(req)
	})
	h.FrontProxy = NewFrontProxy(config, counted)
	h.probe = newProbe(h.chains)
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
	file := newCAFile(t, "requestheader-client-ca-file", oldCA)
	h := newHarness(t, requestHeaderConfig(file, headerrequest.StaticStringSlice{frontProxyName}))
	oldChain := []*x509.Certificate{issue(t, oldCA, frontProxyName, time.Hour)}
	mustAuthenticate(t, h, oldChain, "alice")
	mustRemember(t, h.chains, 1)

	file.replace(t, newCA)
	mustRemember(t, h.chains, 0)
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
	for range FrontProxyCacheSize + 5 {
		mustAuthenticate(t, h, []*x509.Certificate{issue(t, ca, frontProxyName, time.Hour)}, "alice")
	}
	if n := h.chains.entries.Len(); n != FrontProxyCacheSize {
		t.Fatalf("%d chains remembered, want at most %d", n, FrontProxyCacheSize)
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
// delegating authenticator alone and wrapped in a FrontProxy (one chain, as
// kube-apiserver presents).
func BenchmarkAuthenticateProxiedRequest(b *testing.B) {
	ca := newCA(b, "front-proxy-ca")
	chain := []*x509.Certificate{issue(b, ca, frontProxyName, time.Hour)}
	config := requestHeaderConfig(staticCA(b, ca), headerrequest.StaticStringSlice{frontProxyName})
	delegating, _, err := authenticatorfactory.DelegatingAuthenticatorConfig{RequestHeaderConfig: config}.New()
	if err != nil {
		b.Fatal(err)
	}
	benchmarkAuthenticators(b, chain, http.Header{"X-Remote-User": {"alice"}, "X-Remote-Group": {"dev"}}, "alice",
		namedAuthenticator{"delegating", delegating}, namedAuthenticator{"remembered", NewFrontProxy(config, delegating)})
}
