package certcache

import (
	"net/http"
	"slices"

	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/authenticatorfactory"
	"k8s.io/apiserver/pkg/authentication/group"
	"k8s.io/apiserver/pkg/authentication/request/headerrequest"
	x509request "k8s.io/apiserver/pkg/authentication/request/x509"
)

// FrontProxyCacheSize bounds how many verified chains a FrontProxy remembers. Each
// kube-apiserver of a cluster presents one front-proxy certificate (a new one after each
// rotation), so a few entries are enough; the bound keeps clients that present many
// certificates from growing the cache.
const FrontProxyCacheSize = 64

// FrontProxy authenticates the requests kube-apiserver's aggregator proxies: it answers for a
// request that presents a front-proxy client certificate chain verified earlier against the
// current requestheader CA bundle, whose common name is allowed, and that names a user in the
// request headers; every other request goes to the authenticator it wraps, which verifies and
// decides as before.
type FrontProxy struct {
	verifyOptions x509request.VerifyOptionFunc
	allowedNames  headerrequest.StringSliceProvider
	// usernameHeaders are the headers that name the user; a request with none of them is not
	// one FrontProxy answers for, so its chain is not verified here.
	usernameHeaders headerrequest.StringSliceProvider
	// headers reads the user from the request headers, adding system:authenticated as the
	// delegating authenticator does.
	headers authenticator.Request
	next    authenticator.Request
	chains  *verifiedChains
}

// NewFrontProxy wraps next, the authenticator built from config by k8s.io/apiserver (the
// delegating authenticator, whose first member is config's request-header authenticator), in
// a FrontProxy that remembers the front-proxy chains it verifies. Remembered chains are
// dropped whenever config's CA provider reports a change; NewFrontProxy must be called before
// that provider runs.
func NewFrontProxy(config *authenticatorfactory.RequestHeaderConfig, next authenticator.Request) *FrontProxy {
	return &FrontProxy{
		verifyOptions:   config.CAContentProvider.VerifyOptions,
		allowedNames:    config.AllowedClientNames,
		usernameHeaders: config.UsernameHeaders,
		headers: group.NewAuthenticatedGroupAdder(headerrequest.NewDynamic(
			config.UsernameHeaders, config.UIDHeaders, config.GroupHeaders, config.ExtraHeaderPrefixes)),
		next:   next,
		chains: newVerifiedChains(FrontProxyCacheSize, config.CAContentProvider),
	}
}

// AuthenticateRequest authenticates req from its headers when it comes from an allowed front
// proxy whose chain is verified; otherwise the wrapped authenticator decides.
func (a *FrontProxy) AuthenticateRequest(req *http.Request) (*authenticator.Response, bool, error) {
	if resp, ok := a.fromFrontProxy(req); ok {
		return resp, true, nil
	}
	return a.next.AuthenticateRequest(req)
}

// fromFrontProxy is the user req names in its headers if req presents a verified front-proxy
// chain with an allowed common name.
func (a *FrontProxy) fromFrontProxy(req *http.Request) (*authenticator.Response, bool) {
	chain := presentedChain(req)
	if chain == nil {
		return nil, false
	}
	opts, ok := a.verifyOptions()
	if !ok {
		return nil, false
	}
	// The cheap checks first: a request that fails them goes to the wrapped authenticator,
	// which verifies the chain itself.
	if !namesUser(req, a.usernameHeaders.Value()) || !a.allowed(chain[0].Subject.CommonName) || !a.chains.isVerified(chain, opts) {
		return nil, false
	}
	resp, ok, err := a.headers.AuthenticateRequest(req)
	if err != nil || !ok {
		return nil, false
	}
	return resp, true
}

// allowed applies the requestheader allowed names (read for every request, as they can
// change): with none, every verified certificate is allowed.
func (a *FrontProxy) allowed(commonName string) bool {
	names := a.allowedNames.Value()
	return len(names) == 0 || slices.Contains(names, commonName)
}
