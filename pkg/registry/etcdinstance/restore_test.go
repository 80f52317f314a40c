package etcdinstance

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
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
