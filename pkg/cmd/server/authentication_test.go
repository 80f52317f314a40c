package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"go.etcd.io/etcd/server/v3/embed"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/server/dynamiccertificates"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/client-go/util/cert"

	"github.com/etcdaas/etcdaas/pkg/apiserver"
	"github.com/etcdaas/etcdaas/pkg/certcache"
	"github.com/etcdaas/etcdaas/pkg/embedetcd"
	"github.com/etcdaas/etcdaas/pkg/pki"
)

// TestAggregatedModeAuthenticatesTheFrontProxyAndDirectClients builds the aggregated mode's
// configuration from its flags with a requestheader CA file and a client CA file, and checks
// its authenticator request after request: a proxied request of a chain of the requestheader
// CA with the allowed name is the user of its headers, a direct request of a chain of the
// client CA is the user of its certificate, chains of other CAs are refused; after the client
// CA file changes, the old CA's chains are refused and the new one's accepted. The delegating
// authenticator is wrapped in certcache's, which remember verified chains.
func TestAggregatedModeAuthenticatesTheFrontProxyAndDirectClients(t *testing.T) {
	dir := t.TempDir()
	cas := newCAs(t, "front-proxy-ca", "client-ca", "client-ca-2", "front-proxy-ca")
	frontProxyCA, clientCA, newClientCA, otherCA := cas[0], cas[1], cas[2], cas[3]
	frontProxyFile, clientFile := filepath.Join(dir, "front-proxy-ca.crt"), filepath.Join(dir, "client-ca.crt")
	for file, ca := range map[string]*pki.CA{frontProxyFile: frontProxyCA, clientFile: clientCA} {
		if err := os.WriteFile(file, ca.CertPEM, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	o, config := aggregatedConfig(t, dir, frontProxyFile, "--client-ca-file="+clientFile, "--authentication-skip-lookup")
	authn := config.GenericConfig.Authentication.Authenticator
	if _, ok := authn.(*certcache.FrontProxy); !ok {
		t.Fatalf("the authenticator is a %T, want the delegating authenticator wrapped in a *certcache.FrontProxy", authn)
	}

	mustBe := func(chain []*x509.Certificate, remoteUser, want string, groups ...string) {
		t.Helper()
		u, err := authenticate(t, authn, chain, remoteUser)
		if err != nil || u == nil || u.GetName() != want || !slices.Equal(u.GetGroups(), groups) {
			t.Fatalf("authenticated as %v (error %v), want %s in %q", u, err, want, groups)
		}
	}
	mustFail := func(chain []*x509.Certificate, remoteUser, why string) {
		t.Helper()
		if u, err := authenticate(t, authn, chain, remoteUser); u != nil || err == nil {
			t.Fatalf("%s: authenticated as %v (error %v), want an error", why, u, err)
		}
	}

	proxy := issue(t, frontProxyCA, "front-proxy-client")
	alice := issue(t, clientCA, "alice", "dev")
	for _, name := range []string{"bob", "carol", "bob"} {
		mustBe(proxy, name, name, user.AllAuthenticated)
		mustBe(alice, "", "alice", "dev", user.AllAuthenticated)
	}
	mustFail(issue(t, otherCA, "front-proxy-client"), "bob", "a proxy chain of another CA")
	mustFail(issue(t, otherCA, "alice"), "", "a client chain of another CA")
	// A client of the client CA naming a user in the headers is not a front proxy: its own user.
	mustBe(alice, "bob", "alice", "dev", user.AllAuthenticated)

	// The client CA file changes: the provider the x509 authenticator verifies with reloads it.
	if err := os.WriteFile(clientFile, newClientCA.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	reloader, ok := o.RecommendedOptions.Authentication.ClientCert.CAContentProvider.(interface{ RunOnce(context.Context) error })
	if !ok {
		t.Fatalf("the client CA provider is a %T, want one that reloads its file", o.RecommendedOptions.Authentication.ClientCert.CAContentProvider)
	}
	if err := reloader.RunOnce(t.Context()); err != nil {
		t.Fatal(err)
	}
	mustFail(alice, "", "a client chain of the old client CA")
	mustBe(issue(t, newClientCA, "alice"), "", "alice", user.AllAuthenticated)
	mustBe(proxy, "bob", "bob", user.AllAuthenticated)
}

// aggregatedConfig is the aggregated mode's configuration, and its options, from the flags
// args, with certificates in dir and the requestheader CA bundle in frontProxyFile (allowed
// name front-proxy-client), without what needs a cluster (authorization, the core API,
// admission, etcd).
func aggregatedConfig(t *testing.T, dir, frontProxyFile string, args ...string) (*Options, *apiserver.Config) {
	t.Helper()
	o := NewOptions()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	o.AddFlags(fs)
	if err := fs.Parse(append([]string{
		"--requestheader-client-ca-file=" + frontProxyFile,
		"--requestheader-allowed-names=front-proxy-client",
		"--secure-port=0",
		"--cert-dir=" + dir,
		"--enable-priority-and-fairness=false",
	}, args...)); err != nil {
		t.Fatal(err)
	}
	if err := o.Complete(fs); err != nil {
		t.Fatal(err)
	}
	o.RecommendedOptions.Authorization = nil
	o.RecommendedOptions.CoreAPI = nil
	o.RecommendedOptions.Admission = nil
	o.RecommendedOptions.Etcd = nil
	o.RecommendedOptions.Authentication.RemoteKubeConfigFileOptional = true
	config, err := o.Config()
	if err != nil {
		t.Fatal(err)
	}
	return o, config
}

// authenticate authenticates with authn a request presenting chain and, unless empty, naming
// remoteUser in X-Remote-User.
func authenticate(t *testing.T, authn authenticator.Request, chain []*x509.Certificate, remoteUser string) (user.Info, error) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "https://localhost/apis/etcdaas.dev/v1beta1/etcdinstances", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.TLS = &tls.ConnectionState{PeerCertificates: chain}
	if remoteUser != "" {
		req.Header.Set("X-Remote-User", remoteUser)
	}
	resp, ok, err := authn.AuthenticateRequest(req)
	if err != nil || !ok {
		return nil, err
	}
	return resp.User, nil
}

// newCAs is a new CA for each name.
func newCAs(t *testing.T, names ...string) []*pki.CA {
	t.Helper()
	cas := make([]*pki.CA, len(names))
	for i, name := range names {
		var err error
		if cas[i], err = pki.NewCA(name); err != nil {
			t.Fatal(err)
		}
	}
	return cas
}

// issue is a client certificate chain from ca for commonName in organizations.
func issue(t *testing.T, ca *pki.CA, commonName string, organizations ...string) []*x509.Certificate {
	t.Helper()
	kp, err := ca.Issue(pki.Request{CommonName: commonName, Organization: organizations, Usage: pki.ClientUsage})
	if err != nil {
		t.Fatal(err)
	}
	certs, err := cert.ParseCertsPEM(kp.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	return certs
}

// TestAggregatedModeReadsTheClientCAFromTheConfigMap builds the aggregated mode's
// configuration as it runs in a cluster, without --client-ca-file: the client CA bundle is the
// client-ca-file of kube-apiserver's extension-apiserver-authentication ConfigMap (served here
// by a fake API server), in the provider the delegating authenticator's x509 authenticator
// verifies with, and a direct client of that CA is the user of its certificate.
func TestAggregatedModeReadsTheClientCAFromTheConfigMap(t *testing.T) {
	dir := t.TempDir()
	cas := newCAs(t, "front-proxy-ca", "client-ca", "client-ca")
	frontProxyCA, clientCA, otherCA := cas[0], cas[1], cas[2]
	frontProxyFile := filepath.Join(dir, "front-proxy-ca.crt")
	if err := os.WriteFile(frontProxyFile, frontProxyCA.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	api := httptest.NewServer(authenticationConfigMapServer(t, string(clientCA.CertPEM)))
	t.Cleanup(api.Close)
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := clientcmd.WriteToFile(clientcmdapi.Config{
		Clusters:       map[string]*clientcmdapi.Cluster{"fake": {Server: api.URL}},
		Contexts:       map[string]*clientcmdapi.Context{"fake": {Cluster: "fake"}},
		CurrentContext: "fake",
	}, kubeconfig); err != nil {
		t.Fatal(err)
	}
	o, config := aggregatedConfig(t, dir, frontProxyFile, "--authentication-kubeconfig="+kubeconfig)
	provider := o.RecommendedOptions.Authentication.ClientCert.CAContentProvider
	runner, ok := provider.(dynamiccertificates.ControllerRunner)
	if !ok || !strings.Contains(provider.Name(), "extension-apiserver-authentication::client-ca-file") {
		t.Fatalf("the client CA provider is a %T named %q, want the ConfigMap's", provider, provider.Name())
	}
	go runner.Run(t.Context(), 1)
	if err := wait.PollUntilContextTimeout(t.Context(), 10*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		_, ok := provider.VerifyOptions()
		return ok, nil
	}); err != nil {
		t.Fatalf("the client CA of the ConfigMap was not loaded: %v", err)
	}

	authn := config.GenericConfig.Authentication.Authenticator
	alice := issue(t, clientCA, "alice", "dev")
	for range 3 {
		if u, err := authenticate(t, authn, alice, ""); err != nil || u == nil || u.GetName() != "alice" || !slices.Equal(u.GetGroups(), []string{"dev", user.AllAuthenticated}) {
			t.Fatalf("a client of the ConfigMap's CA authenticated as %v (error %v), want alice in dev", u, err)
		}
	}
	if u, err := authenticate(t, authn, issue(t, otherCA, "alice"), ""); u != nil || err == nil {
		t.Fatalf("a client of another CA authenticated as %v (error %v), want an error", u, err)
	}
}

// authenticationConfigMapServer is a fake API server that serves one ConfigMap,
// kube-system/extension-apiserver-authentication with clientCA as its client-ca-file, to
// lists and watches (which send it as their initial event when asked to, then wait).
func authenticationConfigMapServer(t *testing.T, clientCA string) http.Handler {
	configMap := map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": "extension-apiserver-authentication", "namespace": "kube-system", "resourceVersion": "1"},
		"data":     map[string]any{"client-ca-file": clientCA},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/namespaces/kube-system/configmaps" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		q := r.URL.Query()
		if q.Get("watch") != "true" {
			_ = enc.Encode(map[string]any{"apiVersion": "v1", "kind": "ConfigMapList", "metadata": map[string]any{"resourceVersion": "1"}, "items": []any{configMap}})
			return
		}
		if q.Get("sendInitialEvents") == "true" {
			_ = enc.Encode(map[string]any{"type": "ADDED", "object": configMap})
			_ = enc.Encode(map[string]any{"type": "BOOKMARK", "object": map[string]any{"apiVersion": "v1", "kind": "ConfigMap",
				"metadata": map[string]any{"resourceVersion": "1", "annotations": map[string]any{"k8s.io/initial-events-end": "true"}}}})
		}
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
}

// TestStandaloneModeAuthenticatesItsClientCertificates builds the standalone mode's
// configuration and checks its authenticator: the admin certificate of the standalone CA is
// the admin in system:masters request after request, a certificate of another CA is refused,
// the health endpoints answer to anyone, and the authenticator remembers verified chains
// (certcache.ClientCert).
func TestStandaloneModeAuthenticatesItsClientCertificates(t *testing.T) {
	dir := t.TempDir()
	o := NewOptions()
	o.Standalone.Enabled, o.Standalone.DataDir = true, dir
	if err := o.completeStandalone(); err != nil {
		t.Fatal(err)
	}
	creds, err := standalonePKI(filepath.Join(dir, "pki"), o.RecommendedOptions.SecureServing.BindAddress)
	if err != nil {
		t.Fatal(err)
	}
	// Only the embedded etcd's client address is read: a listener stands for it.
	etcdClients, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = etcdClients.Close() })
	config, err := o.standaloneConfig(&embedetcd.Etcd{Etcd: &embed.Etcd{Clients: []net.Listener{etcdClients}}}, creds)
	if err != nil {
		t.Fatal(err)
	}
	if l := o.RecommendedOptions.SecureServing.Listener; l != nil {
		t.Cleanup(func() { _ = l.Close() })
	}
	authn := config.GenericConfig.Authentication.Authenticator
	if _, ok := authn.(*certcache.ClientCert); !ok {
		t.Fatalf("the authenticator is a %T, want the standalone union wrapped in a *certcache.ClientCert", authn)
	}

	admin, err := cert.ParseCertsPEM(creds.admin.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if u, err := authenticate(t, authn, admin, ""); err != nil || u == nil || u.GetName() != StandaloneAdminUser || !slices.Equal(u.GetGroups(), []string{StandaloneAdminGroup}) {
			t.Fatalf("the admin certificate authenticated as %v (error %v), want %s in %s", u, err, StandaloneAdminUser, StandaloneAdminGroup)
		}
	}
	stranger := newCAs(t, "etcdaas-standalone-ca")[0]
	if u, err := authenticate(t, authn, issue(t, stranger, StandaloneAdminUser, StandaloneAdminGroup), ""); u != nil || err == nil {
		t.Fatalf("a certificate of another CA authenticated as %v (error %v), want an error", u, err)
	}
	req, err := http.NewRequest(http.MethodGet, "https://localhost/readyz", nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp, ok, err := authn.AuthenticateRequest(req); !ok || err != nil || resp.User.GetName() != user.Anonymous {
		t.Fatalf("/readyz without a certificate: %v %v %v, want %s", resp, ok, err, user.Anonymous)
	}
	// A certificate that does not verify is refused there too, not taken for anonymous: as
	// kube-apiserver does (union.NewFailOnError), a bad credential is a 401 on every path.
	req.TLS = &tls.ConnectionState{PeerCertificates: issue(t, stranger, "someone")}
	if resp, ok, err := authn.AuthenticateRequest(req); ok || err == nil {
		t.Fatalf("/readyz with a certificate of another CA: %v %v %v, want an error", resp, ok, err)
	}
}
