package kubernetes

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"maps"
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/controller/backend"
	"github.com/etcdaas/etcdaas/pkg/etcdcluster"
)

func testInstance() *v1beta1.ETCDInstance {
	return &v1beta1.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "db", UID: types.UID("uid-1")},
		Spec: v1beta1.ETCDInstanceSpec{
			Replicas: ptr.To[int32](3),
			TLS:      &v1beta1.TLSSpec{Enabled: true},
			Storage:  &v1beta1.StorageSpec{VolumeSize: ptr.To(resource.MustParse("5Gi")), StorageClassName: ptr.To("fast")},
		},
	}
}

func env(t *testing.T, c corev1.Container, name string) string {
	t.Helper()
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	t.Fatalf("no env %s in %v", name, c.Env)
	return ""
}

func checkOwned(t *testing.T, obj metav1.Object, inst *v1beta1.ETCDInstance) {
	t.Helper()
	ref := metav1.GetControllerOf(obj)
	if ref == nil || ref.UID != inst.UID || ref.Kind != "ETCDInstance" || ref.APIVersion != "etcdaas.dev/v1beta1" {
		t.Fatalf("%s is not controlled by the instance: %+v", obj.GetName(), obj.GetOwnerReferences())
	}
	for k, v := range etcdaas.MemberLabels(inst.Name) {
		if obj.GetLabels()[k] != v {
			t.Fatalf("%s lacks label %s=%s: %v", obj.GetName(), k, v, obj.GetLabels())
		}
	}
}

func TestFirstSyncCreatesTheInstanceObjects(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	b, err := New(Options{Client: client})
	if err != nil {
		t.Fatal(err)
	}
	inst := testInstance()
	res, err := b.Sync(ctx, inst)
	if err != nil {
		t.Fatal(err)
	}
	if res.Converged || res.StepReason != "Deploying" {
		t.Fatalf("first sync: %+v", res)
	}

	checkFirstStatefulSet(t, ctx, client, inst)
	checkServicesAndBudget(t, ctx, client, inst)
	secret := checkTLSSecret(t, ctx, client, inst)
	clientSecret := checkClientSecret(t, ctx, client, inst, secret)
	// A client Secret changed by hand is put back at the next sync.
	clientSecret.Data[SecretClientKey] = []byte("tampered")
	if _, err := client.CoreV1().Secrets("ns").Update(ctx, clientSecret, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	// The pods are not ready yet: the next sync waits without touching etcd.
	res, err = b.Sync(ctx, inst)
	if err != nil || res.Converged || len(res.Members) != 1 || res.Members[0].ClientURL != "https://db-0.db-peers.ns.svc.cluster.local:2379" {
		t.Fatalf("second sync: %+v, %v", res, err)
	}

	if restored, err := client.CoreV1().Secrets("ns").Get(ctx, "db-client-tls", metav1.GetOptions{}); err != nil || !bytes.Equal(restored.Data[SecretClientKey], secret.Data[SecretClientKey]) {
		t.Fatalf("client Secret after the second sync: %v", err)
	}

	access, err := b.Access(ctx, "ns", "db")
	if err != nil {
		t.Fatal(err)
	}
	if access.TLS == nil || len(access.Endpoints) != 1 || access.Endpoints[0] != "https://db-0.db-peers.ns.svc.cluster.local:2379" {
		t.Fatalf("access %+v", access)
	}

	checkDeleteRemovesTheObjects(t, ctx, client, b, inst)
}

// checkFirstStatefulSet checks the StatefulSet of the first sync: one member starting a new
// cluster with certificate auth, its volume claim and the instance's labels.
func checkFirstStatefulSet(t *testing.T, ctx context.Context, client *fake.Clientset, inst *v1beta1.ETCDInstance) {
	t.Helper()
	sts, err := client.AppsV1().StatefulSets("ns").Get(ctx, "db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkOwned(t, sts, inst)
	if *sts.Spec.Replicas != 1 {
		t.Fatalf("the first StatefulSet has %d replicas, want 1 (members are added one at a time)", *sts.Spec.Replicas)
	}
	if sts.Spec.ServiceName != "db-peers" || sts.Spec.UpdateStrategy.Type != appsv1.OnDeleteStatefulSetStrategyType {
		t.Fatalf("serviceName %q, update strategy %q", sts.Spec.ServiceName, sts.Spec.UpdateStrategy.Type)
	}
	if p := sts.Spec.PersistentVolumeClaimRetentionPolicy; p == nil || p.WhenScaled != appsv1.DeletePersistentVolumeClaimRetentionPolicyType || p.WhenDeleted != appsv1.DeletePersistentVolumeClaimRetentionPolicyType {
		t.Fatalf("PVC retention %+v: a removed member's data must go", p)
	}
	c := sts.Spec.Template.Spec.Containers[0]
	if c.Image != "gcr.io/etcd-development/etcd:v3.7.3" {
		t.Fatalf("image %q", c.Image)
	}
	if got := env(t, c, "ETCD_INITIAL_CLUSTER"); got != "db-0=https://db-0.db-peers.ns.svc.cluster.local:2380" {
		t.Fatalf("initial cluster %q", got)
	}
	if env(t, c, "ETCD_INITIAL_CLUSTER_STATE") != "new" || env(t, c, "ETCD_CLIENT_CERT_AUTH") != "true" || env(t, c, "ETCD_PEER_CLIENT_CERT_AUTH") != "true" {
		t.Fatal("first member must start a new cluster with client and peer certificate auth")
	}
	if env(t, c, "ETCD_INITIAL_CLUSTER_TOKEN") != "ns-db-uid-1" {
		t.Fatalf("token %q", env(t, c, "ETCD_INITIAL_CLUSTER_TOKEN"))
	}
	if v := sts.Spec.Template.Spec.Volumes; len(v) != 1 || v[0].Secret == nil || v[0].Secret.SecretName != "db-tls" {
		t.Fatalf("volumes %+v", v)
	}
	pvc := sts.Spec.VolumeClaimTemplates[0]
	if q := pvc.Spec.Resources.Requests[corev1.ResourceStorage]; q.String() != "5Gi" || ptr.Deref(pvc.Spec.StorageClassName, "") != "fast" {
		t.Fatalf("volume claim %+v", pvc.Spec)
	}
	if sts.Spec.Template.Labels[etcdaas.LabelInstance] != "db" {
		t.Fatalf("pod labels %v", sts.Spec.Template.Labels)
	}
}

// checkServicesAndBudget checks the headless peer Service, the client Service and the
// PodDisruptionBudget of a one-member instance.
func checkServicesAndBudget(t *testing.T, ctx context.Context, client *fake.Clientset, inst *v1beta1.ETCDInstance) {
	t.Helper()
	peers, err := client.CoreV1().Services("ns").Get(ctx, "db-peers", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkOwned(t, peers, inst)
	if peers.Spec.ClusterIP != corev1.ClusterIPNone || !peers.Spec.PublishNotReadyAddresses || len(peers.Spec.Ports) != 2 {
		t.Fatalf("headless service %+v", peers.Spec)
	}
	svc, err := client.CoreV1().Services("ns").Get(ctx, "db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkOwned(t, svc, inst)
	if svc.Spec.ClusterIP == corev1.ClusterIPNone || svc.Spec.Ports[0].Port != ClientPort || svc.Spec.Selector[etcdaas.LabelInstance] != "db" {
		t.Fatalf("client service %+v", svc.Spec)
	}
	pdb, err := client.PolicyV1().PodDisruptionBudgets("ns").Get(ctx, "db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkOwned(t, pdb, inst)
	if pdb.Spec.MinAvailable.IntValue() != 1 {
		t.Fatalf("PDB minAvailable %v for one member", pdb.Spec.MinAvailable)
	}
}

// checkTLSSecret checks the members' TLS Secret (no CA key; certificates that verify for
// each use) and returns it.
func checkTLSSecret(t *testing.T, ctx context.Context, client *fake.Clientset, inst *v1beta1.ETCDInstance) *corev1.Secret {
	t.Helper()
	secret, err := client.CoreV1().Secrets("ns").Get(ctx, "db-tls", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkOwned(t, secret, inst)
	if _, ok := secret.Data["ca.key"]; ok {
		t.Fatal("the Secret holds the CA key")
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(secret.Data[SecretCACert]) {
		t.Fatal("no CA in the Secret")
	}
	for _, tc := range []struct {
		key   string
		host  string
		usage x509.ExtKeyUsage
	}{
		{SecretServerCert, "db-2.db-peers.ns.svc.cluster.local", x509.ExtKeyUsageServerAuth},
		{SecretServerCert, "db.ns.svc", x509.ExtKeyUsageServerAuth},
		{SecretPeerCert, "db-4.db-peers.ns.svc", x509.ExtKeyUsageClientAuth},
		{SecretClientCert, "", x509.ExtKeyUsageClientAuth},
	} {
		block, _ := pem.Decode(secret.Data[tc.key])
		if block == nil {
			t.Fatalf("%s is not PEM", tc.key)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: tc.host, KeyUsages: []x509.ExtKeyUsage{tc.usage}}); err != nil {
			t.Fatalf("%s for %q: %v", tc.key, tc.host, err)
		}
	}
	return secret
}

// checkClientSecret checks that clients get their own Secret with the TLS Secret's CA and
// client certificate and no member key, and returns it.
func checkClientSecret(t *testing.T, ctx context.Context, client *fake.Clientset, inst *v1beta1.ETCDInstance, secret *corev1.Secret) *corev1.Secret {
	t.Helper()
	// Clients get their own Secret: the CA and the client certificate, no member key.
	clientSecret, err := client.CoreV1().Secrets("ns").Get(ctx, "db-client-tls", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkOwned(t, clientSecret, inst)
	if keys := slices.Sorted(maps.Keys(clientSecret.Data)); !slices.Equal(keys, []string{SecretCACert, SecretClientCert, SecretClientKey}) {
		t.Fatalf("client Secret keys %v, want only the CA and the client certificate and key", keys)
	}
	for _, key := range []string{SecretCACert, SecretClientCert, SecretClientKey} {
		if !bytes.Equal(clientSecret.Data[key], secret.Data[key]) {
			t.Fatalf("client Secret %s differs from the TLS Secret's", key)
		}
	}
	return clientSecret
}

// checkDeleteRemovesTheObjects deletes the instance and checks nothing of it is left.
func checkDeleteRemovesTheObjects(t *testing.T, ctx context.Context, client *fake.Clientset, b *Backend, inst *v1beta1.ETCDInstance) {
	t.Helper()
	if err := b.Delete(ctx, inst); err != nil {
		t.Fatal(err)
	}
	if list, _ := client.AppsV1().StatefulSets("ns").List(ctx, metav1.ListOptions{}); len(list.Items) != 0 {
		t.Fatal("StatefulSet left after delete")
	}
	if list, _ := client.CoreV1().Services("ns").List(ctx, metav1.ListOptions{}); len(list.Items) != 0 {
		t.Fatal("Services left after delete")
	}
	if list, _ := client.CoreV1().Secrets("ns").List(ctx, metav1.ListOptions{}); len(list.Items) != 0 {
		t.Fatal("Secret left after delete")
	}
	if _, err := b.Access(ctx, "ns", "db"); err == nil {
		t.Fatal("access to a deleted instance")
	}
}

func TestImagesAndQuorum(t *testing.T) {
	b, err := New(Options{Client: fake.NewClientset(), Image: "registry.example/etcd"})
	if err != nil {
		t.Fatal(err)
	}
	inst := testInstance()
	for version, want := range map[string]string{"": "registry.example/etcd:v3.7.3", "3.6": "registry.example/etcd:v3.6.5", "v3.5": "registry.example/etcd:v3.5.21"} {
		inst.Spec.Version = version
		got, err := b.Image(inst)
		if err != nil || got != want {
			t.Fatalf("version %q: %q, %v; want %q", version, got, err, want)
		}
	}
	inst.Spec.Version = "3.4"
	if _, err := b.Image(inst); err == nil {
		t.Fatal("3.4 has an image")
	} else if pe, ok := backend.IsPermanent(err); !ok || pe.Reason != "UnsupportedVersion" {
		t.Fatalf("3.4: %v", err)
	}
	if _, err := b.Sync(context.Background(), inst); err == nil {
		t.Fatal("sync of an unsupported version succeeded")
	}
	for members, want := range map[int]int{1: 1, 2: 2, 3: 2, 4: 3, 5: 3, 9: 5} {
		if got := podDisruptionBudget(inst, members).Spec.MinAvailable.IntValue(); got != want {
			t.Fatalf("minAvailable for %d members: %d, want %d", members, got, want)
		}
	}
	plain := testInstance()
	plain.Spec.TLS = nil
	plain.Spec.Storage = nil
	sts := b.statefulSet(plain, "img", memberConfig{replicas: 2, initialCluster: "x", clusterState: "existing", token: "t"})
	c := sts.Spec.Template.Spec.Containers[0]
	if len(sts.Spec.Template.Spec.Volumes) != 0 || env(t, c, "ETCD_LISTEN_CLIENT_URLS") != "http://0.0.0.0:2379" {
		t.Fatalf("plaintext members: volumes %v", sts.Spec.Template.Spec.Volumes)
	}
	if q := sts.Spec.VolumeClaimTemplates[0].Spec.Resources.Requests[corev1.ResourceStorage]; q.String() != DefaultStorageSize {
		t.Fatalf("default volume size %s", q.String())
	}
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Port.IntValue() != MetricsPort || c.ReadinessProbe.HTTPGet.Path != etcdcluster.ReadinessPath {
		t.Fatalf("readiness probe %+v", c.ReadinessProbe)
	}
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Port.IntValue() != MetricsPort || c.LivenessProbe.HTTPGet.Path != etcdcluster.LivenessPath {
		t.Fatalf("liveness probe %+v", c.LivenessProbe)
	}
}

// Members run as an unprivileged user whatever the image's default (the upstream etcd
// image runs as root, the project's as 65532), and that user's group can read the TLS
// Secret and write the data volume: with a 0400 root-owned Secret the member cannot read
// its own certificates (found by the cluster tier: "open /etc/etcd/tls/peer.crt:
// permission denied").
func TestMembersRunUnprivilegedAndCanReadTheirSecret(t *testing.T) {
	b, err := New(Options{Client: fake.NewClientset()})
	if err != nil {
		t.Fatal(err)
	}
	sts := b.statefulSet(testInstance(), "img", memberConfig{replicas: 1, initialCluster: "x", clusterState: "new", token: "t"})
	sc := sts.Spec.Template.Spec.SecurityContext
	if sc == nil || ptr.Deref(sc.RunAsUser, 0) != MemberUID || ptr.Deref(sc.FSGroup, 0) != MemberUID || !ptr.Deref(sc.RunAsNonRoot, false) {
		t.Fatalf("pod security context %+v: want user and fsGroup %d, non-root", sc, MemberUID)
	}
	var secretMode int32 = -1
	for _, v := range sts.Spec.Template.Spec.Volumes {
		if v.Secret != nil {
			secretMode = ptr.Deref(v.Secret.DefaultMode, 0)
		}
	}
	if secretMode != 0o440 {
		t.Fatalf("TLS Secret mode %o, want 0440 (readable by the fsGroup)", secretMode)
	}
}

// TestMemberPodsGetNoServiceAccountToken: nothing in a member pod (etcd, the seed init
// container of a restore or a recovery) talks to the Kubernetes API, so the token of the
// namespace's default ServiceAccount is not mounted into it: whoever took over a member, or
// read its filesystem, would otherwise act as that ServiceAccount.
func TestMemberPodsGetNoServiceAccountToken(t *testing.T) {
	b, err := New(Options{Client: fake.NewClientset()})
	if err != nil {
		t.Fatal(err)
	}
	plain := testInstance()
	plain.Spec.TLS = nil
	for _, inst := range []*v1beta1.ETCDInstance{testInstance(), plain} {
		for _, mc := range []memberConfig{
			{replicas: 1, initialCluster: "x", clusterState: "new", token: "t"},
			{replicas: 3, initialCluster: "x", clusterState: "existing", token: "t"},
		} {
			spec := b.statefulSet(inst, "img", mc).Spec.Template.Spec
			if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
				t.Errorf("TLS %v, %s cluster: member pods mount the ServiceAccount token (automountServiceAccountToken %v)",
					inst.Spec.TLSEnabled(), mc.clusterState, spec.AutomountServiceAccountToken)
			}
		}
	}
}

// TestRestoreFromIsRefusedNotIgnored: a controller that cannot seed members from a backup (no
// access to backups, no tools image) fails an instance asking for it with the reason, and
// creates nothing: it only looks for the StatefulSet.
func TestRestoreFromIsRefusedNotIgnored(t *testing.T) {
	client := fake.NewClientset()
	b, err := New(Options{Client: client})
	if err != nil {
		t.Fatal(err)
	}
	inst := testInstance()
	inst.Spec.RestoreFrom = &v1beta1.RestoreSource{Instance: "old"}
	_, err = b.Sync(context.Background(), inst)
	if pe, ok := backend.IsPermanent(err); !ok || pe.Reason != "RestoreUnavailable" {
		t.Fatalf("want a permanent RestoreUnavailable error, got %v", err)
	}
	for _, a := range client.Actions() {
		if a.GetVerb() != "get" {
			t.Fatalf("%s %s for an instance that cannot be created", a.GetVerb(), a.GetResource().Resource)
		}
	}
}
