package pki

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/etcdaas/etcdaas/pkg/pki/pkitest"
)

// TestLoadOrReissueIssuesATornOrDamagedPairAgain: a certificate beside another certificate's
// key (a renewal torn between its two files), a truncated certificate and a truncated key are
// each issued again from the CA on disk, which stays the same.
func TestLoadOrReissueIssuesATornOrDamagedPairAgain(t *testing.T) {
	req := Request{CommonName: "member", IPs: []net.IP{net.ParseIP("127.0.0.1")}, Usage: ServerUsage | ClientUsage}
	for name, damage := range map[string]func(t *testing.T, ca *CA, dir string){
		"torn pair": func(t *testing.T, ca *CA, dir string) {
			other, err := ca.Issue(req)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "server.key"), other.KeyPEM, 0o600); err != nil {
				t.Fatal(err)
			}
		},
		"truncated certificate": func(t *testing.T, _ *CA, dir string) { pkitest.Halve(t, filepath.Join(dir, "server.crt")) },
		"truncated key":         func(t *testing.T, _ *CA, dir string) { pkitest.Halve(t, filepath.Join(dir, "server.key")) },
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			ca, err := LoadOrCreateCA(dir, "ca", "ca")
			if err != nil {
				t.Fatal(err)
			}
			first, err := ca.LoadOrReissue(dir, "server", req)
			if err != nil {
				t.Fatal(err)
			}
			damage(t, ca, dir)
			again, err := LoadOrCreateCA(dir, "ca", "ca")
			if err != nil || !again.Cert.Equal(ca.Cert) {
				t.Fatalf("the CA was not loaded as it was (err=%v)", err)
			}
			got, err := again.LoadOrReissue(dir, "server", req)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(got.CertPEM, first.CertPEM) || !ca.fits(got.CertPEM, got.KeyPEM, req) {
				t.Fatal("the damaged pair was not issued again from the CA")
			}
			certPEM, _ := os.ReadFile(filepath.Join(dir, "server.crt"))
			keyPEM, _ := os.ReadFile(filepath.Join(dir, "server.key"))
			if !ca.fits(certPEM, keyPEM, req) {
				t.Fatal("the files on disk are not the pair issued again")
			}
		})
	}
}

// TestLoadOrIssueIssuesATornPairAgain: LoadOrIssue keeps any pair on disk, but not a
// certificate beside a key that is not its own.
func TestLoadOrIssueIssuesATornPairAgain(t *testing.T) {
	dir := t.TempDir()
	ca, err := NewCA("ca")
	if err != nil {
		t.Fatal(err)
	}
	req := Request{CommonName: "admin", Usage: ClientUsage}
	first, err := ca.LoadOrIssue(dir, "admin", req)
	if err != nil {
		t.Fatal(err)
	}
	other, err := ca.Issue(req)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "admin.key"), other.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := ca.LoadOrIssue(dir, "admin", req)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(got.CertPEM, first.CertPEM) || !ca.fits(got.CertPEM, got.KeyPEM, req) {
		t.Fatal("a certificate beside another's key was kept")
	}
}

// TestLoadOrCreateCARefusesADamagedCA: a CA whose key is another's (torn), whose certificate
// or key is truncated, or whose key is missing is refused with an error naming its files,
// and the files are left as they are: a new CA would invalidate every certificate the old
// one issued. A key without its certificate (a creation cut short) is created anew.
func TestLoadOrCreateCARefusesADamagedCA(t *testing.T) {
	for name, damage := range map[string]func(t *testing.T, dir string){
		"torn": func(t *testing.T, dir string) {
			other, err := NewCA("ca")
			if err != nil {
				t.Fatal(err)
			}
			key, err := other.KeyPEM()
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "ca.key"), key, 0o600); err != nil {
				t.Fatal(err)
			}
		},
		"truncated certificate": func(t *testing.T, dir string) { pkitest.Halve(t, filepath.Join(dir, "ca.crt")) },
		"truncated key":         func(t *testing.T, dir string) { pkitest.Halve(t, filepath.Join(dir, "ca.key")) },
		"missing key": func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, "ca.key")); err != nil {
				t.Fatal(err)
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := LoadOrCreateCA(dir, "ca", "ca"); err != nil {
				t.Fatal(err)
			}
			damage(t, dir)
			certPEM, _ := os.ReadFile(filepath.Join(dir, "ca.crt"))
			keyPEM, _ := os.ReadFile(filepath.Join(dir, "ca.key"))
			_, err := LoadOrCreateCA(dir, "ca", "ca")
			if err == nil {
				t.Fatal("a damaged CA was loaded or replaced")
			}
			for _, want := range []string{filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key"), "invalidates every certificate"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			if got, _ := os.ReadFile(filepath.Join(dir, "ca.crt")); !bytes.Equal(got, certPEM) {
				t.Error("the CA certificate was rewritten")
			}
			if got, _ := os.ReadFile(filepath.Join(dir, "ca.key")); !bytes.Equal(got, keyPEM) {
				t.Error("the CA key was rewritten")
			}
		})
	}

	t.Run("key without its certificate", func(t *testing.T) {
		dir := t.TempDir()
		first, err := LoadOrCreateCA(dir, "ca", "ca")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(filepath.Join(dir, "ca.crt")); err != nil {
			t.Fatal(err)
		}
		ca, err := LoadOrCreateCA(dir, "ca", "ca")
		if err != nil {
			t.Fatal(err)
		}
		if ca.Cert.Equal(first.Cert) {
			t.Fatal("no new CA")
		}
		if again, err := LoadCA(dir, "ca"); err != nil || !again.Cert.Equal(ca.Cert) {
			t.Fatalf("the new CA was not written whole: %v", err)
		}
	})
}

// TestLoadCARefusesALeafCertificate: a certificate that is not a CA's cannot be loaded as
// one, whatever its key.
func TestLoadCARefusesALeafCertificate(t *testing.T) {
	ca, err := NewCA("ca")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(Request{CommonName: "leaf", Usage: ClientUsage})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := leaf.Write(dir, "ca"); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCA(dir, "ca"); err == nil {
		t.Fatalf("a leaf certificate loaded as a CA: %v", err)
	}
}
