package cluster

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/keyutil"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	"github.com/etcdaas/etcdaas/pkg/pki"
	"github.com/etcdaas/etcdaas/test/e2e/framework"
)

// The TLS Secret's certificates, each with its key (keys of Secret NAME-tls).
var tlsLeaves = []struct{ cert, key string }{
	{"server.crt", "server.key"}, {"peer.crt", "peer.key"}, {"client.crt", "client.key"},
}

// agedDueIn is how long after they are written the aged certificates of testTLSRenewal
// become due: long enough for the member to serve them first (the kubelet refreshes the
// volume within seconds of the pod update that stages them), short to keep the tier short.
const agedDueIn = 60 * time.Second

// kubeletRefresh bounds the wait for the kubelet to put a changed Secret into a running
// member's volume by itself. The node's kubelet (node.kubeletConfig) sets neither
// syncFrequency nor configMapAndSecretChangeDetectionStrategy, so they are the defaults, 1m
// and Watch: the kubelet's copy of the Secret follows a watch, but it rewrites the volume
// (an atomic symlink swap, for a volume mounted without subPath) only when it syncs the
// pod: at the periodic resync, every syncFrequency plus up to 50% jitter (60 to 90 s), or
// at a change of the pod.
const kubeletRefresh = 3 * time.Minute

// memberState is what tells a member pod was restarted or replaced.
type memberState struct {
	uid      types.UID
	restarts int32
}

// testTLSRenewal shows on the node that a TLS instance's certificates are issued again once
// due and served without restarting a member. Certificates of a year issued from the
// instance's CA eight months ago, due agedDueIn after they are written, stand in for the
// time passing; the member serves them; once due, a Sync issues new ones (Event
// CertificatesRenewed) into NAME-tls and NAME-client-tls; after the kubelet's own refresh
// the member serves the new server certificate, a client with NAME-client-tls is served,
// and no member pod restarted.
func testTLSRenewal(t *testing.T, e *etcdaasInstall, figs *figures, ns, name string) {
	ctx := t.Context()
	before := memberStates(t, e, ns, name)
	ca := instanceCA(t, e, ns, name)
	aged, due := stageAgedCertificates(t, e, ca, ns, name)
	// The staging stands in for months passing, so the test does not wait for the kubelet's
	// periodic resync here: a change of the pod makes the kubelet sync it, and so rewrite
	// its Secret volumes, at once (again at each try: its copy of the Secret, which follows
	// a watch of its own, may not have had the change yet).
	e.waitServed(t, ns, name, "aged", aged, time.Until(due)-5*time.Second, func() { touchPods(t, e, ns, name) })
	time.Sleep(time.Until(due) + time.Second)
	// The controller looks at a converged instance every 15 s; a change of the instance
	// makes it Sync now.
	mustRun(t, e.kubectl(e.c.Tools[framework.Kubectl]), "", "annotate", "--overwrite", "etcdinstances.etcdaas.dev/"+name, "-n", ns,
		"test.etcdaas.dev/nudge="+time.Now().UTC().Format("150405"))
	selector := fields.Set{"regarding.name": name, "reason": "CertificatesRenewed"}.AsSelector().String()
	if err := pollEvents(ctx, e, ns, selector, "Issued the server, peer, client certificates again"); err != nil {
		dumpNamespace(t, e.c, ns)
		t.Fatal(err)
	}
	renewed := time.Now()
	server := checkRenewed(t, e, ca, ns, name, due)
	// No pod change from here: the kubelet's periodic resync puts the new certificates into
	// the volume. Its last sync was at the staging's touch, so that comes 60 to 90 s after
	// the staging, close after the renewal (agedDueIn): this wait is shorter than a
	// renewal's at any time of the cycle would be (up to kubeletRefresh).
	e.waitServed(t, ns, name, "renewed", server, kubeletRefresh, nil)
	figs.add(t, "TLS renewal -> served (kubelet refresh)", time.Since(renewed))
	// The check is exact: a client trusting only the staged certificate is refused now.
	if out, ok, err := e.clientPod(ctx, ns, "served-aged-after", pinSecret(name, "aged"), pinnedGet(ns, name)...); err != nil || ok {
		t.Errorf("a client trusting only the staged server certificate, after the renewal: err %v, served %t:\n%s", err, ok, out)
	}
	withCert := []string{fmt.Sprintf("--endpoints=https://%s.%s.svc.cluster.local:2379", name, ns),
		"--cacert=/certs/ca.crt", "--cert=/certs/client.crt", "--key=/certs/client.key"}
	const value = "written-after-the-renewal"
	e.mustClient(t, ns, "renewed-put", name+"-client-tls", append(withCert, "put", "/renewed", value)...)
	if got := e.mustClient(t, ns, "renewed-get", name+"-client-tls", append(withCert, "get", "/renewed", "--print-value-only")...); got != value {
		t.Errorf("after the renewal, /renewed = %q, want %q", got, value)
	}
	if after := memberStates(t, e, ns, name); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("member pods (UID, restarts) were %v before the renewal, %v after: a member restarted", before, after)
	}
}

// memberStates are the UID and container restarts of each member pod of an instance.
func memberStates(t *testing.T, e *etcdaasInstall, ns, name string) map[string]memberState {
	t.Helper()
	pods, err := e.c.Kube.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{LabelSelector: etcdaas.MemberSelector(name)})
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]memberState{}
	for _, p := range pods.Items {
		s := memberState{uid: p.UID}
		for _, c := range p.Status.ContainerStatuses {
			s.restarts += c.RestartCount
		}
		states[p.Name] = s
	}
	if len(states) == 0 {
		t.Fatalf("no member pod of %s/%s", ns, name)
	}
	return states
}

// instanceCA reads the instance's CA from Secret NAME-ca.
func instanceCA(t *testing.T, e *etcdaasInstall, ns, name string) *pki.CA {
	t.Helper()
	s, err := e.c.Kube.CoreV1().Secrets(ns).Get(t.Context(), name+"-ca", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.ParseCA(s.Data["ca.crt"], s.Data["ca.key"])
	if err != nil {
		t.Fatalf("Secret %s-ca: %v", name, err)
	}
	return ca
}

// stageAgedCertificates replaces the server, peer and client certificates of Secret NAME-tls
// with copies (same names and usages, new keys) from ca that have a year's lifetime and
// become due (less than a third of it left) agedDueIn from now. It returns the new server
// certificate and when they are due.
func stageAgedCertificates(t *testing.T, e *etcdaasInstall, ca *pki.CA, ns, name string) ([]byte, time.Time) {
	t.Helper()
	secrets := e.c.Kube.CoreV1().Secrets(ns)
	s, err := secrets.Get(t.Context(), name+"-tls", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	due := time.Now().Add(agedDueIn)
	notAfter := due.Add(pki.DefaultValidity / 3)
	for _, l := range tlsLeaves {
		if s.Data[l.cert], s.Data[l.key], err = reissue(ca, s.Data[l.cert], notAfter.Add(-pki.DefaultValidity), notAfter); err != nil {
			t.Fatalf("%s of Secret %s: %v", l.cert, s.Name, err)
		}
	}
	if _, err := secrets.Update(t.Context(), s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Logf("staged certificates valid from %s to %s, due at %s", notAfter.Add(-pki.DefaultValidity).Format(time.DateTime), notAfter.Format(time.DateTime), due.Format(time.TimeOnly))
	return s.Data["server.crt"], due
}

// reissue signs with ca a certificate for the names and usages of certPEM's, with a new key,
// valid from notBefore to notAfter, and returns it and its key in PEM form.
func reissue(ca *pki.CA, certPEM []byte, notBefore, notAfter time.Time) ([]byte, []byte, error) {
	certs, err := cert.ParseCertsPEM(certPEM)
	if err != nil {
		return nil, nil, err
	}
	c := certs[0]
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	template := &x509.Certificate{
		SerialNumber: serial, Subject: c.Subject, DNSNames: c.DNSNames, IPAddresses: c.IPAddresses,
		NotBefore: notBefore, NotAfter: notAfter, KeyUsage: c.KeyUsage, ExtKeyUsage: c.ExtKeyUsage,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err := keyutil.MarshalPrivateKeyToPEM(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

// touchPods changes an annotation of the instance's member pods, which makes the kubelet
// sync them, and so refresh their Secret volumes, without waiting for its periodic resync.
// Nothing else reads the annotation; the pods keep running.
func touchPods(t *testing.T, e *etcdaasInstall, ns, name string) {
	t.Helper()
	patch := fmt.Appendf(nil, `{"metadata":{"annotations":{"test.etcdaas.dev/touched":%q}}}`, time.Now().UTC().Format(time.RFC3339Nano))
	for pod := range memberStates(t, e, ns, name) {
		if _, err := e.c.Kube.CoreV1().Pods(ns).Patch(t.Context(), pod, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

// checkRenewed checks that Secrets NAME-tls and NAME-client-tls hold certificates from ca
// issued once due (at due, or later) and valid for a year, the client certificate the same
// in both, and returns the server certificate.
func checkRenewed(t *testing.T, e *etcdaasInstall, ca *pki.CA, ns, name string, due time.Time) []byte {
	t.Helper()
	secrets := e.c.Kube.CoreV1().Secrets(ns)
	tlsData, err := secrets.Get(t.Context(), name+"-tls", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	for _, l := range tlsLeaves {
		certs, err := cert.ParseCertsPEM(tlsData.Data[l.cert])
		if err != nil {
			t.Fatalf("%s of Secret %s: %v", l.cert, tlsData.Name, err)
		}
		c := certs[0]
		if _, err := c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			t.Errorf("%s of Secret %s is not from the CA of Secret %s-ca: %v", l.cert, tlsData.Name, name, err)
		}
		// pki backdates a certificate by a minute.
		if c.NotBefore.Before(due.Add(-2*time.Minute)) || c.NotAfter.Before(due.Add(pki.DefaultValidity-time.Minute)) {
			t.Errorf("%s of Secret %s is valid from %s to %s, want a year from its renewal after %s", l.cert, tlsData.Name, c.NotBefore, c.NotAfter, due)
		}
	}
	// The Event may come before the Sync's write of NAME-client-tls.
	err = framework.Poll(t.Context(), 250*time.Millisecond, 30*time.Second, name+"-client-tls renewed", func(ctx context.Context) (bool, error) {
		client, err := secrets.Get(ctx, name+"-client-tls", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, k := range []string{"ca.crt", "client.crt", "client.key"} {
			if string(client.Data[k]) != string(tlsData.Data[k]) {
				return false, fmt.Errorf("%s differs from %s's", k, tlsData.Name)
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return tlsData.Data["server.crt"]
}

// waitServed waits until the instance's client Service serves the server certificate
// serverCert: a client pod whose only trusted certificate is serverCert itself (with the
// client certificate of NAME-client-tls) reads a key, which the handshake allows only when
// the member presents exactly that certificate. before, unless nil, is called before each try.
func (e *etcdaasInstall) waitServed(t *testing.T, ns, name, label string, serverCert []byte, timeout time.Duration, before func()) {
	t.Helper()
	start := time.Now()
	secrets := e.c.Kube.CoreV1().Secrets(ns)
	client, err := secrets.Get(t.Context(), name+"-client-tls", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pin := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: pinSecret(name, label), Namespace: ns},
		Data:       map[string][]byte{"ca.crt": serverCert, "client.crt": client.Data["client.crt"], "client.key": client.Data["client.key"]},
	}
	if _, err := secrets.Create(t.Context(), pin, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var tries int
	err = framework.Poll(t.Context(), time.Second, timeout, "the member serving the "+label+" server certificate", func(ctx context.Context) (bool, error) {
		tries++
		if before != nil {
			before()
		}
		out, ok, err := e.clientPod(ctx, ns, fmt.Sprintf("served-%s-%d", label, tries), pin.Name, pinnedGet(ns, name)...)
		if err != nil || !ok {
			return false, fmt.Errorf("attempt %d: %v %s", tries, err, lastLine(out))
		}
		return true, nil
	})
	if err != nil {
		dumpNamespace(t, e.c, ns)
		t.Fatal(err)
	}
	t.Logf("the member serves the %s server certificate (%d client pods, %s)", label, tries, time.Since(start).Round(100*time.Millisecond))
}

// pinSecret is the Secret of waitServed's client pods for the server certificate label.
func pinSecret(name, label string) string { return name + "-pin-" + label }

// pinnedGet are the etcdctl arguments of waitServed's client pods: a read through the
// instance's client Service trusting the certificate in ca.crt of their Secret.
func pinnedGet(ns, name string) []string {
	return []string{fmt.Sprintf("--endpoints=https://%s.%s.svc.cluster.local:2379", name, ns),
		"--cacert=/certs/ca.crt", "--cert=/certs/client.crt", "--key=/certs/client.key", "get", "/tls", "--print-value-only"}
}

// lastLine is the last line of s.
func lastLine(s string) string {
	return s[strings.LastIndex(s, "\n")+1:]
}
