// Package certcache authenticates requests that present a client certificate chain without
// verifying the same chain again on every request.
//
// k8s.io/apiserver verifies the presented chain of every request against a CA bundle: the
// front-proxy chain kube-apiserver presents on every request it proxies (the request-header
// authenticator, see FrontProxy) and the chain of a client that connects directly (the x509
// authenticator of --client-ca-file, see ClientCert). Each is an ECDSA or RSA signature check
// whose result only changes when the certificate, the CA bundle or the time does. The
// authenticators here remember a chain they verified, for the CA pools it was verified with
// and while the clock is inside the validity of every certificate of the verified chain, and
// make every other decision (the user, its groups, allowed names, rejections) on every request
// as k8s.io/apiserver does. A chain that does not verify is never remembered: such a request
// goes to the authenticator they wrap, which verifies and decides as before.
package certcache

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"net/http"
	"time"

	"k8s.io/apiserver/pkg/server/dynamiccertificates"
	"k8s.io/utils/lru"
)

// verifiedChains remembers the client certificate chains that verified against the CA pools
// of one CA bundle, in a bounded LRU keyed by the chain's bytes.
type verifiedChains struct {
	// entries maps chainKey to the verification of that chain.
	entries *lru.Cache
	now     func() time.Time
	// verify is verifyChain; tests count its calls.
	verify func(chain []*x509.Certificate, opts x509.VerifyOptions) (validity, bool)
}

// verification records that a chain verified against the CA pools of one CA bundle content.
type verification struct {
	// roots and intermediates are the pools of the CA bundle the chain was verified with. A
	// new bundle comes with new pools, so an entry made with other pools does not answer.
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

// newVerifiedChains remembers up to size chains, all dropped whenever ca reports a change
// (ca must not have started notifying yet).
func newVerifiedChains(size int, ca dynamiccertificates.Notifier) *verifiedChains {
	c := &verifiedChains{entries: lru.New(size), now: time.Now}
	c.verify = c.verifyChain
	ca.AddListener(caChangeListener{c.entries})
	return c
}

// caChangeListener drops every remembered chain when the CA bundle may have changed.
type caChangeListener struct{ entries *lru.Cache }

func (l caChangeListener) Enqueue() { l.entries.Clear() }

// isVerified reports whether chain verifies with opts: from a verification remembered for
// the same CA pools and not expired, else by verifying it now (and remembering success).
func (c *verifiedChains) isVerified(chain []*x509.Certificate, opts x509.VerifyOptions) bool {
	key := chainKey(chain)
	if v, ok := c.entries.Get(key); ok {
		e := v.(verification)
		if e.roots == opts.Roots && e.intermediates == opts.Intermediates && e.contains(c.now()) {
			return true
		}
	}
	valid, ok := c.verify(chain, opts)
	if !ok {
		c.entries.Remove(key)
		return false
	}
	c.entries.Add(key, verification{roots: opts.Roots, intermediates: opts.Intermediates, validity: valid})
	return true
}

// verifyChain verifies chain as the x509 and request-header authenticators of
// k8s.io/apiserver do (the certificates after the first are intermediates unless opts has its
// own) at c.now(), and returns the validity of the verified chain that lasts longest.
func (c *verifiedChains) verifyChain(chain []*x509.Certificate, opts x509.VerifyOptions) (validity, bool) {
	if opts.Intermediates == nil && len(chain) > 1 {
		opts.Intermediates = x509.NewCertPool()
		for _, cert := range chain[1:] {
			opts.Intermediates.AddCert(cert)
		}
	}
	if opts.CurrentTime.IsZero() {
		opts.CurrentTime = c.now()
	}
	verified, err := chain[0].Verify(opts)
	if err != nil {
		return validity{}, false
	}
	var longest validity
	for _, v := range verified {
		valid := validity{notBefore: v[0].NotBefore, notAfter: v[0].NotAfter}
		for _, cert := range v[1:] {
			if cert.NotBefore.After(valid.notBefore) {
				valid.notBefore = cert.NotBefore
			}
			if cert.NotAfter.Before(valid.notAfter) {
				valid.notAfter = cert.NotAfter
			}
		}
		if valid.notAfter.After(longest.notAfter) {
			longest = valid
		}
	}
	return longest, true
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

// presentedChain is the client certificate chain req presents, nil without one.
func presentedChain(req *http.Request) []*x509.Certificate {
	if req.TLS == nil || len(req.TLS.PeerCertificates) == 0 {
		return nil
	}
	return req.TLS.PeerCertificates
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
