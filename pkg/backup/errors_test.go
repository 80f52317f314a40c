package backup

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/minio/minio-go/v7"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kubefake "k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
)

// TestExplainS3Classes: what the store answers is classified by who can fix it: a refusal of
// the request as configured is ErrMisconfigured, an answer that it cannot serve now or no
// answer at all ErrStoreUnavailable, a missing object ErrNotFound; the store's code stays in
// the message.
func TestExplainS3Classes(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	for _, tc := range []struct {
		what string
		err  error
		want error
	}{
		{"unknown access key", minio.ErrorResponse{StatusCode: 403, Code: "InvalidAccessKeyId"}, ErrMisconfigured},
		{"wrong secret", minio.ErrorResponse{StatusCode: 403, Code: "SignatureDoesNotMatch"}, ErrMisconfigured},
		{"access denied", minio.ErrorResponse{StatusCode: 403, Code: "AccessDenied"}, ErrMisconfigured},
		{"no such bucket", minio.ErrorResponse{StatusCode: 404, Code: "NoSuchBucket"}, ErrMisconfigured},
		{"wrong region", minio.ErrorResponse{StatusCode: 400, Code: "AuthorizationHeaderMalformed"}, ErrMisconfigured},
		{"invalid bucket name", minio.ErrorResponse{StatusCode: 400, Code: "InvalidBucketName"}, ErrMisconfigured},
		{"slow down", minio.ErrorResponse{StatusCode: 503, Code: "SlowDown"}, ErrStoreUnavailable},
		{"store's internal error", minio.ErrorResponse{StatusCode: 500, Code: "InternalError"}, ErrStoreUnavailable},
		{"too many requests", minio.ErrorResponse{StatusCode: 429, Code: "TooManyRequests"}, ErrStoreUnavailable},
		{"request timeout", minio.ErrorResponse{StatusCode: 408, Code: "RequestTimeout"}, ErrStoreUnavailable},
		{"connection refused", refused, ErrStoreUnavailable},
		{"deadline", fmt.Errorf("listing: %w", context.DeadlineExceeded), ErrStoreUnavailable},
		{"no such key", minio.ErrorResponse{StatusCode: 404, Code: "NoSuchKey"}, ErrNotFound},
	} {
		got := explainS3(tc.err)
		for _, class := range []error{ErrMisconfigured, ErrStoreUnavailable, ErrNotFound} {
			if errors.Is(got, class) != (class == tc.want) {
				t.Errorf("%s: %v is %v: %v, want only %v", tc.what, got, class, errors.Is(got, class), tc.want)
			}
		}
		if NeedsConfigurationChange(got) != (tc.want == ErrMisconfigured) {
			t.Errorf("%s: NeedsConfigurationChange(%v) = %v", tc.what, got, !(tc.want == ErrMisconfigured))
		}
		if resp, ok := tc.err.(minio.ErrorResponse); ok && !strings.Contains(got.Error(), resp.Code) && resp.Code != "NoSuchKey" {
			t.Errorf("%s: %q does not name the store's code", tc.what, got)
		}
	}
	if explainS3(nil) != nil {
		t.Error("explainS3(nil) is an error")
	}
	if err := errors.New("something else"); explainS3(err) != err {
		t.Errorf("an unknown error is classified: %v", explainS3(err))
	}
}

// TestS3EndpointClasses: an endpoint the client cannot speak to as configured (https to a
// store that answers in http, an invalid URL, a caBundle without a certificate) is
// ErrMisconfigured; one nothing listens on is ErrStoreUnavailable.
func TestS3EndpointClasses(t *testing.T) {
	plain := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(plain.Close)
	list := func(cfg S3Config) error {
		cfg.Bucket, cfg.AccessKeyID, cfg.SecretAccessKey = "backups", "id", "secret"
		dest, err := NewS3(cfg)
		if err != nil {
			return err
		}
		_, err = dest.List(context.Background())
		return err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		what string
		cfg  S3Config
		want error
	}{
		{"https to an http store", S3Config{Endpoint: strings.Replace(plain.URL, "http:", "https:", 1)}, ErrMisconfigured},
		{"not a URL", S3Config{Endpoint: "s3.example.com"}, ErrMisconfigured},
		{"caBundle without a certificate", S3Config{Endpoint: "https://127.0.0.1:1", CABundle: "junk"}, ErrMisconfigured},
		{"nothing listening", S3Config{Endpoint: closed}, ErrStoreUnavailable},
	} {
		err := list(tc.cfg)
		if !errors.Is(err, tc.want) || NeedsConfigurationChange(err) != (tc.want == ErrMisconfigured) {
			t.Errorf("%s: %v, want %v", tc.what, err, tc.want)
		}
		t.Logf("%s: %v", tc.what, err)
	}
}

// TestSecretCredentialsClasses: a Secret the server may not read, or that does not exist, is a
// configuration to change (ErrCredentials); one the Kubernetes API fails to give for now (it
// is unavailable, times out, throttles) is ErrCredentials and ErrStoreUnavailable: retrying
// may succeed.
func TestSecretCredentialsClasses(t *testing.T) {
	ref := &v1beta1.SecretReference{Name: "s3"}
	secretsResource := schema.GroupResource{Resource: "secrets"}
	for _, tc := range []struct {
		what      string
		err       error
		transient bool
	}{
		{"forbidden", apierrors.NewForbidden(secretsResource, "s3", errors.New("no RBAC")), false},
		{"not found", apierrors.NewNotFound(secretsResource, "s3"), false},
		{"unavailable", apierrors.NewServiceUnavailable("etcd is down"), true},
		{"server timeout", apierrors.NewServerTimeout(secretsResource, "get", 1), true},
		{"throttled", apierrors.NewTooManyRequests("slow down", 1), true},
		{"internal error", apierrors.NewInternalError(errors.New("boom")), true},
	} {
		client := kubefake.NewClientset()
		client.PrependReactor("get", "secrets", func(clienttesting.Action) (bool, runtime.Object, error) {
			return true, nil, tc.err
		})
		_, _, err := SecretCredentials{Client: client}.S3Credentials(context.Background(), "ns", ref)
		if !errors.Is(err, ErrCredentials) || errors.Is(err, ErrStoreUnavailable) != tc.transient || NeedsConfigurationChange(err) == tc.transient {
			t.Errorf("%s: %v; want ErrCredentials, ErrStoreUnavailable: %v, a configuration to change: %v", tc.what, err, tc.transient, !tc.transient)
		}
	}
	// A destination this server does not serve is a configuration to change too.
	if _, err := (Resolver{}).Destination(context.Background(), "ns", "db", v1beta1.BackupDestination{Local: &v1beta1.LocalDestination{}}); !NeedsConfigurationChange(err) {
		t.Errorf("a local destination without --backup-dir: %v, want a configuration to change", err)
	}
	if NeedsConfigurationChange(nil) || NeedsConfigurationChange(errors.New("disk full")) {
		t.Error("nil or an unclassified error needs a configuration change")
	}
}
