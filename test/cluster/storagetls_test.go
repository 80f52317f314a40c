package cluster

import (
	"encoding/base64"
	"fmt"
	"net"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/etcdaas/etcdaas/pkg/pki"
	"github.com/etcdaas/etcdaas/test/cluster/node"
)

// storageEtcdPKI is what deploy/README.md asks the operator for, for the storage etcd: a CA of
// its own, the members' certificate (server and peer) and etcdaas-apiserver's client
// certificate.
type storageEtcdPKI struct {
	ca             *pki.CA
	server, client *pki.KeyPair
}

// newStorageEtcdPKI issues the storage etcd's certificates as deploy/README.md describes:
// the members' names by wildcard (with and without the cluster domain), the client Service,
// localhost; a client certificate without names.
func newStorageEtcdPKI() (*storageEtcdPKI, error) {
	ca, err := pki.NewCA("etcdaas-etcd-ca")
	if err != nil {
		return nil, err
	}
	svc := "etcdaas-etcd." + node.EtcdaasNamespace + ".svc"
	server, err := ca.Issue(pki.Request{
		CommonName: "etcdaas-etcd",
		DNSNames:   []string{"*." + svc, "*." + svc + ".cluster.local", svc, svc + ".cluster.local", "localhost"},
		IPs:        []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")},
		Usage:      pki.ServerUsage | pki.ClientUsage,
	})
	if err != nil {
		return nil, err
	}
	client, err := ca.Issue(pki.Request{CommonName: "etcdaas-apiserver", Usage: pki.ClientUsage})
	if err != nil {
		return nil, err
	}
	return &storageEtcdPKI{ca: ca, server: server, client: client}, nil
}

// etcdTLSSecret is a kubernetes.io/tls Secret with the CA in ca.crt, as cert-manager writes it.
const etcdTLSSecret = `apiVersion: v1
kind: Secret
metadata:
  name: %s
  namespace: etcdaas-system
type: kubernetes.io/tls
data:
  ca.crt: %s
  tls.crt: %s
  tls.key: %s
`

// secrets returns the manifests of Secrets etcdaas-etcd-server and etcdaas-etcd-client.
func (p *storageEtcdPKI) secrets() string {
	b64 := base64.StdEncoding.EncodeToString
	ca := b64(p.ca.CertPEM)
	return fmt.Sprintf(etcdTLSSecret, "etcdaas-etcd-server", ca, b64(p.server.CertPEM), b64(p.server.KeyPEM)) + "---\n" +
		fmt.Sprintf(etcdTLSSecret, "etcdaas-etcd-client", ca, b64(p.client.CertPEM), b64(p.client.KeyPEM))
}

// testStorageEtcdTLS checks from a pod that the storage etcd of deploy/aggregated serves a
// client with etcdaas-apiserver's certificate, over https between its members, and refuses a
// plaintext client, a TLS client without a certificate and one with a certificate of another
// CA.
func testStorageEtcdTLS(t *testing.T, e *etcdaasInstall) {
	const ns, secret = "storage-etcd", "storage-etcd-certs"
	e.createNamespace(t, ns)
	other, err := pki.NewCA("another-ca")
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := other.Issue(pki.Request{CommonName: "etcdaas-apiserver", Usage: pki.ClientUsage})
	if err != nil {
		t.Fatal(err)
	}
	p := e.storageEtcd
	if _, err := e.c.Kube.CoreV1().Secrets(ns).Create(t.Context(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: secret},
		Data: map[string][]byte{
			"ca.crt": p.ca.CertPEM, "client.crt": p.client.CertPEM, "client.key": p.client.KeyPEM,
			"other.crt": stranger.CertPEM, "other.key": stranger.KeyPEM,
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// No host process resolves *.svc: the client pods do, through the cluster's DNS.
	endpoint := "--endpoints=https://etcdaas-etcd-0.etcdaas-etcd." + node.EtcdaasNamespace + ".svc:2379"
	plaintext := strings.Replace(endpoint, "https://", "http://", 1)
	for _, c := range []struct {
		pod  string
		args []string
	}{
		{"no-cert", []string{endpoint, "--cacert=/certs/ca.crt"}},
		{"other-ca", []string{endpoint, "--cacert=/certs/ca.crt", "--cert=/certs/other.crt", "--key=/certs/other.key"}},
		{"plaintext", []string{plaintext}},
	} {
		args := append(c.args, "member", "list")
		out, ok, err := e.clientPod(t.Context(), ns, c.pod, secret, args...)
		if err != nil {
			t.Fatal(err)
		}
		if ok || strings.Contains(out, "etcdaas-etcd-1") {
			t.Errorf("%s: the storage etcd served a client without etcdaas-apiserver's certificate:\n%s", c.pod, out)
		}
	}
	members := e.mustClient(t, ns, "with-cert", secret, endpoint, "--cacert=/certs/ca.crt",
		"--cert=/certs/client.crt", "--key=/certs/client.key", "member", "list")
	if n := strings.Count(members, ", https://"); n != 6 { // each of 3 members: an https peer and client URL
		t.Errorf("with etcdaas-apiserver's certificate, member list shows %d https URLs, want 6 (3 members):\n%s", n, members)
	}
}
