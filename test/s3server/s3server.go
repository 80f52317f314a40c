// Package s3server runs a real S3-compatible object store for the unit, integration and e2e
// tests: the Versity S3 Gateway ("versitygw" with its posix backend, pinned in
// hack/tools/versitygw and built into the tools directory by hack/tools/build.sh), listening
// on 127.0.0.1 (the cluster tier: on its bridge address, for its pods), with one identity and
// one bucket. It is a separate process, not an in-process fake, so that the backups go through
// a real store's multipart uploads, copies, listings and signatures.
package s3server

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/etcdaas/etcdaas/pkg/loopback"
	"github.com/etcdaas/etcdaas/test/e2e/framework"
)

// Versitygw is the tool name of the S3 gateway binary in the tools directory.
const Versitygw = "versitygw"

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

// Start starts a store in a directory of the test and stops it when the test ends. It skips
// the test (fails it in CI) when the versitygw binary is missing.
func Start(t testing.TB) *Server {
	t.Helper()
	return StartOn(t, loopback.Host)
}

// StartOn is Start listening on host instead of 127.0.0.1: an address of this machine that a
// harness created, such as the cluster tier's bridge address, which its pods reach.
func StartOn(t testing.TB, host string) *Server {
	t.Helper()
	bin := framework.RequireTools(t, Versitygw)[Versitygw]
	dir := t.TempDir()
	s, err := start(bin, dir, host)
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

func start(bin, dir, host string) (*Server, error) {
	s := &Server{AccessKeyID: "etcdaas-test", SecretAccessKey: "etcdaas-test-secret-key", Bucket: "backups"}
	// The gateway serves the directories of root as buckets; their owners, ACLs and the
	// objects' metadata go to the sidecar directory (no extended attributes needed).
	root, sidecar, iam := filepath.Join(dir, "data"), filepath.Join(dir, "meta"), filepath.Join(dir, "iam")
	for _, d := range []string{root, sidecar, iam} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	addr, err := freeAddress(host)
	if err != nil {
		return nil, err
	}
	s.Endpoint = "http://" + addr
	// The only identity is the gateway's root account; the flags win over any ROOT_* or VGW_*
	// variables in the environment. The (empty) file-based IAM answers an unknown access key
	// with S3's InvalidAccessKeyId, as AWS does; without it the gateway's single-account mode
	// answers with a code of its own (XAdminUserNotFound).
	args := []string{
		"--port", addr,
		"--access", s.AccessKeyID, "--secret", s.SecretAccessKey,
		"--iam-dir", iam,
		"posix", "--sidecar", sidecar, root,
	}
	s.proc, err = framework.StartProcess("versitygw", dir, bin, args...)
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

// waitReady waits until the gateway serves signed requests, then creates the bucket through
// the S3 API, as a user would.
func (s *Server) waitReady(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	client, err := s.Client()
	if err != nil {
		return err
	}
	for {
		if exited, err := s.proc.Exited(); exited {
			return fmt.Errorf("versitygw exited: %v", err)
		}
		callCtx, callCancel := context.WithTimeout(ctx, 5*time.Second)
		_, err = client.ListBuckets(callCtx)
		callCancel()
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the S3 endpoint %s did not answer within %s (last: %v)", s.Endpoint, timeout, err)
		case <-time.After(250 * time.Millisecond):
		}
	}
	if err := client.MakeBucket(ctx, s.Bucket, minio.MakeBucketOptions{}); err != nil {
		return fmt.Errorf("creating bucket %q: %w", s.Bucket, err)
	}
	return nil
}

// Client returns an S3 client of the store's identity, for tests that look at the bucket.
func (s *Server) Client() (*minio.Client, error) {
	u, err := url.Parse(s.Endpoint)
	if err != nil {
		return nil, err
	}
	return minio.New(u.Host, &minio.Options{Creds: credentials.NewStaticV4(s.AccessKeyID, s.SecretAccessKey, "")})
}

// ClosedEndpoint returns an http URL on 127.0.0.1 where nothing listens: an S3 endpoint that
// does not answer.
func ClosedEndpoint(t testing.TB) string {
	t.Helper()
	addr, err := freeAddress(loopback.Host)
	if err != nil {
		t.Fatal(err)
	}
	return "http://" + addr
}

// freeAddress is host with a port nothing listens on.
func freeAddress(host string) (string, error) {
	if host == loopback.Host {
		ports, err := loopback.FreePorts(1)
		if err != nil {
			return "", err
		}
		return loopback.HostPort(ports[0]), nil
	}
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().String(), nil
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
