package kubernetes

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"maps"
	"math/big"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/keyutil"
	"k8s.io/utils/ptr"

	"github.com/etcdaas/etcdaas/pkg/controller/backend"
	"github.com/etcdaas/etcdaas/pkg/etcdcluster"
	"github.com/etcdaas/etcdaas/pkg/pki"
)

// The Secrets of the TLS instance db in namespace ns.
const (
	caSecretName     = "db-ca"
	tlsSecretName    = "db-tls"
	clientSecretName = "db-client-tls"
)

// newTLSRollFixture is a healthy 3-member TLS instance running etcd 3.7.3, db-1 leading,
// whose Secrets and StatefulSet the first Sync made, with Ready pods made from its template;
// a fake kubelet recreates deleted pods from the template (rollFixture).
func newTLSRollFixture(t *testing.T) *rollFixture {
	t.Helper()
	ctx := context.Background()
	cluster := &fakeMembership{nextID: 200}
	for i := range 3 {
		id := uint64(100 + i)
		cluster.members = append(cluster.members, etcdcluster.Member{ID: id, Name: fmt.Sprintf("db-%d", i),
			PeerURLs: []string{fmt.Sprintf("https://db-%d.db-peers.ns.svc.cluster.local:2380", i)}})
		cluster.statuses = append(cluster.statuses, etcdcluster.EndpointStatus{Healthy: true, MemberID: id, Leader: 101, Version: "3.7.3"})
	}
	client := fake.NewClientset()
	b, err := New(Options{Client: client})
	if err != nil {
		t.Fatal(err)
	}
	b.connect = func(*etcdcluster.Access) (membership, error) { return cluster, nil }
	inst := testInstance()
	if _, err := b.Sync(ctx, inst); err != nil {
		t.Fatal(err)
	}
	sts, err := client.AppsV1().StatefulSets("ns").Get(ctx, "db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sts.Spec.Replicas, sts.Status.ReadyReplicas = ptr.To[int32](3), 3
	if sts, err = client.AppsV1().StatefulSets("ns").Update(ctx, sts, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	f := &rollFixture{stepsFixture: &stepsFixture{b: b, client: client, inst: inst}, cluster: cluster,
		clock: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), recreate: true}
	b.now = func() time.Time { return f.clock }
	for i := range 3 {
		pvc := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: fmt.Sprintf("data-db-%d", i)}}
		if _, err := client.CoreV1().PersistentVolumeClaims("ns").Create(ctx, pvc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		f.createPodFrom(t, i, sts.Spec.Template, true)
	}
	return f
}

func (f *rollFixture) secret(t *testing.T, name string) *corev1.Secret {
	t.Helper()
	s, err := f.client.CoreV1().Secrets("ns").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// keptCA is the CA of Secret db-ca.
func (f *rollFixture) keptCA(t *testing.T) *pki.CA {
	t.Helper()
	s := f.secret(t, caSecretName)
	return caFrom(t, s.Data["ca.crt"], s.Data["ca.key"])
}

func caFrom(t *testing.T, certPEM, keyPEM []byte) *pki.CA {
	t.Helper()
	certs, err := cert.ParseCertsPEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	key, err := keyutil.ParsePrivateKeyPEM(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return &pki.CA{Cert: certs[0], Key: key.(crypto.Signer), CertPEM: certPEM}
}

// makeDue replaces the server, peer and client certificates of Secret db-tls with ones ca
// signed for the same names, with 10s of their 70s left: due for renewal.
func (f *rollFixture) makeDue(t *testing.T, ca *pki.CA) {
	t.Helper()
	s := f.secret(t, tlsSecretName)
	for _, name := range []string{"server", "peer", "client"} {
		current := leafOf(t, s.Data[name+".crt"])
		kp, err := ca.Issue(pki.Request{CommonName: current.Subject.CommonName, DNSNames: current.DNSNames, IPs: current.IPAddresses,
			Usage: pki.ServerUsage | pki.ClientUsage, Validity: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		s.Data[name+".crt"], s.Data[name+".key"] = kp.CertPEM, kp.KeyPEM
	}
	if _, err := f.client.CoreV1().Secrets("ns").Update(context.Background(), s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func leafOf(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	certs, err := cert.ParseCertsPEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	return certs[0]
}

// checkRenewedFrom checks that the certificates of Secret db-tls were issued by ca for a
// year, and that Secret db-client-tls has the client certificate and ca.crt of db-tls.
func (f *rollFixture) checkRenewedFrom(t *testing.T, ca *pki.CA) {
	t.Helper()
	s := f.secret(t, tlsSecretName)
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	for _, name := range []string{"server", "peer", "client"} {
		leaf := leafOf(t, s.Data[name+".crt"])
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			t.Fatalf("%s.crt is not from the kept CA: %v", name, err)
		}
		if left := time.Until(leaf.NotAfter); left < 300*24*time.Hour {
			t.Fatalf("%s.crt expires in %v, want it renewed for a year", name, left)
		}
	}
	c := f.secret(t, clientSecretName)
	if !bytes.Equal(c.Data["client.crt"], s.Data["client.crt"]) || !bytes.Equal(c.Data["client.key"], s.Data["client.key"]) ||
		!bytes.Equal(c.Data["ca.crt"], s.Data["ca.crt"]) {
		t.Fatal("Secret db-client-tls does not have the renewed client certificate and the CAs of db-tls")
	}
}

// recreatePodsTrusting sets the trust record of the StatefulSet's pod template to record
// (none when empty: as an earlier version left it) and recreates the three member pods from
// it, Ready.
func (f *rollFixture) recreatePodsTrusting(t *testing.T, record string) {
	t.Helper()
	ctx := context.Background()
	sts := f.sts(t)
	if record == "" {
		delete(sts.Spec.Template.Annotations, annotationTrustedCA)
	} else {
		sts.Spec.Template.Annotations[annotationTrustedCA] = record
	}
	if _, err := f.client.AppsV1().StatefulSets("ns").Update(ctx, sts, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := f.client.CoreV1().Pods("ns").Delete(ctx, fmt.Sprintf("db-%d", i), metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		f.createPodFrom(t, i, sts.Spec.Template, true)
	}
}

func hasEvent(res *backend.Result, reason string) bool {
	return slices.ContainsFunc(res.Events, func(e backend.Event) bool { return string(e.Reason) == reason })
}

// TestSyncRenewsCertificatesDueFromTheKeptCA: a TLS instance's CA is kept in Secret db-ca
// (owned and labelled like the others); certificates of db-tls with less than a third of
// their lifetime left are issued again from it by the next Sync, into db-tls and
// db-client-tls, with no member restarted (etcd reads its certificate and key at every
// handshake); certificates not due are left alone.
func TestSyncRenewsCertificatesDueFromTheKeptCA(t *testing.T) {
	f := newTLSRollFixture(t)
	caSecret := f.secret(t, caSecretName)
	checkOwned(t, caSecret, f.inst)
	tlsSecret := f.secret(t, tlsSecretName)
	if !bytes.Equal(caSecret.Data["ca.crt"], tlsSecret.Data["ca.crt"]) {
		t.Fatal("db-tls does not trust the kept CA alone")
	}
	if _, ok := tlsSecret.Data["ca.key"]; ok {
		t.Fatal("db-tls, mounted into the members, holds the CA key")
	}
	ca := f.keptCA(t)

	res := f.sync(t)
	if got := f.secret(t, tlsSecretName); got.ResourceVersion != tlsSecret.ResourceVersion || len(res.Events) != 0 || !res.Converged {
		t.Fatalf("certificates not due: db-tls rewritten (%s, was %s), %+v", got.ResourceVersion, tlsSecret.ResourceVersion, res)
	}

	f.makeDue(t, ca)
	res = f.sync(t)
	f.checkRenewedFrom(t, ca)
	if !hasEvent(res, "CertificatesRenewed") {
		t.Fatalf("no CertificatesRenewed event: %+v", res.Events)
	}
	if !bytes.Equal(f.secret(t, tlsSecretName).Data["ca.crt"], caSecret.Data["ca.crt"]) {
		t.Fatal("renewing changed the CAs the members trust")
	}
	if len(f.deleted) != 0 {
		t.Fatalf("renewing from the same CA restarted %v", f.deleted)
	}
	renewed := f.secret(t, tlsSecretName)
	res = f.sync(t)
	if got := f.secret(t, tlsSecretName); got.ResourceVersion != renewed.ResourceVersion || len(res.Events) != 0 {
		t.Fatalf("renewed certificates issued again: %+v", res.Events)
	}
}

// TestTheCASecretIsNeverMountedIntoAPod: the members' pods reference the TLS Secret only,
// never the Secret with the CA key.
func TestTheCASecretIsNeverMountedIntoAPod(t *testing.T) {
	f := newTLSRollFixture(t)
	f.secret(t, caSecretName)
	spec := f.sts(t).Spec.Template.Spec
	var referenced []string
	for _, v := range spec.Volumes {
		if v.Secret != nil {
			referenced = append(referenced, v.Secret.SecretName)
		}
		if v.Projected != nil {
			for _, src := range v.Projected.Sources {
				if src.Secret != nil {
					referenced = append(referenced, src.Secret.Name)
				}
			}
		}
	}
	for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				referenced = append(referenced, e.ValueFrom.SecretKeyRef.Name)
			}
		}
		for _, e := range c.EnvFrom {
			if e.SecretRef != nil {
				referenced = append(referenced, e.SecretRef.Name)
			}
		}
	}
	if !slices.Equal(referenced, []string{tlsSecretName}) {
		t.Fatalf("member pods reference Secrets %v, want only %s", referenced, tlsSecretName)
	}
}

// TestALegacyInstanceTrustsANewCABeforeItsCertificatesComeFromIt: an instance created
// before the CA was kept (no Secret db-ca, pods without the record of the CAs they trust)
// is left as it is, no member restarted, until its certificates are due. Then it gets a new
// CA, added to ca.crt beside the old one (members and clients trust both), without new
// certificates; the members restart one at a time (etcd reads its trusted CA file only at
// start), and the certificates due stay the old CA's until every member trusts the new one:
// then they are issued from it.
func TestALegacyInstanceTrustsANewCABeforeItsCertificatesComeFromIt(t *testing.T) {
	f := newTLSRollFixture(t)
	oldCA := f.keptCA(t)
	checkLegacyNotDueLeftAlone(t, f)

	f.makeDue(t, oldCA)
	before := f.secret(t, tlsSecretName)
	res := f.sync(t)
	newCA := f.keptCA(t)
	if newCA.Cert.Equal(oldCA.Cert) {
		t.Fatal("the lost CA came back")
	}
	after := f.secret(t, tlsSecretName)
	bundle, err := cert.ParseCertsPEM(after.Data["ca.crt"])
	if err != nil || len(bundle) != 2 || !bundle[0].Equal(oldCA.Cert) || !bundle[1].Equal(newCA.Cert) {
		t.Fatalf("ca.crt holds %d certificates (%v), want the old CA then the new one", len(bundle), err)
	}
	for _, key := range []string{"server.crt", "peer.crt", "client.crt"} {
		if !bytes.Equal(after.Data[key], before.Data[key]) {
			t.Fatalf("%s changed before the members trust the new CA", key)
		}
	}
	if !bytes.Equal(f.secret(t, clientSecretName).Data["ca.crt"], after.Data["ca.crt"]) {
		t.Fatal("db-client-tls does not have both CAs")
	}
	if !hasEvent(res, "CAChanged") {
		t.Fatalf("no CAChanged event: %+v", res.Events)
	}
	if !slices.Equal(f.deleted, []string{"db-2"}) {
		t.Fatalf("restarted %v, want one member (db-2) to trust the new CA", f.deleted)
	}
	checkRenewedOnceNewCATrusted(t, f, newCA, after)
}

// checkLegacyNotDueLeftAlone turns f's instance into what an earlier version left (no CA
// Secret, pods and template without the record) and checks that a sync, its certificates not
// due, leaves it alone: no Secret rewritten, no restart, no CA made.
func checkLegacyNotDueLeftAlone(t *testing.T, f *rollFixture) {
	t.Helper()
	ctx := context.Background()
	if err := f.client.CoreV1().Secrets("ns").Delete(ctx, caSecretName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	f.recreatePodsTrusting(t, "")
	legacy := f.secret(t, tlsSecretName)
	res := f.sync(t)
	if got := f.secret(t, tlsSecretName); got.ResourceVersion != legacy.ResourceVersion || len(res.Events) != 0 || len(f.deleted) != 0 || !res.Converged {
		t.Fatalf("certificates not due: db-tls rewritten (%s, was %s), restarted %v, %+v", got.ResourceVersion, legacy.ResourceVersion, f.deleted, res)
	}
	if _, err := f.client.CoreV1().Secrets("ns").Get(ctx, caSecretName, metav1.GetOptions{}); err == nil {
		t.Fatal("a CA made for a legacy instance whose certificates are not due")
	}
}

// checkRenewedOnceNewCATrusted checks the rest of the roll to newCA (after: db-tls once it
// holds both CAs): the certificates due stay the old CA's while members do not trust the new
// CA yet, and are renewed from it once every member does, ca.crt unchanged.
func checkRenewedOnceNewCATrusted(t *testing.T, f *rollFixture, newCA *pki.CA, after *corev1.Secret) {
	t.Helper()
	// The certificates due stay the old CA's while members do not trust the new CA yet.
	due := after
	for _, next := range []struct {
		answer  int
		deleted []string
	}{{2, []string{"db-2", "db-0"}}, {0, []string{"db-2", "db-0", "db-1"}}} {
		f.answer(next.answer, "3.7.3")
		res := f.sync(t)
		if !slices.Equal(f.deleted, next.deleted) {
			t.Fatalf("restarted %v, want %v", f.deleted, next.deleted)
		}
		if got := f.secret(t, tlsSecretName); !bytes.Equal(got.Data["peer.crt"], due.Data["peer.crt"]) || hasEvent(res, "CertificatesRenewed") {
			t.Fatalf("certificates issued from the new CA while a member does not trust it: %+v", res.Events)
		}
	}
	f.moveLeader(0)
	f.answer(1, "3.7.3")
	res := f.sync(t)
	f.checkRenewedFrom(t, newCA)
	if !hasEvent(res, "CertificatesRenewed") {
		t.Fatalf("no CertificatesRenewed event once every member trusts the new CA: %+v", res.Events)
	}
	if got := f.secret(t, tlsSecretName); !bytes.Equal(got.Data["ca.crt"], after.Data["ca.crt"]) {
		t.Fatal("ca.crt changed again")
	}
	if res = f.sync(t); len(f.deleted) != 3 || !res.Converged {
		t.Fatalf("after the roll: restarted %v, %+v", f.deleted, res)
	}
}

// TestADamagedCASecretIsReplacedWithoutDroppingTheOldCA: a CA Secret whose key is not the
// CA's own gets a new CA once certificates are due, which ca.crt trusts beside the old one
// (the certificates in use are the old CA's), with a CAChanged event; an emptied TLS Secret
// gets ca.crt back.
func TestADamagedCASecretIsReplacedWithoutDroppingTheOldCA(t *testing.T) {
	f := newTLSRollFixture(t)
	ctx := context.Background()
	oldCA := f.keptCA(t)
	other, err := pki.NewCA("other")
	if err != nil {
		t.Fatal(err)
	}
	damaged := f.secret(t, caSecretName)
	damaged.Data["ca.key"], _ = other.KeyPEM()
	if _, err := f.client.CoreV1().Secrets("ns").Update(ctx, damaged, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.makeDue(t, oldCA)
	res := f.sync(t)
	newCA := f.keptCA(t)
	bundle, err := cert.ParseCertsPEM(f.secret(t, tlsSecretName).Data["ca.crt"])
	if err != nil || len(bundle) != 2 || !bundle[0].Equal(oldCA.Cert) || !bundle[1].Equal(newCA.Cert) || !hasEvent(res, "CAChanged") {
		t.Fatalf("ca.crt after a damaged CA Secret: %d certificates (%v), events %+v", len(bundle), err, res.Events)
	}

	emptied := f.secret(t, tlsSecretName)
	emptied.Data = nil
	if _, err := f.client.CoreV1().Secrets("ns").Update(ctx, emptied, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Without a client certificate the members cannot be reached: the Sync fails, without a
	// panic, after putting ca.crt back.
	_, _ = f.b.Sync(ctx, f.inst)
	if got := f.secret(t, tlsSecretName).Data; len(got["ca.crt"]) == 0 || len(got["server.crt"]) != 0 {
		t.Fatalf("an emptied TLS Secret: keys %v, want ca.crt back and certificates only once the members trust it", slices.Collect(maps.Keys(got)))
	}
}

// agingCA is a CA, like pki.NewCA's, with half a year of its 10 years left: certificates it
// issues for a year (pki.DefaultValidity) would outlive it.
func agingCA(t *testing.T) *pki.CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	template := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano()), Subject: pkix.Name{CommonName: "etcdaas ns/db CA"},
		NotBefore: now.AddDate(-9, -6, 0), NotAfter: now.AddDate(0, 6, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return caFrom(t, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), mustKeyPEM(t, key))
}

func mustKeyPEM(t *testing.T, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: keyutil.ECPrivateKeyBlockType, Bytes: der})
}

// TestACANearItsEndIsReplacedBeforeItExpires: once less than a third of the kept CA's
// lifetime is left, the certificates due get a new CA, added to ca.crt beside the old one
// (the members restart to trust it), instead of new certificates from a CA that ends before
// them. Without it, once the CA expires every chain fails at once (members and clients refuse
// each other), the roll that would bring a new CA waits for healthy members, and the
// certificates waiting for the roll are never issued: the instance stays down.
func TestACANearItsEndIsReplacedBeforeItExpires(t *testing.T) {
	f := newTLSRollFixture(t)
	ctx := context.Background()
	aging := agingCA(t)
	kept := f.secret(t, caSecretName)
	kept.Data["ca.crt"], kept.Data["ca.key"] = aging.CertPEM, mustKeyPEM(t, aging.Key.(*ecdsa.PrivateKey))
	if _, err := f.client.CoreV1().Secrets("ns").Update(ctx, kept, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The instance as it runs with that CA: ca.crt holds it alone, its members trust it, and
	// its certificates are due.
	tlsSecret := f.secret(t, tlsSecretName)
	tlsSecret.Data["ca.crt"] = aging.CertPEM
	if _, err := f.client.CoreV1().Secrets("ns").Update(ctx, tlsSecret, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.makeDue(t, aging)
	f.recreatePodsTrusting(t, trustRecord(aging.CertPEM))
	before := f.secret(t, tlsSecretName)

	res := f.sync(t)
	newCA := f.keptCA(t)
	if newCA.Cert.Equal(aging.Cert) {
		leaf := leafOf(t, f.secret(t, tlsSecretName).Data["server.crt"])
		t.Fatalf("the CA ending %s was kept; the certificates were issued from it, until %s (events %+v)",
			aging.Cert.NotAfter.Format(time.DateOnly), leaf.NotAfter.Format(time.DateOnly), res.Events)
	}
	if left := time.Until(newCA.Cert.NotAfter); left < 9*365*24*time.Hour {
		t.Fatalf("the new CA ends in %v", left)
	}
	after := f.secret(t, tlsSecretName)
	bundle, err := cert.ParseCertsPEM(after.Data["ca.crt"])
	if err != nil || len(bundle) != 2 || !bundle[0].Equal(aging.Cert) || !bundle[1].Equal(newCA.Cert) {
		t.Fatalf("ca.crt holds %d certificates (%v), want the aging CA then the new one", len(bundle), err)
	}
	if !bytes.Equal(after.Data["server.crt"], before.Data["server.crt"]) || !hasEvent(res, "CAChanged") {
		t.Fatalf("the certificates changed before the members trust the new CA, or no CAChanged event: %+v", res.Events)
	}
	if !slices.Equal(f.deleted, []string{"db-2"}) {
		t.Fatalf("restarted %v, want one member (db-2) to trust the new CA", f.deleted)
	}
}

// controllerObjectVerbs are the verbs the controller's ClusterRole
// (deploy/aggregated/rbac/controller-rbac.yaml) grants on the objects of an instance, which
// it reads and writes by name only: no informer, so no list or watch, and no patch.
var controllerObjectVerbs = map[string][]string{
	"statefulsets":         {"get", "create", "update", "delete"},
	"services":             {"get", "create", "delete"},
	"poddisruptionbudgets": {"get", "create", "update", "delete"},
	"secrets":              {"get", "create", "update", "delete"},
}

// TestObjectsAreOnlyReadAndWrittenByName: a TLS instance's life (its objects made, its
// certificates renewed, a backup's access, deletion) uses no verb on its StatefulSet,
// Services, PodDisruptionBudget and Secrets beyond controllerObjectVerbs, and every verb the
// role grants on Secrets.
func TestObjectsAreOnlyReadAndWrittenByName(t *testing.T) {
	f := newTLSRollFixture(t)
	f.makeDue(t, f.keptCA(t))
	f.sync(t)
	f.checkRenewedFrom(t, f.keptCA(t))
	if _, err := f.b.Access(context.Background(), "ns", "db"); err != nil {
		t.Fatal(err)
	}
	if err := f.b.Delete(context.Background(), f.inst); err != nil {
		t.Fatal(err)
	}
	usedOnSecrets := map[string]bool{}
	for _, a := range f.client.Actions() {
		resource := a.GetResource().Resource
		allowed, ok := controllerObjectVerbs[resource]
		if !ok {
			continue
		}
		if !slices.Contains(allowed, a.GetVerb()) {
			t.Errorf("the backend may %s %s: the controller's ClusterRole grants only %v", a.GetVerb(), resource, allowed)
		}
		if resource == "secrets" {
			usedOnSecrets[a.GetVerb()] = true
		}
	}
	for _, verb := range controllerObjectVerbs["secrets"] {
		if !usedOnSecrets[verb] {
			t.Errorf("the backend never did %s on a Secret: the life of the fixture no longer covers it", verb)
		}
	}
}
