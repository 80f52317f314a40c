package kubernetes

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// TestMembersAcceptOnlyThePeerCertificateOnThePeerPort: the client certificate of Secret
// NAME-client-tls is signed by the members' CA, so with certificate authentication alone
// the peer port would take it, and a client pod could send raft messages as a member. The
// members' etcd admits on its peer port only the common name of the peer certificate the
// TLS Secret holds, which the client certificate does not have (etcd's
// --peer-cert-allowed-cn, checked with an embedded member by the local backend's
// TestPeerPortAcceptsOnlyThePeerCertificate).
func TestMembersAcceptOnlyThePeerCertificateOnThePeerPort(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	b, err := New(Options{Client: client})
	if err != nil {
		t.Fatal(err)
	}
	inst := testInstance()
	if _, err := b.Sync(ctx, inst); err != nil {
		t.Fatal(err)
	}
	sts, err := client.AppsV1().StatefulSets("ns").Get(ctx, "db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	allowed := env(t, sts.Spec.Template.Spec.Containers[0], "ETCD_PEER_CERT_ALLOWED_CN")
	secret, err := client.CoreV1().Secrets("ns").Get(ctx, "db-tls", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cn := leafOf(t, secret.Data[SecretPeerCert]).Subject.CommonName; allowed != cn {
		t.Fatalf("peer port admits CN %q, the peer certificate's is %q", allowed, cn)
	}
	if cn := leafOf(t, secret.Data[SecretClientCert]).Subject.CommonName; allowed == cn {
		t.Fatalf("peer port admits the client certificate's CN %q", cn)
	}
}
