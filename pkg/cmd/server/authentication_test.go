package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/spf13/pflag"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/client-go/util/cert"

	"github.com/etcdaas/etcdaas/pkg/certcache"
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
	o := NewOptions()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	o.AddFlags(fs)
	if err := fs.Parse([]string{
		"--requestheader-client-ca-file=" + frontProxyFile,
		"--requestheader-allowed-names=front-proxy-client",
		"--client-ca-file=" + clientFile,
		"--authentication-skip-lookup",
		"--secure-port=0",
		"--cert-dir=" + dir,
		"--enable-priority-and-fairness=false",
	}); err != nil {
		t.Fatal(err)
	}
	if err := o.Complete(fs); err != nil {
		t.Fatal(err)
	}
	// No cluster: nothing that needs one.
	o.RecommendedOptions.Authorization = nil
	o.RecommendedOptions.CoreAPI = nil
	o.RecommendedOptions.Admission = nil
	o.RecommendedOptions.Etcd = nil
	o.RecommendedOptions.Authentication.RemoteKubeConfigFileOptional = true
	config, err := o.Config()
	if err != nil {
		t.Fatal(err)
	}
	authn := config.GenericConfig.Authentication.Authenticator
	if _, ok := authn.(*certcache.FrontProxy); !ok {
		t.Fatalf("the authenticator is a %T, want the delegating authenticator wrapped in a *certcache.FrontProxy", authn)
	}

	authenticate := func(chain []*x509.Certificate, remoteUser string) (user.Info, error) {
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
	mustBe := func(chain []*x509.Certificate, remoteUser, want string, groups ...string) {
		t.Helper()
		u, err := authenticate(chain, remoteUser)
		if err != nil || u == nil || u.GetName() != want || !slices.Equal(u.GetGroups(), groups) {
			t.Fatalf("authenticated as %v (error %v), want %s in %q", u, err, want, groups)
		}
	}
	mustFail := func(chain []*x509.Certificate, remoteUser, why string) {
		t.Helper()
		if u, err := authenticate(chain, remoteUser); u != nil || err == nil {
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
