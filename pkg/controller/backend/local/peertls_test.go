package local

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcdaas/etcdaas/pkg/controller/backend"
	"github.com/etcdaas/etcdaas/pkg/pki"
)

// TestPeerPortAcceptsOnlyThePeerCertificate: the client certificate of a TLS instance is
// handed to its users (README: <data-dir>/instances/NS/NAME/pki/client.crt, and the
// kubernetes backend's NAME-client-tls Secret) and is signed by the same CA as the members'
// peer certificate. It must open the client port only: on the peer port it would let its
// holder send raft messages, snapshots and membership requests as if it were a member.
// The members of a three-member instance still reach each other with their peer certificate.
func TestPeerPortAcceptsOnlyThePeerCertificate(t *testing.T) {
	dir := t.TempDir()
	b := newBackend(t, dir)
	defer func() { _ = b.Close() }()
	res := converge(t, b, instance("peers", 3, true))
	if len(res.Members) != 3 || !res.Converged {
		t.Fatalf("members %+v: the members do not reach each other", res.Members)
	}
	pkiDir := filepath.Join(dir, "instances", "ns", "peers", "pki")
	peerURL, clientURL := res.Members[0].PeerURL, res.Members[0].ClientURL

	if code, err := getWithCert(t, pkiDir, "peer", peerURL+"/members"); err != nil || code != http.StatusOK {
		t.Fatalf("peer port with the peer certificate: %d, %v", code, err)
	}
	if code, err := getWithCert(t, pkiDir, "client", clientURL+"/version"); err != nil || code != http.StatusOK {
		t.Fatalf("client port with the client certificate: %d, %v", code, err)
	}
	if code, err := getWithCert(t, pkiDir, "client", peerURL+"/members"); err == nil {
		t.Fatalf("peer port with the client certificate answered %d, want the connection refused", code)
	}
}

// getWithCert GETs url with the certificate and key name of pkiDir, verifying the server
// with the instance's CA, and returns the status code.
func getWithCert(t *testing.T, pkiDir, name, url string) (int, error) {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(filepath.Join(pkiDir, name+".crt"), filepath.Join(pkiDir, name+".key"))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(pkiDir, caName+".crt"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatal("no CA certificate")
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		Certificates: []tls.Certificate{pair}, RootCAs: roots, MinVersion: tls.VersionTLS12,
	}}}
	defer client.CloseIdleConnections()
	resp, err := client.Get(url)
	if err != nil {
		return 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// TestSyncRenewsTheMembersCertificates: the instance's certificates last a year; one due for
// renewal (less than a third of its lifetime left, here 10s) is issued again by the next
// Sync, and the running member serves the new one to the next client without a restart.
func TestSyncRenewsTheMembersCertificates(t *testing.T) {
	dir := t.TempDir()
	b := newBackend(t, dir)
	defer func() { _ = b.Close() }()
	inst := instance("renew", 1, true)
	res := converge(t, b, inst)
	pkiDir := filepath.Join(dir, "instances", "ns", "renew", pkiDir)
	ca, err := pki.LoadCA(pkiDir, caName)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{serverName, peerName, clientName} {
		req := pki.Request{CommonName: "renew-" + name, DNSNames: []string{"localhost"}, IPs: []net.IP{net.ParseIP("127.0.0.1")},
			Usage: pki.ServerUsage | pki.ClientUsage, Validity: 10 * time.Second}
		short, err := ca.Issue(req)
		if err != nil {
			t.Fatal(err)
		}
		if err := short.Write(pkiDir, name); err != nil {
			t.Fatal(err)
		}
	}
	converge(t, b, inst)
	for _, name := range []string{serverName, peerName, clientName} {
		if left := time.Until(certFile(t, pkiDir, name).NotAfter); left < 300*24*time.Hour {
			t.Fatalf("%s.crt expires in %v after the Sync, want it renewed for a year", name, left)
		}
	}
	if code, err := getWithCert(t, pkiDir, "client", res.Members[0].ClientURL+"/version"); err != nil || code != http.StatusOK {
		t.Fatalf("client port with the renewed client certificate: %d, %v", code, err)
	}
	served := servedCertificate(t, res.Members[0].ClientURL)
	if want := certFile(t, pkiDir, serverName); !served.Equal(want) {
		t.Fatalf("the member serves a certificate expiring %v, the renewed one expires %v", served.NotAfter, want.NotAfter)
	}
}

func certFile(t *testing.T, dir, name string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, name+".crt"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatalf("%s.crt is not PEM", name)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// servedCertificate is the certificate the server at url presents (the handshake needs no
// client certificate to see it).
func servedCertificate(t *testing.T, url string) *x509.Certificate {
	t.Helper()
	conn, err := tls.Dial("tcp", strings.TrimPrefix(url, "https://"), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // only reads the certificate
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	return conn.ConnectionState().PeerCertificates[0]
}

// TestDeletedCAFilesGiveANewCAMembersTrust: deleting a TLS instance's CA files is how a
// person replaces a damaged CA (pki.LoadOrCreateCA's error says so). The next Sync makes a
// new CA and issues the certificates again from it; the running members, which read their
// trusted CA only at start, must restart onto it. Before, they kept the old CA and refused
// each other's and the controller's new certificates: every member unreachable (0/3 ready)
// until the whole server was restarted.
func TestDeletedCAFilesGiveANewCAMembersTrust(t *testing.T) {
	dir := t.TempDir()
	b := newBackend(t, dir)
	defer func() { _ = b.Close() }()
	inst := instance("newca", 3, true)
	converge(t, b, inst)
	pkiDir := filepath.Join(dir, "instances", "ns", "newca", pkiDir)
	old := certFile(t, pkiDir, caName)
	for _, f := range []string{caName + ".crt", caName + ".key"} {
		if err := os.Remove(filepath.Join(pkiDir, f)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var res *backend.Result
	var err error
	for ctx.Err() == nil {
		if res, err = b.Sync(ctx, inst); err == nil && res.Converged && res.Ready() == 3 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil || res == nil || !res.Converged || res.Ready() != 3 {
		t.Fatalf("after the CA files were deleted: %+v, %v; want 3 ready members trusting the new CA", res, err)
	}
	if certFile(t, pkiDir, caName).Equal(old) {
		t.Fatal("the CA was not made anew")
	}
	for _, m := range res.Members {
		if code, err := getWithCert(t, pkiDir, "client", m.ClientURL+"/version"); err != nil || code != http.StatusOK {
			t.Fatalf("%s with the new client certificate: %d, %v", m.Name, code, err)
		}
	}
}
