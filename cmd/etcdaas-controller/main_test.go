package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/controller"
	kubebackend "github.com/etcdaas/etcdaas/pkg/controller/backend/kubernetes"
)

// backendFor parses args as the command line and returns the backend it asks for.
func backendFor(t *testing.T, args ...string) (*kubebackend.Backend, error) {
	t.Helper()
	f := flags{}
	if err := newFlagSet(&f).Parse(args); err != nil {
		t.Fatal(err)
	}
	b, err := newBackend(f, fake.NewClientset(), nil, nil)
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

// S3 credentials come from Secrets whenever the server serves them (a cluster, whatever the
// backend), else from the server's own: --s3-credentials-file, or the environment.
func TestS3CredentialsPerMode(t *testing.T) {
	cluster := fake.NewClientset()
	cluster.Resources = []*metav1.APIResourceList{{GroupVersion: "v1", APIResources: []metav1.APIResource{{Name: "events"}, {Name: "secrets"}}}}
	standalone := fake.NewClientset()
	standalone.Resources = []*metav1.APIResourceList{{GroupVersion: "v1", APIResources: []metav1.APIResource{{Name: "events"}}}}
	noCore := fake.NewClientset() // serves no core/v1 at all
	for _, tc := range []struct {
		name string
		kube *fake.Clientset
		args []string
		want string // type of the credentials; empty: an error naming the flag
	}{
		{"cluster, local backend", cluster, []string{"--backend=local", "--data-dir=/d"}, "backup.SecretCredentials"},
		{"cluster, kubernetes backend", cluster, nil, "backup.SecretCredentials"},
		{"cluster with a credentials file", cluster, []string{"--backend=local", "--data-dir=/d", "--s3-credentials-file=/c"}, ""},
		{"standalone", standalone, []string{"--backend=local", "--data-dir=/d"}, "backup.EnvCredentials"},
		{"standalone with a credentials file", standalone, []string{"--backend=local", "--data-dir=/d", "--s3-credentials-file=/c"}, "backup.FileCredentials"},
		{"no core API", noCore, []string{"--backend=local", "--data-dir=/d"}, "backup.EnvCredentials"},
	} {
		f := flags{}
		if err := newFlagSet(&f).Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		creds, err := s3Credentials(f, tc.kube)
		if tc.want == "" {
			if err == nil || !strings.Contains(err.Error(), "--s3-credentials-file") {
				t.Errorf("%s: %T, %v; want an error naming --s3-credentials-file", tc.name, creds, err)
			}
			continue
		}
		if got := fmt.Sprintf("%T", creds); err != nil || got != tc.want {
			t.Errorf("%s: %s, %v; want %s", tc.name, got, err, tc.want)
		}
		// The backups and restoreFrom of the local backend use the same credentials.
		if got := fmt.Sprintf("%T", backupOptions(f, nil, creds).Resolver.Credentials); got != tc.want {
			t.Errorf("%s: backups use %s, want %s", tc.name, got, tc.want)
		}
	}
}

// The --defrag-* flags reach the controller's thresholds; bad values are refused by name.
func TestDefragFlags(t *testing.T) {
	parse := func(args ...string) flags {
		t.Helper()
		f := flags{}
		if err := newFlagSet(&f).Parse(args); err != nil {
			t.Fatal(err)
		}
		return f
	}
	got, err := defragOptions(parse())
	if err != nil || got != (controller.DefragOptions{FreePercent: 50, FreeBytes: 64 << 20, Timeout: 5 * time.Minute}) {
		t.Fatalf("defaults: %+v, %v", got, err)
	}
	got, err = defragOptions(parse("--defrag-free-percent=20", "--defrag-free-bytes=0", "--defrag-timeout=1m"))
	if err != nil || got != (controller.DefragOptions{FreePercent: 20, FreeBytes: 0, Timeout: time.Minute}) {
		t.Fatalf("set: %+v, %v", got, err)
	}
	for _, args := range [][]string{{"--defrag-free-percent=0"}, {"--defrag-free-percent=101"}, {"--defrag-free-bytes=lots"},
		{"--defrag-free-bytes=-1Mi"}, {"--defrag-timeout=0s"}} {
		if _, err := defragOptions(parse(args...)); err == nil || !strings.Contains(err.Error(), strings.SplitN(args[0], "=", 2)[0]) {
			t.Errorf("%v: %v", args, err)
		}
	}
}

// The --auto-compaction-* flags reach the members of either backend (members compact their
// history older than an hour by default); values etcd would refuse or misread are refused at
// start by flag name, before any member runs with them.
func TestAutoCompactionFlags(t *testing.T) {
	inst := &v1beta1.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "db"}, Spec: v1beta1.ETCDInstanceSpec{Version: "3.6"}}
	for _, tc := range []struct {
		args       []string
		mode, keep string
	}{
		{nil, "periodic", "1h"},
		{[]string{"--auto-compaction-retention=30m"}, "periodic", "30m"},
		{[]string{"--auto-compaction-mode=revision", "--auto-compaction-retention=10000"}, "revision", "10000"},
		{[]string{"--auto-compaction-retention=0"}, "periodic", "0"},
	} {
		f := flags{}
		if err := newFlagSet(&f).Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		kube := fake.NewClientset()
		b, err := newBackend(f, kube, nil, nil)
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if _, err := b.Sync(context.Background(), inst); err != nil {
			t.Fatal(err)
		}
		sts, err := kube.AppsV1().StatefulSets("ns").Get(context.Background(), "db", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		env := map[string]string{}
		for _, e := range sts.Spec.Template.Spec.Containers[0].Env {
			env[e.Name] = e.Value
		}
		if mode, keep := env["ETCD_AUTO_COMPACTION_MODE"], env["ETCD_AUTO_COMPACTION_RETENTION"]; mode != tc.mode || keep != tc.keep {
			t.Errorf("%v: members run with mode %q retention %q, want %q %q", tc.args, mode, keep, tc.mode, tc.keep)
		}
	}
	for _, args := range [][]string{{"--auto-compaction-mode=hourly"}, {"--auto-compaction-retention=-1h"},
		{"--auto-compaction-retention=an hour"}, {"--auto-compaction-mode=revision"}} {
		want := "--auto-compaction-retention"
		if args[0] == "--auto-compaction-mode=hourly" {
			want = "--auto-compaction-mode"
		}
		for _, backendArgs := range [][]string{nil, {"--backend=local", "--data-dir=" + t.TempDir()}} {
			f := flags{}
			if err := newFlagSet(&f).Parse(append(append([]string{}, backendArgs...), args...)); err != nil {
				t.Fatal(err)
			}
			if b, err := newBackend(f, fake.NewClientset(), nil, nil); err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%v %v: %T, %v; want an error naming %s", backendArgs, args, b, err, want)
			}
		}
	}
}
