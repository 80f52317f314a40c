// Package framework starts etcdaas-apiserver in-process, in standalone mode on embedded etcd
// and free 127.0.0.1 ports, for integration tests, and finds the kubectl binaries they drive.
package framework

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"k8s.io/client-go/rest"

	"github.com/etcdaas/etcdaas/pkg/cmd/server"
	"github.com/etcdaas/etcdaas/test/testenv"
)

// Server is a standalone etcdaas-apiserver running in this process.
type Server struct {
	*server.Standalone
}

// Options tune a test server.
type Options struct {
	// DataDir is reused when set (restart tests); a fresh temporary directory otherwise.
	DataDir string
	// PostStartHooks run once the server serves (the controller engineer starts the
	// controller here).
	PostStartHooks []server.PostStartHook
	// MaxRestoreSize is the server's --max-restore-size; empty keeps the default.
	MaxRestoreSize string
	// Controller runs the in-process local-backend controller, as the --controller flag
	// does by default (and with it, the admission of the embedded etcd version only).
	Controller bool
	// StorageMediaType is the server's --storage-media-type; empty keeps the default
	// (protobuf).
	StorageMediaType string
}

// Start starts a standalone server on free ports and returns once /readyz succeeds. It runs
// until ctx is done or Stop is called; the caller must Stop it.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if opts.DataDir == "" {
		return nil, fmt.Errorf("framework.Start: DataDir is required")
	}
	o := server.NewOptions()
	o.Standalone.DataDir = opts.DataDir
	o.Standalone.PostStartHooks = opts.PostStartHooks
	o.Standalone.Controller = opts.Controller
	if opts.MaxRestoreSize != "" {
		o.MaxRestoreSize = opts.MaxRestoreSize
	}
	if opts.StorageMediaType != "" {
		o.RecommendedOptions.Etcd.DefaultStorageMediaType = opts.StorageMediaType
	}
	// 0 makes the standalone mode listen on a free port.
	o.RecommendedOptions.SecureServing.BindPort = 0
	o.Standalone.EtcdClientPort = 0
	o.Standalone.EtcdPeerPort = 0
	s, err := o.StartStandalone(ctx)
	if err != nil {
		return nil, err
	}
	return &Server{Standalone: s}, nil
}

// StartT starts a server for a test in opts.DataDir (a t.TempDir() when empty) and stops it
// when the test ends.
func StartT(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.DataDir == "" {
		opts.DataDir = t.TempDir()
	}
	start := time.Now()
	s, err := Start(context.Background(), opts)
	if err != nil {
		t.Fatalf("starting etcdaas-apiserver: %v", err)
	}
	t.Logf("etcdaas-apiserver ready at %s in %s", s.URL, time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("stopping etcdaas-apiserver: %v", err)
		}
	})
	return s
}

// Config returns a copy of the admin client configuration (group system:masters).
func (s *Server) Config() *rest.Config {
	return rest.CopyConfig(s.AdminConfig)
}

// EtcdClientConfig is a configuration for a client of the etcd that stores the server's
// objects, with the API server's etcd client certificate: that etcd serves only clients with
// a certificate of its own CA.
func (s *Server) EtcdClientConfig() (clientv3.Config, error) {
	tlsConfig, err := s.EtcdTLS.ClientConfig()
	if err != nil {
		return clientv3.Config{}, fmt.Errorf("the storage etcd's client certificate: %w", err)
	}
	return clientv3.Config{Endpoints: []string{s.EtcdEndpoint}, TLS: tlsConfig, DialTimeout: 5 * time.Second, Logger: zap.NewNop()}, nil
}

// EtcdClient opens a client of the etcd that stores the server's objects (EtcdClientConfig);
// it is closed when the test ends.
func (s *Server) EtcdClient(t testing.TB) *clientv3.Client {
	t.Helper()
	config, err := s.EtcdClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	cli, err := clientv3.New(config)
	if err != nil {
		t.Fatalf("connecting to the storage etcd: %v", err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

// KubectlBinaries returns the kubectl binaries to test with: $KUBECTL (default
// <repo>/_output/bin/kubectl, the pinned v1.37 built by hack/tools/build.sh) and
// /usr/bin/kubectl when present. When the pinned one is missing, the test fails under CI=true
// and is skipped otherwise.
func KubectlBinaries(t testing.TB) map[string]string {
	t.Helper()
	out := map[string]string{}
	pinned := os.Getenv("KUBECTL")
	if pinned == "" {
		root, err := testenv.RepoRoot()
		if err != nil {
			t.Fatal(err)
		}
		pinned = filepath.Join(root, "_output", "bin", "kubectl")
	}
	if _, err := os.Stat(pinned); err == nil {
		out["pinned"] = pinned
	} else if testenv.InCI() {
		t.Fatalf("kubectl not found at %s (build it with hack/tools/build.sh kubectl or set KUBECTL): %v", pinned, err)
	} else {
		t.Logf("kubectl not found at %s (build it with hack/tools/build.sh kubectl or set KUBECTL); not testing it", pinned)
	}
	if system, err := exec.LookPath("/usr/bin/kubectl"); err == nil && system != pinned {
		out["system"] = system
	}
	if len(out) == 0 {
		t.Skip("no kubectl binary available")
	}
	return out
}
