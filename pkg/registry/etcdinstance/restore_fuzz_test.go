package etcdinstance

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	"github.com/etcdaas/etcdaas/pkg/snapshot"
	"github.com/etcdaas/etcdaas/pkg/snapshot/snapshottest"
)

// fakeStager spools into one directory and keeps the one snapshot staged; like the local
// backend's stager, it refuses a second one before (SpoolDir) and when (Stage) it is staged.
type fakeStager struct {
	dir    string
	staged *snapshot.Staged
	path   string
}

func (s *fakeStager) SpoolDir(context.Context, *etcdaas.ETCDInstance) (string, error) {
	if s.staged != nil {
		return "", snapshot.ErrRestorePending
	}
	return s.dir, nil
}

func (s *fakeStager) Stage(_ context.Context, _ *etcdaas.ETCDInstance, staged *snapshot.Staged, path string) error {
	if s.staged != nil {
		return snapshot.ErrRestorePending
	}
	s.staged, s.path = staged, path+".staged"
	return os.Rename(path, s.path)
}

// restoreVersions are the spec.version values an instance can have (validation allows only
// these and the empty default).
var restoreVersions = []string{"", "3.5", "3.6", "3.7"}

// withHash pads data to whole 512-byte blocks and appends its sha256, the shape of a
// snapshot with an integrity hash, so that the fuzzer reaches the database check.
func withHash(data []byte) []byte {
	out := append(bytes.Clone(data), make([]byte, (512-len(data)%512)%512)...)
	sum := sha256.Sum256(out)
	return append(out, sum[:]...)
}

// FuzzRestoreBody sends an arbitrary body (optionally given the shape and integrity hash of
// a snapshot, so that the database check runs on it), with or without a Content-Length,
// under an arbitrary size limit, to the restore handler of an instance of each version. The
// answer is 202 only for a body that verifies, with the snapshot staged as sent and the
// restore reported in status; otherwise a 400, 413 or 422 Status (413 exactly when the body
// is over the limit), nothing staged, nothing written to status, and no file left in the
// spool directory. Never a panic or a 5xx.
func FuzzRestoreBody(f *testing.F) {
	valid, err := os.ReadFile(snapshottest.Make(f, f.TempDir(), "valid.db", map[string]string{"/fuzz/a": "1", "/fuzz/b": "2"}))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid, false, false, uint16(1024), uint8(0))
	f.Add(valid, false, true, uint16(1024), uint8(3))
	f.Add(valid[:len(valid)-sha256.Size], true, false, uint16(1024), uint8(2))
	f.Add(valid, false, false, uint16(1), uint8(0))
	f.Add([]byte("not a snapshot"), false, false, uint16(1024), uint8(0))
	f.Add([]byte{}, false, true, uint16(0), uint8(1))
	f.Fuzz(func(t *testing.T, body []byte, shape, chunked bool, limitKiB uint16, version uint8) {
		if shape {
			body = withHash(body)
		}
		limit := (int64(limitKiB) + 1) << 10
		spool := t.TempDir()
		stager := &fakeStager{dir: spool}
		store := &fakeStatusStore{instance: &etcdaas.ETCDInstance{
			ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "ns", UID: "uid-1"},
			Spec:       etcdaas.ETCDInstanceSpec{Version: restoreVersions[int(version)%len(restoreVersions)]},
		}}
		size := int64(len(body))
		if chunked {
			size = -1 // no Content-Length: the body is read to its end
		}
		resp := postRestore(t, NewRestoreREST(store, RestoreOptions{Stager: stager, MaxBytes: limit}), bytes.NewReader(body), size)
		if resp.err == nil {
			checkAccepted(t, resp, stager, store, body)
			return
		}
		var status apierrors.APIStatus
		if !errors.As(resp.err, &status) {
			t.Fatalf("refused with an error that is not a Status: %v", resp.err)
		}
		code := int(status.Status().Code)
		switch {
		case code != http.StatusBadRequest && code != http.StatusRequestEntityTooLarge && code != http.StatusUnprocessableEntity:
			t.Fatalf("refused with %d, want 400, 413 or 422: %v", code, resp.err)
		case (code == http.StatusRequestEntityTooLarge) != (int64(len(body)) > limit):
			t.Fatalf("%d bytes under a limit of %d: %d %v", len(body), limit, code, resp.err)
		case stager.staged != nil || store.updates != 0:
			t.Fatalf("a refused restore was staged (%v) or reported (%d status writes)", stager.staged, store.updates)
		}
		if left, _ := os.ReadDir(spool); len(left) != 0 {
			t.Fatalf("a refused restore left %d files in the spool directory: %v", len(left), left[0].Name())
		}
	})
}

// postRestore posts body to the restore subresource of r for ns/db and returns what it
// answered; size is its Content-Length, -1 for none (a chunked upload).
func postRestore(t *testing.T, r *RestoreREST, body io.Reader, size int64) *recoverResponder {
	t.Helper()
	resp := &recoverResponder{}
	h, err := r.Connect(context.Background(), "db", nil, resp)
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	req := httptest.NewRequest(http.MethodPost, "/restore", body)
	req.ContentLength = size
	h.ServeHTTP(httptest.NewRecorder(), req)
	return resp
}

// checkAccepted checks an accepted restore staged exactly the body and reported it.
func checkAccepted(t *testing.T, resp *recoverResponder, stager *fakeStager, store *fakeStatusStore, body []byte) {
	t.Helper()
	if resp.code != http.StatusAccepted || stager.staged == nil || store.updates != 1 {
		t.Fatalf("accepted with %d, staged %v, %d status writes", resp.code, stager.staged, store.updates)
	}
	staged, err := os.ReadFile(stager.path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(body)
	if !bytes.Equal(staged, body) || stager.staged.Info.SHA256 != hex.EncodeToString(sum[:]) || stager.staged.Info.Size != int64(len(body)) {
		t.Fatalf("staged %d bytes (sha256 %s, info %+v), the body has %d", len(staged), stager.staged.Info.SHA256, stager.staged.Info, len(body))
	}
	if store.instance.Status.Phase != etcdaas.PhaseRestoring || stager.staged.InstanceUID != "uid-1" {
		t.Fatalf("phase %q, staged for %q", store.instance.Status.Phase, stager.staged.InstanceUID)
	}
	if left, _ := os.ReadDir(filepath.Dir(stager.path)); len(left) != 1 {
		t.Fatalf("%d files in the spool directory after staging, want the staged one", len(left))
	}
}
