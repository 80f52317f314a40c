package server

import (
	"errors"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/apiserver/pkg/server/dynamiccertificates"
	genericoptions "k8s.io/apiserver/pkg/server/options"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/etcdaas/etcdaas/pkg/certcache"
)

// The ConfigMap kube-apiserver publishes its client CA bundle in, where k8s.io/apiserver's
// delegated authentication looks it up without --client-ca-file.
const (
	authenticationConfigMapNamespace = metav1.NamespaceSystem
	authenticationConfigMapName      = "extension-apiserver-authentication"
	clientCAConfigMapKey             = "client-ca-file"
)

// clientCAProvider is the provider of the client CA bundle the delegating authenticator's
// x509 authenticator verifies with, nil without one: --client-ca-file, else the
// client-ca-file of the extension-apiserver-authentication ConfigMap, as k8s.io/apiserver
// would look it up. It is set in the authentication options, so that the x509 authenticator
// verifies with this very provider instead of making its own.
func (o *Options) clientCAProvider() (dynamiccertificates.CAContentProvider, error) {
	auth := o.RecommendedOptions.Authentication
	if auth == nil {
		return nil, nil
	}
	ca, err := auth.ClientCert.GetClientCAContentProvider()
	if err != nil {
		return nil, fmt.Errorf("--client-ca-file: %w", err)
	}
	if ca == nil && !auth.SkipInClusterLookup {
		client, err := delegatedAuthenticationClient(auth)
		if err != nil || client == nil {
			// Without a client k8s.io/apiserver warns and goes without client certificates.
			return nil, err
		}
		ca, err = dynamiccertificates.NewDynamicCAFromConfigMapController("client-ca",
			authenticationConfigMapNamespace, authenticationConfigMapName, clientCAConfigMapKey, client)
		if err != nil {
			return nil, fmt.Errorf("unable to load configmap based client CA file: %w", err)
		}
	}
	if ca != nil {
		auth.ClientCert.CAContentProvider = ca
	}
	return ca, nil
}

// delegatedAuthenticationClient is the client k8s.io/apiserver's delegated authentication
// makes from the same options (DelegatingAuthenticationOptions.getClient, which is not
// exported): from --authentication-kubeconfig, else in-cluster; nil when neither is there and
// the kubeconfig is optional.
func delegatedAuthenticationClient(auth *genericoptions.DelegatingAuthenticationOptions) (kubernetes.Interface, error) {
	var config *rest.Config
	var err error
	if auth.RemoteKubeConfigFile != "" {
		rules := &clientcmd.ClientConfigLoadingRules{ExplicitPath: auth.RemoteKubeConfigFile}
		config, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	} else {
		config, err = rest.InClusterConfig()
		if err != nil && auth.RemoteKubeConfigFileOptional {
			if !errors.Is(err, rest.ErrNotInCluster) {
				klog.Warningf("failed to read in-cluster kubeconfig for delegated authentication: %v", err)
			}
			return nil, nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("failed to get delegated authentication kubeconfig: %w", err)
	}
	// The limits k8s.io/apiserver sets: this client limits how fast requests are authenticated.
	config.QPS, config.Burst = 200, 400
	if auth.CustomRoundTripperFn != nil {
		config.Wrap(auth.CustomRoundTripperFn)
	}
	return kubernetes.NewForConfig(config)
}

// rememberVerifiedChains wraps the delegating authenticator of the aggregated mode so that the
// client certificate chains it verifies on every request are verified once per CA bundle:
// kube-apiserver's front-proxy chain (the same on every request it proxies) and, with
// clientCA, the chains of directly connected clients.
func rememberVerifiedChains(authn *genericapiserver.AuthenticationInfo, clientCA dynamiccertificates.CAContentProvider) error {
	if authn.Authenticator == nil {
		return nil
	}
	rh := authn.RequestHeaderConfig
	if clientCA != nil {
		direct, err := certcache.NewClientCert(certcache.ClientCertConfig{CA: clientCA, RequestHeader: rh, AuthenticatedGroup: true}, authn.Authenticator)
		if err != nil {
			return err
		}
		authn.Authenticator = direct
	}
	if rh != nil {
		authn.Authenticator = certcache.NewFrontProxy(rh, authn.Authenticator)
	}
	return nil
}
