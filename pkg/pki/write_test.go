package pki

import (
	"bytes"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// readAll reads what is left of f.
func readAll(t *testing.T, f *os.File) []byte {
	t.Helper()
	data, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestWriteReplacesEachFileWhole: a renewal replaces the certificate and the key by new
// files (modes 0644 and 0600, in a directory of mode 0700) instead of rewriting them in place,
// so a reader that opened the old ones (a member's handshake) reads them whole, and nothing
// else is left in the directory.
func TestWriteReplacesEachFileWhole(t *testing.T) {
	ca, err := NewCA("ca")
	if err != nil {
		t.Fatal(err)
	}
	req := Request{CommonName: "member", IPs: []net.IP{net.ParseIP("127.0.0.1")}, Usage: ServerUsage}
	dir := filepath.Join(t.TempDir(), "pki")
	old, err := ca.LoadOrReissue(dir, "server", req)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	openCert, err := os.Open(certFile)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = openCert.Close() }()
	openKey, err := os.Open(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = openKey.Close() }()

	renewed, err := ca.Issue(req)
	if err != nil {
		t.Fatal(err)
	}
	if err := renewed.Write(dir, "server"); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, openCert); !bytes.Equal(got, old.CertPEM) {
		t.Errorf("the certificate opened before the renewal reads %d bytes, not the old certificate whole", len(got))
	}
	if got := readAll(t, openKey); !bytes.Equal(got, old.KeyPEM) {
		t.Errorf("the key opened before the renewal reads %d bytes, not the old key whole", len(got))
	}
	for path, want := range map[string][]byte{certFile: renewed.CertPEM, keyFile: renewed.KeyPEM} {
		if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s does not hold the renewed pair (err=%v)", path, err)
		}
	}
	for path, mode := range map[string]os.FileMode{dir: 0o700, certFile: 0o644, keyFile: 0o600} {
		if info, err := os.Stat(path); err != nil || info.Mode().Perm() != mode {
			t.Errorf("%s: mode %v (err=%v), want %v", path, info.Mode().Perm(), err, mode)
		}
	}
	if names := dirNames(t, dir); !slices.Equal(names, []string{"server.crt", "server.key"}) {
		t.Errorf("the directory holds %v, want server.crt and server.key only", names)
	}
}

// TestWriteNeverLeavesACertificateWithoutItsKey: the key is written first, so a write that
// fails on the key leaves no certificate (a CA's certificate without its key could sign
// nothing, and LoadOrCreateCA would refuse it).
func TestWriteNeverLeavesACertificateWithoutItsKey(t *testing.T) {
	ca, err := NewCA("ca")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// A non-empty directory where the key goes: the key cannot be renamed into place.
	if err := os.MkdirAll(filepath.Join(dir, "ca.key", "in-the-way"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := ca.Write(dir, "ca"); err == nil {
		t.Fatal("Write succeeded with a directory where the key goes")
	}
	if names := dirNames(t, dir); !slices.Equal(names, []string{"ca.key"}) {
		t.Fatalf("a write that failed on the key left %v, want nothing new", names)
	}
}

// dirNames lists the names in dir.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}
