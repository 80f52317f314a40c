package certcache

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"testing"
	"time"

	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/authenticatorfactory"
	"k8s.io/apiserver/pkg/authentication/request/anonymous"
	"k8s.io/apiserver/pkg/authentication/request/headerrequest"
	"k8s.io/apiserver/pkg/authentication/request/union"
	x509request "k8s.io/apiserver/pkg/authentication/request/x509"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/server/dynamiccertificates"
	"k8s.io/component-base/metrics/legacyregistry"

	"github.com/etcdaas/etcdaas/pkg/pki"
)

// clientHarness is a ClientCert wrapping an authenticator k8s.io/apiserver builds, next to
// another one built the same way and not wrapped: the uncached reference every answer is
// compared with.
type clientHarness struct {
	*ClientCert
	*probe
	uncached authenticator.Request
	// delegated counts the requests the wrapped authenticator saw.
	delegated int
}

// newClientHarness builds the authenticator twice with build, the way k8s.io/apiserver
// does, and wraps one of them in a ClientCert of config.
func newClientHarness(t *testing.T, config ClientCertConfig, build func() (authenticator.Request, error)) *clientHarness {
	t.Helper()
	next, err := build()
	if err != nil {
		t.Fatal(err)
	}
	uncached, err := build()
	if err != nil {
		t.Fatal(err)
	}
	h := &clientHarness{uncached: uncached}
	counted := authenticator.RequestFunc(func(req *http.Request) (*authenticator.Response, bool, error) {
		h.delegated++
		return next.AuthenticateRequest(req)
	})
	if h.ClientCert, err = NewClientCert(config, counted); err != nil {
		t.Fatal(err)
	}
	h.probe = newProbe(h.chains)
	return h
}

// newDelegatingHarness is the aggregated mode's authenticator: k8s.io/apiserver's delegating
// authenticator with the client CA bundle ca and, when requestHeader is set, its front-proxy
// authenticator first.
func newDelegatingHarness(t *testing.T, ca dynamiccertificates.CAContentProvider, requestHeader *authenticatorfactory.RequestHeaderConfig) *clientHarness {
	t.Helper()
	return newClientHarness(t, ClientCertConfig{CA: ca, RequestHeader: requestHeader, AuthenticatedGroup: true}, func() (authenticator.Request, error) {
		a, _, err := authenticatorfactory.DelegatingAuthenticatorConfig{ClientCertificateCAContentProvider: ca, RequestHeaderConfig: requestHeader}.New()
		return a, err
	})
}

// decision is what an authenticator answered for one request.
type decision struct {
	user user.Info
	ok   bool
	err  string
}

func (d decision) String() string {
	if d.user == nil {
		return fmt.Sprintf("no user (ok %t, error %q)", d.ok, d.err)
	}
	return fmt.Sprintf("%q in %q, uid %q, extra %q (ok %t, error %q)", d.user.GetName(), d.user.GetGroups(), d.user.GetUID(), d.user.GetExtra(), d.ok, d.err)
}

func decide(a authenticator.Request, req *http.Request) decision {
	resp, ok, err := a.AuthenticateRequest(req)
	d := decision{ok: ok}
	if resp != nil {
		d.user = resp.User
	}
	if err != nil {
		d.err = err.Error()
	}
	return d
}

// authenticate authenticates a request presenting chain (with headers, for the request-header
// authenticator) and checks that the uncached authenticator answers the same.
func (h *clientHarness) authenticate(t *testing.T, chain []*x509.Certificate, headers http.Header) decision {
	t.Helper()
	build := func() *http.Request {
		req, err := http.NewRequest(http.MethodGet, "https://etcdaas.example/apis/etcdaas.dev/v1beta1/etcdinstances", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header = headers.Clone()
		if chain != nil {
			req.TLS = &tls.ConnectionState{PeerCertificates: chain}
		}
		return req
	}
	got, want := decide(h, build()), decide(h.uncached, build())
	if got.ok != want.ok || got.err != want.err || !reflect.DeepEqual(got.user, want.user) {
		t.Fatalf("answered %v, k8s.io/apiserver's authenticator %v", got, want)
	}
	return got
}

func (h *clientHarness) mustAuthenticate(t *testing.T, chain []*x509.Certificate, name string, groups ...string) user.Info {
	t.Helper()
	d := h.authenticate(t, chain, nil)
	if !d.ok || d.user.GetName() != name || !slices.Equal(d.user.GetGroups(), groups) {
		t.Fatalf("answered %v, want %s in %q", d, name, groups)
	}
	return d.user
}

func (h *clientHarness) mustReject(t *testing.T, chain []*x509.Certificate, why string) {
	t.Helper()
	if d := h.authenticate(t, chain, nil); d.ok || d.err == "" {
		t.Fatalf("%s: answered %v, want an error", why, d)
	}
}

// fromCache is what the ClientCert itself answers for chain at the probe's clock, without
// the wrapped authenticator (which reads the real clock).
func (h *clientHarness) fromCache(t *testing.T, chain []*x509.Certificate) bool {
	t.Helper()
	_, ok, _ := h.answer.AuthenticateRequest(request(t, chain, ""))
	return ok
}

// validNow is the validity of a certificate issued now for an hour.
func validNow() (notBefore, notAfter time.Time) {
	now := time.Now()
	return now.Add(-time.Minute), now.Add(time.Hour)
}

func subject(commonName string, organizations ...string) pkix.Name {
	return pkix.Name{CommonName: commonName, Organization: organizations}
}

func TestClientCertChainIsRememberedAndUserReadPerRequest(t *testing.T) {
	ca := newCA(t, "client-ca")
	h := newDelegatingHarness(t, newSwappableCA(t, ca), nil)
	nb, na := validNow()
	alice := []*x509.Certificate{clientCert(t, ca, subject("alice", "dev", "ops"), nb, na)}
	bob := []*x509.Certificate{clientCert(t, ca, subject("bob"), nb, na)}

	for range 3 {
		u := h.mustAuthenticate(t, alice, "alice", "dev", "ops", user.AllAuthenticated)
		if ids := u.GetExtra()[user.CredentialIDKey]; len(ids) != 1 {
			t.Fatalf("credential id %q, want the certificate's", ids)
		}
		h.mustAuthenticate(t, bob, "bob", user.AllAuthenticated)
	}
	if h.verifications != 2 || h.delegated != 0 {
		t.Fatalf("%d verifications and %d delegated requests for six requests with two chains, want 2 and 0", h.verifications, h.delegated)
	}
}

func TestClientCertOfAnIntermediateIsRemembered(t *testing.T) {
	root := newCA(t, "client-ca")
	h := newDelegatingHarness(t, newSwappableCA(t, root), nil)
	inter := intermediate(t, root, 10*time.Minute)
	nb, na := validNow()
	chain := []*x509.Certificate{clientCert(t, inter, subject("alice"), nb, na), inter.Cert}
	h.mustAuthenticate(t, chain, "alice", user.AllAuthenticated)
	h.mustAuthenticate(t, chain, "alice", user.AllAuthenticated)
	if h.verifications != 1 {
		t.Fatalf("%d verifications, want the chain with its intermediate remembered", h.verifications)
	}
	// Without its intermediate the leaf does not verify, remembered chain or not.
	h.mustReject(t, chain[:1], "the leaf without its intermediate")

	// The chain is remembered until its intermediate expires, not its leaf.
	h.clock = inter.Cert.NotAfter
	if !h.fromCache(t, chain) || h.verifications != 2 {
		t.Fatalf("%d verifications, want the chain answered up to its intermediate's NotAfter", h.verifications)
	}
	h.clock = inter.Cert.NotAfter.Add(time.Second)
	if h.fromCache(t, chain) {
		t.Fatal("a chain whose intermediate expired was answered for")
	}
}

func TestClientCertIsRememberedWithinItsValidityOnly(t *testing.T) {
	ca := newCA(t, "client-ca")
	h := newDelegatingHarness(t, newSwappableCA(t, ca), nil)
	nb, na := validNow()
	leaf := clientCert(t, ca, subject("alice"), nb, na)
	chain := []*x509.Certificate{leaf}
	h.mustAuthenticate(t, chain, "alice", user.AllAuthenticated)

	h.clock = leaf.NotAfter
	if !h.fromCache(t, chain) || h.verifications != 1 {
		t.Fatalf("%d verifications, want the chain remembered up to its NotAfter", h.verifications)
	}
	h.clock = leaf.NotAfter.Add(time.Second)
	if h.fromCache(t, chain) || h.verifications != 2 {
		t.Fatalf("an expired certificate was answered for (%d verifications, want it verified again and refused)", h.verifications)
	}
	h.clock = leaf.NotBefore.Add(-time.Second)
	if h.fromCache(t, chain) || h.verifications != 3 {
		t.Fatalf("a certificate not valid yet was answered for (%d verifications, want it verified again and refused)", h.verifications)
	}
}

func TestClientCertRejectionsAreThoseOfTheX509Authenticator(t *testing.T) {
	ca, impostor := newCA(t, "client-ca"), newCA(t, "client-ca")
	h := newDelegatingHarness(t, newSwappableCA(t, ca), nil)
	now := time.Now()
	nb, na := validNow()
	for _, tc := range []struct {
		why   string
		chain []*x509.Certificate
	}{
		{"an expired leaf", []*x509.Certificate{clientCert(t, ca, subject("alice"), now.Add(-2*time.Hour), now.Add(-time.Hour))}},
		{"a leaf not valid yet", []*x509.Certificate{clientCert(t, ca, subject("alice"), now.Add(time.Hour), now.Add(2*time.Hour))}},
		{"a leaf for servers only", []*x509.Certificate{clientCert(t, ca, subject("alice"), nb, na, x509.ExtKeyUsageServerAuth)}},
		{"a leaf of another CA of the same name", []*x509.Certificate{clientCert(t, impostor, subject("alice"), nb, na)}},
		{"a leaf of an expired intermediate", expiredIntermediateChain(t, ca)},
	} {
		for range 2 {
			h.mustReject(t, tc.chain, tc.why)
		}
	}
	mustRemember(t, h.chains, 0) // none verified
	if h.delegated != 10 {
		t.Fatalf("%d requests delegated, want all 10", h.delegated)
	}
}

// expiredIntermediateChain is a chain of a leaf valid now whose intermediate (from ca)
// expired an hour ago.
func expiredIntermediateChain(t *testing.T, ca *pki.CA) []*x509.Certificate {
	t.Helper()
	now := time.Now()
	c, key := sign(t, ca, &x509.Certificate{
		Subject:   pkix.Name{CommonName: "expired-intermediate"},
		NotBefore: now.Add(-2 * time.Hour), NotAfter: now.Add(-time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	})
	nb, na := validNow()
	return []*x509.Certificate{clientCert(t, &pki.CA{Cert: c, Key: key}, subject("alice"), nb, na), c}
}

func TestClientCertWithoutAUserIsDelegated(t *testing.T) {
	ca := newCA(t, "client-ca")
	h := newDelegatingHarness(t, newSwappableCA(t, ca), nil)
	nb, na := validNow()
	// No common name: the x509 authenticator has no opinion, nor has the ClientCert.
	if d := h.authenticate(t, []*x509.Certificate{clientCert(t, ca, subject("", "dev"), nb, na)}, nil); d.ok {
		t.Fatalf("a certificate without a common name answered %v, want no user", d)
	}
	if d := h.authenticate(t, nil, nil); d.ok {
		t.Fatalf("no certificate answered %v, want no user", d)
	}
	if h.delegated != 2 {
		t.Fatalf("%d requests delegated, want both", h.delegated)
	}
}

func TestClientCertIsRejectedAfterTheCAChanges(t *testing.T) {
	oldCA, newCA := newCA(t, "client-ca"), newCA(t, "client-ca-2")
	provider := newSwappableCA(t, oldCA)
	h := newDelegatingHarness(t, provider, nil)
	nb, na := validNow()
	oldChain := []*x509.Certificate{clientCert(t, oldCA, subject("alice"), nb, na)}
	h.mustAuthenticate(t, oldChain, "alice", user.AllAuthenticated)

	// The bundle changes and no listener is told (yet): the remembered chain must not answer.
	provider.set(t, newCA)
	h.mustReject(t, oldChain, "the old CA's chain after the bundle changed")
	h.mustAuthenticate(t, []*x509.Certificate{clientCert(t, newCA, subject("bob"), nb, na)}, "bob", user.AllAuthenticated)
	if h.verifications != 3 {
		t.Fatalf("%d verifications, want the old chain verified again against the new bundle", h.verifications)
	}
}

func TestClientCAFileChangeDropsRememberedChains(t *testing.T) {
	oldCA, newCA := newCA(t, "client-ca"), newCA(t, "client-ca-2")
	file := newCAFile(t, "client-ca-bundle", oldCA)
	h := newDelegatingHarness(t, file, nil)
	nb, na := validNow()
	oldChain := []*x509.Certificate{clientCert(t, oldCA, subject("alice"), nb, na)}
	h.mustAuthenticate(t, oldChain, "alice", user.AllAuthenticated)
	mustRemember(t, h.chains, 1)

	file.replace(t, newCA)
	mustRemember(t, h.chains, 0)
	h.mustReject(t, oldChain, "the old CA's chain after the CA file changed")
	h.mustAuthenticate(t, []*x509.Certificate{clientCert(t, newCA, subject("alice"), nb, na)}, "alice", user.AllAuthenticated)
}

func TestRequestHeaderAuthenticatorDecidesFirst(t *testing.T) {
	// One CA for both, so that a chain verifies for the front proxy and as a client.
	ca := newCA(t, "shared-ca")
	provider := newSwappableCA(t, ca)
	h := newDelegatingHarness(t, provider, requestHeaderConfig(provider, headerrequest.StaticStringSlice{frontProxyName}))
	nb, na := validNow()
	proxy := []*x509.Certificate{clientCert(t, ca, subject(frontProxyName), nb, na)}
	h.mustAuthenticate(t, proxy, frontProxyName, user.AllAuthenticated)
	if h.verifications != 1 || h.delegated != 0 {
		t.Fatalf("%d verifications, %d delegated: want the proxy's own requests answered as a client's", h.verifications, h.delegated)
	}

	// The same chain naming a user in the headers: the request-header authenticator's user.
	d := h.authenticate(t, proxy, http.Header{"X-Remote-User": {"bob"}, "X-Remote-Group": {"dev"}})
	if !d.ok || d.user.GetName() != "bob" || !slices.Equal(d.user.GetGroups(), []string{"dev", user.AllAuthenticated}) {
		t.Fatalf("a proxied request answered %v, want bob of the headers", d)
	}
	// A name not allowed to proxy: the request-header authenticator refuses, the x509 one
	// answers with the certificate's user.
	other := []*x509.Certificate{clientCert(t, ca, subject("carol"), nb, na)}
	d = h.authenticate(t, other, http.Header{"X-Remote-User": {"bob"}})
	if !d.ok || d.user.GetName() != "carol" {
		t.Fatalf("a client not allowed to proxy answered %v, want carol of the certificate", d)
	}
	if h.delegated != 2 {
		t.Fatalf("%d requests delegated, want the two naming a user in the headers", h.delegated)
	}
}

func TestStandaloneUnionHasNoAuthenticatedGroup(t *testing.T) {
	ca := newCA(t, "client-ca")
	provider := newSwappableCA(t, ca)
	// The standalone mode's union: client certificates, then anonymous for a few paths.
	h := newClientHarness(t, ClientCertConfig{CA: provider}, func() (authenticator.Request, error) {
		return union.NewFailOnError(x509request.NewDynamic(provider.VerifyOptions, x509request.CommonNameUserConversion), anonymous.NewAuthenticator(nil)), nil
	})
	nb, na := validNow()
	chain := []*x509.Certificate{clientCert(t, ca, subject("admin", user.SystemPrivilegedGroup), nb, na)}
	h.mustAuthenticate(t, chain, "admin", user.SystemPrivilegedGroup)
	h.mustAuthenticate(t, chain, "admin", user.SystemPrivilegedGroup)
	if h.verifications != 1 || h.delegated != 0 {
		t.Fatalf("%d verifications, %d delegated, want 1 and 0", h.verifications, h.delegated)
	}
}

func TestClientCertExpirationIsObservedPerRequest(t *testing.T) {
	ca := newCA(t, "client-ca")
	h := newDelegatingHarness(t, newSwappableCA(t, ca), nil)
	nb, na := validNow()
	chain := []*x509.Certificate{clientCert(t, ca, subject("alice"), nb, na)}
	before := expirationObservations(t)
	for range 3 {
		// Each authenticate asks the ClientCert and the uncached authenticator once.
		h.mustAuthenticate(t, chain, "alice", user.AllAuthenticated)
	}
	if got := expirationObservations(t) - before; got != 6 {
		t.Fatalf("apiserver_client_certificate_expiration_seconds observed %d times for 3 requests to each authenticator, want 6", got)
	}
	if h.verifications != 1 {
		t.Fatalf("%d verifications, want 1", h.verifications)
	}
}

// expirationObservations is the count of apiserver_client_certificate_expiration_seconds.
func expirationObservations(t *testing.T) uint64 {
	t.Helper()
	families, err := legacyregistry.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == "apiserver_client_certificate_expiration_seconds" {
			return f.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	t.Fatal("apiserver_client_certificate_expiration_seconds is not registered")
	return 0
}

func TestClientCertCacheIsBounded(t *testing.T) {
	ca := newCA(t, "client-ca")
	h := newDelegatingHarness(t, newSwappableCA(t, ca), nil)
	nb, na := validNow()
	for range ClientCertCacheSize + 5 {
		if !h.fromCache(t, []*x509.Certificate{clientCert(t, ca, subject("alice"), nb, na)}) {
			t.Fatal("a certificate of the CA was refused")
		}
	}
	mustRemember(t, h.chains, ClientCertCacheSize)
}

// BenchmarkAuthenticateDirectRequest authenticates a directly connected client with
// k8s.io/apiserver's delegating authenticator (the aggregated mode's, with a front-proxy CA
// and a client CA) alone and wrapped in a ClientCert (one chain, as one client presents).
func BenchmarkAuthenticateDirectRequest(b *testing.B) {
	clientCA := newCA(b, "client-ca")
	nb, na := validNow()
	chain := []*x509.Certificate{clientCert(b, clientCA, subject("alice", "dev"), nb, na)}
	clients := staticCA(b, clientCA)
	rh := requestHeaderConfig(staticCA(b, newCA(b, "front-proxy-ca")), headerrequest.StaticStringSlice{frontProxyName})
	delegating, _, err := authenticatorfactory.DelegatingAuthenticatorConfig{ClientCertificateCAContentProvider: clients, RequestHeaderConfig: rh}.New()
	if err != nil {
		b.Fatal(err)
	}
	remembered, err := NewClientCert(ClientCertConfig{CA: clients, RequestHeader: rh, AuthenticatedGroup: true}, delegating)
	if err != nil {
		b.Fatal(err)
	}
	benchmarkAuthenticators(b, chain, nil, "alice", namedAuthenticator{"delegating", delegating}, namedAuthenticator{"remembered", remembered})
}
