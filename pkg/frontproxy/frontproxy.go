// Package frontproxy authenticates the requests kube-apiserver's aggregator proxies to
// etcdaas-apiserver without verifying the same front-proxy client certificate chain on every
// request.
//
// kube-apiserver presents one client certificate (its --proxy-client-cert-file) on every
// request it proxies and names the user in X-Remote-User/X-Remote-Group headers. The
// request-header authenticator of k8s.io/apiserver verifies that certificate's chain against
// the requestheader CA bundle on every request: an ECDSA or RSA signature check for a result
// that only changes when the certificate, the CA bundle or the time does. Authenticator
// remembers a chain it verified, for that CA bundle and until the chain expires, and reads the
// user from the headers of each request as before.
package frontproxy

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"net/http"
	"slices"
	"time"

	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/authenticatorfactory"
	"k8s.io/apiserver/pkg/authentication/group"
	"k8s.io/apiserver/pkg/authentication/request/headerrequest"
	x509request "k8s.io/apiserver/pkg/authentication/request/x509"
	"k8s.io/utils/lru"
)

// DefaultCacheSize bounds how many verified chains an Authenticator remembers. Each
// kube-apiserver of a cluster presents one front-proxy certificate (a new one after each
// rotation), so a few entries are enough; the bound keeps clients that present many
// certificates from growing the cache.
const DefaultCacheSize = 64

// Authenticator answers for a request that presents a front-proxy client certificate chain
// verified earlier against the current requestheader CA bundle, whose common name is allowed,
// and that names a user in the request headers; every other request goes to the
// authenticator it wraps, which verifies and decides as before.
type Authenticator struct {
	verifyOptions x509request.VerifyOptionFunc
	allowedNames  headerrequest.StringSliceProvider
	// usernameHeaders are the headers that name the user; a request with none of them is not
	// one this Authenticator answers for, so its chain is not verified here.
	usernameHeaders headerrequest.StringSliceProvider
	// headers reads the user from the request headers, adding system:authenticated as the
	// delegating authenticator does.
	headers authenticator.Request
	next    authenticator.Request
	// verified maps chainKey to the verification of that chain.
	verified *lru.Cache
	now      func() time.Time
	// verify is verifyChain; tests count its calls.
	verify func(chain []*x509.Certificate, opts x509.VerifyOptions) (validity, bool)
}

// verification records that a chain verified against the CA pools of one CA bundle content.
type verification struct {
	// roots and intermediates are the pools of the requestheader CA bundle the chain was
	// verified with. A new bundle comes with new pools, so an entry made with other pools
	// does not answer.
	roots, intermediates *x509.CertPool
	validity
}

// validity is when every certificate of a verified chain is valid.
type validity struct {
	// notBefore is the latest NotBefore of the chain's certificates, notAfter the earliest
	// NotAfter.
	notBefore, notAfter time.Time
}

// contains reports whether every certificate of the chain is valid at t (both bounds
// included, as crypto/x509 has them).
func (v validity) contains(t time.Time) bool {
	return !t.Before(v.notBefore) && !t.After(v.notAfter)
}

// New wraps next, the authenticator built from config by k8s.io/apiserver (the delegating
// authenticator, whose first member is config's request-header authenticator), in an
// Authenticator that remembers the front-proxy chains it verifies. Remembered chains are
// dropped whenever config's CA provider reports a change; New must be called before that
// provider runs.
func New(config *authenticatorfactory.RequestHeaderConfig, next authenticator.Request) *Authenticator {
	a := &Authenticator{
		verifyOptions:   config.CAContentProvider.VerifyOptions,
		allowedNames:    config.AllowedClientNames,
		usernameHeaders: config.UsernameHeaders,
		headers: group.NewAuthenticatedGroupAdder(headerrequest.NewDynamic(
			config.UsernameHeaders, config.UIDHeaders, config.GroupHeaders, config.ExtraHeaderPrefixes)),
		next:     next,
		verified: lru.New(DefaultCacheSize),
		now:      time.Now,
	}
	a.verify = a.verifyChain
	config.CAContentProvider.AddListener(caChangeListener{a.verified})
	return a
}

// caChangeListener drops every remembered chain when the CA bundle may have changed.
type caChangeListener struct{ verified *lru.Cache }

func (l caChangeListener) Enqueue() { l.verified.Clear() }

// AuthenticateRequest authenticates req from its headers when it comes from an allowed front
// proxy whose chain is verified; otherwise the wrapped authenticator decides.
func (a *Authenticator) AuthenticateRequest(req *http.Request) (*authenticator.Response, bool, error) {
	if resp, ok := a.fromFrontProxy(req); ok {
		return resp, true, nil
	}
	return a.next.AuthenticateRequest(req)
}

// fromFrontProxy is the user req names in its headers if req presents a verified front-proxy
// chain with an allowed common name.
func (a *Authenticator) fromFrontProxy(req *http.Request) (*authenticator.Response, bool) {
	if req.TLS == nil || len(req.TLS.PeerCertificates) == 0 {
		return nil, false
	}
	opts, ok := a.verifyOptions()
	if !ok {
		return nil, false
	}
	// The cheap checks first: a request that fails them goes to the wrapped authenticator,
	// which verifies the chain itself.
	chain := req.TLS.PeerCertificates
	if !namesUser(req, a.usernameHeaders.Value()) || !a.allowed(chain[0]) || !a.isVerified(chain, opts) {
		return nil, false
	}
	resp, ok, err := a.headers.AuthenticateRequest(req)
	if err != nil || !ok {
		return nil, false
	}
	return resp, true
}

// namesUser reports whether req has one of the username headers (only reading them: the
// header authenticator clears them once it has read the user).
func namesUser(req *http.Request, headers []string) bool {
	for _, h := range headers {
		if req.Header.Get(h) != "" {
			return true
		}
	}
	return false
}

// isVerified reports whether chain verifies with opts: from a verification remembered for
// the same CA pools and not expired, else by verifying it now (and remembering success).
func (a *Authenticator) isVerified(chain []*x509.Certificate, opts x509.VerifyOptions) bool {
	key := chainKey(chain)
	if v, ok := a.verified.Get(key); ok {
		e := v.(verification)
		if e.roots == opts.Roots && e.intermediates == opts.Intermediates && e.contains(a.now()) {
			return true
		}
	}
	valid, ok := a.verify(chain, opts)
	if !ok {
		a.verified.Remove(key)
		return false
	}
	a.verified.Add(key, verification{roots: opts.Roots, intermediates: opts.Intermediates, validity: valid})
	return true
}

// verifyChain verifies chain as the request-header authenticator of k8s.io/apiserver does
// (the certificates after the first are intermediates unless opts has its own) at a.now(),
// and returns the validity of the verified chain that lasts longest.
func (a *Authenticator) verifyChain(chain []*x509.Certificate, opts x509.VerifyOptions) (validity, bool) {
	if opts.Intermediates == nil && len(chain) > 1 {
		opts.Intermediates = x509.NewCertPool()
		for _, c := range chain[1:] {
			opts.Intermediates.AddCert(c)
		}
	}
	if opts.CurrentTime.IsZero() {
		opts.CurrentTime = a.now()
	}
	verified, err := chain[0].Verify(opts)
	if err != nil {
		return validity{}, false
	}
	var longest validity
	for _, c := range verified {
		v := validity{notBefore: c[0].NotBefore, notAfter: c[0].NotAfter}
		for _, cert := range c[1:] {
			if cert.NotBefore.After(v.notBefore) {
				v.notBefore = cert.NotBefore
			}
			if cert.NotAfter.Before(v.notAfter) {
				v.notAfter = cert.NotAfter
			}
		}
		if v.notAfter.After(longest.notAfter) {
			longest = v
		}
	}
	return longest, true
}

// allowed applies the requestheader allowed names (read for every request, as they can
// change): with none, every verified certificate is allowed.
func (a *Authenticator) allowed(leaf *x509.Certificate) bool {
	names := a.allowedNames.Value()
	return len(names) == 0 || slices.Contains(names, leaf.Subject.CommonName)
}

// chainKey identifies a presented chain by the SHA-256 of its certificates' DER bytes, each
// prefixed with its length.
func chainKey(chain []*x509.Certificate) [sha256.Size]byte {
	h := sha256.New()
	var size [4]byte
	for _, c := range chain {
		binary.BigEndian.PutUint32(size[:], uint32(len(c.Raw)))
		h.Write(size[:])
		h.Write(c.Raw)
	}
	var key [sha256.Size]byte
	h.Sum(key[:0])
	return key
}
