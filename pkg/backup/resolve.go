package backup

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
)

// The keys of a credentials Secret (spec.backup.destination.s3.credentialsSecretRef).
const (
	SecretAccessKeyIDKey     = "accessKeyID"
	SecretSecretAccessKeyKey = "secretAccessKey"
)

// The environment variables the standalone server reads S3 credentials from, as every S3
// client does.
const (
	EnvAccessKeyID     = "AWS_ACCESS_KEY_ID"
	EnvSecretAccessKey = "AWS_SECRET_ACCESS_KEY"
)

// ErrCredentials marks errors about missing or unusable S3 credentials.
var ErrCredentials = errors.New("S3 credentials")

// Credentials finds the S3 credentials of an instance's destination.
type Credentials interface {
	// S3Credentials returns the access key ID and secret access key for a destination of an
	// instance in namespace; ref is the destination's credentialsSecretRef.
	S3Credentials(ctx context.Context, namespace string, ref *v1beta1.SecretReference) (accessKeyID, secretAccessKey string, err error)
}

// SecretCredentials reads the credentials from the Secret the destination names, in the
// instance's namespace (a controller in a Kubernetes cluster).
type SecretCredentials struct {
	Client kubernetes.Interface
}

// S3Credentials reads the keys accessKeyID and secretAccessKey of the named Secret.
func (s SecretCredentials) S3Credentials(ctx context.Context, namespace string, ref *v1beta1.SecretReference) (string, string, error) {
	if ref == nil || ref.Name == "" {
		return "", "", fmt.Errorf("%w: spec.backup.destination.s3.credentialsSecretRef is not set; name a Secret with the keys %s and %s", ErrCredentials, SecretAccessKeyIDKey, SecretSecretAccessKeyKey)
	}
	secret, err := s.Client.CoreV1().Secrets(namespace).Get(ctx, ref.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "", "", fmt.Errorf("%w: Secret %s/%s does not exist", ErrCredentials, namespace, ref.Name)
	}
	if err != nil {
		err = fmt.Errorf("%w: reading Secret %s/%s: %w", ErrCredentials, namespace, ref.Name, err)
		if TransientAPIError(err) {
			return "", "", classify(ErrStoreUnavailable, err)
		}
		return "", "", err
	}
	id, secretKey := string(secret.Data[SecretAccessKeyIDKey]), string(secret.Data[SecretSecretAccessKeyKey])
	if id == "" || secretKey == "" {
		return "", "", fmt.Errorf("%w: Secret %s/%s needs both keys %s and %s", ErrCredentials, namespace, ref.Name, SecretAccessKeyIDKey, SecretSecretAccessKeyKey)
	}
	return id, secretKey, nil
}

// TransientAPIError reports whether an error of the Kubernetes API may go away on retry: a
// timeout, throttling, an unavailable or failing server, a connection that failed.
func TransientAPIError(err error) bool {
	var netErr net.Error
	return apierrors.IsTimeout(err) || apierrors.IsServerTimeout(err) || apierrors.IsTooManyRequests(err) ||
		apierrors.IsServiceUnavailable(err) || apierrors.IsInternalError(err) ||
		errors.Is(err, context.DeadlineExceeded) || errors.As(err, &netErr)
}

// EnvCredentials reads the credentials from the server's environment (standalone mode, which
// has no Secrets): AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
type EnvCredentials struct {
	// Lookup reads a variable; nil means os.LookupEnv.
	Lookup func(string) (string, bool)
}

// S3Credentials reads the two variables; a credentialsSecretRef cannot be honoured here.
func (e EnvCredentials) S3Credentials(_ context.Context, _ string, ref *v1beta1.SecretReference) (string, string, error) {
	if ref != nil {
		return "", "", fmt.Errorf("%w: the standalone server has no Secrets, so credentialsSecretRef %q cannot be read; remove it and set %s and %s in the server's environment",
			ErrCredentials, ref.Name, EnvAccessKeyID, EnvSecretAccessKey)
	}
	lookup := e.Lookup
	if lookup == nil {
		lookup = os.LookupEnv
	}
	id, _ := lookup(EnvAccessKeyID)
	secret, _ := lookup(EnvSecretAccessKey)
	if id == "" || secret == "" {
		return "", "", fmt.Errorf("%w: %s and %s are not both set in the server's environment", ErrCredentials, EnvAccessKeyID, EnvSecretAccessKey)
	}
	return id, secret, nil
}

// FileCredentials reads the credentials from a file in the format of the AWS shared
// credentials file (the server's own file: standalone mode or a controller against a server
// without Secrets), profile "default":
//
//	[default]
//	aws_access_key_id = AKIA…
//	aws_secret_access_key = …
//
// The file is read at each use, so that replacing it rotates the keys without a restart.
type FileCredentials struct {
	// Path is the file's path.
	Path string
}

// S3Credentials reads the default profile's two keys; a credentialsSecretRef cannot be
// honoured here.
func (f FileCredentials) S3Credentials(_ context.Context, _ string, ref *v1beta1.SecretReference) (string, string, error) {
	if ref != nil {
		return "", "", fmt.Errorf("%w: this server has no Secrets, so credentialsSecretRef %q cannot be read; remove it: the server's credentials file %s is used",
			ErrCredentials, ref.Name, f.Path)
	}
	data, err := os.ReadFile(f.Path)
	if err != nil {
		return "", "", fmt.Errorf("%w: reading the server's credentials file: %v", ErrCredentials, err)
	}
	keys := defaultProfile(string(data))
	id, secret := keys["aws_access_key_id"], keys["aws_secret_access_key"]
	if id == "" || secret == "" {
		return "", "", fmt.Errorf("%w: the server's credentials file %s needs aws_access_key_id and aws_secret_access_key in its [default] profile", ErrCredentials, f.Path)
	}
	return id, secret, nil
}

// defaultProfile returns the keys of the [default] section of a shared credentials file;
// keys before any section count as default too.
func defaultProfile(data string) map[string]string {
	keys := map[string]string{}
	inDefault := true
	for line := range strings.Lines(data) {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			inDefault = strings.TrimSpace(line[1:len(line)-1]) == "default"
		case inDefault:
			if k, v, ok := strings.Cut(line, "="); ok {
				keys[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
			}
		}
	}
	return keys
}

// DefaultPrefix is the S3 prefix of the backups of the instance namespace/name when its
// destination sets none.
func DefaultPrefix(namespace, name string) string { return namespace + "/" + name + "/" }

// Resolver builds the destination an instance's spec.backup.destination names.
type Resolver struct {
	// LocalRoot is the server's backup directory (--backup-dir); empty refuses local
	// destinations.
	LocalRoot string
	// Credentials finds S3 credentials; nil refuses S3 destinations.
	Credentials Credentials
}

// ErrNoDestination marks destinations this server cannot write to.
var ErrNoDestination = errors.New("backup destination unavailable")

// Destination returns the destination of the instance namespace/name.
func (r Resolver) Destination(ctx context.Context, namespace, name string, dest v1beta1.BackupDestination) (Destination, error) {
	switch {
	case dest.Local != nil:
		if r.LocalRoot == "" {
			return nil, fmt.Errorf("%w: this server has no backup directory (--backup-dir) for local backups", ErrNoDestination)
		}
		dir, err := LocalDir(r.LocalRoot, namespace, name)
		if err != nil {
			return nil, err
		}
		return NewLocal(dir), nil
	case dest.S3 != nil:
		if r.Credentials == nil {
			return nil, fmt.Errorf("%w: this server has no source of S3 credentials", ErrNoDestination)
		}
		s3 := dest.S3
		id, secret, err := r.Credentials.S3Credentials(ctx, namespace, s3.CredentialsSecretRef)
		if err != nil {
			return nil, err
		}
		prefix := s3.Prefix
		if prefix == "" {
			prefix = DefaultPrefix(namespace, name)
		}
		return NewS3(S3Config{Endpoint: s3.Endpoint, Bucket: s3.Bucket, Prefix: prefix, Region: s3.Region,
			AccessKeyID: id, SecretAccessKey: secret, CABundle: s3.CABundle})
	}
	return nil, fmt.Errorf("%w: spec.backup.destination names neither s3 nor local", ErrNoDestination)
}
