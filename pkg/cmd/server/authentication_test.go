package server

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/spf13/pflag"
	"k8s.io/client-go/util/cert"

	"github.com/etcdaas/etcdaas/pkg/certcache"
	"github.com/etcdaas/etcdaas/pkg/pki"
)

// TestAggregatedModeAuthenticatesTheFrontProxy builds the aggregated mode's configuration from
// its flags with a requestheader CA file and checks that its authenticator takes the user of
// a proxied request from the headers for a chain of that CA and the allowed name, request after
// request, and refuses a chain of another CA; the delegating authenticator is wrapped in
// certcache's FrontProxy, which remembers verified chains.
func TestAggregatedModeAuthenticatesTheFrontProxy(t *testing.T) {
	dir := t.TempDir()
	frontProxyCA, err := pki.NewCA("front-proxy-ca")
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "front-proxy-ca.crt")
	if err := os.WriteFile(caFile, frontProxyCA.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	o := NewOptions()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	o.AddFlags(fs)
	if err := fs.Parse([]string{
		"--requestheader-client-ca-file=" + caFile,
		"--requestheader-allowed-names=front-proxy-client",
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

	chain := func(ca *pki.CA) []*x509.Certificate {
		kp, err := ca.Issue(pki.Request{CommonName: "front-proxy-client", Usage: pki.ClientUsage})
		if err != nil {
			t.Fatal(err)
		}
		certs, err := cert.ParseCertsPEM(kp.CertPEM)
		if err != nil {
			t.Fatal(err)
		}
		return certs
	}
	proxied := func(chain []*x509.Certificate, userName string) (string, error) {
		req, err := http.NewRequest(http.MethodGet, "https://localhost/apis/etcdaas.dev/v1beta1/etcdinstances", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.TLS = &tls.ConnectionState{PeerCertificates: chain}
		req.Header.Set("X-Remote-User", userName)
		resp, ok, err := authn.AuthenticateRequest(req)
		if err != nil || !ok {
			return "", err
		}
		return resp.User.GetName(), nil
	}
	trusted := chain(frontProxyCA)
	for _, name := range []string{"alice", "bob", "alice"} {
		if got, err := proxied(trusted, name); got != name || err != nil {
			t.Fatalf("proxied request for %s: authenticated as %q (error %v)", name, got, err)
		}
	}
	otherCA, err := pki.NewCA("front-proxy-ca")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := proxied(chain(otherCA), "alice"); got == "alice" || err == nil {
		t.Fatalf("a chain of another CA authenticated as %q (error %v), want an error", got, err)
	}
}
