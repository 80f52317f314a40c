package framework

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/client-go/util/keyutil"

	"github.com/etcdaas/etcdaas/pkg/pki"
)

// FrontProxyClientName is the common name of the certificate kube-apiserver presents to
// aggregated servers, listed in --requestheader-allowed-names.
const FrontProxyClientName = "front-proxy-client"

// PKI is the certificates of one test cluster, written under Dir.
type PKI struct {
	// Dir holds every file below.
	Dir string
	// ClusterCA signs kube-apiserver's serving certificate and every client certificate
	// kube-apiserver accepts (--client-ca-file).
	ClusterCA *pki.CA
	// FrontProxyCA signs the front-proxy client certificate (--requestheader-client-ca-file).
	FrontProxyCA *pki.CA
	// ServingCA signs etcdaas-apiserver's serving certificate; it is the APIServices' caBundle.
	ServingCA *pki.CA
}

// Path returns the path of a file in the PKI directory.
func (p *PKI) Path(name string) string { return filepath.Join(p.Dir, name) }

// NewPKI creates the cluster CA, kube-apiserver's serving certificate, the front-proxy CA
// and client certificate, the service-account signing key pair, and the serving CA and
// certificate of etcdaas-apiserver for service serviceName in namespace. kube-apiserver's
// certificate names 127.0.0.1 and the first address of ServiceClusterIPs.
func NewPKI(dir, namespace, serviceName string) (*PKI, error) {
	return NewPKIWithAPIServerIPs(dir, namespace, serviceName, net.ParseIP("127.0.0.1"), net.ParseIP("10.0.0.1"))
}

// NewPKIWithAPIServerIPs is NewPKI for a kube-apiserver reached at apiServerIPs (such as
// the address it binds to and the kubernetes Service's ClusterIP).
func NewPKIWithAPIServerIPs(dir, namespace, serviceName string, apiServerIPs ...net.IP) (*PKI, error) {
	p := &PKI{Dir: dir}
	var err error
	if p.ClusterCA, err = pki.NewCA("etcdaas-e2e-cluster-ca"); err != nil {
		return nil, err
	}
	if err := p.ClusterCA.Write(dir, "ca"); err != nil {
		return nil, err
	}
	if err := p.Issue(p.ClusterCA, "kube-apiserver", pki.Request{
		CommonName: "kube-apiserver",
		DNSNames:   []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		IPs:        apiServerIPs,
		Usage:      pki.ServerUsage,
	}); err != nil {
		return nil, err
	}
	// kube-apiserver's client certificate towards etcd is not needed: etcd listens on
	// plaintext loopback.
	if p.FrontProxyCA, err = pki.NewCA("etcdaas-e2e-front-proxy-ca"); err != nil {
		return nil, err
	}
	if err := p.FrontProxyCA.Write(dir, "front-proxy-ca"); err != nil {
		return nil, err
	}
	if err := p.Issue(p.FrontProxyCA, "front-proxy-client", pki.Request{
		CommonName: FrontProxyClientName,
		Usage:      pki.ClientUsage,
	}); err != nil {
		return nil, err
	}
	if p.ServingCA, err = pki.NewCA("etcdaas-e2e-serving-ca"); err != nil {
		return nil, err
	}
	if err := p.ServingCA.Write(dir, "serving-ca"); err != nil {
		return nil, err
	}
	if err := p.Issue(p.ServingCA, "etcdaas-apiserver", pki.Request{
		CommonName: serviceName + "." + namespace + ".svc",
		DNSNames: []string{
			serviceName + "." + namespace + ".svc",
			serviceName + "." + namespace + ".svc.cluster.local",
			"localhost",
		},
		IPs:   []net.IP{net.ParseIP("127.0.0.1")},
		Usage: pki.ServerUsage,
	}); err != nil {
		return nil, err
	}
	if err := writeServiceAccountKeys(dir); err != nil {
		return nil, err
	}
	return p, nil
}

// Issue issues a certificate from ca and writes it as name.crt and name.key in Dir.
func (p *PKI) Issue(ca *pki.CA, name string, req pki.Request) error {
	kp, err := ca.Issue(req)
	if err != nil {
		return err
	}
	return kp.Write(p.Dir, name)
}

// writeServiceAccountKeys writes sa.key (ECDSA P-256, signs service-account tokens) and
// sa.pub (verifies them).
func writeServiceAccountKeys(dir string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	keyPEM, err := keyutil.MarshalPrivateKeyToPEM(key)
	if err != nil {
		return err
	}
	if err := keyutil.WriteKey(filepath.Join(dir, "sa.key"), keyPEM); err != nil {
		return err
	}
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return err
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	return os.WriteFile(filepath.Join(dir, "sa.pub"), pubPEM, 0o644)
}

// ClientKubeconfig issues a client certificate from the cluster CA for user in groups and
// writes a kubeconfig for it talking to server; it returns the kubeconfig's path.
func (p *PKI) ClientKubeconfig(server, user string, groups ...string) (string, error) {
	kp, err := p.ClusterCA.Issue(pki.Request{CommonName: user, Organization: groups, Usage: pki.ClientUsage})
	if err != nil {
		return "", err
	}
	name := "user-" + sanitize(user)
	if err := kp.Write(p.Dir, name); err != nil {
		return "", err
	}
	path := p.Path(name + ".kubeconfig")
	return path, WriteKubeconfig(path, server, p.Path("ca.crt"), &clientcmdapi.AuthInfo{
		ClientCertificate: p.Path(name + ".crt"),
		ClientKey:         p.Path(name + ".key"),
	})
}

// TokenKubeconfig writes a kubeconfig authenticating with a bearer token to server; it
// returns the kubeconfig's path.
func (p *PKI) TokenKubeconfig(server, name, token string) (string, error) {
	path := p.Path(sanitize(name) + ".kubeconfig")
	return path, WriteKubeconfig(path, server, p.Path("ca.crt"), &clientcmdapi.AuthInfo{Token: token})
}

// WriteKubeconfig writes a kubeconfig with one cluster, user and context.
func WriteKubeconfig(path, server, caFile string, auth *clientcmdapi.AuthInfo) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["e2e"] = &clientcmdapi.Cluster{Server: server, CertificateAuthority: caFile}
	cfg.AuthInfos["e2e"] = auth
	cfg.Contexts["e2e"] = &clientcmdapi.Context{Cluster: "e2e", AuthInfo: "e2e", Namespace: "default"}
	cfg.CurrentContext = "e2e"
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("writing kubeconfig %s: %w", path, err)
	}
	return nil
}

func sanitize(s string) string {
	out := []byte(s)
	for i, c := range out {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			out[i] = '_'
		}
	}
	return string(out)
}
