package backup

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"k8s.io/klog/v2"
)

// S3PartSize is the size of one part of a multipart upload, and so the memory one backup to
// S3 holds: the snapshot is streamed part by part, never held whole.
const S3PartSize = 16 << 20

// maxCopySize is the largest object a single server-side copy may produce; larger backups
// are committed with a multipart copy.
const maxCopySize = 5 << 30

// incompletePrefix holds uploads that are not committed yet, below the instance's prefix: a
// listing of the prefix does not descend into it.
const incompletePrefix = "incomplete/"

// S3Config says how to reach one instance's backups in an S3-compatible bucket.
type S3Config struct {
	// Endpoint is the store's URL, http or https, such as "https://s3.example.com".
	Endpoint string
	// Bucket is the bucket; it must exist.
	Bucket string
	// Prefix is prepended to every key; it ends with "/" unless empty.
	Prefix string
	// Region is the bucket's region; empty lets the client find it.
	Region string
	// AccessKeyID and SecretAccessKey sign the requests.
	AccessKeyID, SecretAccessKey string
	// CABundle is PEM certificates that verify the endpoint; empty means the system roots.
	CABundle string
}

// S3 keeps backups as objects of an S3-compatible bucket, each with its provenance as user
// metadata. A backup is uploaded (multipart, streamed) below <prefix>incomplete/ and copied
// to its key with its metadata once its hash is known; the incomplete object is then deleted.
type S3 struct {
	client *minio.Client
	cfg    S3Config
}

// NewS3 returns the destination described by cfg. It does not contact the store.
func NewS3(cfg S3Config) (*S3, error) {
	u, err := url.Parse(cfg.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, classify(ErrMisconfigured, fmt.Errorf("S3 endpoint %q is not an http or https URL", cfg.Endpoint))
	}
	if cfg.AccessKeyID == "" || cfg.SecretAccessKey == "" {
		return nil, classify(ErrMisconfigured, errors.New("S3 credentials are missing: both an access key ID and a secret access key are needed"))
	}
	secure := u.Scheme == "https"
	transport, err := minio.DefaultTransport(secure)
	if err != nil {
		return nil, err
	}
	if cfg.CABundle != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(cfg.CABundle)) {
			return nil, classify(ErrMisconfigured, errors.New("the S3 caBundle holds no PEM certificate"))
		}
		transport.TLSClientConfig.RootCAs = pool
	}
	client, err := minio.New(u.Host, &minio.Options{
		Creds:     credentials.NewStaticV4(cfg.AccessKeyID, cfg.SecretAccessKey, ""),
		Secure:    secure,
		Region:    cfg.Region,
		Transport: transport,
	})
	if err != nil {
		return nil, err
	}
	if cfg.Prefix != "" && !strings.HasSuffix(cfg.Prefix, "/") {
		cfg.Prefix += "/"
	}
	return &S3{client: client, cfg: cfg}, nil
}

// String names the bucket and prefix.
func (s *S3) String() string {
	return fmt.Sprintf("s3 bucket %q at %s, prefix %q", s.cfg.Bucket, s.cfg.Endpoint, s.cfg.Prefix)
}

// Write uploads body below the incomplete prefix of the instance
// (<prefix>incomplete/<instance UID>/<key>), part by part.
func (s *S3) Write(ctx context.Context, key, instanceUID string, body io.Reader) (Upload, error) {
	if !IsKey(key) {
		return nil, fmt.Errorf("%q is not a backup key", key)
	}
	tmp := s.incomplete(instanceUID) + key
	_, err := s.client.PutObject(ctx, s.cfg.Bucket, tmp, body, -1, minio.PutObjectOptions{
		ContentType: "application/octet-stream",
		PartSize:    S3PartSize,
		NumThreads:  1,
	})
	if err != nil {
		return nil, explainS3(err)
	}
	return &s3Upload{dest: s, tmp: tmp, final: s.cfg.Prefix + key}, nil
}

type s3Upload struct {
	dest       *S3
	tmp, final string
}

// Commit copies the upload to its key with the provenance as metadata, then deletes it.
func (u *s3Upload) Commit(ctx context.Context, info Info) error {
	c := u.dest.client
	dst := minio.CopyDestOptions{Bucket: u.dest.cfg.Bucket, Object: u.final, ReplaceMetadata: true, UserMetadata: info.metadata()}
	src := minio.CopySrcOptions{Bucket: u.dest.cfg.Bucket, Object: u.tmp}
	var err error
	if info.Size > maxCopySize {
		_, err = c.ComposeObject(ctx, dst, src)
	} else {
		_, err = c.CopyObject(ctx, dst, src)
	}
	if err != nil {
		return explainS3(err)
	}
	// The backup is complete and visible under its key: failing to delete the incomplete copy
	// must not report it as failed (that would skip retention and take it again). What is left
	// under the incomplete prefix is never listed as a backup.
	if err := u.Abort(ctx); err != nil {
		klog.InfoS("Could not delete the incomplete copy of a completed backup", "object", u.tmp, "err", err)
	}
	return nil
}

// incomplete is where the uploads of the instance instanceUID are written until committed.
func (s *S3) incomplete(instanceUID string) string {
	return s.cfg.Prefix + incompletePrefix + url.PathEscape(instanceUID) + "/"
}

// sweep deletes the incomplete objects of the instance's uploads last modified before before,
// and the multipart uploads below them initiated before it, which a process killed during
// Write or Commit leaves. Those of other instances sharing the prefix are left alone.
func (s *S3) sweep(ctx context.Context, instanceUID string, before time.Time) ([]string, error) {
	prefix := s.incomplete(instanceUID)
	var deleted []string
	var errs []error
	for obj := range s.client.ListObjects(ctx, s.cfg.Bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if obj.Err != nil {
			return deleted, explainS3(obj.Err)
		}
		if !obj.LastModified.Before(before) {
			continue
		}
		if err := s.client.RemoveObject(ctx, s.cfg.Bucket, obj.Key, minio.RemoveObjectOptions{}); err != nil {
			errs = append(errs, explainS3(err))
			continue
		}
		deleted = append(deleted, obj.Key)
	}
	for up := range s.client.ListIncompleteUploads(ctx, s.cfg.Bucket, prefix, true) {
		if up.Err != nil {
			return deleted, errors.Join(append(errs, explainS3(up.Err))...)
		}
		if !up.Initiated.Before(before) {
			continue
		}
		if err := s.client.RemoveIncompleteUpload(ctx, s.cfg.Bucket, up.Key); err != nil {
			errs = append(errs, explainS3(err))
			continue
		}
		deleted = append(deleted, up.Key+" (multipart upload "+up.UploadID+")")
	}
	return deleted, errors.Join(errs...)
}

// Abort deletes the incomplete object.
func (u *s3Upload) Abort(ctx context.Context) error {
	return explainS3(u.dest.client.RemoveObject(ctx, u.dest.cfg.Bucket, u.tmp, minio.RemoveObjectOptions{}))
}

// List lists the keys directly below the prefix and reads each one's provenance.
func (s *S3) List(ctx context.Context) ([]Info, error) {
	var out []Info
	for obj := range s.client.ListObjects(ctx, s.cfg.Bucket, minio.ListObjectsOptions{Prefix: s.cfg.Prefix}) {
		if obj.Err != nil {
			return nil, explainS3(obj.Err)
		}
		key := strings.TrimPrefix(obj.Key, s.cfg.Prefix)
		if !IsKey(key) {
			continue
		}
		info, err := s.stat(ctx, key)
		if skipForeign(err) || skipDeleted(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	sortNewestFirst(out)
	return out, nil
}

func (s *S3) stat(ctx context.Context, key string) (Info, error) {
	obj, err := s.client.StatObject(ctx, s.cfg.Bucket, s.cfg.Prefix+key, minio.StatObjectOptions{})
	if err != nil {
		return Info{}, explainS3(err)
	}
	return infoFromMetadata(key, obj.UserMetadata, obj.Size)
}

// Open streams the object under key.
func (s *S3) Open(ctx context.Context, key string) (io.ReadCloser, Info, error) {
	if !IsKey(key) {
		return nil, Info{}, fmt.Errorf("%q: %w", key, ErrNotFound)
	}
	info, err := s.stat(ctx, key)
	if err != nil {
		return nil, Info{}, err
	}
	obj, err := s.client.GetObject(ctx, s.cfg.Bucket, s.cfg.Prefix+key, minio.GetObjectOptions{})
	if err != nil {
		return nil, Info{}, explainS3(err)
	}
	return obj, info, nil
}

// Delete deletes the object under key.
func (s *S3) Delete(ctx context.Context, key string) error {
	if !IsKey(key) {
		return fmt.Errorf("%q: %w", key, ErrNotFound)
	}
	return explainS3(s.client.RemoveObject(ctx, s.cfg.Bucket, s.cfg.Prefix+key, minio.RemoveObjectOptions{}))
}

// explainS3 turns the store's error codes a user can act on into sentences, keeping the code,
// and classifies what the store answered: a missing object becomes ErrNotFound, a refusal of
// the request as configured (a 4xx: credentials, bucket, region) ErrMisconfigured, an answer
// that it cannot serve now (5xx, 408, 429) ErrStoreUnavailable; see classifyUnanswered for
// requests it did not answer.
func explainS3(err error) error {
	if err == nil {
		return nil
	}
	resp := minio.ToErrorResponse(err)
	switch resp.Code {
	case "NoSuchKey":
		return fmt.Errorf("%w: %s", ErrNotFound, resp.Message)
	case "InvalidAccessKeyId":
		return classify(ErrMisconfigured, fmt.Errorf("the S3 access key ID is not known to the store (%s): %w", resp.Code, err))
	case "SignatureDoesNotMatch":
		return classify(ErrMisconfigured, fmt.Errorf("the S3 secret access key is wrong (%s): %w", resp.Code, err))
	case "AccessDenied":
		return classify(ErrMisconfigured, fmt.Errorf("the S3 credentials may not do this (%s): %w", resp.Code, err))
	case "NoSuchBucket":
		return classify(ErrMisconfigured, fmt.Errorf("the S3 bucket does not exist (%s): %w", resp.Code, err))
	case "SlowDown":
		return classify(ErrStoreUnavailable, fmt.Errorf("the S3 store asks to slow down (%s): %w", resp.Code, err))
	}
	if notS3Error(resp) {
		// minio-go quotes up to 1 KiB of such an answer's body in its error. The endpoint is
		// whatever the instance's author wrote, possibly a service that is not theirs to read,
		// and the error reaches the status, Events and /backups answers: keep the status only.
		err = fmt.Errorf("the endpoint answered %s, not an S3 error (is it an S3 store?)", resp.Code)
	}
	switch code := resp.StatusCode; {
	case code == http.StatusNotFound && resp.Code == "":
		return fmt.Errorf("%w: %v", ErrNotFound, err)
	case code >= http.StatusInternalServerError, code == http.StatusRequestTimeout, code == http.StatusTooManyRequests:
		return classify(ErrStoreUnavailable, fmt.Errorf("the S3 store cannot serve the request now (%d %s): %w", code, resp.Code, err))
	case code >= http.StatusBadRequest:
		return classify(ErrMisconfigured, fmt.Errorf("the S3 store refuses the request as configured (%d %s): %w", code, resp.Code, err))
	case code == 0:
		return classifyUnanswered(err)
	}
	return err
}

// notS3Error reports whether resp stands for an HTTP answer that was not an S3 error document:
// minio-go then sets its code to the HTTP status line ("400 Bad Request"), where S3's codes are
// single words (AccessDenied).
func notS3Error(resp minio.ErrorResponse) bool {
	return resp.StatusCode != 0 && strings.Contains(resp.Code, " ")
}
