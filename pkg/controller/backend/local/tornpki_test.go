package local

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcdaas/etcdaas/pkg/pki"
	"github.com/etcdaas/etcdaas/pkg/pki/pkitest"
)

// TestSyncIssuesATornOrDamagedPairAgain: on a running TLS instance, a server certificate
// beside another certificate's key (a renewal torn between its files), a truncated peer key
// and a truncated client certificate are issued again by the next Sync from the same CA:
// the member serves the new server certificate and the new client certificate opens the
// client port. A CA with a key that is not its own is not replaced: Sync fails naming its
// files, and leaves them and the issued certificates as they are.
func TestSyncIssuesATornOrDamagedPairAgain(t *testing.T) {
	dir := t.TempDir()
	b := newBackend(t, dir)
	defer func() { _ = b.Close() }()
	inst := instance("torn", 1, true)
	converge(t, b, inst)
	p := filepath.Join(dir, "instances", "ns", "torn", pkiDir)
	ca, err := pki.LoadCA(p, caName)
	if err != nil {
		t.Fatal(err)
	}
	other, err := ca.Issue(pki.Request{CommonName: "other", Usage: pki.ClientUsage})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p, serverName+".key"), other.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	pkitest.Halve(t, filepath.Join(p, peerName+".key"))
	pkitest.Halve(t, filepath.Join(p, clientName+".crt"))

	res := converge(t, b, inst)
	if again, err := pki.LoadCA(p, caName); err != nil || !again.Cert.Equal(ca.Cert) {
		t.Fatalf("the CA changed or does not load: %v", err)
	}
	if code, err := getWithCert(t, p, clientName, res.Members[0].ClientURL+"/version"); err != nil || code != http.StatusOK {
		t.Fatalf("client port with the client certificate issued again: %d, %v", code, err)
	}
	if served, want := servedCertificate(t, res.Members[0].ClientURL), certFile(t, p, serverName); !served.Equal(want) {
		t.Fatal("the member does not serve the server certificate issued again")
	}
	if _, err := os.Stat(filepath.Join(p, peerName+".crt")); err != nil {
		t.Fatal(err)
	}

	otherCA, err := pki.NewCA("other")
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := otherCA.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p, caName+".key"), otherKey, 0o600); err != nil {
		t.Fatal(err)
	}
	clientBefore, _ := os.ReadFile(filepath.Join(p, clientName+".crt"))
	_, err = b.Sync(context.Background(), inst)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(p, caName+".crt")) || !strings.Contains(err.Error(), filepath.Join(p, caName+".key")) {
		t.Fatalf("Sync with a torn CA: err = %v, want one naming its files", err)
	}
	if again := certFile(t, p, caName); !again.Equal(ca.Cert) {
		t.Fatal("a torn CA was replaced")
	}
	if after, _ := os.ReadFile(filepath.Join(p, clientName+".crt")); !bytes.Equal(after, clientBefore) {
		t.Fatal("the client certificate was issued again from a torn CA")
	}
}
