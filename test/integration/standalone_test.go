package integration

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1alpha1"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/cmd/server"
	versioned "github.com/etcdaas/etcdaas/pkg/generated/clientset/versioned"
	"github.com/etcdaas/etcdaas/test/integration/framework"
)

func TestStandaloneRestartKeepsObjects(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	dir := t.TempDir()
	first, err := framework.Start(ctx, framework.Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = first.Stop()
		}
	})

	kubeconfig, err := clientcmd.BuildConfigFromFlags("", filepath.Join(dir, "kubeconfig"))
	if err != nil {
		t.Fatalf("loading the written kubeconfig: %v", err)
	}
	cs, err := versioned.NewForConfig(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	createKeptAndOld(t, ctx, cs)
	caBefore, err := os.ReadFile(filepath.Join(dir, "pki", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}

	// An open watch (kubectl get -w, an informer) must not hold the stop for the request
	// timeout.
	w, err := cs.EtcdaasV1beta1().ETCDInstances("").Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	stopStart := time.Now()
	if err := first.Stop(); err != nil {
		t.Fatalf("clean stop: %v", err)
	}
	stopped = true
	if took := time.Since(stopStart); took > 15*time.Second {
		t.Errorf("stop with an open watch took %s", took)
	} else {
		t.Logf("stopped with an open watch in %s", took.Round(time.Millisecond))
	}
	if _, err := cs.EtcdaasV1beta1().ETCDInstances("default").Get(ctx, "kept", metav1.GetOptions{}); err == nil {
		t.Fatal("server still answers after Stop")
	}

	second := framework.StartT(t, framework.Options{DataDir: dir})
	caAfter, err := os.ReadFile(filepath.Join(dir, "pki", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(caBefore, caAfter) {
		t.Error("the CA changed across a restart")
	}
	checkKeptAcrossRestart(t, ctx, second)
	checkKubeconfigReused(t, ctx, dir, kubeconfig)
}

// createKeptAndOld creates default/kept (v1beta1, 5 replicas, 3.6, TLS) and other/old (v1alpha1).
func createKeptAndOld(t *testing.T, ctx context.Context, cs *versioned.Clientset) {
	t.Helper()
	if _, err := cs.EtcdaasV1beta1().ETCDInstances("default").Create(ctx, &v1beta1.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "kept"},
		Spec:       v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](5), Version: "3.6", TLS: &v1beta1.TLSSpec{Enabled: true}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.EtcdaasV1alpha1().ETCDInstances("other").Create(ctx, &v1alpha1.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "old"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// checkKeptAcrossRestart checks that the restarted server second serves both objects
// createKeptAndOld created, default/kept's spec as it was.
func checkKeptAcrossRestart(t *testing.T, ctx context.Context, second *framework.Server) {
	t.Helper()
	cs2, err := versioned.NewForConfig(second.Config())
	if err != nil {
		t.Fatal(err)
	}
	kept, err := cs2.EtcdaasV1beta1().ETCDInstances("default").Get(ctx, "kept", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("object lost across restart: %v", err)
	}
	if *kept.Spec.Replicas != 5 || kept.Spec.Version != "3.6" || kept.Spec.TLS == nil || !kept.Spec.TLS.Enabled {
		t.Errorf("restored %+v", kept.Spec)
	}
	all, err := cs2.EtcdaasV1beta1().ETCDInstances("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all.Items) != 2 {
		t.Errorf("%d objects after restart, want 2", len(all.Items))
	}
}

// checkKubeconfigReused checks that the kubeconfig a restart writes in dir keeps the admin
// certificate and CA of kubeconfig, the one before, and works.
func checkKubeconfigReused(t *testing.T, ctx context.Context, dir string, kubeconfig *rest.Config) {
	t.Helper()
	// The admin certificate is reused: old kubeconfigs keep working.
	rewritten, err := clientcmd.BuildConfigFromFlags("", filepath.Join(dir, "kubeconfig"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(rewritten.CertData, kubeconfig.CertData) || !bytes.Equal(rewritten.CAData, kubeconfig.CAData) {
		t.Error("the admin certificate or CA in the kubeconfig changed across a restart")
	}
	cs3, err := versioned.NewForConfig(rewritten)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs3.EtcdaasV1alpha1().ETCDInstances("other").Get(ctx, "old", metav1.GetOptions{}); err != nil {
		t.Errorf("v1alpha1 object through the rewritten kubeconfig after restart: %v", err)
	}
}

func TestStandalonePostStartHook(t *testing.T) {
	called := make(chan *rest.Config, 1)
	framework.StartT(t, framework.Options{PostStartHooks: []server.PostStartHook{{
		Name: "test-hook",
		Run: func(ctx context.Context, config *rest.Config) error {
			called <- config
			return nil
		},
	}}})
	select {
	case cfg := <-called:
		cs, err := versioned.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx := testContext(t)
		if _, err := cs.EtcdaasV1beta1().ETCDInstances("hook").Create(ctx, &v1beta1.ETCDInstance{
			ObjectMeta: metav1.ObjectMeta{Name: "from-hook"},
		}, metav1.CreateOptions{}); err != nil {
			t.Errorf("loopback client from the hook: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("post-start hook not called")
	}
}

func TestStandaloneRefusesBadOptions(t *testing.T) {
	for _, addr := range []string{"0.0.0.0", "10.1.2.3", "::"} {
		var out, errOut bytes.Buffer
		cmd := server.NewCommand(context.Background(), &out, &errOut)
		cmd.SetArgs([]string{"--standalone", "--data-dir", t.TempDir(), "--bind-address", addr})
		err := cmd.Execute()
		if err == nil || !strings.Contains(err.Error(), "not a loopback address") {
			t.Errorf("--bind-address %s: err = %v, want a loopback error", addr, err)
		}
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--standalone"}, "--data-dir is required"},
		{[]string{"--standalone", "--data-dir", t.TempDir(), "--etcd-servers", "http://127.0.0.1:2379"}, "cannot be used with --standalone"},
	} {
		var out, errOut bytes.Buffer
		cmd := server.NewCommand(context.Background(), &out, &errOut)
		cmd.SetArgs(c.args)
		if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: err = %v, want %q", c.args, err, c.want)
		}
	}
}

// TestStandalonePortInUseFailsBeforeStartingStorage: `make run` on a machine where
// 127.0.0.1:6443 is taken (a kubeadm control plane, another server) fails with the bind
// error alone. The serving port used to be bound only once the storage etcd had started,
// which then stopped again while its clients connected, so the error came after grpc
// warnings ("authentication handshake failed") that read as the cause.
func TestStandalonePortInUseFailsBeforeStartingStorage(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = taken.Close() }()
	port := strconv.Itoa(taken.Addr().(*net.TCPAddr).Port)
	dir := t.TempDir()
	var out, errOut bytes.Buffer
	cmd := server.NewCommand(context.Background(), &out, &errOut)
	cmd.SetArgs([]string{"--standalone", "--data-dir", dir, "--secure-port", port})
	err = cmd.Execute()
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:"+port) || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("err = %v, want the bind error naming 127.0.0.1:%s", err, port)
	}
	if _, err := os.Stat(filepath.Join(dir, "etcd")); !os.IsNotExist(err) {
		t.Errorf("the storage etcd was started before the port was found taken (%s/etcd: %v)", dir, err)
	}
}
