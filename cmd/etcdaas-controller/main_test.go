package main

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	kubebackend "github.com/etcdaas/etcdaas/pkg/controller/backend/kubernetes"
)

// backendFor parses args as the command line and returns the backend it asks for.
func backendFor(t *testing.T, args ...string) (*kubebackend.Backend, error) {
	t.Helper()
	f := flags{}
	if err := newFlagSet(&f).Parse(args); err != nil {
		t.Fatal(err)
	}
	b, err := newBackend(f, fake.NewClientset(), nil)
	if err != nil {
		return nil, err
	}
	kb, ok := b.(*kubebackend.Backend)
	if !ok {
		t.Fatalf("backend %T, want the kubernetes backend", b)
	}
	return kb, nil
}

// --etcd-image reaches the members' image; the default is the public release image.
func TestEtcdImageFlag(t *testing.T) {
	inst := &v1beta1.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "db"}, Spec: v1beta1.ETCDInstanceSpec{Version: "3.6"}}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, kubebackend.DefaultImage + ":v3.6.5"},
		{[]string{"--etcd-image=registry.internal:5000/etcd"}, "registry.internal:5000/etcd:v3.6.5"},
		{[]string{"--etcd-image", "registry.internal/etcd:{tag}-mirror"}, "registry.internal/etcd:v3.6.5-mirror"},
	} {
		b, err := backendFor(t, tc.args...)
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if got, err := b.Image(inst); err != nil || got != tc.want {
			t.Errorf("%v: image %q (%v), want %q", tc.args, got, err, tc.want)
		}
	}
	if _, err := backendFor(t, "--etcd-image=registry.internal/etcd:v3.6.5"); err == nil || !strings.Contains(err.Error(), "--etcd-image") {
		t.Errorf("a fixed tag: %v", err)
	}
}
