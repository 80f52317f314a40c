package kubernetes

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/etcdaas/etcdaas/pkg/controller/backend"
)

// TestAnotherInstancesObjectIsNeitherUsedNorDeleted: instance db-peers's client Service has
// the name of db's headless peer Service, and db-client's TLS Secret that of db's client
// Secret. The later instance is refused with a NameConflict; it neither takes the other's
// object for its own (clients of db-peers would reach db's members, db's client Secret
// would be taken for db-client's CA and keys) nor deletes it when it is deleted.
func TestAnotherInstancesObjectIsNeitherUsedNorDeleted(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	b, err := New(Options{Client: client})
	if err != nil {
		t.Fatal(err)
	}
	db := testInstance()
	if _, err := b.Sync(ctx, db); err != nil {
		t.Fatal(err)
	}
	peers, err := client.CoreV1().Services("ns").Get(ctx, "db-peers", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	clientSecret, err := client.CoreV1().Secrets("ns").Get(ctx, "db-client-tls", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}

	for _, name := range []string{"db-peers", "db-client"} {
		other := testInstance()
		other.Name, other.UID = name, types.UID("uid-"+name)
		_, err := b.Sync(ctx, other)
		if pe, ok := backend.IsPermanent(err); !ok || pe.Reason != "NameConflict" || pe.RetryAfter != NameConflictRetry {
			t.Fatalf("sync of %s, whose object has the name of one of db's: %v, want a NameConflict to retry", name, err)
		}
		if err := b.Delete(ctx, other); err != nil {
			t.Fatalf("delete of %s: %v", name, err)
		}
	}

	got, err := client.CoreV1().Services("ns").Get(ctx, "db-peers", metav1.GetOptions{})
	if err != nil || got.UID != peers.UID || got.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Fatalf("db's peer Service after the other instances: %v, %v", got, err)
	}
	checkOwned(t, got, db)
	secret, err := client.CoreV1().Secrets("ns").Get(ctx, "db-client-tls", metav1.GetOptions{})
	if err != nil || secret.UID != clientSecret.UID || len(secret.Data) != len(clientSecret.Data) {
		t.Fatalf("db's client Secret after the other instances: %v, %v", secret, err)
	}
	checkOwned(t, secret, db)
	if _, err := client.AppsV1().StatefulSets("ns").Get(ctx, "db", metav1.GetOptions{}); err != nil {
		t.Fatalf("db's StatefulSet after the other instances: %v", err)
	}

	// Once db and its objects are gone, the same instance goes on: the conflict was not
	// its spec's.
	if err := b.Delete(ctx, db); err != nil {
		t.Fatal(err)
	}
	other := testInstance()
	other.Name, other.UID = "db-peers", types.UID("uid-db-peers")
	if _, err := b.Sync(ctx, other); err != nil {
		t.Fatalf("sync of db-peers once db is gone: %v", err)
	}
	got, err = client.CoreV1().Services("ns").Get(ctx, "db-peers", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkOwned(t, got, other)
}
