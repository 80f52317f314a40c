package kubernetes

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"net"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/cert"
	"k8s.io/klog/v2"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/controller/backend"
	"github.com/etcdaas/etcdaas/pkg/pki"
)

// SecretCAKey is the key of the CA's private key in the CA Secret (CASecretName), which holds
// the CA's certificate under SecretCACert.
const SecretCAKey = "ca.key"

// annotationTrustedCA on the member pod template records the CAs (trustRecord of the TLS
// Secret's ca.crt) a member pod trusts: etcd reads its trusted CA file once, at start (its
// certificate and key at every handshake), so a pod trusts the ca.crt its Secret held when
// it started. A pod carries its template's annotations, so comparing a pod's record with the
// Secret's tells whether the pod trusts every CA of ca.crt; one that does not is restarted
// by the roll. A TLS member pod without the record was made before the controller kept
// records: it trusts the CA it was created with only.
const annotationTrustedCA = "etcdaas.dev/trusted-ca"

// CASecretName is the Secret holding the instance's CA certificate and key, from which the
// controller issues the certificates of Secret NAME-tls again before they expire. It is
// never mounted into a pod.
func CASecretName(inst *v1beta1.ETCDInstance) string { return inst.Name + "-ca" }

// peerCommonName is the common name of the members' peer certificate, the only one their
// peer port accepts.
func peerCommonName(inst *v1beta1.ETCDInstance) string {
	return inst.Name + "-peer"
}

// trustRecord is the record of the CA bundle bundle (annotationTrustedCA).
func trustRecord(bundle []byte) string {
	sum := sha256.Sum256(bundle)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// podTrustRecord is the record of the CAs a member pod trusts, "" for a pod made before
// the controller recorded them.
func podTrustRecord(pod *corev1.Pod) string { return pod.Annotations[annotationTrustedCA] }

// trust is what member pods must trust: the record of the TLS Secret's ca.crt, and whether
// it holds one CA only.
type trust struct {
	record string
	single bool
}

// newTrust is the trust of bundle, the TLS Secret's ca.crt.
func newTrust(bundle []byte) trust {
	certs, err := cert.ParseCertsPEM(bundle)
	return trust{record: trustRecord(bundle), single: err == nil && len(certs) == 1}
}

// accepts reports whether record, a member pod's (podTrustRecord) or a roll step's, trusts
// every CA of t. A pod or step of an earlier version has no record: made when ca.crt held the
// instance's one CA, and ca.crt was never changed then, it trusts ca.crt while that still
// holds one CA only, so upgrading the controller restarts no member.
func (t trust) accepts(record string) bool {
	if record == "" {
		return t.record == "" || t.single
	}
	return record == t.record
}

// leaf is a certificate of the TLS Secret: its keys and what it is issued for.
type leaf struct {
	name, certKey, keyKey string
	req                   pki.Request
}

// leaves are the server, peer and client certificates of an instance. The server and peer
// certificates cover every member name, so scaling never needs new ones.
func (b *Backend) leaves(inst *v1beta1.ETCDInstance) []leaf {
	peers := PeerServiceName(inst) + "." + inst.Namespace + ".svc"
	client := ClientServiceName(inst)
	dns := []string{
		"*." + peers, "*." + peers + "." + b.opts.ClusterDomain,
		client, client + "." + inst.Namespace,
		client + "." + inst.Namespace + ".svc", client + "." + inst.Namespace + ".svc." + b.opts.ClusterDomain,
		"localhost",
	}
	ips := []net.IP{net.ParseIP("127.0.0.1")}
	return []leaf{
		{"server", SecretServerCert, SecretServerKey, pki.Request{CommonName: inst.Name + "-server", DNSNames: dns, IPs: ips, Usage: pki.ServerUsage}},
		{"peer", SecretPeerCert, SecretPeerKey, pki.Request{CommonName: peerCommonName(inst), DNSNames: dns, IPs: ips, Usage: pki.ServerUsage | pki.ClientUsage}},
		{"client", SecretClientCert, SecretClientKey, pki.Request{CommonName: "root", Usage: pki.ClientUsage}},
	}
}

// ensureTLS makes sure the instance's CA Secret, TLS Secret and client Secret exist and that
// the certificates of the TLS Secret are not due for renewal (see ensureTLSSecret), and gives
// v the TLS Secret's data.
func (b *Backend) ensureTLS(ctx context.Context, v *instanceView) error {
	data, err := b.ensureTLSSecret(ctx, v)
	if err != nil {
		return err
	}
	v.setTLS(data)
	return b.ensureClientTLSSecret(ctx, v.inst, data)
}

// setTLS makes data the view's TLS Secret data, and the CAs of its ca.crt those its member
// pods must trust.
func (v *instanceView) setTLS(data map[string][]byte) {
	v.tlsData, v.trust = data, newTrust(data[SecretCACert])
}

// ensureTLSSecret returns the instance's TLS Secret data. A new instance gets a CA (kept in
// Secret NAME-ca) and certificates from it. Then, at every Sync, nothing is done until a
// certificate is due for renewal or no longer fits (dueLeaves). Then a CA that ca.crt does
// not hold yet (an instance created before the CA was kept, whose CA key is lost, a CA
// Secret deleted or damaged since, or a CA replaced near its end) is first added to ca.crt, the CAs members and clients
// trust, without touching the certificates; the certificates due are issued again from the
// CA once every member pod trusts every CA of ca.crt (renewDue).
func (b *Backend) ensureTLSSecret(ctx context.Context, v *instanceView) (map[string][]byte, error) {
	inst := v.inst
	client := b.opts.Client.CoreV1().Secrets(inst.Namespace)
	got, err := client.Get(ctx, TLSSecretName(inst), metav1.GetOptions{})
	if err == nil {
		err = checkOwner("Secret", got, inst)
	} else if apierrors.IsNotFound(err) {
		got, err = nil, nil
	}
	if err != nil {
		return nil, err
	}
	if got != nil && len(b.dueLeaves(inst, got.Data)) == 0 {
		return got.Data, nil
	}
	ca, err := b.ensureCA(ctx, inst)
	if err != nil {
		return nil, err
	}
	if got == nil {
		return b.createTLSSecret(ctx, inst, ca)
	}
	data, err := b.amendTLSData(ctx, v, ca, got.Data)
	if err != nil || maps.EqualFunc(data, got.Data, bytes.Equal) {
		return got.Data, err
	}
	updated := got.DeepCopy()
	updated.Data = data
	stored, err := client.Update(ctx, updated, metav1.UpdateOptions{})
	if err != nil {
		return nil, err
	}
	return stored.Data, nil
}

// createTLSSecret creates the TLS Secret with certificates from ca, the only CA of ca.crt.
func (b *Backend) createTLSSecret(ctx context.Context, inst *v1beta1.ETCDInstance, ca *pki.CA) (map[string][]byte, error) {
	data, err := b.issueTLS(inst, ca)
	if err != nil {
		return nil, err
	}
	created, err := b.opts.Client.CoreV1().Secrets(inst.Namespace).Create(ctx, tlsSecret(inst, data), metav1.CreateOptions{})
	if err != nil {
		return nil, err
	}
	return created.Data, nil
}

// amendTLSData returns a copy of current, the TLS Secret's data, with ca added to ca.crt
// when it is not there (Event CAChanged), or else with the certificates due issued again
// (renewDue).
func (b *Backend) amendTLSData(ctx context.Context, v *instanceView, ca *pki.CA, current map[string][]byte) (map[string][]byte, error) {
	inst := v.inst
	data := maps.Clone(current)
	if data == nil {
		data = map[string][]byte{}
	}
	bundle, added := withCA(data[SecretCACert], ca)
	if !added {
		return data, b.renewDue(ctx, v, ca, data)
	}
	data[SecretCACert] = bundle
	v.record(backend.ReasonCAChanged, "Added a new CA (%q, valid until %s) to the CAs the members and clients trust (ca.crt of Secrets %s and %s): "+
		"the CA that signed the instance's certificates was not kept in Secret %s (an instance created by an earlier version, or the Secret was deleted or damaged) or is near its end. "+
		"The members restart one at a time to trust it; the certificates are issued from it once due, and clients must read ca.crt again from Secret %s before then",
		ca.Cert.Subject.CommonName, ca.Cert.NotAfter.UTC().Format("2006-01-02"), TLSSecretName(inst), ClientTLSSecretName(inst), CASecretName(inst), ClientTLSSecretName(inst))
	return data, nil
}

// withCA returns bundle with ca's certificate appended, and true, unless bundle holds it
// already. What of bundle is not a certificate is dropped.
func withCA(bundle []byte, ca *pki.CA) ([]byte, bool) {
	certs, err := cert.ParseCertsPEM(bundle)
	if err != nil {
		return ca.CertPEM, true
	}
	var out []byte
	for _, c := range certs {
		if c.Equal(ca.Cert) {
			return bundle, false
		}
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return append(out, ca.CertPEM...), true
}

// dueLeaves are the certificates of data (the TLS Secret's) that do not fit (pki.Fits with
// the CAs of its ca.crt): due for renewal, damaged, or not for the names the instance needs.
func (b *Backend) dueLeaves(inst *v1beta1.ETCDInstance, data map[string][]byte) []leaf {
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(data[SecretCACert])
	var due []leaf
	for _, l := range b.leaves(inst) {
		if !pki.Fits(data[l.certKey], data[l.keyKey], roots, l.req) {
			due = append(due, l)
		}
	}
	return due
}

// renewDue issues again, from ca, each certificate of data (the TLS Secret's) that does not
// fit (dueLeaves). It waits while a member pod may not trust ca yet (membersTrust): a member
// would refuse its peers' and clients' certificates from a CA it does not trust.
func (b *Backend) renewDue(ctx context.Context, v *instanceView, ca *pki.CA, data map[string][]byte) error {
	due := b.dueLeaves(v.inst, data)
	if len(due) == 0 {
		return nil
	}
	if ok, why, err := b.membersTrust(ctx, v.inst, newTrust(data[SecretCACert])); err != nil || !ok {
		if err == nil {
			klog.InfoS("Certificates due for renewal wait for the members to trust the instance's CAs", "instance", klog.KObj(v.inst), "why", why)
		}
		return err
	}
	var names []string
	for _, l := range due {
		kp, err := ca.Issue(l.req)
		if err != nil {
			return err
		}
		data[l.certKey], data[l.keyKey] = kp.CertPEM, kp.KeyPEM
		names = append(names, l.name)
	}
	v.record(backend.ReasonCertificatesRenewed, "Issued the %s certificates again from the instance's CA (valid for %s; due: less than a third of their lifetime left, or not fitting the instance); "+
		"the members serve them without a restart, and clients reading Secret %s get the new client certificate", strings.Join(names, ", "), pki.DefaultValidity, ClientTLSSecretName(v.inst))
	return nil
}

// membersTrust reports whether every member pod trusts the CAs of t (trust.accepts its
// annotationTrustedCA), and otherwise which does not. Pods created later mount the Secret as
// it is then, so they do.
func (b *Backend) membersTrust(ctx context.Context, inst *v1beta1.ETCDInstance, t trust) (bool, string, error) {
	pods, err := b.opts.Client.CoreV1().Pods(inst.Namespace).List(ctx, metav1.ListOptions{LabelSelector: etcdaas.MemberSelector(inst.Name)})
	if err != nil {
		return false, "", err
	}
	for i := range pods.Items {
		if pod := &pods.Items[i]; !t.accepts(podTrustRecord(pod)) {
			return false, fmt.Sprintf("member pod %s started before ca.crt held every CA", pod.Name), nil
		}
	}
	return true, "", nil
}

// ensureCA returns the instance's CA from Secret NAME-ca, creating the Secret with a new CA
// when it is missing and replacing a CA that is damaged, expired or due for renewal (less
// than a third of its lifetime left, pki.CA.DueForRenewal): the new CA is added to ca.crt
// beside the old while that is still valid, so that no certificate the instance uses is
// ever issued from a CA that ends before it.
func (b *Backend) ensureCA(ctx context.Context, inst *v1beta1.ETCDInstance) (*pki.CA, error) {
	client := b.opts.Client.CoreV1().Secrets(inst.Namespace)
	got, err := client.Get(ctx, CASecretName(inst), metav1.GetOptions{})
	found := err == nil
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, err
	}
	if found {
		if err := checkOwner("Secret", got, inst); err != nil {
			return nil, err
		}
		ca, parseErr := pki.ParseCA(got.Data[SecretCACert], got.Data[SecretCAKey])
		if parseErr == nil && ca.DueForRenewal() {
			parseErr = fmt.Errorf("less than a third of its lifetime left (valid until %s)", ca.Cert.NotAfter.UTC().Format(time.DateOnly))
		}
		if parseErr == nil {
			return ca, nil
		}
		klog.InfoS("Replacing the instance's CA", "secret", klog.KObj(got), "err", parseErr)
	}
	ca, err := pki.NewCA(fmt.Sprintf("etcdaas %s/%s CA", inst.Namespace, inst.Name))
	if err != nil {
		return nil, err
	}
	want, err := caSecret(inst, ca)
	if err != nil {
		return nil, err
	}
	if !found {
		_, err = client.Create(ctx, want, metav1.CreateOptions{})
	} else {
		updated := got.DeepCopy()
		updated.Data = want.Data
		_, err = client.Update(ctx, updated, metav1.UpdateOptions{})
	}
	return ca, err
}

// issueTLS issues the server, peer and client certificates of an instance from ca, with ca
// as the only CA of ca.crt.
func (b *Backend) issueTLS(inst *v1beta1.ETCDInstance, ca *pki.CA) (map[string][]byte, error) {
	data := map[string][]byte{SecretCACert: ca.CertPEM}
	for _, l := range b.leaves(inst) {
		kp, err := ca.Issue(l.req)
		if err != nil {
			return nil, err
		}
		data[l.certKey], data[l.keyKey] = kp.CertPEM, kp.KeyPEM
	}
	return data, nil
}

// ensureClientTLSSecret keeps the instance's client Secret holding the client files of data,
// the TLS Secret's, creating it when missing and putting back what was changed in it.
func (b *Backend) ensureClientTLSSecret(ctx context.Context, inst *v1beta1.ETCDInstance, data map[string][]byte) error {
	want := clientTLSSecret(inst, data)
	return ensureObject(ctx, b.opts.Client.CoreV1().Secrets(inst.Namespace), "Secret", inst, want, func(got *corev1.Secret) bool {
		if maps.EqualFunc(got.Data, want.Data, bytes.Equal) {
			return false
		}
		got.Data = want.Data
		return true
	})
}

// clientTLS is the TLS configuration of a client of the instance, from data, the TLS
// Secret's: its client certificate, and every CA of ca.crt as roots.
func clientTLS(data map[string][]byte) (*tls.Config, error) {
	pair, err := tls.X509KeyPair(data[SecretClientCert], data[SecretClientKey])
	if err != nil {
		return nil, fmt.Errorf("loading the instance's client certificate: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(data[SecretCACert]) {
		return nil, errors.New("the instance's TLS Secret has no CA certificate")
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: roots, MinVersion: tls.VersionTLS12}, nil
}
