package local

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
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
