package etcdinstance

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apiserver/pkg/endpoints/handlers/responsewriters"
	kubefake "k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	"github.com/etcdaas/etcdaas/pkg/backup"
	"github.com/etcdaas/etcdaas/test/s3server"
)

// statusCodecs encode the Status of an error, as the API server writes it.
var statusCodecs = func() serializer.CodecFactory {
	scheme := runtime.NewScheme()
	metav1.AddToGroupVersion(scheme, schema.GroupVersion{Version: "v1"})
	return serializer.NewCodecFactory(scheme)
}()

// staticCredentials are S3 credentials for every destination.
func staticCredentials(id, secret string) backup.Credentials {
	return backup.EnvCredentials{Lookup: func(name string) (string, bool) {
		switch name {
		case backup.EnvAccessKeyID:
			return id, id != ""
		case backup.EnvSecretAccessKey:
			return secret, secret != ""
		}
		return "", false
	}}
}

var secretsResource = schema.GroupResource{Resource: "secrets"}

// secretsFailing are credentials from Secrets whose every read fails with err.
func secretsFailing(err error) backup.Credentials {
	client := kubefake.NewClientset()
	client.PrependReactor("get", "secrets", func(clienttesting.Action) (bool, runtime.Object, error) {
		return true, nil, err
	})
	return backup.SecretCredentials{Client: client}
}

// TestBackupsErrorClasses: a destination the server cannot list is answered by who can fix
// it. A configuration the user must change (credentials missing or refused, a bucket that
// does not exist, an endpoint whose certificate is not trusted, a destination this server
// does not serve, a Secret the server may not read) is a 409 saying what is wrong; a store
// that does not answer, or a Secret the Kubernetes API cannot give for now, is a 503 with
// Retry-After; a backup whose provenance the server cannot read is a 500.
func TestBackupsErrorClasses(t *testing.T) {
	store := s3server.Start(t)
	tlsStore := httptest.NewTLSServer(http.NotFoundHandler()) // a certificate nobody trusts
	t.Cleanup(tlsStore.Close)
	s3 := func(endpoint, bucket string) etcdaas.BackupDestination {
		return etcdaas.BackupDestination{S3: &etcdaas.S3Destination{Endpoint: endpoint, Bucket: bucket}}
	}
	s3Secret := func(endpoint, bucket string) etcdaas.BackupDestination {
		d := s3(endpoint, bucket)
		d.S3.CredentialsSecretRef = &etcdaas.SecretReference{Name: "s3"}
		return d
	}
	localRoot, key := damagedLocalBackup(t)

	for _, tc := range []struct {
		what        string
		resolver    *backup.Resolver
		destination etcdaas.BackupDestination
		code        int
		retryAfter  bool
		message     string
	}{
		{"credentials missing", &backup.Resolver{Credentials: staticCredentials("", "")},
			s3(store.Endpoint, store.Bucket), http.StatusConflict, false, backup.EnvAccessKeyID},
		{"access key unknown to the store", &backup.Resolver{Credentials: staticCredentials("nobody", store.SecretAccessKey)},
			s3(store.Endpoint, store.Bucket), http.StatusConflict, false, "InvalidAccessKeyId"},
		{"secret key wrong", &backup.Resolver{Credentials: staticCredentials(store.AccessKeyID, "wrong-secret")},
			s3(store.Endpoint, store.Bucket), http.StatusConflict, false, "SignatureDoesNotMatch"},
		{"bucket does not exist", &backup.Resolver{Credentials: staticCredentials(store.AccessKeyID, store.SecretAccessKey)},
			s3(store.Endpoint, "no-such-bucket"), http.StatusConflict, false, "bucket does not exist"},
		{"endpoint certificate not trusted", &backup.Resolver{Credentials: staticCredentials(store.AccessKeyID, store.SecretAccessKey)},
			s3(tlsStore.URL, store.Bucket), http.StatusConflict, false, "certificate"},
		{"no S3 on this server", &backup.Resolver{}, s3(store.Endpoint, store.Bucket), http.StatusConflict, false, "no source of S3 credentials"},
		{"no local backups on this server", nil, etcdaas.BackupDestination{Local: &etcdaas.LocalDestination{}},
			http.StatusConflict, false, "no backup directory"},
		{"store not answering", &backup.Resolver{Credentials: staticCredentials(store.AccessKeyID, store.SecretAccessKey)},
			s3(s3server.ClosedEndpoint(t), store.Bucket), http.StatusServiceUnavailable, true, "connection refused"},
		{"Secret forbidden to the server", &backup.Resolver{Credentials: secretsFailing(apierrors.NewForbidden(secretsResource, "s3", errors.New("no RBAC")))},
			s3Secret(store.Endpoint, store.Bucket), http.StatusConflict, false, "forbidden"},
		{"Secret unavailable for now", &backup.Resolver{Credentials: secretsFailing(apierrors.NewServiceUnavailable("etcd is down"))},
			s3Secret(store.Endpoint, store.Bucket), http.StatusServiceUnavailable, true, "etcd is down"},
		{"damaged provenance", &backup.Resolver{LocalRoot: localRoot}, etcdaas.BackupDestination{Local: &etcdaas.LocalDestination{}},
			http.StatusInternalServerError, false, "provenance of " + key},
	} {
		t.Run(tc.what, func(t *testing.T) {
			getter := fakeGetter{"db": {
				ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "db", UID: "uid-1"},
				Spec:       etcdaas.ETCDInstanceSpec{Backup: &etcdaas.BackupSpec{Destination: tc.destination}},
			}}
			// The store's client retries what did not answer; the deadline bounds the retries.
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			_, err := NewBackupsREST(getter, tc.resolver).Get(ctx, "db", &metav1.GetOptions{})
			var apiStatus apierrors.APIStatus
			if !errors.As(err, &apiStatus) {
				t.Fatalf("answered %v, want a %d Status", err, tc.code)
			}
			req := httptest.NewRequest(http.MethodGet, "/apis/etcdaas.dev/v1beta1/namespaces/ns/etcdinstances/db/backups", nil)
			checkErrorStatus(t, err, apiStatus.Status(), tc.code, tc.message, tc.retryAfter, req)
		})
	}
}

// damagedLocalBackup makes, under a new local backup root it returns, a backup of instance
// ns/db (key the other result) whose provenance is not JSON.
func damagedLocalBackup(t *testing.T) (string, string) {
	t.Helper()
	localRoot := t.TempDir()
	damaged, err := backup.LocalDir(localRoot, "ns", "db")
	if err != nil {
		t.Fatal(err)
	}
	key := backup.Key(time.Date(2026, 11, 29, 3, 5, 12, 0, time.UTC), 4711)
	if err := os.MkdirAll(damaged, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(damaged, key), []byte("snapshot"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(damaged, key+".json"), []byte("not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	return localRoot, key
}

// checkErrorStatus checks the Status of err, a handler's error: its code and a message naming
// message, and, written as the API server writes a handler's error in answer to req, the
// code and the Retry-After header (wanted or not as retryAfter says) a client sees.
func checkErrorStatus(t *testing.T, err error, status metav1.Status, code int, message string, retryAfter bool, req *http.Request) {
	t.Helper()
	if int(status.Code) != code || !strings.Contains(status.Message, message) {
		t.Fatalf("answered %d %q, want %d naming %q", status.Code, status.Message, code, message)
	}
	t.Logf("%d %s", status.Code, status.Message)
	// Written as the API server writes a handler's error: the header a client sees.
	rec := httptest.NewRecorder()
	responsewriters.ErrorNegotiated(err, statusCodecs, schema.GroupVersion{Version: "v1"}, rec, req)
	if rec.Code != code || (rec.Header().Get("Retry-After") != "") != retryAfter {
		t.Errorf("written as %d with Retry-After %q, want %d with Retry-After: %v", rec.Code, rec.Header().Get("Retry-After"), code, retryAfter)
	}
}
