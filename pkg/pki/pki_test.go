package pki

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestIssuedCertificatesVerifyAgainstTheirCA(t *testing.T) {
	ca, err := NewCA("test-ca")
	if err != nil {
		t.Fatal(err)
	}
	server, err := ca.Issue(Request{CommonName: "server", DNSNames: []string{"localhost"}, IPs: []net.IP{net.ParseIP("127.0.0.1")}, Usage: ServerUsage})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(server.CertPEM, server.KeyPEM)
	if err != nil {
		t.Fatalf("issued pair does not load: %v", err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.CertPEM)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "localhost", KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Fatalf("server certificate does not verify: %v", err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Fatal("a server-only certificate verified for client auth")
	}
	other, _ := NewCA("other")
	otherRoots := x509.NewCertPool()
	otherRoots.AppendCertsFromPEM(other.CertPEM)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: otherRoots}); err == nil {
		t.Fatal("certificate verified against an unrelated CA")
	}
}

func TestLoadOrCreateCAReusesTheWrittenCA(t *testing.T) {
	dir := t.TempDir()
	first, err := LoadOrCreateCA(dir, "ca", "reuse")
	if err != nil {
		t.Fatal(err)
	}
	second, err := LoadOrCreateCA(dir, "ca", "reuse")
	if err != nil {
		t.Fatal(err)
	}
	if !first.Cert.Equal(second.Cert) {
		t.Fatal("a second LoadOrCreateCA made a new CA instead of loading the first")
	}
	client, err := second.LoadOrIssue(dir, "admin", Request{CommonName: "admin", Organization: []string{"system:masters"}, Usage: ClientUsage})
	if err != nil {
		t.Fatal(err)
	}
	again, err := first.LoadOrIssue(dir, "admin", Request{CommonName: "someone-else", Usage: ClientUsage})
	if err != nil {
		t.Fatal(err)
	}
	if string(client.CertPEM) != string(again.CertPEM) {
		t.Fatal("LoadOrIssue issued a new certificate although one was on disk")
	}
}

func TestLoadOrReissueReplacesWhatItsCADidNotSign(t *testing.T) {
	dir := t.TempDir()
	ca, err := NewCA("etcd-ca")
	if err != nil {
		t.Fatal(err)
	}
	req := Request{CommonName: "member", IPs: []net.IP{net.ParseIP("127.0.0.1")}, Usage: ServerUsage | ClientUsage}
	first, err := ca.LoadOrReissue(dir, "server", req)
	if err != nil {
		t.Fatal(err)
	}
	again, err := ca.LoadOrReissue(dir, "server", req)
	if err != nil {
		t.Fatal(err)
	}
	if string(again.CertPEM) != string(first.CertPEM) {
		t.Fatal("a fitting certificate was issued again instead of reused")
	}

	// The CA was lost and made anew: the old certificate is not its own.
	newCA, err := NewCA("etcd-ca")
	if err != nil {
		t.Fatal(err)
	}
	replaced, err := newCA.LoadOrReissue(dir, "server", req)
	if err != nil {
		t.Fatal(err)
	}
	if string(replaced.CertPEM) == string(first.CertPEM) || !newCA.fits(replaced.CertPEM, replaced.KeyPEM, req) {
		t.Fatal("a certificate of another CA was kept")
	}

	// A request for more (another IP, a usage) than the stored certificate covers.
	for name, more := range map[string]Request{
		"IP":    {CommonName: "member", IPs: []net.IP{net.ParseIP("127.0.0.1"), net.IPv6loopback}, Usage: ServerUsage | ClientUsage},
		"usage": {CommonName: "member", Usage: ClientUsage},
	} {
		onlyServer, err := newCA.Issue(Request{CommonName: "member", IPs: []net.IP{net.ParseIP("127.0.0.1")}, Usage: ServerUsage})
		if err != nil {
			t.Fatal(err)
		}
		if err := onlyServer.Write(dir, name); err != nil {
			t.Fatal(err)
		}
		got, err := newCA.LoadOrReissue(dir, name, more)
		if err != nil {
			t.Fatal(err)
		}
		if string(got.CertPEM) == string(onlyServer.CertPEM) {
			t.Errorf("%s: a certificate that does not cover the request was kept", name)
		}
	}

	// A damaged key is replaced too.
	if err := os.WriteFile(filepath.Join(dir, "server.key"), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := newCA.LoadOrReissue(dir, "server", req); err != nil || !newCA.fits(got.CertPEM, got.KeyPEM, req) {
		t.Fatalf("a damaged key: %v", err)
	}
}

// TestLoadOrReissueRenewsACertificateDueForRenewal: a certificate with less than a third of
// its lifetime left is issued again, for the default lifetime; one with more is kept.
func TestLoadOrReissueRenewsACertificateDueForRenewal(t *testing.T) {
	dir := t.TempDir()
	ca, err := NewCA("ca")
	if err != nil {
		t.Fatal(err)
	}
	req := Request{CommonName: "member", Usage: ClientUsage}
	// Issue backdates by a minute: 10s of 70s are left.
	due := req
	due.Validity = 10 * time.Second
	old, err := ca.Issue(due)
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Write(dir, "client"); err != nil {
		t.Fatal(err)
	}
	renewed, err := ca.LoadOrReissue(dir, "client", req)
	if err != nil {
		t.Fatal(err)
	}
	if string(renewed.CertPEM) == string(old.CertPEM) {
		t.Fatal("a certificate with 10s of 70s left was kept")
	}
	if left := time.Until(leafOf(t, renewed.CertPEM).NotAfter); left < DefaultValidity-time.Hour {
		t.Fatalf("renewed for %v, want %v", left, DefaultValidity)
	}
	if again, err := ca.LoadOrReissue(dir, "client", req); err != nil || string(again.CertPEM) != string(renewed.CertPEM) {
		t.Fatalf("a fresh certificate was not kept: %v", err)
	}
}

func leafOf(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(certPEM)
	if block == nil {
		t.Fatal("not PEM")
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return leaf
}

// TestParseCARefusesAKeyNotItsOwn: a CA read back from its PEM files signs again; a key of
// another CA, or a leaf certificate, is refused.
func TestParseCARefusesAKeyNotItsOwn(t *testing.T) {
	ca, err := NewCA("ca")
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewCA("other")
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ca.KeyPEM()
	otherKey, _ := other.KeyPEM()
	parsed, err := ParseCA(ca.CertPEM, key)
	if err != nil || !parsed.Cert.Equal(ca.Cert) {
		t.Fatalf("the CA's own files: %v", err)
	}
	if _, err := ParseCA(ca.CertPEM, otherKey); err == nil {
		t.Fatal("a key of another CA was accepted")
	}
	leaf, err := ca.Issue(Request{CommonName: "leaf", Usage: ClientUsage})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseCA(leaf.CertPEM, leaf.KeyPEM); err == nil {
		t.Fatal("a leaf certificate was accepted as a CA")
	}
}

// TestFitsAcceptsACertificateOfAnyTrustedCA: a certificate signed by any CA of the roots
// fits until it is due; one of a CA not among them does not.
func TestFitsAcceptsACertificateOfAnyTrustedCA(t *testing.T) {
	oldCA, _ := NewCA("old")
	newCA, _ := NewCA("new")
	req := Request{CommonName: "server", DNSNames: []string{"localhost"}, Usage: ServerUsage}
	kp, err := oldCA.Issue(req)
	if err != nil {
		t.Fatal(err)
	}
	both := x509.NewCertPool()
	both.AddCert(oldCA.Cert)
	both.AddCert(newCA.Cert)
	if !Fits(kp.CertPEM, kp.KeyPEM, both, req) {
		t.Fatal("a certificate of a trusted CA does not fit")
	}
	onlyNew := x509.NewCertPool()
	onlyNew.AddCert(newCA.Cert)
	if Fits(kp.CertPEM, kp.KeyPEM, onlyNew, req) {
		t.Fatal("a certificate of an untrusted CA fits")
	}
	other := req
	other.DNSNames = []string{"db.ns.svc"}
	if Fits(kp.CertPEM, kp.KeyPEM, both, other) {
		t.Fatal("a certificate for other names fits")
	}
}

// TestLoadOrReissueReplacesACertificateForAnotherSubject: a certificate that its CA signed
// for the right names and usage but another common name or organization is issued again. The
// common name is what a member's peer port admits (etcd --peer-cert-allowed-cn) and the user
// etcd's auth and the API server's authorization see; the organization is the user's group.
func TestLoadOrReissueReplacesACertificateForAnotherSubject(t *testing.T) {
	ca, err := NewCA("ca")
	if err != nil {
		t.Fatal(err)
	}
	req := Request{CommonName: "db-peer", Organization: []string{"members"}, DNSNames: []string{"localhost"}, Usage: ServerUsage | ClientUsage}
	for name, other := range map[string]Request{
		"common name":  {CommonName: "db2-peer", Organization: req.Organization, DNSNames: req.DNSNames, Usage: req.Usage},
		"organization": {CommonName: req.CommonName, Organization: []string{"system:masters"}, DNSNames: req.DNSNames, Usage: req.Usage},
	} {
		dir := t.TempDir()
		stale, err := ca.Issue(other)
		if err != nil {
			t.Fatal(err)
		}
		if err := stale.Write(dir, "peer"); err != nil {
			t.Fatal(err)
		}
		got, err := ca.LoadOrReissue(dir, "peer", req)
		if err != nil {
			t.Fatal(err)
		}
		if leaf := leafOf(t, got.CertPEM); leaf.Subject.CommonName != "db-peer" || !slices.Equal(leaf.Subject.Organization, req.Organization) {
			t.Errorf("another %s: kept a certificate for %s", name, leaf.Subject)
		}
	}
}
