package integration

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/controller/backend/local"
)

// TestGoClientSubresources calls the subresources the clientset has no typed method for as the
// README's "From Go" shows, through the group's RESTClient: a backup streamed, restored back
// over a later write, a defragmentation requested and a recovery refused with a 409.
func TestGoClientSubresources(t *testing.T) {
	t.Parallel()
	e := ctlStart(t, local.Options{})
	ns, name := "goclient", "db"
	ctx := context.Background()
	cli := e.runningClient(ns, name, 1)
	if _, err := cli.Put(ctx, "greeting", "before"); err != nil {
		t.Fatal(err)
	}
	rc := e.client.EtcdaasV1beta1().RESTClient()
	req := func(verb, sub string) *rest.Request {
		return rc.Verb(verb).Namespace(ns).Resource("etcdinstances").Name(name).SubResource(sub)
	}

	stream, err := req("GET", "backup").Stream(ctx)
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	snapshot, err := io.ReadAll(stream)
	_ = stream.Close()
	if err != nil || len(snapshot) == 0 {
		t.Fatalf("backup: %d bytes, %v", len(snapshot), err)
	}
	if _, err := cli.Put(ctx, "greeting", "after"); err != nil {
		t.Fatal(err)
	}

	restoring := &v1beta1.ETCDInstance{}
	var code int
	err = req("POST", "restore").SetHeader("Content-Type", "application/octet-stream").Body(bytes.NewReader(snapshot)).
		Do(ctx).StatusCode(&code).Into(restoring)
	if err != nil || code != http.StatusAccepted || restoring.Status.Phase != v1beta1.PhaseRestoring {
		t.Fatalf("restore: %d, phase %q, %v; want 202 and phase Restoring", code, restoring.Status.Phase, err)
	}
	// Running alone proves nothing: a controller look begun before the restore was accepted
	// may still write it (restoredAndRunning).
	e.restoredAndRunning(restoring, 2*time.Minute)
	restored := e.etcdClient(ns, name)
	if got := getValue(t, restored, "greeting"); got != "before" {
		t.Fatalf("greeting after the restore: %q, want the snapshot's %q", got, "before")
	}

	status := &metav1.Status{}
	if err := req("POST", "defrag").Do(ctx).Into(status); err != nil {
		t.Fatalf("defrag: %v", err)
	}
	if status.Code != http.StatusAccepted || status.Reason != "Accepted" {
		t.Fatalf("defrag answered %d %s: %s; want 202 Accepted", status.Code, status.Reason, status.Message)
	}
	err = req("POST", "recover").Param("member", name+"-0").Do(ctx).Into(&metav1.Status{})
	if !apierrors.IsConflict(err) {
		t.Fatalf("recover of an instance with quorum: %v, want a conflict", err)
	}
}

// getValue reads key through cli, "" when it is missing.
func getValue(t *testing.T, cli *clientv3.Client, key string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		return ""
	}
	return string(resp.Kvs[0].Value)
}
