package integration

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	versioned "github.com/etcdaas/etcdaas/pkg/generated/clientset/versioned"
	"github.com/etcdaas/etcdaas/test/fault"
	"github.com/etcdaas/etcdaas/test/testenv"
)

const killWriters = 16

// killServer is etcdaas-apiserver run standalone as a subprocess on a fixed port, so that
// clients keep their address across a kill -9 and a restart.
type killServer struct {
	t                *testing.T
	bin, dataDir     string
	port, etcdClient int
	etcdPeer         int
	cmd              *exec.Cmd
}

func (s *killServer) start() time.Duration {
	s.t.Helper()
	logFile, err := os.Create(filepath.Join(s.dataDir, fmt.Sprintf("apiserver-%d.log", time.Now().UnixNano())))
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { logFile.Close() })
	s.cmd = exec.Command(s.bin, "--standalone", "--data-dir", s.dataDir, "--controller=false",
		"--secure-port", strconv.Itoa(s.port),
		"--standalone-etcd-client-port", strconv.Itoa(s.etcdClient),
		"--standalone-etcd-peer-port", strconv.Itoa(s.etcdPeer))
	s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
	start := time.Now()
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	cmd := s.cmd
	s.t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	url := fmt.Sprintf("https://127.0.0.1:%d/readyz", s.port)
	for time.Since(start) < 2*time.Minute {
		if ca, err := os.ReadFile(filepath.Join(s.dataDir, "pki", "ca.crt")); err == nil {
			client, err := rest.HTTPClientFor(&rest.Config{Host: url, TLSClientConfig: rest.TLSClientConfig{CAData: ca}, Timeout: 2 * time.Second})
			if err != nil {
				s.t.Fatal(err)
			}
			if resp, err := client.Get(url); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return time.Since(start)
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.t.Fatalf("not ready within 2m; log in %s", logFile.Name())
	return 0
}

// kill9 sends SIGKILL: no shutdown hook runs, etcd gets no chance to flush.
func (s *killServer) kill9() {
	s.t.Helper()
	if err := s.cmd.Process.Kill(); err != nil {
		s.t.Fatal(err)
	}
	_ = s.cmd.Wait()
}

// TestKill9UnderConcurrentWriters runs 16 writers (half v1alpha1, half v1beta1) creating,
// updating and deleting their own objects against a standalone etcdaas-apiserver process,
// kills it with SIGKILL mid-load, restarts it on the same port and data directory while the
// writers retry, then kills it again once they stop. After the last restart, every
// acknowledged create, update and delete is there, every object reads back whole, and while
// the server was away the writers saw only connection errors and 5xx.
func TestKill9UnderConcurrentWriters(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a server process")
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "etcdaas-apiserver")
	build := exec.Command("go", "build", "-o", bin, "./cmd/etcdaas-apiserver")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ports := freeTestPorts(t, 3)
	srv := &killServer{t: t, bin: bin, dataDir: t.TempDir(), port: ports[0], etcdClient: ports[1], etcdPeer: ports[2]}
	srv.start()

	cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(srv.dataDir, "kubeconfig"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.QPS, cfg.Burst, cfg.Timeout = -1, 0, 5*time.Second
	cs, err := versioned.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	ns := namespace(t)

	writers := fault.StartWriters(cs, ns, killWriters, 4*time.Minute)
	time.Sleep(3 * time.Second)
	killedAt := time.Now()
	srv.kill9()
	time.Sleep(time.Second) // clients see connection refused for a while
	ready := srv.start()
	down := time.Since(killedAt)
	time.Sleep(3 * time.Second)
	if err := writers.Stop(); err != nil {
		t.Fatal(err)
	}

	// Everything acknowledged must survive a kill with no load and no grace either.
	srv.kill9()
	srv.start()

	present, deleted := fault.Verify(ctx, t, cs, ns, writers.Acknowledged())
	if unclean := writers.Tally.Unclean(); len(unclean) > 0 {
		t.Errorf("%d errors were not clean failures, first: %s", len(unclean), unclean[0])
	}
	t.Logf("acknowledged %d objects (%d present, %d deleted), all checked after 2 kill -9; down %s (restart to /readyz %s); %s",
		present+deleted, present, deleted, down.Round(time.Millisecond), ready.Round(time.Millisecond), writers.Tally)
	if present+deleted < killWriters {
		t.Errorf("only %d objects acknowledged", present+deleted)
	}
}
