package etcdinstance

import (
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
	"time"

	"go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/utils/ptr"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/controller/backend/local"
	"github.com/etcdaas/etcdaas/pkg/etcdcluster"
)

// fakeGetter serves the instances it holds and 404 for others.
type fakeGetter map[string]*etcdaas.ETCDInstance

func (g fakeGetter) Get(ctx context.Context, name string, _ *metav1.GetOptions) (runtime.Object, error) {
	if inst, ok := g[name]; ok {
		return inst.DeepCopy(), nil
	}
	return nil, apierrors.NewNotFound(etcdaas.Resource("etcdinstances"), name)
}

// recordingResponder records the error Connect's handler reports.
type recordingResponder struct {
	w   http.ResponseWriter
	err error
}

func (r *recordingResponder) Object(statusCode int, obj runtime.Object) {
	r.w.WriteHeader(statusCode)
}

func (r *recordingResponder) Error(err error) {
	r.err = err
	status := http.StatusInternalServerError
	var apiStatus apierrors.APIStatus
	if errors.As(err, &apiStatus) {
		status = int(apiStatus.Status().Code)
	}
	http.Error(r.w, err.Error(), status)
}

// dialerFunc adapts a function to etcdcluster.Dialer.
type dialerFunc func(ctx context.Context, namespace, name string) (*etcdcluster.Access, error)

func (f dialerFunc) Access(ctx context.Context, namespace, name string) (*etcdcluster.Access, error) {
	return f(ctx, namespace, name)
}

// serve runs the backup subresource of name behind an HTTP server, as the API server would.
func serve(t *testing.T, r *BackupREST, name string) (*httptest.Server, *recordingResponder) {
	t.Helper()
	resp := &recordingResponder{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		resp.w = w
		ctx := genericapirequest.WithNamespace(req.Context(), "ns")
		h, err := r.Connect(ctx, name, nil, resp)
		if err != nil {
			resp.Error(err)
			return
		}
		h.ServeHTTP(w, req.WithContext(ctx))
	}))
	t.Cleanup(srv.Close)
	return srv, resp
}

func TestBackupErrors(t *testing.T) {
	getter := fakeGetter{"pending": {ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "pending"}},
		"lost": {ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "lost"}, Status: etcdaas.ETCDInstanceStatus{Conditions: []metav1.Condition{{
			Type: etcdaas.ConditionDegraded, Status: metav1.ConditionTrue, Reason: reasonQuorumLost, Message: "quorum lost: 2 of 3 voting members do not answer (lost-1, lost-2)"}}}}}
	unreachable := dialerFunc(func(context.Context, string, string) (*etcdcluster.Access, error) {
		return &etcdcluster.Access{Endpoints: []string{"http://127.0.0.1:1"}}, nil
	})
	cases := []struct {
		name     string
		instance string
		dialer   etcdcluster.Dialer
		want     int
		message  string
	}{
		{"missing instance", "nope", nil, http.StatusNotFound, "not found"},
		{"no members yet", "pending", dialerFunc(func(context.Context, string, string) (*etcdcluster.Access, error) {
			return nil, fmt.Errorf("%w: not deployed", etcdcluster.ErrNoMembers)
		}), http.StatusConflict, "no member can serve a backup yet"},
		{"members unreachable", "pending", unreachable, http.StatusServiceUnavailable, "no member can serve a backup"},
		// Not a 503 with Retry-After: waiting does not bring quorum back, a recovery does.
		{"quorum lost", "lost", unreachable, http.StatusConflict, "the instance lost quorum, so no member serves a consistent snapshot (quorum lost: 2 of 3"},
		{"no dialer", "pending", nil, http.StatusServiceUnavailable, "cannot reach etcd members"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv, _ := serve(t, NewBackupREST(getter, tc.dialer), tc.instance)
			resp, err := http.Get(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = resp.Body.Close() }()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.want || !strings.Contains(string(body), tc.message) {
				t.Fatalf("got %d %q, want %d containing %q", resp.StatusCode, body, tc.want, tc.message)
			}
		})
	}
}

func TestBackupStreamsAValidSnapshot(t *testing.T) {
	dir := t.TempDir()
	b, err := local.New(local.Options{Dir: dir, SnapshotCount: 1000, SnapshotCatchUpEntries: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = b.Close() }()
	inst := &v1beta1.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "db", UID: types.UID("db-uid")},
		Spec:       v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](1)},
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	waitConverged(t, ctx, b, inst)
	putLargeKeys(t, ctx, b)

	getter := fakeGetter{"db": {ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "db"}}}
	backupREST := NewBackupREST(getter, b)
	ended := make(chan streamEnding, 2)
	backupREST.streamEnded = func(n int64, err error) { ended <- streamEnding{n, err} }
	srv, _ := serve(t, backupREST, "db")
	full := checkCompleteBackup(t, srv, ended)
	checkClientLeavingEndsTheStream(t, ctx, srv, ended, full)
}

// streamEnding is how a backup stream ended: the bytes sent and the error that ended it.
type streamEnding struct {
	bytes int64
	err   error
}

// waitConverged syncs inst on the local backend b until it converges or ctx ends.
func waitConverged(t *testing.T, ctx context.Context, b *local.Backend, inst *v1beta1.ETCDInstance) {
	t.Helper()
	for {
		res, err := b.Sync(ctx, inst)
		if err == nil && res.Converged {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("instance did not converge: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// putLargeKeys writes 64 keys of 256 KiB each into instance ns/db of b.
func putLargeKeys(t *testing.T, ctx context.Context, b *local.Backend) {
	t.Helper()
	access, err := b.Access(ctx, "ns", "db")
	if err != nil {
		t.Fatal(err)
	}
	cli, err := access.New()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cli.Close() }()
	value := strings.Repeat("x", 256*1024)
	for i := range 64 {
		if _, err := cli.Put(ctx, fmt.Sprintf("key-%03d", i), value); err != nil {
			t.Fatal(err)
		}
	}
}

// checkCompleteBackup reads a whole backup from srv, checks its headers and that etcdutl
// reads it as the instance's data, and returns how the stream ended.
func checkCompleteBackup(t *testing.T, srv *httptest.Server, ended <-chan streamEnding) streamEnding {
	t.Helper()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/octet-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	// Revision 65 after 64 puts on a fresh cluster.
	if cd := resp.Header.Get("Content-Disposition"); cd != `attachment; filename="ns-db-65.db"` {
		t.Fatalf("Content-Disposition %q", cd)
	}
	path := filepath.Join(t.TempDir(), "backup.db")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	full := <-ended
	if full.err != nil {
		t.Fatalf("complete stream ended with %v", full.err)
	}
	status, err := snapshot.NewV3(zap.NewNop()).Status(path)
	if err != nil {
		t.Fatalf("snapshot status: %v", err)
	}
	if status.Revision != 65 || status.TotalKey != 64 {
		t.Fatalf("snapshot status %+v, want revision 65 with 64 keys", status)
	}
	return full
}

// checkClientLeavingEndsTheStream checks that a client that goes away mid-stream ends the
// snapshot: the handler returns before sending all of full's bytes.
func checkClientLeavingEndsTheStream(t *testing.T, ctx context.Context, srv *httptest.Server, ended <-chan streamEnding, full streamEnding) {
	t.Helper()
	// A client that goes away mid-stream ends the snapshot: the handler returns.
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	reqCtx, reqCancel := context.WithCancel(ctx)
	resp2, err := http.DefaultClient.Do(req.WithContext(reqCtx))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(resp2.Body, make([]byte, 1024)); err != nil {
		t.Fatal(err)
	}
	reqCancel()
	_ = resp2.Body.Close()
	select {
	case cut := <-ended:
		if cut.err == nil || cut.bytes >= full.bytes {
			t.Fatalf("the stream went on after the client left: %d of %d bytes, err %v", cut.bytes, full.bytes, cut.err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the backup handler kept streaming after the client left")
	}
}
