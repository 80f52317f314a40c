package integration

import (
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1alpha1"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/controller/backend/local"
	versioned "github.com/etcdaas/etcdaas/pkg/generated/clientset/versioned"
	"github.com/etcdaas/etcdaas/test/integration/framework"
)

// TestStandaloneRefusesOtherEtcdVersions: the standalone server running its local backend
// refuses, in both API versions, an instance asking for an etcd it cannot run, naming the
// one it runs; the default version is accepted.
func TestStandaloneRefusesOtherEtcdVersions(t *testing.T) {
	ctx := testContext(t)
	srv := framework.StartT(t, framework.Options{Controller: true})
	cs, err := versioned.NewForConfig(srv.Config())
	if err != nil {
		t.Fatal(err)
	}
	embedded := local.EmbeddedVersion()
	checkRefused := func(what, version string, err error) {
		t.Helper()
		wantMessage := `spec.version: Unsupported value: "` + version + `": this server runs etcd ` + embedded + `, ` + local.EmbeddedRelease() + ` members only (standalone, local backend)`
		if !apierrors.IsInvalid(err) {
			t.Fatalf("%s: got %v, want 422 Invalid", what, err)
		}
		status := err.(apierrors.APIStatus).Status()
		if status.Code != 422 || !strings.Contains(status.Message, wantMessage) {
			t.Errorf("%s: %d %q, want 422 with %q", what, status.Code, status.Message, wantMessage)
		}
		if d := status.Details; d == nil || len(d.Causes) != 1 || d.Causes[0].Field != "spec.version" || d.Causes[0].Type != metav1.CauseTypeFieldValueNotSupported {
			t.Errorf("%s: causes %+v, want one FieldValueNotSupported on spec.version", what, status.Details)
		}
	}

	beta := cs.EtcdaasV1beta1().ETCDInstances("default")
	_, err = beta.Create(ctx, &v1beta1.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "old-etcd"},
		Spec:       v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](1), Version: "3.6"},
	}, metav1.CreateOptions{})
	checkRefused("v1beta1 create with version 3.6", "3.6", err)

	alpha := cs.EtcdaasV1alpha1().ETCDInstances("default")
	_, err = alpha.Create(ctx, &v1alpha1.ETCDInstance{ObjectMeta: metav1.ObjectMeta{
		Name:        "old-etcd-alpha",
		Annotations: map[string]string{etcdaas.PreservedFieldsAnnotation: `{"spec":{"version":"3.6"}}`},
	}}, metav1.CreateOptions{})
	checkRefused("v1alpha1 create with version 3.6 in its preserved fields", "3.6", err)

	for _, name := range []string{"old-etcd", "old-etcd-alpha"} {
		if _, err := beta.Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("refused %s was stored: %v", name, err)
		}
	}

	created, err := beta.Create(ctx, &v1beta1.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "default-version"},
		Spec:       v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](1)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create with the default version: %v", err)
	}
	if created.Spec.Version != embedded {
		t.Errorf("defaulted version %q, want the embedded %s", created.Spec.Version, embedded)
	}
	// The embedded release itself, such as 3.7.3, is what the local backend runs too.
	if _, err := beta.Create(ctx, &v1beta1.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "embedded-release"},
		Spec:       v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](1), Version: local.EmbeddedRelease()},
	}, metav1.CreateOptions{}); err != nil {
		t.Errorf("create with the embedded release %s: %v", local.EmbeddedRelease(), err)
	}
	if _, err := alpha.Create(ctx, &v1alpha1.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: "default-alpha"}}, metav1.CreateOptions{}); err != nil {
		t.Errorf("v1alpha1 create with the default version: %v", err)
	}

	// Unconditional, so that a status write by the controller cannot turn it into a 409.
	created.ResourceVersion = ""
	// The next minor passes the upgrade rule (one minor at a time) but not the local backend.
	created.Spec.Version = "3.8"
	_, err = beta.Update(ctx, created, metav1.UpdateOptions{})
	checkRefused("v1beta1 update to version 3.8", "3.8", err)
}
