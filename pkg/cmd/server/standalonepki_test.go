package server

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/etcdaas/etcdaas/pkg/pki"
	"github.com/etcdaas/etcdaas/pkg/pki/pkitest"
)

// copyFile copies from over to, as a renewal torn between a key and its certificate leaves
// another pair's file beside one of them.
func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// expectPairOf fails unless dir/name.{crt,key} is a pair that the CA caDir/ca signed.
func expectPairOf(t *testing.T, caDir, dir, name string) {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key"))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	ca, err := pki.LoadCA(caDir, "ca")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("%s does not verify against its CA: %v", name, err)
	}
}

// TestStandalonePKIIssuesATornOrDamagedPairAgain: at start, the serving certificate beside
// the admin key (a torn pair), a truncated admin certificate, a truncated storage etcd
// server certificate and a truncated etcd client key are each issued again from their CA,
// and both CAs stay the ones the clients trust.
func TestStandalonePKIIssuesATornOrDamagedPairAgain(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	etcdDir := filepath.Join(dir, StandaloneEtcdPKIDir)
	first, err := standalonePKI(dir, net.ParseIP("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	etcdCA, err := os.ReadFile(filepath.Join(etcdDir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	copyFile(t, filepath.Join(dir, "admin.key"), filepath.Join(dir, "serving.key"))
	pkitest.Halve(t, filepath.Join(dir, "admin.crt"))
	pkitest.Halve(t, filepath.Join(etcdDir, etcdServerName+".crt"))
	pkitest.Halve(t, filepath.Join(dir, StandaloneEtcdClientName+".key"))

	again, err := standalonePKI(dir, net.ParseIP("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	if !again.ca.Cert.Equal(first.ca.Cert) {
		t.Error("the standalone CA was replaced")
	}
	if got, _ := os.ReadFile(filepath.Join(etcdDir, "ca.crt")); !bytes.Equal(got, etcdCA) {
		t.Error("the storage etcd's CA was replaced")
	}
	for _, name := range []string{"serving", "admin"} {
		expectPairOf(t, dir, dir, name)
	}
	expectPairOf(t, etcdDir, etcdDir, etcdServerName)
	expectPairOf(t, etcdDir, dir, StandaloneEtcdClientName)
	if bytes.Equal(again.serving.CertPEM, first.serving.CertPEM) || bytes.Equal(again.admin.CertPEM, first.admin.CertPEM) {
		t.Error("a damaged serving or admin pair was kept")
	}
}

// TestStandalonePKIRefusesADamagedCA: a standalone CA beside another CA's key, or a
// truncated storage etcd CA certificate, stops the start with an error naming the files,
// which stay as they are: a new CA would invalidate the admin kubeconfigs handed out.
func TestStandalonePKIRefusesADamagedCA(t *testing.T) {
	for name, damage := range map[string]func(t *testing.T, dir string) string{
		"torn standalone CA": func(t *testing.T, dir string) string {
			copyFile(t, filepath.Join(dir, StandaloneEtcdPKIDir, "ca.key"), filepath.Join(dir, "ca.key"))
			return dir
		},
		"truncated storage etcd CA": func(t *testing.T, dir string) string {
			etcdDir := filepath.Join(dir, StandaloneEtcdPKIDir)
			pkitest.Halve(t, filepath.Join(etcdDir, "ca.crt"))
			return etcdDir
		},
	} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "pki")
			if _, err := standalonePKI(dir, net.ParseIP("127.0.0.1")); err != nil {
				t.Fatal(err)
			}
			caDir := damage(t, dir)
			certPEM, _ := os.ReadFile(filepath.Join(caDir, "ca.crt"))
			_, err := standalonePKI(dir, net.ParseIP("127.0.0.1"))
			if err == nil || !strings.Contains(err.Error(), filepath.Join(caDir, "ca.crt")) || !strings.Contains(err.Error(), filepath.Join(caDir, "ca.key")) {
				t.Fatalf("err = %v, want one naming %s/ca.{crt,key}", err, caDir)
			}
			if got, _ := os.ReadFile(filepath.Join(caDir, "ca.crt")); !bytes.Equal(got, certPEM) {
				t.Error("the damaged CA was replaced")
			}
		})
	}
}

// TestWriteKubeconfigReplacesItWhole: the kubeconfig written again at start (with the admin
// certificate issued again) replaces the old file, mode 0600, instead of rewriting it in
// place: a kubectl that opened the old one reads it whole.
func TestWriteKubeconfigReplacesItWhole(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kubeconfig")
	write := func(certData string) {
		t.Helper()
		config := &rest.Config{Host: "https://127.0.0.1:6443", TLSClientConfig: rest.TLSClientConfig{
			CAData: []byte("ca"), CertData: []byte(certData), KeyData: []byte("key"),
		}}
		if err := writeKubeconfig(path, config); err != nil {
			t.Fatal(err)
		}
	}
	write("old admin certificate")
	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	open, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = open.Close() }()
	write("new admin certificate")
	if got, err := io.ReadAll(open); err != nil || !bytes.Equal(got, old) {
		t.Errorf("the kubeconfig opened before reads %d bytes (err=%v), not the old file whole", len(got), err)
	}
	kc, err := clientcmd.LoadFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(kc.AuthInfos[StandaloneAdminUser].ClientCertificateData); got != "new admin certificate" {
		t.Errorf("the kubeconfig holds the certificate %q, want the new one", got)
	}
	if info, err := os.Stat(path); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("mode %v (err=%v), want 0600", info.Mode(), err)
	}
}
