package etcdinstance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/backup"
	"github.com/etcdaas/etcdaas/pkg/snapshot"
	"github.com/etcdaas/etcdaas/pkg/snapshot/snapshottest"
)

// countingReader counts the bytes read from it and calls atEOF (when set) once it is read.
type countingReader struct {
	r     io.Reader
	n     int
	atEOF func()
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	if err == io.EOF && c.atEOF != nil {
		c.atEOF()
		c.atEOF = nil
	}
	return n, err
}

// TestRestoreWhileOneIsPending: a second restore is a 409 before a byte of its body is read,
// and still a 409 when another was staged while it uploaded; its spool file goes.
func TestRestoreWhileOneIsPending(t *testing.T) {
	snap, err := os.ReadFile(snapshottest.Make(t, t.TempDir(), "snap.db", map[string]string{"k": "v"}))
	if err != nil {
		t.Fatal(err)
	}
	inst := &etcdaas.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "db", UID: "uid-1"}}
	accept := func(stager *fakeStager, body *countingReader) error {
		h := &restoreHandler{rest: NewRestoreREST(nil, RestoreOptions{Stager: stager}), namespace: "ns", instance: inst}
		req, err := http.NewRequest(http.MethodPost, "/restore", body)
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = int64(len(snap))
		_, err = h.accept(req)
		return err
	}

	stager := &fakeStager{dir: t.TempDir()}
	if err := accept(stager, &countingReader{r: bytes.NewReader(snap)}); err != nil {
		t.Fatalf("first restore: %v", err)
	}
	second := &countingReader{r: bytes.NewReader(snap)}
	if err := accept(stager, second); !apierrors.IsConflict(err) || second.n != 0 {
		t.Fatalf("second restore while one is pending: %v after reading %d bytes, want 409 before reading any", err, second.n)
	}

	// Another restore is staged while this one uploads: refused once uploaded.
	raced := &fakeStager{dir: t.TempDir()}
	body := &countingReader{r: bytes.NewReader(snap), atEOF: func() { raced.staged = &snapshot.Staged{ID: "other"} }}
	if err := accept(raced, body); !apierrors.IsConflict(err) || body.n != len(snap) {
		t.Fatalf("restore that raced another: %v after %d bytes, want 409 after the upload", err, body.n)
	}
	if left, err := filepath.Glob(filepath.Join(raced.dir, "*")); err != nil || len(left) != 0 {
		t.Errorf("spool files left behind: %v %v", left, err)
	}
}

// TestRestoreOfNotASnapshot: a body that is not a snapshot is a 422 whose details name the
// kind and the body, as kube-apiserver's 422s do, so kubectl prints
// `The ETCDInstance "db" is invalid: body: …`.
func TestRestoreOfNotASnapshot(t *testing.T) {
	inst := &etcdaas.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "db", UID: "uid-1"}}
	h := &restoreHandler{rest: NewRestoreREST(nil, RestoreOptions{Stager: &fakeStager{dir: t.TempDir()}, MaxBytes: 1 << 20}), namespace: "ns", instance: inst}
	body := []byte("not a snapshot")
	req, err := http.NewRequest(http.MethodPost, "/restore", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = int64(len(body))
	_, err = h.accept(req)
	var status apierrors.APIStatus
	if !apierrors.IsInvalid(err) || !errors.As(err, &status) {
		t.Fatalf("restore of a file that is not a snapshot: %v, want a 422", err)
	}
	d := status.Status().Details
	if d == nil || d.Kind != "ETCDInstance" || d.Group != etcdaas.GroupName || d.Name != "db" || len(d.Causes) != 1 || d.Causes[0].Field != "body" {
		t.Errorf("details %+v, want kind ETCDInstance, name db and one cause on body", d)
	}
}

// TestRestoreMediaTypes: a body in another media type than a snapshot's is a 415 naming
// application/octet-stream before a byte of it is read; a snapshot sent as
// application/octet-stream (with or without parameters) or without a Content-Type, as
// kubectl create --raw sends it, is accepted.
func TestRestoreMediaTypes(t *testing.T) {
	snap, err := os.ReadFile(snapshottest.Make(t, t.TempDir(), "snap.db", map[string]string{"k": "v"}))
	if err != nil {
		t.Fatal(err)
	}
	inst := &etcdaas.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "db", UID: "uid-1"}}
	for _, tc := range []struct {
		contentType string
		accepted    bool
	}{
		{"application/octet-stream", true},
		{"Application/Octet-Stream; charset=binary", true},
		{"", true},
		{"application/json", false},
		{"application/x-www-form-urlencoded", false}, // curl --data-binary without -H
		{"application/yaml", false},
		{"text/plain", false},
		{"octet-stream", false}, // malformed: no subtype
	} {
		h := &restoreHandler{rest: NewRestoreREST(nil, RestoreOptions{Stager: &fakeStager{dir: t.TempDir()}}), namespace: "ns", instance: inst}
		body := &countingReader{r: bytes.NewReader(snap)}
		req, err := http.NewRequest(http.MethodPost, "/restore", body)
		if err != nil {
			t.Fatal(err)
		}
		if tc.contentType != "" {
			req.Header.Set("Content-Type", tc.contentType)
		}
		req.ContentLength = int64(len(snap))
		_, err = h.accept(req)
		if tc.accepted {
			if err != nil {
				t.Errorf("Content-Type %q: %v, want the snapshot accepted", tc.contentType, err)
			}
			continue
		}
		var status apierrors.APIStatus
		if !errors.As(err, &status) || status.Status().Code != http.StatusUnsupportedMediaType ||
			status.Status().Reason != metav1.StatusReasonUnsupportedMediaType || body.n != 0 {
			t.Errorf("Content-Type %q: %v after reading %d bytes, want a 415 before reading any", tc.contentType, err, body.n)
			continue
		}
		if !strings.Contains(status.Status().Message, "application/octet-stream") {
			t.Errorf("Content-Type %q: the 415 %q does not name the accepted type", tc.contentType, status.Status().Message)
		}
	}
}

// failingStager is a fakeStager whose SpoolDir or Stage fails with the given errors.
type failingStager struct {
	fakeStager
	spoolErr, stageErr error
}

func (s *failingStager) SpoolDir(ctx context.Context, inst *etcdaas.ETCDInstance) (string, error) {
	if s.spoolErr != nil {
		return "", s.spoolErr
	}
	return s.fakeStager.SpoolDir(ctx, inst)
}

func (s *failingStager) Stage(ctx context.Context, inst *etcdaas.ETCDInstance, staged *snapshot.Staged, path string) error {
	if s.stageErr != nil {
		return s.stageErr
	}
	return s.fakeStager.Stage(ctx, inst, staged, path)
}

// TestRestoreDestinationErrorClasses: a destination the stager cannot use, before the body is
// read (SpoolDir) or when it uploads the verified snapshot (Stage), is answered as the backups
// subresource answers it, by who can fix it: a store that does not answer or a credentials
// Secret the Kubernetes API cannot give for now is a 503 with Retry-After (even though that
// Secret's error is about credentials too), as is the Kubernetes API failing for now (the
// StatefulSet the stager reads and updates); credentials, a bucket or an endpoint only a
// change of configuration fixes is a 409 saying what to change; anything else a 500. Nothing is
// staged, nothing is written to status and no spool file is left, whatever the answer.
func TestRestoreDestinationErrorClasses(t *testing.T) {
	snap, err := os.ReadFile(snapshottest.Make(t, t.TempDir(), "snap.db", map[string]string{"k": "v"}))
	if err != nil {
		t.Fatal(err)
	}
	// The error the resolver gives for a credentials Secret the Kubernetes API cannot give now.
	s3Secret := v1beta1.BackupDestination{S3: &v1beta1.S3Destination{Endpoint: "http://127.0.0.1:1", Bucket: "b",
		CredentialsSecretRef: &v1beta1.SecretReference{Name: "s3"}}}
	resolver := backup.Resolver{Credentials: secretsFailing(apierrors.NewServiceUnavailable("etcd is down"))}
	_, secretForNow := resolver.Destination(context.Background(), "ns", "db", s3Secret)
	if !errors.Is(secretForNow, backup.ErrStoreUnavailable) || !errors.Is(secretForNow, backup.ErrCredentials) {
		t.Fatalf("resolving with a Secret unavailable for now: %v, want ErrStoreUnavailable and ErrCredentials", secretForNow)
	}
	storeDown := fmt.Errorf("staging the snapshot in s3 bucket %q: %w: dial tcp 127.0.0.1:1: connection refused", "b", backup.ErrStoreUnavailable)
	noBucket := fmt.Errorf("staging the snapshot in s3 bucket %q: %w: the S3 bucket does not exist (NoSuchBucket)", "b", backup.ErrMisconfigured)
	noCredentials := fmt.Errorf("%w: %w: Secret ns/s3 does not exist", snapshot.ErrCannotStage, backup.ErrCredentials)
	noS3 := fmt.Errorf("%w: this server has no source of S3 credentials", backup.ErrNoDestination)
	diskFull := errors.New("writing the spool file: no space left on device")
	apiDown := fmt.Errorf("reading the StatefulSet: %w", apierrors.NewServiceUnavailable("etcd is down"))
	apiSlow := fmt.Errorf("recording the restore request: %w", apierrors.NewTimeoutError("request did not complete within 60s", 0))

	for _, tc := range []struct {
		what               string
		spoolErr, stageErr error
		code               int
		message            string
	}{
		{"store not answering, before the body", storeDown, nil, http.StatusServiceUnavailable, "connection refused"},
		{"store not answering, when staging", nil, storeDown, http.StatusServiceUnavailable, "connection refused"},
		{"Secret unavailable for now, before the body", secretForNow, nil, http.StatusServiceUnavailable, "etcd is down"},
		{"Secret unavailable for now, when staging", nil, secretForNow, http.StatusServiceUnavailable, "etcd is down"},
		{"bucket does not exist, before the body", noBucket, nil, http.StatusConflict, "bucket does not exist"},
		{"bucket does not exist, when staging", nil, noBucket, http.StatusConflict, "bucket does not exist"},
		{"credentials missing, before the body", noCredentials, nil, http.StatusConflict, "Secret ns/s3 does not exist"},
		{"credentials missing, when staging", nil, noCredentials, http.StatusConflict, "Secret ns/s3 does not exist"},
		{"no S3 on this server, when staging", nil, noS3, http.StatusConflict, "no source of S3 credentials"},
		{"the server's own failure, when staging", nil, diskFull, http.StatusInternalServerError, "no space left on device"},
		{"the Kubernetes API unavailable for now, before the body", apiDown, nil, http.StatusServiceUnavailable, "etcd is down"},
		{"the Kubernetes API timing out, when staging", nil, apiSlow, http.StatusServiceUnavailable, "did not complete within 60s"},
		{"a recovery under way, before the body", snapshot.RecoveryError("member db-2"), nil, http.StatusConflict, "recovery of the instance from quorum loss is under way (from member db-2)"},
		{"a recovery recorded during the upload, when staging", nil, snapshot.RecoveryError("member db-2"), http.StatusConflict, "recovery of the instance from quorum loss is under way (from member db-2)"},
	} {
		t.Run(tc.what, func(t *testing.T) { checkRestoreErrorClass(t, snap, tc.spoolErr, tc.stageErr, tc.code, tc.message) })
	}
}

// expectRestoreStatus fails unless the restore subresource answered a Status of code naming
// message (with Retry-After for a 503).
func expectRestoreStatus(t *testing.T, resp *recoverResponder, code int, message string) {
	t.Helper()
	var apiStatus apierrors.APIStatus
	if !errors.As(resp.err, &apiStatus) {
		t.Fatalf("answered %d %v, want a %d Status", resp.code, resp.err, code)
	}
	checkErrorStatus(t, resp.err, apiStatus.Status(), code, message, code == http.StatusServiceUnavailable,
		httptest.NewRequest(http.MethodPost, "/apis/etcdaas.dev/v1beta1/namespaces/ns/etcdinstances/db/restore", nil))
}

// checkRestoreErrorClass posts snapshot snap to the restore subresource through a stager
// failing with spoolErr before the body or with stageErr when staging, and checks the refusal:
// a Status of code naming message, no byte of the body read when refused before it, nothing
// staged, reported or left in the spool directory.
func checkRestoreErrorClass(t *testing.T, snap []byte, spoolErr, stageErr error, code int, message string) {
	t.Helper()
	spool := t.TempDir()
	stager := &failingStager{fakeStager: fakeStager{dir: spool}, spoolErr: spoolErr, stageErr: stageErr}
	store := &fakeStatusStore{instance: &etcdaas.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "ns", UID: "uid-1"}}}
	body := &countingReader{r: bytes.NewReader(snap)}
	expectRestoreStatus(t, postRestore(t, NewRestoreREST(store, RestoreOptions{Stager: stager}), body, int64(len(snap))), code, message)
	if spoolErr != nil && body.n != 0 {
		t.Errorf("read %d bytes of the body, want none when refused before it", body.n)
	}
	if stager.staged != nil || store.updates != 0 {
		t.Errorf("a refused restore was staged (%v) or reported (%d status writes)", stager.staged, store.updates)
	}
	if left, err := os.ReadDir(spool); err != nil || len(left) != 0 {
		t.Errorf("a refused restore left files in the spool directory: %v %v", left, err)
	}
}

// TestRestoreOfAnInstanceDeletedDuringTheUpload: an instance deleted while its snapshot
// uploads (its deletion removes the spool directory with the file being written) is a 409
// saying so, not a 500 naming a file the server could not find; nothing is staged.
func TestRestoreOfAnInstanceDeletedDuringTheUpload(t *testing.T) {
	snap, err := os.ReadFile(snapshottest.Make(t, t.TempDir(), "snap.db", map[string]string{"k": "v"}))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		what  string
		after func(*fakeStatusStore) // what happens to the instance during the upload
		want  string
	}{
		{"deleted", func(s *fakeStatusStore) { s.instance = nil }, "deleted while the snapshot was being received"},
		{"replaced by a new one of the same name", func(s *fakeStatusStore) { s.instance.UID = "uid-2" }, "deleted while the snapshot was being received"},
		{"being deleted", func(s *fakeStatusStore) { now := metav1.Now(); s.instance.DeletionTimestamp = &now }, "is being deleted"},
	} {
		t.Run(tc.what, func(t *testing.T) {
			spool := filepath.Join(t.TempDir(), "restore")
			if err := os.Mkdir(spool, 0o700); err != nil {
				t.Fatal(err)
			}
			stager := &fakeStager{dir: spool}
			store := &fakeStatusStore{instance: &etcdaas.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "ns", UID: "uid-1"}}}
			body := &countingReader{r: bytes.NewReader(snap), atEOF: func() {
				tc.after(store)
				if err := os.RemoveAll(spool); err != nil { // what the instance's deletion does
					t.Error(err)
				}
			}}
			resp := postRestore(t, NewRestoreREST(store, RestoreOptions{Stager: stager}), body, int64(len(snap)))
			if !apierrors.IsConflict(resp.err) || !strings.Contains(resp.err.Error(), tc.want) || strings.Contains(resp.err.Error(), spool) {
				t.Fatalf("answered %d %v, want a 409 saying the instance %s, without server paths", resp.code, resp.err, tc.want)
			}
			if stager.staged != nil {
				t.Errorf("staged %+v for an instance deleted during the upload", stager.staged)
			}
		})
	}
}

// TestRestoreWhileARecoveryIsRequested: a restore of an instance whose recovery from quorum
// loss was requested through the recover subresource, and not yet carried out, is a 409
// saying so before a byte of its body is read, as a restore during another restore is;
// nothing is staged or reported. Once the request is consumed, the backend's own record of
// the recovery refuses it (the stagers' tests).
func TestRestoreWhileARecoveryIsRequested(t *testing.T) {
	snap, err := os.ReadFile(snapshottest.Make(t, t.TempDir(), "snap.db", map[string]string{"k": "v"}))
	if err != nil {
		t.Fatal(err)
	}
	for member, from := range map[string]string{"db-2": "member db-2", "": "the most advanced surviving member"} {
		spool := t.TempDir()
		stager := &fakeStager{dir: spool}
		store := &fakeStatusStore{instance: &etcdaas.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "ns", UID: "uid-1",
			Annotations: map[string]string{etcdaas.RecoverRequestedAnnotation: member, etcdaas.RecoverRequestIDAnnotation: "rec-1"}}}}
		body := &countingReader{r: bytes.NewReader(snap)}
		want := "a recovery of the instance from quorum loss is under way (from " + from + ")"
		expectRestoreStatus(t, postRestore(t, NewRestoreREST(store, RestoreOptions{Stager: stager}), body, int64(len(snap))), http.StatusConflict, want)
		if body.n != 0 || stager.staged != nil || store.updates != 0 {
			t.Errorf("read %d bytes, staged %v, wrote status %d times; want nothing", body.n, stager.staged, store.updates)
		}
	}
}
