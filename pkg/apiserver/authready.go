package apiserver

import (
	"net/http"
	"sync/atomic"
	"time"

	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/apiserver/pkg/server/dynamiccertificates"
	"k8s.io/klog/v2"
)

// authCAWaitTimeout bounds how long a request is held while the client CAs load.
const authCAWaitTimeout = 10 * time.Second

// withClientCAsLoaded holds requests that present a client certificate until the CA bundles
// that verify such certificates have content, for at most authCAWaitTimeout once: after that
// it stops waiting.
//
// In aggregated mode the request-header CA (kube-apiserver's front proxy) and the client CA
// come from the kube-system/extension-apiserver-authentication ConfigMap through informers
// that start together with serving. Requests proxied by kube-apiserver in the first
// ~100ms after a (re)start would otherwise find no CA, be authenticated as system:anonymous
// and be refused with 403 (a controller writing status sees "forbidden"). Requests without a
// client certificate (bearer tokens, the loopback client, anonymous health checks) are never
// held.
func withClientCAsLoaded(handler http.Handler, providers []dynamiccertificates.CAContentProvider) http.Handler {
	if len(providers) == 0 {
		return handler
	}
	var loaded atomic.Bool
	allLoaded := func() bool {
		if loaded.Load() {
			return true
		}
		for _, p := range providers {
			if len(p.CurrentCABundleContent()) == 0 {
				return false
			}
		}
		loaded.Store(true)
		return true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 || allLoaded() {
			handler.ServeHTTP(w, r)
			return
		}
		deadline := time.NewTimer(authCAWaitTimeout)
		defer deadline.Stop()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for !allLoaded() {
			select {
			case <-r.Context().Done():
				return
			case <-deadline.C:
				// A cluster without these CAs would otherwise delay every request: stop waiting.
				klog.Warningf("client CA bundles still empty after %s; serving requests without waiting for them", authCAWaitTimeout)
				loaded.Store(true)
				handler.ServeHTTP(w, r)
				return
			case <-tick.C:
			}
		}
		handler.ServeHTTP(w, r)
	})
}

// holdUntilClientCAsLoaded wraps the handler chain of c with withClientCAsLoaded for the
// request-header and client CA providers c authenticates with.
func holdUntilClientCAsLoaded(c *genericapiserver.Config) {
	var providers []dynamiccertificates.CAContentProvider
	if rh := c.Authentication.RequestHeaderConfig; rh != nil && rh.CAContentProvider != nil {
		providers = append(providers, rh.CAContentProvider)
	}
	if c.SecureServing != nil && c.SecureServing.ClientCA != nil {
		providers = append(providers, c.SecureServing.ClientCA)
	}
	if len(providers) == 0 {
		return
	}
	build := c.BuildHandlerChainFunc
	c.BuildHandlerChainFunc = func(apiHandler http.Handler, c *genericapiserver.Config) http.Handler {
		return withClientCAsLoaded(build(apiHandler, c), providers)
	}
}
