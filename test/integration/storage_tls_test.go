package integration

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/cmd/server"
	"github.com/etcdaas/etcdaas/pkg/embedetcd"
	versioned "github.com/etcdaas/etcdaas/pkg/generated/clientset/versioned"
	"github.com/etcdaas/etcdaas/pkg/loopback"
	"github.com/etcdaas/etcdaas/pkg/pki"
	"github.com/etcdaas/etcdaas/test/integration/framework"
	"github.com/etcdaas/etcdaas/test/testenv"
)

// storageProbe counts the stored objects of the storage etcd at endpoint with config's TLS;
// it returns the error of a client the etcd refuses.
func storageProbe(endpoint string, config clientv3.Config) (int, error) {
	config.Endpoints = []string{endpoint}
	config.DialTimeout = 2 * time.Second
	config.Logger = zap.NewNop()
	cli, err := clientv3.New(config)
	if err != nil {
		return 0, err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, "/registry/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return 0, err
	}
	return int(resp.Count), nil
}

// tlsFor is a client TLS configuration trusting the storage etcd's CA of s and presenting
// the certificate dir/name.{crt,key} (none when name is empty).
func tlsFor(t *testing.T, s *framework.Server, dir, name string) *tls.Config {
	t.Helper()
	info := transport.TLSInfo{TrustedCAFile: s.EtcdTLS.TrustedCAFile}
	if name != "" {
		info.CertFile, info.KeyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	}
	c, err := info.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// createKept creates the instance ns/kept through the API server of s.
func createKept(t *testing.T, s *framework.Server, ns string) versioned.Interface {
	t.Helper()
	cs, err := versioned.NewForConfig(s.Config())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.EtcdaasV1beta1().ETCDInstances(ns).Create(testContext(t), &v1beta1.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "kept"}, Spec: v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](5)},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return cs
}

// TestStandaloneStorageEtcdRefusesPlaintextClients: the etcd that stores the standalone
// server's objects serves only clients with a certificate of its own CA: a plaintext client,
// a TLS client without a certificate, one with a certificate of another CA (a new one, or
// the standalone CA whose admin certificate is system:masters on the API server) are
// refused, on the client and the peer port; the API server's etcd client certificate works
// there and grants nothing on the API server, which keeps serving.
func TestStandaloneStorageEtcdRefusesPlaintextClients(t *testing.T) {
	t.Parallel()
	s := framework.StartT(t, framework.Options{})
	ns := namespace(t)
	cs := createKept(t, s, ns)
	u, err := url.Parse(s.EtcdEndpoint)
	if err != nil {
		t.Fatal(err)
	}
	if u.Scheme != "https" {
		t.Errorf("the storage etcd's endpoint is %s, want https", s.EtcdEndpoint)
	}
	otherDir := clientOfAnotherCA(t)
	pkiDir := filepath.Join(s.DataDir, "pki")
	refused := map[string]clientv3.Config{
		"plaintext":                    {},
		"TLS without a certificate":    {TLS: tlsFor(t, s, "", "")},
		"a certificate of another CA":  {TLS: tlsFor(t, s, otherDir, "client")},
		"the standalone admin's (API)": {TLS: tlsFor(t, s, pkiDir, "admin")},
	}
	for name, config := range refused {
		endpoint := s.EtcdEndpoint
		if name == "plaintext" {
			endpoint = u.Host
		}
		if n, err := storageProbe(endpoint, config); err == nil {
			t.Errorf("%s: a client read %d stored objects from the storage etcd at %s", name, n, s.EtcdEndpoint)
		}
	}

	checkPeerPortRefuses(t, s, otherDir, pkiDir)

	if n, err := storageProbe(s.EtcdEndpoint, clientv3.Config{TLS: tlsFor(t, s, pkiDir, server.StandaloneEtcdClientName)}); err != nil || n == 0 {
		t.Errorf("the API server's etcd client certificate: %d objects, %v", n, err)
	}
	checkEtcdCertIsNobody(t, s, ns)
	if got, err := cs.EtcdaasV1beta1().ETCDInstances(ns).Get(testContext(t), "kept", metav1.GetOptions{}); err != nil || *got.Spec.Replicas != 5 {
		t.Errorf("the API server over its TLS storage: %v %+v", err, got)
	}
}

// clientOfAnotherCA writes, in a new directory it returns, a client certificate (client.crt,
// client.key) with the API server's etcd client name, issued by a CA of its own.
func clientOfAnotherCA(t *testing.T) string {
	t.Helper()
	intruder, err := pki.NewCA("intruder")
	if err != nil {
		t.Fatal(err)
	}
	other, err := intruder.Issue(pki.Request{CommonName: "etcdaas-apiserver-etcd-client", Usage: pki.ClientUsage})
	if err != nil {
		t.Fatal(err)
	}
	otherDir := t.TempDir()
	if err := other.Write(otherDir, "client"); err != nil {
		t.Fatal(err)
	}
	return otherDir
}

// checkPeerPortRefuses checks that the peer port of s's storage etcd lists its members to
// no client: plaintext, without a certificate, with one of another CA (in otherDir), or with
// the API server's etcd client certificate (in pkiDir).
func checkPeerPortRefuses(t *testing.T, s *framework.Server, otherDir, pkiDir string) {
	t.Helper()
	// The peer port asks for a certificate of the etcd CA too, and only the member's own: the
	// API server's etcd client certificate, of the same CA, is refused there.
	members, err := s.EtcdClient(t).MemberList(testContext(t))
	if err != nil {
		t.Fatalf("a client with the API server's etcd certificate: %v", err)
	}
	peer := members.Members[0].PeerURLs[0]
	for name, c := range map[string]*tls.Config{"plaintext": nil, "TLS without a certificate": tlsFor(t, s, "", ""), "another CA": tlsFor(t, s, otherDir, "client"),
		"the API server's etcd client": tlsFor(t, s, pkiDir, server.StandaloneEtcdClientName)} {
		client := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{TLSClientConfig: c}}
		target := peer + "/members"
		if c == nil {
			target = "http://" + peer[len("https://"):] + "/members"
		}
		if resp, err := client.Get(target); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				t.Errorf("peer port %s: %s client listed the members", peer, name)
			}
		}
	}
}

// checkEtcdCertIsNobody checks that the storage etcd's client certificate of s is nobody on
// the API server: it cannot read the instance kept in ns.
func checkEtcdCertIsNobody(t *testing.T, s *framework.Server, ns string) {
	t.Helper()
	etcdCert := rest.CopyConfig(s.Config())
	etcdCert.CertData, etcdCert.KeyData = nil, nil
	etcdCert.CertFile, etcdCert.KeyFile = s.EtcdTLS.CertFile, s.EtcdTLS.KeyFile
	asEtcd, err := versioned.NewForConfig(etcdCert)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := asEtcd.EtcdaasV1beta1().ETCDInstances(ns).Get(testContext(t), "kept", metav1.GetOptions{}); err == nil {
		t.Error("the storage etcd's client certificate read an instance from the API server")
	}
}

// TestStandaloneDataDirWithoutEtcdCertificates: a data directory of a version whose storage
// etcd served plaintext (no etcd certificates, an http peer URL in the member's record)
// starts, gets the storage etcd's certificates, keeps its objects and the standalone CA and
// admin certificate its kubeconfigs trust.
func TestStandaloneDataDirWithoutEtcdCertificates(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first, err := framework.Start(context.Background(), framework.Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	ns := namespace(t)
	createKept(t, first, ns)
	if err := first.Stop(); err != nil {
		t.Fatal(err)
	}
	pkiDir := filepath.Join(dir, "pki")
	admin, err := os.ReadFile(filepath.Join(pkiDir, "admin.crt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(pkiDir, "etcd"), filepath.Join(pkiDir, "apiserver-etcd-client.crt"), filepath.Join(pkiDir, "apiserver-etcd-client.key")} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("the server did not write %s: %v", p, err)
		}
		if err := os.RemoveAll(p); err != nil {
			t.Fatal(err)
		}
	}
	plaintextPeerURL(t, filepath.Join(dir, "etcd"))

	second := framework.StartT(t, framework.Options{DataDir: dir})
	cs, err := versioned.NewForConfig(second.Config())
	if err != nil {
		t.Fatal(err)
	}
	if got, err := cs.EtcdaasV1beta1().ETCDInstances(ns).Get(testContext(t), "kept", metav1.GetOptions{}); err != nil || *got.Spec.Replicas != 5 {
		t.Fatalf("the object of the old data directory: %v %+v", err, got)
	}
	if adminAfter, err := os.ReadFile(filepath.Join(pkiDir, "admin.crt")); err != nil || string(adminAfter) != string(admin) {
		t.Errorf("the admin certificate changed: %v", err)
	}
	if _, err := os.Stat(second.EtcdTLS.CertFile); err != nil {
		t.Errorf("no etcd client certificate after the start: %v", err)
	}
	u, err := url.Parse(second.EtcdEndpoint)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := storageProbe(u.Host, clientv3.Config{}); err == nil {
		t.Errorf("a plaintext client read %d stored objects after the start on an old data directory", n)
	}
	if got := storedValues(t, second, ns, "kept"); len(got) != 1 {
		t.Errorf("stored: %v", got)
	}
}

// plaintextPeerURL makes the storage etcd in dir what an older version left: started in
// plaintext, its member record naming an http peer URL.
func plaintextPeerURL(t *testing.T, dir string) {
	t.Helper()
	ports, err := loopback.FreePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	m := embedetcd.Member{Name: "etcdaas-storage", Dir: dir, ClientURL: "http://" + loopback.HostPort(ports[0]),
		PeerURL: "http://" + loopback.HostPort(ports[1]), LogOutput: dir + ".old.log"}
	e, err := embedetcd.Start(m)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if err := embedetcd.WaitReady(testContext(t), e); err != nil {
		t.Fatal(err)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{m.ClientURL}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.MemberUpdate(testContext(t), uint64(e.Server.MemberID()), []string{m.PeerURL}); err != nil {
		t.Fatalf("writing an http peer URL: %v", err)
	}
}

// TestStandaloneEtcdctlFlags: the etcdctl command line the standalone server prints (and the
// README shows) reads the stored objects with the pinned etcdctl (_output/bin/etcdctl, from
// hack/tools/build.sh etcdctl; skipped without it).
func TestStandaloneEtcdctlFlags(t *testing.T) {
	t.Parallel()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	etcdctl := filepath.Join(root, "_output", "bin", "etcdctl")
	if _, err := os.Stat(etcdctl); err != nil {
		t.Skipf("no etcdctl (hack/tools/build.sh etcdctl builds it): %v", err)
	}
	ns := namespace(t)
	createKept(t, shared, ns)
	args := append(shared.EtcdctlFlags(), "--dial-timeout=2s", "--command-timeout=5s", "get", "--prefix", "--keys-only", "/registry/")
	out, err := exec.Command(etcdctl, args...).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "/etcdinstances/"+ns+"/kept") {
		t.Errorf("etcdctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	// Without the client certificate, the same command is refused.
	out, err = exec.Command(etcdctl, append([]string{args[0], args[1]}, args[4:]...)...).CombinedOutput()
	if err == nil {
		t.Errorf("etcdctl without a client certificate read:\n%s", out)
	}
}
