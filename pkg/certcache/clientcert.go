package certcache

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/authenticatorfactory"
	"k8s.io/apiserver/pkg/authentication/group"
	"k8s.io/apiserver/pkg/authentication/request/headerrequest"
	x509request "k8s.io/apiserver/pkg/authentication/request/x509"
	"k8s.io/apiserver/pkg/server/dynamiccertificates"
	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"
)

// ClientCertCacheSize bounds how many verified chains a ClientCert remembers: one per client
// certificate in use by directly connected clients, each entry a few hundred bytes.
const ClientCertCacheSize = 1024

// ClientCertConfig is how the wrapped authenticator authenticates directly connected clients
// by their client certificate.
type ClientCertConfig struct {
	// CA is the client CA bundle (--client-ca-file) of the wrapped authenticator's x509
	// authenticator, which takes the user from a verified certificate's common name and its
	// groups from the organizations (x509.CommonNameUserConversion).
	CA dynamiccertificates.CAContentProvider
	// RequestHeader, when set, is the configuration of a request-header authenticator that
	// comes before the x509 one in the wrapped authenticator (as in k8s.io/apiserver's
	// delegating authenticator): a request that names a user in its headers goes to the
	// wrapped authenticator.
	RequestHeader *authenticatorfactory.RequestHeaderConfig
	// AuthenticatedGroup adds system:authenticated to the user, as the delegating
	// authenticator does (authenticatorfactory.DelegatingAuthenticatorConfig).
	AuthenticatedGroup bool
}

// ClientCert authenticates directly connected clients by their client certificate: it
// answers for a request that presents a chain verified earlier against the current client CA
// bundle, and that the wrapped authenticator's x509 authenticator would answer for; every
// other request goes to the authenticator it wraps, which verifies and decides as before.
type ClientCert struct {
	verifyOptions x509request.VerifyOptionFunc
	// usernameHeaders are the request-header authenticator's, nil without one.
	usernameHeaders headerrequest.StringSliceProvider
	// answer is the user of a request whose chain is verified, as the wrapped authenticator
	// presents its x509 authenticator's users.
	answer authenticator.Request
	// expiration is k8s.io/apiserver's apiserver_client_certificate_expiration_seconds.
	expiration *metrics.Histogram
	next       authenticator.Request
	chains     *verifiedChains
}

// NewClientCert wraps next, an authenticator k8s.io/apiserver built with an x509
// authenticator of config.CA (the delegating authenticator of the aggregated mode, or a union
// whose first member is the x509 authenticator), in a ClientCert that remembers the chains it
// verifies. Remembered chains are dropped whenever config.CA reports a change; NewClientCert
// must be called before that provider runs.
func NewClientCert(config ClientCertConfig, next authenticator.Request) (*ClientCert, error) {
	expiration, err := certificateExpiration()
	if err != nil {
		return nil, err
	}
	a := &ClientCert{
		verifyOptions: config.CA.VerifyOptions,
		expiration:    expiration,
		next:          next,
		chains:        newVerifiedChains(ClientCertCacheSize, config.CA),
	}
	if config.RequestHeader != nil {
		a.usernameHeaders = config.RequestHeader.UsernameHeaders
	}
	a.answer = authenticator.RequestFunc(a.fromVerifiedChain)
	if config.AuthenticatedGroup {
		a.answer = group.NewAuthenticatedGroupAdder(a.answer)
	}
	return a, nil
}

// AuthenticateRequest authenticates req as the user of its client certificate when its chain
// is verified and no earlier authenticator of the wrapped one would answer; otherwise the
// wrapped authenticator decides.
func (a *ClientCert) AuthenticateRequest(req *http.Request) (*authenticator.Response, bool, error) {
	if resp, ok, err := a.answer.AuthenticateRequest(req); ok && err == nil {
		return resp, true, nil
	}
	return a.next.AuthenticateRequest(req)
}

// fromVerifiedChain is the user of req's client certificate if its chain is verified against
// the client CA bundle; no opinion otherwise.
func (a *ClientCert) fromVerifiedChain(req *http.Request) (*authenticator.Response, bool, error) {
	chain := presentedChain(req)
	if chain == nil {
		return nil, false, nil
	}
	// A request naming a user in the headers is the request-header authenticator's to decide
	// first (it reads the user from the headers if the chain verifies against its own CA).
	if a.usernameHeaders != nil && namesUser(req, a.usernameHeaders.Value()) {
		return nil, false, nil
	}
	opts, ok := a.verifyOptions()
	if !ok || !a.chains.isVerified(chain, opts) {
		return nil, false, nil
	}
	// The user comes from the leaf (the first certificate of every verified chain), read on
	// every request. A certificate the conversion refuses (no common name, an invalid UID) goes
	// to the wrapped authenticator, whose x509 authenticator refuses it too and lets the next
	// one try.
	resp, ok, err := x509request.CommonNameUserConversion.User(chain)
	if err != nil || !ok {
		return nil, false, nil
	}
	// As the x509 authenticator does for every request it authenticates.
	a.expiration.WithContext(req.Context()).Observe(chain[0].NotAfter.Sub(a.chains.now()).Seconds())
	return resp, true, nil
}

// certificateExpiration is the histogram k8s.io/apiserver's x509 authenticator observes for
// every request it verifies (apiserver_client_certificate_expiration_seconds, the remaining
// lifetime of the client certificate), so that requests a ClientCert answers are counted as
// before. The x509 package registers it, once, when an authenticator is made; registering
// the same histogram again hands back the registered one.
func certificateExpiration() (*metrics.Histogram, error) {
	x509request.NewDynamic(nil, nil) // registers the x509 package's metrics, if not yet done
	h := metrics.NewHistogram(&metrics.HistogramOpts{
		Namespace: "apiserver",
		Subsystem: "client",
		Name:      "certificate_expiration_seconds",
		Help:      "Distribution of the remaining lifetime on the certificate used to authenticate a request.",
		Buckets: []float64{
			0, 1800, 3600, 7200, 21600, 43200, 86400, 172800, 345600, 604800, 2592000, 7776000, 15552000, 31104000,
		},
		StabilityLevel: metrics.ALPHA,
	})
	err := legacyregistry.Register(h)
	var registered prometheus.AlreadyRegisteredError
	switch {
	case errors.As(err, &registered):
		if existing, ok := registered.ExistingCollector.(*metrics.Histogram); ok {
			return existing, nil
		}
		return nil, fmt.Errorf("%s is registered as a %T, not a histogram", h.FQName(), registered.ExistingCollector)
	case err != nil:
		return nil, fmt.Errorf("finding the client certificate expiration histogram: %w", err)
	default:
		// Not registered: the metric is hidden or disabled, and stays unobserved.
		return h, nil
	}
}
