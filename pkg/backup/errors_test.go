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
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.what, err, tc.want)
		}
		t.Logf("%s: %v", tc.what, err)
	}
}
