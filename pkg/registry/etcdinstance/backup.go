package etcdinstance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/klog/v2"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	"github.com/etcdaas/etcdaas/pkg/etcdcluster"
)

// BackupResourcePath is the storage map key of the backup subresource.
const BackupResourcePath = "etcdinstances/backup"

// BackupMediaType is the media type of a backup's body, a raw etcd snapshot.
const BackupMediaType = "application/octet-stream"

// backupCopyBuffer is the size of the one buffer a backup stream goes through.
const backupCopyBuffer = 64 * 1024

// BackupREST serves GET etcdinstances/NAME/backup: a point-in-time snapshot of the instance's
// etcd data, streamed from the healthy member with the highest revision without holding it
// in memory. RBAC authorizes it as the etcdinstances/backup subresource, separately from
// reading the instance.
type BackupREST struct {
	getter rest.Getter
	dialer etcdcluster.Dialer
	// streamEnded, when set, is told how each stream ended (for tests).
	streamEnded func(bytes int64, err error)
}

var (
	_ rest.Connecter       = &BackupREST{}
	_ rest.StorageMetadata = &BackupREST{}
)

// NewBackupREST returns the backup subresource. getter is the main resource's store (for 404s
// and the instance's UID); dialer reaches the members. A nil dialer makes every backup a 503.
func NewBackupREST(getter rest.Getter, dialer etcdcluster.Dialer) *BackupREST {
	return &BackupREST{getter: getter, dialer: dialer}
}

// New returns an empty instance, the object the subresource belongs to.
func (r *BackupREST) New() runtime.Object { return &etcdaas.ETCDInstance{} }

// Destroy does nothing: the store is shared with REST, which destroys it.
func (r *BackupREST) Destroy() {}

// ConnectMethods returns GET, the only method the subresource serves.
func (r *BackupREST) ConnectMethods() []string { return []string{http.MethodGet} }

// NewConnectOptions returns no options: a backup takes no parameters.
func (r *BackupREST) NewConnectOptions() (runtime.Object, bool, string) { return nil, false, "" }

// ProducesMIMETypes returns application/octet-stream: the body is a raw etcd snapshot.
func (r *BackupREST) ProducesMIMETypes(verb string) []string {
	return []string{BackupMediaType}
}

// ProducesObject returns the documented response type: a byte stream.
func (r *BackupREST) ProducesObject(verb string) interface{} { return "" }

// Connect checks that the instance exists and returns the handler that streams its snapshot.
func (r *BackupREST) Connect(ctx context.Context, name string, _ runtime.Object, responder rest.Responder) (http.Handler, error) {
	obj, err := r.getter.Get(ctx, name, &metav1.GetOptions{})
	if err != nil {
		return nil, err // 404 for a missing instance
	}
	instance, ok := obj.(*etcdaas.ETCDInstance)
	if !ok {
		return nil, apierrors.NewInternalError(fmt.Errorf("unexpected object %T", obj))
	}
	namespace, _ := genericapirequest.NamespaceFrom(ctx)
	if instance.Namespace != "" {
		namespace = instance.Namespace
	}
	h := &backupHandler{rest: r, namespace: namespace, name: name, deleting: instance.DeletionTimestamp != nil, responder: responder}
	h.quorumLost, _ = quorumLost(instance)
	return h, nil
}

type backupHandler struct {
	rest            *BackupREST
	namespace, name string
	deleting        bool
	// quorumLost is the Degraded condition's message when the instance lost quorum.
	quorumLost string
	responder  rest.Responder
}

// ServeHTTP opens the snapshot before writing anything, so that failures become API errors,
// then streams it. The request context ends the snapshot when the client goes away.
func (h *backupHandler) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	ctx := req.Context()
	snap, err := h.openSnapshot(ctx)
	if err != nil {
		h.responder.Error(err)
		return
	}
	if snap == nil {
		return // the client went away
	}
	defer func() { _ = snap.Close() }()

	filename := fmt.Sprintf("%s-%s-%d.db", h.namespace, h.name, snap.Revision)
	header := w.Header()
	header.Set("Content-Type", BackupMediaType)
	header.Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", filename))
	header.Set("X-Etcd-Revision", strconv.FormatInt(snap.Revision, 10))
	header.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)

	start := time.Now()
	n, err := io.CopyBuffer(&flushWriter{w: w, rc: http.NewResponseController(w)}, snap, make([]byte, backupCopyBuffer))
	if h.rest.streamEnded != nil {
		h.rest.streamEnded(n, err)
	}
	if err != nil {
		// The status line is gone: all that is left is cutting the stream short, which a
		// client notices as a truncated body that fails the snapshot's integrity check.
		klog.V(2).InfoS("Backup stream ended early", "instance", h.namespace+"/"+h.name, "member", snap.Endpoint, "bytes", n, "err", err)
		if ctx.Err() == nil {
			panic(http.ErrAbortHandler)
		}
		return
	}
	klog.V(2).InfoS("Backup streamed", "instance", h.namespace+"/"+h.name, "member", snap.Endpoint, "revision", snap.Revision, "bytes", n, "duration", time.Since(start))
}

// openSnapshot opens the snapshot of the most advanced member that serves one, or returns the
// API error to answer with; neither when ctx ended (the client went away).
func (h *backupHandler) openSnapshot(ctx context.Context) (*etcdcluster.Snapshot, error) {
	if h.deleting {
		return nil, apierrors.NewConflict(etcdaas.Resource("etcdinstances/backup"), h.name, errors.New("the instance is being deleted"))
	}
	if h.rest.dialer == nil {
		return nil, unavailable(h.name, "this server cannot reach etcd members", 0)
	}
	access, err := h.rest.dialer.Access(ctx, h.namespace, h.name)
	if errors.Is(err, etcdcluster.ErrNoMembers) {
		return nil, apierrors.NewConflict(etcdaas.Resource("etcdinstances/backup"), h.name, fmt.Errorf("no member can serve a backup yet: %w", err))
	}
	if err != nil {
		return nil, unavailable(h.name, fmt.Sprintf("cannot reach the members: %v", err), 5)
	}
	snap, err := etcdcluster.OpenBestSnapshot(ctx, access)
	if err == nil {
		return snap, nil
	}
	if ctx.Err() != nil {
		return nil, nil
	}
	if h.quorumLost != "" {
		// Retrying does not help: only a recovery does (a 503 with Retry-After made
		// clients retry for a minute and more).
		klog.V(2).InfoS("No backup after a quorum loss", "instance", h.namespace+"/"+h.name, "err", err)
		return nil, apierrors.NewConflict(etcdaas.Resource(BackupResourcePath), h.name, fmt.Errorf(
			"the instance lost quorum, so no member serves a consistent snapshot (%s); POST etcdinstances/%s/recover "+
				"('kubectl etcdaas recover %s') rebuilds it from the most advanced surviving member with every key that member has",
			h.quorumLost, h.name, h.name))
	}
	return nil, unavailable(h.name, fmt.Sprintf("no member can serve a backup: %v", err), 5)
}

// flushEvery is how much data a backup stream sends between explicit flushes: often enough
// for a client's progress bar, rarely enough not to cost throughput.
const flushEvery = 1 << 20

// stalledClientTimeout is how long one write of a backup may wait for a client that stopped
// reading. A stalled client would otherwise hold the member's snapshot (a read transaction of
// its database) open for ever, and with it the member's shutdown.
const stalledClientTimeout = time.Minute

// flushWriter flushes the response every flushEvery bytes so that the client sees progress,
// and gives every write a deadline so that a client that stops reading ends the stream.
type flushWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	pending int
}

func (f *flushWriter) Write(p []byte) (int, error) {
	// Not every ResponseWriter in a filter chain supports deadlines; without one the request
	// context still ends the stream when the connection closes.
	_ = f.rc.SetWriteDeadline(time.Now().Add(stalledClientTimeout))
	n, err := f.w.Write(p)
	f.pending += n
	if err == nil && f.pending >= flushEvery {
		f.pending = 0
		if fl, ok := f.w.(http.Flusher); ok {
			fl.Flush()
		}
	}
	return n, err
}

func unavailable(name, msg string, retryAfter int) error {
	err := apierrors.NewServiceUnavailable(fmt.Sprintf("backup of %q: %s", name, msg))
	if retryAfter > 0 {
		err.ErrStatus.Details = &metav1.StatusDetails{Name: name, Group: etcdaas.GroupName, Kind: "etcdinstances", RetryAfterSeconds: int32(retryAfter)}
	}
	return err
}
