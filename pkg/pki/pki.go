// Package pki creates the certificate authorities and certificates etcdaas needs: the
// standalone server's CA, serving and admin certificates, a CA per TLS-enabled etcd instance
// with its server, peer and client certificates, and the test harness's cluster PKI.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/keyutil"

	"github.com/etcdaas/etcdaas/pkg/durable"
)

// DefaultValidity is how long issued certificates are valid unless a request says otherwise.
const DefaultValidity = 365 * 24 * time.Hour

// caValidity is how long a certificate authority is valid.
const caValidity = 10 * 365 * 24 * time.Hour

// CA is a certificate authority able to issue certificates.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	// CertPEM is Cert in PEM form, for bundles and kubeconfigs.
	CertPEM []byte
}

// KeyPair is an issued certificate and its private key, both in PEM form.
type KeyPair struct {
	CertPEM []byte
	KeyPEM  []byte
}

// Usage says what an issued certificate is for.
type Usage int

// Certificate usages.
const (
	// ServerUsage is a TLS server certificate.
	ServerUsage Usage = 1 << iota
	// ClientUsage is a TLS client certificate.
	ClientUsage
)

// Request describes a certificate to issue.
type Request struct {
	CommonName   string
	Organization []string
	DNSNames     []string
	IPs          []net.IP
	Usage        Usage
	// Validity defaults to DefaultValidity.
	Validity time.Duration
}

// NewCA creates a self-signed certificate authority with an ECDSA P-256 key.
func NewCA(commonName string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating CA key: %w", err)
	}
	now := time.Now()
	template := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("self-signing CA %q: %w", commonName, err)
	}
	parsed, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: parsed, Key: key, CertPEM: encodeCert(der)}, nil
}

// Issue signs a new certificate for req with a fresh ECDSA P-256 key.
func (ca *CA) Issue(req Request) (*KeyPair, error) {
	if req.Usage == 0 {
		return nil, errors.New("pki: a certificate request needs a usage")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating key for %q: %w", req.CommonName, err)
	}
	validity := req.Validity
	if validity == 0 {
		validity = DefaultValidity
	}
	now := time.Now()
	template := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: req.CommonName, Organization: req.Organization},
		DNSNames:     req.DNSNames,
		IPAddresses:  req.IPs,
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
	}
	if req.Usage&ServerUsage != 0 {
		template.ExtKeyUsage = append(template.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if req.Usage&ClientUsage != 0 {
		template.ExtKeyUsage = append(template.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	der, err := x509.CreateCertificate(rand.Reader, template, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, fmt.Errorf("signing certificate for %q: %w", req.CommonName, err)
	}
	keyPEM, err := keyutil.MarshalPrivateKeyToPEM(key)
	if err != nil {
		return nil, err
	}
	return &KeyPair{CertPEM: encodeCert(der), KeyPEM: keyPEM}, nil
}

// KeyPEM returns the CA's private key in PEM form.
func (ca *CA) KeyPEM() ([]byte, error) {
	return keyutil.MarshalPrivateKeyToPEM(ca.Key)
}

// Write stores the CA as dir/name.crt and dir/name.key (mode 0600 for the key), each
// replaced crash-safely (KeyPair.Write).
func (ca *CA) Write(dir, name string) error {
	keyPEM, err := ca.KeyPEM()
	if err != nil {
		return err
	}
	return (&KeyPair{CertPEM: ca.CertPEM, KeyPEM: keyPEM}).Write(dir, name)
}

// Write stores the pair as dir/name.key (mode 0600) then dir/name.crt (mode 0644), creating
// dir (mode 0700) when missing. Each file is replaced whole (durable.WriteFile), so a crash
// or a power loss leaves the old file or the new, never a truncated one; between the two a
// new key can sit beside the old certificate, a torn pair the loaders (LoadCA, LoadOrReissue)
// detect. The key goes first so that a CA written for the first time is never left as a
// certificate without its key.
func (kp *KeyPair) Write(dir, name string) error {
	if err := durable.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := durable.WriteFile(filepath.Join(dir, name+".key"), kp.KeyPEM, 0o600); err != nil {
		return err
	}
	return durable.WriteFile(filepath.Join(dir, name+".crt"), kp.CertPEM, 0o644)
}

// LoadCA reads a CA written by (*CA).Write. It fails unless the certificate is a CA's and
// the key is its own: a key of another CA beside it (a torn pair) would sign certificates
// that nothing verifies.
func LoadCA(dir, name string) (*CA, error) {
	certFile, keyFile := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, err
	}
	certs, err := cert.ParseCertsPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", certFile, err)
	}
	key, err := keyutil.PrivateKeyFromFile(keyFile)
	if err != nil {
		return nil, err
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s is not a signing key", keyFile)
	}
	if !certs[0].IsCA {
		return nil, fmt.Errorf("%s is not a CA's certificate", certFile)
	}
	if !ownKey(signer, certs[0]) {
		return nil, fmt.Errorf("%s is not the key of %s", keyFile, certFile)
	}
	return &CA{Cert: certs[0], Key: signer, CertPEM: certPEM}, nil
}

// ownKey reports whether key is the private key of c.
func ownKey(key crypto.Signer, c *x509.Certificate) bool {
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(c.PublicKey)
}

// ParseCA reads a CA from its certificate and key in PEM form, as (*CA).KeyPEM and CertPEM
// give them. It fails unless the certificate is a CA's, valid now, and the key is its own.
func ParseCA(certPEM, keyPEM []byte) (*CA, error) {
	certs, err := cert.ParseCertsPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("parsing the CA certificate: %w", err)
	}
	key, err := keyutil.ParsePrivateKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("parsing the CA key: %w", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, errors.New("the CA key is not a signing key")
	}
	ca := certs[0]
	switch {
	case !ownKey(signer, ca):
		return nil, errors.New("the CA key does not belong to the CA certificate")
	case !ca.IsCA:
		return nil, errors.New("the CA certificate is not a CA's")
	case time.Now().After(ca.NotAfter) || time.Now().Before(ca.NotBefore):
		return nil, fmt.Errorf("the CA certificate is valid from %v to %v only", ca.NotBefore, ca.NotAfter)
	}
	return &CA{Cert: ca, Key: signer, CertPEM: encodeCert(ca.Raw)}, nil
}

// DueForRenewal reports whether less than a third of the CA's lifetime is left, the rule of
// Fits for the certificates it issues: a CA past it is to be replaced while it is still
// trusted, before certificates it issues for DefaultValidity could outlive it.
func (ca *CA) DueForRenewal() bool { return dueForRenewal(ca.Cert, time.Now()) }

// LoadOrCreateCA loads the CA dir/name.{crt,key}, creating and writing it when its
// certificate is absent, so a restarted server keeps the CA its clients trust. A CA whose
// files are damaged, whose key is missing or is not its own, is an error naming the files
// rather than replaced: a new CA would invalidate every certificate the old one issued, the
// client certificates handed out with them (kubeadm, too, refuses CA files it cannot load).
// Write puts the key first, so a crash while creating a CA leaves a key without its
// certificate, which is created anew here.
func LoadOrCreateCA(dir, name, commonName string) (*CA, error) {
	ca, err := LoadCA(dir, name)
	if err == nil {
		return ca, nil
	}
	certFile := filepath.Join(dir, name+".crt")
	if _, statErr := os.Stat(certFile); !errors.Is(statErr, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: restore the CA's files, or delete %s and %s to create a new CA, "+
			"which invalidates every certificate the old one issued", err, certFile, filepath.Join(dir, name+".key"))
	}
	ca, err = NewCA(commonName)
	if err != nil {
		return nil, err
	}
	if err := ca.Write(dir, name); err != nil {
		return nil, err
	}
	return ca, nil
}

// LoadOrIssue returns dir/name.{crt,key} when both exist and are a pair (the key is the
// certificate's), else issues them from ca and writes them.
func (ca *CA) LoadOrIssue(dir, name string, req Request) (*KeyPair, error) {
	return ca.loadOrIssue(dir, name, req, func(certPEM, keyPEM []byte) bool {
		_, err := tls.X509KeyPair(certPEM, keyPEM)
		return err == nil
	})
}

// loadOrIssue returns dir/name.{crt,key} when both exist and keep accepts them, else issues
// them from ca for req and writes them.
func (ca *CA) loadOrIssue(dir, name string, req Request, keep func(certPEM, keyPEM []byte) bool) (*KeyPair, error) {
	certPEM, certErr := os.ReadFile(filepath.Join(dir, name+".crt"))
	keyPEM, keyErr := os.ReadFile(filepath.Join(dir, name+".key"))
	if certErr == nil && keyErr == nil && keep(certPEM, keyPEM) {
		return &KeyPair{CertPEM: certPEM, KeyPEM: keyPEM}, nil
	}
	kp, err := ca.Issue(req)
	if err != nil {
		return nil, err
	}
	if err := kp.Write(dir, name); err != nil {
		return nil, err
	}
	return kp, nil
}

func encodeCert(der []byte) []byte {
	return pemBlock("CERTIFICATE", der)
}

func serial() *big.Int {
	limit := new(big.Int).Lsh(big.NewInt(1), 127)
	n, err := rand.Int(rand.Reader, limit)
	if err != nil {
		// crypto/rand never fails on Linux; a fixed serial would still be a valid certificate.
		return big.NewInt(time.Now().UnixNano())
	}
	return n
}

// LoadOrReissue returns dir/name.{crt,key} when they are a pair that ca signed, valid now
// and for more than a third of their lifetime yet (so renewed after two thirds, as
// cert-manager does by default), for req's common name, organizations, usage and every IP and
// DNS name (Fits);
// otherwise it issues them from ca and writes them. A server that owns both ends of a connection (the standalone's storage etcd
// and its client) uses it, so that a lost CA, a stale or damaged file is replaced on start
// rather than refused at the first handshake.
func (ca *CA) LoadOrReissue(dir, name string, req Request) (*KeyPair, error) {
	return ca.loadOrIssue(dir, name, req, func(certPEM, keyPEM []byte) bool { return ca.fits(certPEM, keyPEM, req) })
}

// fits reports whether certPEM and keyPEM are a pair that ca signed, valid now and not due
// for renewal, for req's subject, usage, IPs and DNS names (Fits).
func (ca *CA) fits(certPEM, keyPEM []byte, req Request) bool {
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	return Fits(certPEM, keyPEM, roots, req)
}

// Fits reports whether certPEM and keyPEM are a pair that one of roots signed, valid now and
// for more than a third of its lifetime yet (LoadOrReissue's rule), for req's common name and
// organizations (who it authenticates as: the user, the groups, the peer a member's
// --peer-cert-allowed-cn admits), usage and every IP and DNS name of req. A pair that does
// not fit is due to be issued again.
func Fits(certPEM, keyPEM []byte, roots *x509.CertPool, req Request) bool {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return false
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return false
	}
	if dueForRenewal(leaf, time.Now()) || leaf.Subject.CommonName != req.CommonName || !slices.Equal(leaf.Subject.Organization, req.Organization) {
		return false
	}
	var usages []x509.ExtKeyUsage
	if req.Usage&ServerUsage != 0 {
		usages = append(usages, x509.ExtKeyUsageServerAuth)
	}
	if req.Usage&ClientUsage != 0 {
		usages = append(usages, x509.ExtKeyUsageClientAuth)
	}
	// Verify accepts a chain valid for any one of the usages: check each.
	for _, u := range usages {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{u}}); err != nil {
			return false
		}
	}
	for _, ip := range req.IPs {
		if leaf.VerifyHostname(ip.String()) != nil {
			return false
		}
	}
	for _, name := range req.DNSNames {
		if leaf.VerifyHostname(name) != nil {
			return false
		}
	}
	return true
}

// dueForRenewal reports whether less than a third of leaf's lifetime is left at now.
func dueForRenewal(leaf *x509.Certificate, now time.Time) bool {
	lifetime := leaf.NotAfter.Sub(leaf.NotBefore)
	return leaf.NotAfter.Sub(now) < lifetime/3
}
