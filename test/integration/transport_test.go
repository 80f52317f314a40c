package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	certutil "k8s.io/client-go/util/cert"

	"github.com/etcdaas/etcdaas/pkg/pki"
	"github.com/etcdaas/etcdaas/test/integration/framework"
)

// TestStandaloneTransport checks the transport of the standalone mode: TLS below 1.2 refused,
// the front proxy's identity headers worth nothing (the standalone mode trusts only client
// certificates of its own CA), and the serving certificate reloaded from DataDir/pki without
// a restart.
func TestStandaloneTransport(t *testing.T) {
	s := framework.StartT(t, framework.Options{})
	host := strings.TrimPrefix(s.URL, "https://")
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(s.AdminConfig.CAData) {
		t.Fatal("no CA in the admin configuration")
	}
	pkiDir := filepath.Join(s.DataDir, "pki")
	ca, err := pki.LoadCA(pkiDir, "ca")
	if err != nil {
		t.Fatal(err)
	}
	st := standaloneTransport{s: s, host: host, roots: roots, pkiDir: pkiDir, ca: ca}

	t.Run("TLSBelow1.2Refused", st.checkTLSBelow12Refused)
	t.Run("HeadersGiveNoIdentity", st.checkHeadersGiveNoIdentity)
	t.Run("ServingCertificateReload", st.checkServingCertificateReload)
}

// standaloneTransport is a standalone server as TestStandaloneTransport's subtests reach it.
type standaloneTransport struct {
	s      *framework.Server
	host   string         // host:port of s
	roots  *x509.CertPool // the standalone CA
	pkiDir string         // DataDir/pki
	ca     *pki.CA
}

// checkTLSBelow12Refused checks that a handshake below TLS 1.2 fails and one with TLS 1.2
// succeeds.
func (st standaloneTransport) checkTLSBelow12Refused(t *testing.T) {
	host, roots := st.host, st.roots
	for _, v := range []struct {
		name     string
		min, max uint16
		ok       bool
	}{
		{"TLS 1.1", tls.VersionTLS10, tls.VersionTLS11, false},
		{"TLS 1.2", tls.VersionTLS12, tls.VersionTLS12, true},
	} {
		conn, err := tls.Dial("tcp", host, &tls.Config{RootCAs: roots, MinVersion: v.min, MaxVersion: v.max})
		if err == nil {
			conn.Close()
		}
		if (err == nil) != v.ok {
			t.Errorf("%s handshake: err = %v, want success %v", v.name, err, v.ok)
		}
	}
}

// checkHeadersGiveNoIdentity checks that the front proxy's headers claiming an admin are worth
// nothing, whatever client certificate comes with them.
func (st standaloneTransport) checkHeadersGiveNoIdentity(t *testing.T) {
	s, ca := st.s, st.ca
	stranger, err := pki.NewCA("stranger-ca")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		issuer *pki.CA
		user   string
		want   int
	}{
		{"no certificate", nil, "", http.StatusUnauthorized},
		{"certificate of another CA", stranger, "front-proxy-client", http.StatusUnauthorized},
		{"certificate of the standalone CA, not system:masters", ca, "someone", http.StatusForbidden},
	} {
		cfg := &rest.Config{Host: s.URL, TLSClientConfig: rest.TLSClientConfig{CAData: s.AdminConfig.CAData}}
		if c.issuer != nil {
			kp, err := c.issuer.Issue(pki.Request{CommonName: c.user, Usage: pki.ClientUsage})
			if err != nil {
				t.Fatal(err)
			}
			cfg.CertData, cfg.KeyData = kp.CertPEM, kp.KeyPEM
		}
		code, status := getWithSpoofedHeaders(t, cfg, s.URL+"/apis/etcdaas.dev/v1beta1/namespaces/default/etcdinstances")
		if code != c.want || int(status.Code) != c.want {
			t.Errorf("%s with X-Remote-User admin in system:masters: %d %+v, want %d", c.name, code, status, c.want)
		}
		if c.want == http.StatusForbidden && !strings.Contains(status.Message, fmt.Sprintf("User %q", c.user)) {
			t.Errorf("%s: the 403 must name %q: %s", c.name, c.user, status.Message)
		}
	}
}

// checkServingCertificateReload replaces the serving certificate in DataDir/pki and waits
// until it is served, the server still running.
func (st standaloneTransport) checkServingCertificateReload(t *testing.T) {
	s, host, roots, pkiDir, ca := st.s, st.host, st.roots, st.pkiDir, st.ca
	serial := func() (string, error) {
		conn, err := tls.Dial("tcp", host, &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12})
		if err != nil {
			return "", err
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String(), nil
	}
	before, err := serial()
	if err != nil {
		t.Fatal(err)
	}
	kp, err := ca.Issue(pki.Request{CommonName: "localhost", DNSNames: []string{"localhost"},
		IPs: []net.IP{net.ParseIP("127.0.0.1"), net.IPv6loopback}, Usage: pki.ServerUsage})
	if err != nil {
		t.Fatal(err)
	}
	certs, err := certutil.ParseCertsPEM(kp.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	want := certs[0].SerialNumber.String()
	start := time.Now()
	if err := kp.Write(pkiDir, "serving"); err != nil {
		t.Fatal(err)
	}
	var last string
	err = wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, 2*time.Minute, true, func(context.Context) (bool, error) {
		got, err := serial()
		last = fmt.Sprint(got, err)
		return err == nil && got == want, nil
	})
	if err != nil {
		t.Fatalf("the new serving certificate (serial %s) is not served: last %s (before the rotation: %s)", want, last, before)
	}
	t.Logf("new serving certificate served %s after the files were replaced, without a restart", time.Since(start).Round(10*time.Millisecond))
	select {
	case <-s.Done():
		t.Fatalf("the server stopped: %v", s.Err())
	default:
	}
}

// getWithSpoofedHeaders GETs u as cfg with the front proxy's headers claiming an admin in
// system:masters, and returns the status code and the Status answered.
func getWithSpoofedHeaders(t *testing.T, cfg *rest.Config, u string) (int, metav1.Status) {
	t.Helper()
	client, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, u, nil)
	req.Header.Set("X-Remote-User", "admin")
	req.Header.Set("X-Remote-Group", "system:masters")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var status metav1.Status
	_ = json.Unmarshal(body, &status)
	return resp.StatusCode, status
}
