// Package s3server runs a real S3-compatible object store for the integration and e2e tests:
// SeaweedFS ("weed mini", pinned in hack/tools/seaweedfs and built into the tools directory
// by hack/tools/build.sh), listening on 127.0.0.1 only, with one identity and one bucket.
// It is a separate process, not an in-process fake, so that the backups go through a real
// store's multipart uploads, copies, listings and signatures.
package s3server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/etcdaas/etcdaas/pkg/loopback"
	"github.com/etcdaas/etcdaas/test/e2e/framework"
)

// Weed is the tool name of the SeaweedFS binary in the tools directory.
const Weed = "weed"

// Server is a running object store.
type Server struct {
	// Endpoint is the S3 endpoint, such as "http://127.0.0.1:40123".
	Endpoint string
	// AccessKeyID and SecretAccessKey are the credentials of the store's only identity.
	AccessKeyID, SecretAccessKey string
	// Bucket exists when Start returns.
	Bucket string

	proc *framework.Process
}

// identity is the store's S3 configuration: one identity allowed everything.
type identity struct {
	Name        string       `json:"name"`
	Credentials []credential `json:"credentials"`
	Actions     []string     `json:"actions"`
}

type credential struct {
	AccessKey string `json:"accessKey"`
	SecretKey string `json:"secretKey"`
}

// Start starts a store in a directory of the test and stops it when the test ends. It skips
// the test (fails it in CI) when the weed binary is missing.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := framework.RequireTools(t, Weed)[Weed]
	dir := t.TempDir()
	s, err := start(bin, dir)
	if err != nil {
		t.Fatalf("starting the S3 server: %v", err)
	}
	t.Cleanup(func() {
		if err := s.proc.Stop(); err != nil && err != framework.ErrKilled {
			t.Logf("stopping the S3 server: %v", err)
		}
	})
	return s
}

func start(bin, dir string) (*Server, error) {
	s := &Server{AccessKeyID: "etcdaas-test", SecretAccessKey: "etcdaas-test-secret-key", Bucket: "backups"}
	cfg, err := json.Marshal(map[string]any{"identities": []identity{{
		Name:        "tests",
		Credentials: []credential{{AccessKey: s.AccessKeyID, SecretKey: s.SecretAccessKey}},
		Actions:     []string{"Admin", "Read", "Write", "List", "Tagging"},
	}}})
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(dir, "s3.json")
	if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
		return nil, err
	}
	dataDir := filepath.Join(dir, "data")
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, err
	}
	ports, err := loopback.FreePorts(8)
	if err != nil {
		return nil, err
	}
	port := func(i int) string { return strconv.Itoa(ports[i]) }
	s.Endpoint = "http://" + loopback.HostPort(ports[0])
	args := []string{"mini",
		"-dir=" + dataDir,
		"-ip=127.0.0.1", "-ip.bind=127.0.0.1",
		"-s3.port=" + port(0), "-s3.port.grpc=" + port(1),
		"-master.port=" + port(2), "-master.port.grpc=" + port(3),
		"-volume.port=" + port(4), "-volume.port.grpc=" + port(5),
		"-filer.port=" + port(6), "-filer.port.grpc=" + port(7),
		"-s3.port.iceberg=0", "-s3.port.lance=0",
		"-webdav=false", "-admin.ui=false",
		// Nothing leaves the machine: no anonymous statistics.
		"-master.telemetry=false", "-master.telemetry.url=http://127.0.0.1:1/",
		"-s3.config=" + cfgPath,
		"-bucket=" + s.Bucket,
	}
	s.proc, err = framework.StartProcess("seaweedfs", dir, bin, args...)
	if err != nil {
		return nil, err
	}
	if err := s.waitReady(2 * time.Minute); err != nil {
		_ = s.proc.Stop()
		log, _ := os.ReadFile(s.proc.LogPath)
		return nil, fmt.Errorf("%w\n%s", err, tail(log, 4000))
	}
	return s, nil
}

// waitReady waits until the bucket exists for the store's identity: the gateway then serves
// signed requests and the startup bucket is created.
func (s *Server) waitReady(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	client, err := s.Client()
	if err != nil {
		return err
	}
	for {
		if exited, err := s.proc.Exited(); exited {
			return fmt.Errorf("weed exited: %v", err)
		}
		callCtx, callCancel := context.WithTimeout(ctx, 5*time.Second)
		var exists bool
		exists, err = client.BucketExists(callCtx, s.Bucket)
		callCancel()
		if err == nil && exists {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the S3 endpoint %s did not serve bucket %q within %s (last: exists=%v, %v)", s.Endpoint, s.Bucket, timeout, exists, err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// Client returns an S3 client of the store's identity, for tests that look at the bucket.
func (s *Server) Client() (*minio.Client, error) {
	u, err := url.Parse(s.Endpoint)
	if err != nil {
		return nil, err
	}
	return minio.New(u.Host, &minio.Options{Creds: credentials.NewStaticV4(s.AccessKeyID, s.SecretAccessKey, "")})
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
