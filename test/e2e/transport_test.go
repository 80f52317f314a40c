package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	certutil "k8s.io/client-go/util/cert"

	"github.com/etcdaas/etcdaas/pkg/pki"
	"github.com/etcdaas/etcdaas/test/e2e/framework"
)

// e2eMaxRestoreSize is etcdaas-apiserver's --max-restore-size in the e2e cluster.
const e2eMaxRestoreSize = framework.MaxRestoreBytes

// testTransport checks etcdaas-apiserver's transport: TLS below 1.2 refused, request bodies
// over the limits refused with 413 (through kube-apiserver and directly), and the serving
// certificate reloaded from disk without a restart.
func testTransport(t *testing.T, c *framework.Cluster) {
	t.Run("TLSBelow1.2Refused", func(t *testing.T) { testTLSVersions(t, c) })
	t.Run("BodyLimits", func(t *testing.T) { testBodyLimits(t, c) })
	t.Run("ServingCertificateReload", func(t *testing.T) { testServingCertReload(t, c) })
}

// servingTLS returns a TLS configuration trusting etcdaas-apiserver's serving CA.
func servingTLS(c *framework.Cluster) *tls.Config {
	roots := x509.NewCertPool()
	roots.AddCert(c.PKI.ServingCA.Cert)
	return &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}
}

func testTLSVersions(t *testing.T, c *framework.Cluster) {
	addr := framework.HostPort(c.EtcdaasPort)
	for _, v := range []struct {
		name     string
		min, max uint16
		ok       bool
	}{
		{"TLS 1.0", tls.VersionTLS10, tls.VersionTLS10, false},
		{"TLS 1.1", tls.VersionTLS10, tls.VersionTLS11, false},
		{"TLS 1.2", tls.VersionTLS12, tls.VersionTLS12, true},
		{"TLS 1.3", tls.VersionTLS13, tls.VersionTLS13, true},
	} {
		cfg := servingTLS(c)
		cfg.MinVersion, cfg.MaxVersion = v.min, v.max
		conn, err := tls.Dial("tcp", addr, cfg)
		if err == nil {
			conn.Close()
		}
		switch {
		case v.ok && err != nil:
			t.Errorf("%s handshake with etcdaas-apiserver failed: %v", v.name, err)
		case !v.ok && err == nil:
			t.Errorf("%s handshake with etcdaas-apiserver succeeded, want it refused", v.name)
		case !v.ok:
			t.Logf("%s refused: %v", v.name, err)
		}
	}
}

// testBodyLimits sends bodies one byte over each limit, as system:masters, through
// kube-apiserver and directly: a create and an update over the generic 3 MiB request
// limit, and a restore over --max-restore-size. Each must be a 413 Status.
func testBodyLimits(t *testing.T, c *framework.Cluster) {
	const ns = "e2e-limits"
	createNamespace(t, c, ns)
	mustRun(t, c.AdminKubectl(), "apiVersion: etcdaas.dev/v1beta1\nkind: ETCDInstance\nmetadata:\n  name: big\nspec:\n  replicas: 1\n", "apply", "-n", ns, "-f", "-")
	waitRunning(t, c, ns, "big", 2*time.Minute)
	master, err := c.PKI.ClusterCA.Issue(pki.Request{CommonName: "e2e-limits-master", Organization: []string{"system:masters"}, Usage: pki.ClientUsage})
	if err != nil {
		t.Fatal(err)
	}
	const requestLimit = 3 << 20 // k8s.io/apiserver's default request body limit
	// A valid object whose annotation makes the body one byte over the limit.
	object := func(limit int) []byte {
		head := `{"apiVersion":"etcdaas.dev/v1beta1","kind":"ETCDInstance","metadata":{"name":"big","annotations":{"pad":"`
		tail := `"}},"spec":{"replicas":1}}`
		return []byte(head + strings.Repeat("x", limit+1-len(head)-len(tail)) + tail)
	}
	collection := "/apis/etcdaas.dev/v1beta1/namespaces/" + ns + "/etcdinstances"
	requests := []struct {
		name, method, path, contentType string
		body                            []byte
	}{
		{"create", http.MethodPost, collection, "application/json", object(requestLimit)},
		{"update", http.MethodPut, collection + "/big", "application/json", object(requestLimit)},
		{"restore", http.MethodPost, collection + "/big/restore", "application/octet-stream", bytes.Repeat([]byte{0}, e2eMaxRestoreSize+1)},
	}
	for _, base := range []*rest.Config{
		{Host: c.Server, TLSClientConfig: rest.TLSClientConfig{CAData: c.PKI.ClusterCA.CertPEM, CertData: master.CertPEM, KeyData: master.KeyPEM}},
		{Host: "https://" + framework.HostPort(c.EtcdaasPort), TLSClientConfig: rest.TLSClientConfig{CAData: c.PKI.ServingCA.CertPEM, CertData: master.CertPEM, KeyData: master.KeyPEM}},
	} {
		client, err := rest.HTTPClientFor(base)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range requests {
			req, _ := http.NewRequestWithContext(t.Context(), r.method, base.Host+r.path, bytes.NewReader(r.body))
			req.Header.Set("Content-Type", r.contentType)
			resp, err := client.Do(req)
			if err != nil {
				t.Errorf("%s of %d bytes to %s: %v", r.name, len(r.body), base.Host, err)
				continue
			}
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			var status metav1.Status
			if resp.StatusCode != http.StatusRequestEntityTooLarge || json.Unmarshal(body, &status) != nil || status.Code != http.StatusRequestEntityTooLarge {
				t.Errorf("%s of %d bytes to %s: %s %s, want a 413 Status", r.name, len(r.body), base.Host, resp.Status, body)
				continue
			}
			t.Logf("%s of %d bytes to %s: 413 %s", r.name, len(r.body), base.Host, status.Message)
		}
	}
	// Nothing of the refused requests arrived.
	inst := waitRunning(t, c, ns, "big", time.Minute)
	if _, ok := inst.Annotations["pad"]; ok {
		t.Errorf("a refused update was stored")
	}
}

// testServingCertReload replaces etcdaas-apiserver's serving certificate files with a new
// certificate from the same CA and waits until new connections see it, with no restart:
// k8s.io/apiserver's dynamic serving certificate controller watches the files.
func testServingCertReload(t *testing.T, c *framework.Cluster) {
	addr := framework.HostPort(c.EtcdaasPort)
	serial := func() (string, error) {
		conn, err := tls.Dial("tcp", addr, servingTLS(c))
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
	pid := c.Process("etcdaas-apiserver").Pid()
	kp, err := c.PKI.ServingCA.Issue(pki.Request{
		CommonName: framework.ServiceName + "." + framework.Namespace + ".svc",
		DNSNames:   []string{framework.ServiceName + "." + framework.Namespace + ".svc", "localhost"},
		IPs:        []net.IP{net.ParseIP("127.0.0.1")},
		Usage:      pki.ServerUsage,
	})
	if err != nil {
		t.Fatal(err)
	}
	certs, err := certutil.ParseCertsPEM(kp.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	want := certs[0].SerialNumber.String()
	start := time.Now()
	if err := kp.Write(c.PKI.Dir, "etcdaas-apiserver"); err != nil {
		t.Fatal(err)
	}
	err = framework.Poll(t.Context(), 200*time.Millisecond, 2*time.Minute, "the new serving certificate served", func(ctx context.Context) (bool, error) {
		got, err := serial()
		if err != nil {
			return false, err
		}
		if got != want {
			return false, fmt.Errorf("serial %s still served (was %s before the rotation), want %s", got, before, want)
		}
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if now := c.Process("etcdaas-apiserver").Pid(); now != pid {
		t.Fatalf("etcdaas-apiserver restarted (pid %d, was %d)", now, pid)
	}
	t.Logf("new serving certificate (serial %s, was %s) served %s after the files were replaced, same process", want, before, time.Since(start).Round(10*time.Millisecond))
	// kube-apiserver still reaches it: the APIServices' caBundle signed the new one too.
	pollKubectl(t, c.AdminKubectl(), time.Minute, nil, "get", "etcdinstances", "-A")
}
