package etcdinstance

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"os"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/apiserver/pkg/endpoints/handlers/negotiation"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/klog/v2"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	"github.com/etcdaas/etcdaas/pkg/backup"
	"github.com/etcdaas/etcdaas/pkg/etcdcluster"
	"github.com/etcdaas/etcdaas/pkg/snapshot"
)

// RestoreResourcePath is the storage map key of the restore subresource.
const RestoreResourcePath = "etcdinstances/restore"

// DefaultMaxRestoreBytes is the largest snapshot the restore subresource accepts unless the
// server is told otherwise: etcd's largest recommended backend quota, 8 GiB.
const DefaultMaxRestoreBytes int64 = 8 << 30

// ReasonRestoreRequested is the Progressing condition's reason from the moment a snapshot is
// accepted until the controller starts restoring it.
const ReasonRestoreRequested = "RestoreRequested"

// RestoreMediaType is the media type of a restore's body, a raw etcd snapshot.
const RestoreMediaType = "application/octet-stream"

// verifyTimeout bounds checking one snapshot.
const verifyTimeout = 10 * time.Minute

// RestoreStager hands a verified snapshot to the backend that runs an instance's members. The
// API server and the controller are separate processes: the stager is how a snapshot the
// server accepted becomes reachable by the controller.
type RestoreStager interface {
	// SpoolDir returns the directory to receive a snapshot for the instance in, on the
	// filesystem Stage keeps it on. It returns an error wrapping etcdcluster.ErrNoMembers when
	// the instance (this UID) has no members to restore yet, one wrapping
	// snapshot.ErrRestorePending (naming it) when a restore is pending already, one wrapping
	// snapshot.ErrRecoveryUnderWay when a recovery from quorum loss is recorded and has not
	// finished, and one wrapping snapshot.ErrCannotStage when the instance cannot be restored as it is configured. Two
	// uploads may both pass it; the end of a restore must not disturb the other's spool file.
	// An error about the destination the snapshot travels through keeps its class
	// (backup.ErrStoreUnavailable first of all: it is answered with a 503, not a 409).
	SpoolDir(ctx context.Context, instance *etcdaas.ETCDInstance) (string, error)
	// Stage makes the verified snapshot file at path the pending restore of the instance and
	// takes the file over. It returns an error wrapping snapshot.ErrRestorePending when one is
	// pending already, snapshot.ErrRecoveryUnderWay when a recovery was recorded meanwhile; errors about the destination keep their class, as SpoolDir's.
	Stage(ctx context.Context, instance *etcdaas.ETCDInstance, staged *snapshot.Staged, path string) error
}

// RestoreOptions configure the restore subresource.
type RestoreOptions struct {
	// Stager hands accepted snapshots to the backend; nil makes every restore a 503.
	Stager RestoreStager
	// MaxBytes is the largest snapshot accepted (413 above it); 0 means DefaultMaxRestoreBytes.
	MaxBytes int64
}

// RestoreREST serves POST etcdinstances/NAME/restore: the body, an etcd snapshot, is streamed to
// disk, verified (integrity hash, database check, etcd version no newer than the instance
// runs) and only then handed to the backend, which restores every member from it as a new
// cluster. Nothing about the running cluster changes on any refusal. RBAC authorizes it as the
// etcdinstances/restore subresource.
type RestoreREST struct {
	status statusStore
	opts   RestoreOptions
}

var (
	_ rest.Connecter       = &RestoreREST{}
	_ rest.StorageMetadata = &RestoreREST{}
)

// NewRestoreREST returns the restore subresource; status is the status subresource's store,
// through which an accepted restore is reported.
func NewRestoreREST(status statusStore, opts RestoreOptions) *RestoreREST {
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxRestoreBytes
	}
	return &RestoreREST{status: status, opts: opts}
}

// New returns an empty instance, the object the subresource belongs to and answers with.
func (r *RestoreREST) New() runtime.Object { return &etcdaas.ETCDInstance{} }

// Destroy does nothing: the store is shared with REST, which destroys it.
func (r *RestoreREST) Destroy() {}

// ConnectMethods returns POST, the only method the subresource serves.
func (r *RestoreREST) ConnectMethods() []string { return []string{http.MethodPost} }

// NewConnectOptions returns no options: the body is the whole request.
func (r *RestoreREST) NewConnectOptions() (runtime.Object, bool, string) { return nil, false, "" }

// ProducesMIMETypes returns the media types of the answer, the instance.
func (r *RestoreREST) ProducesMIMETypes(verb string) []string {
	return []string{"application/json", "application/yaml"}
}

// ProducesObject returns nil: OpenAPI documents connect answers per method, not per version,
// so it cannot name the instance of the version requested (which is what the answer is).
func (r *RestoreREST) ProducesObject(verb string) interface{} { return nil }

// Connect checks that the instance exists and returns the handler that receives the snapshot.
func (r *RestoreREST) Connect(ctx context.Context, name string, _ runtime.Object, responder rest.Responder) (http.Handler, error) {
	obj, err := r.status.Get(ctx, name, &metav1.GetOptions{})
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
	return &restoreHandler{rest: r, namespace: namespace, instance: instance, responder: responder}, nil
}

type restoreHandler struct {
	rest      *RestoreREST
	namespace string
	instance  *etcdaas.ETCDInstance
	responder rest.Responder
}

// ServeHTTP receives, verifies and stages the snapshot, then reports the restore in status.
func (h *restoreHandler) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	staged, err := h.accept(req)
	if err != nil {
		if apierrors.IsInternalError(err) {
			// The instance's deletion takes its spool directory with it, which the upload
			// then fails on: say so, not what went missing on the server's disk.
			if gone := h.goneMeanwhile(req.Context()); gone != nil {
				err = gone
			}
		}
		h.responder.Error(err)
		return
	}
	updated, err := h.reportRequested(req.Context(), staged)
	if err != nil {
		// The restore is staged and will run; only the status write failed.
		klog.ErrorS(err, "Reporting an accepted restore", "instance", h.namespace+"/"+h.instance.Name)
		h.responder.Object(http.StatusAccepted, h.instance)
		return
	}
	h.responder.Object(http.StatusAccepted, updated)
}

// accept runs every check in order, cheapest first, and stages the snapshot once all pass.
func (h *restoreHandler) accept(req *http.Request) (*snapshot.Staged, error) {
	ctx := req.Context()
	name := h.instance.Name
	limit := h.rest.opts.MaxBytes
	switch {
	case !acceptedMediaType(req.Header.Get("Content-Type")):
		return nil, negotiation.NewUnsupportedMediaTypeError([]string{RestoreMediaType})
	case h.instance.DeletionTimestamp != nil:
		return nil, apierrors.NewConflict(etcdaas.Resource(RestoreResourcePath), name, errors.New("the instance is being deleted"))
	case recoveryRequested(h.instance):
		return nil, apierrors.NewConflict(etcdaas.Resource(RestoreResourcePath), name, snapshot.RecoveryError(recoveryFrom(h.instance)))
	case h.rest.opts.Stager == nil:
		return nil, apierrors.NewServiceUnavailable(fmt.Sprintf("restore of %q: this server cannot hand snapshots to the controller's backend: "+
			"it needs the local backend's data directory (standalone mode, or --backup-local-data-dir) or a cluster whose StatefulSets it reads", name))
	case req.ContentLength > limit:
		return nil, tooLarge(name, req.ContentLength, limit)
	case req.ContentLength == 0:
		return nil, invalidSnapshot(name, "the request has no body: send the snapshot as application/octet-stream")
	}
	spool, err := h.rest.opts.Stager.SpoolDir(ctx, h.instance)
	if errors.Is(err, etcdcluster.ErrNoMembers) {
		return nil, apierrors.NewConflict(etcdaas.Resource(RestoreResourcePath), name, fmt.Errorf("there is no running cluster to restore yet: %w", err))
	}
	if err != nil {
		return nil, stagingError(name, err)
	}
	start := time.Now()
	path, size, err := snapshot.Receive(req.Body, spool, limit)
	var tl *snapshot.TooLargeError
	var re *snapshot.ReadError
	switch {
	case errors.As(err, &tl):
		return nil, tooLarge(name, -1, limit)
	case errors.As(err, &re):
		return nil, apierrors.NewBadRequest(fmt.Sprintf("restore of %q: %v", name, err))
	case err != nil:
		// The server could not spool the body (a full or unwritable disk): not the client's fault.
		return nil, apierrors.NewInternalError(fmt.Errorf("restore of %q: %w", name, err))
	}
	defer func() { _ = os.Remove(path) }() // a no-op once staged: the stager moved it
	received := time.Since(start)

	vctx, cancel := context.WithTimeout(ctx, verifyTimeout)
	defer cancel()
	info, err := snapshot.Verify(vctx, path)
	if snapshot.IsInvalid(err) {
		return nil, invalidSnapshot(name, err.Error())
	}
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	if err := snapshot.CheckVersion(info, runningVersion(h.instance)); err != nil {
		return nil, invalidSnapshot(name, err.Error())
	}
	staged := &snapshot.Staged{ID: string(uuid.NewUUID()), InstanceUID: string(h.instance.UID), Info: *info, RequestedAt: time.Now().UTC()}
	if err := h.rest.opts.Stager.Stage(ctx, h.instance, staged, path); err != nil {
		return nil, stagingError(name, err)
	}
	klog.InfoS("Accepted a snapshot to restore", "instance", h.namespace+"/"+name, "id", staged.ID, "bytes", size,
		"revision", info.Revision, "keys", info.TotalKeys, "received", received, "verified", time.Since(start)-received)
	return staged, nil
}

// goneMeanwhile returns a 409 when the instance was deleted (or is being deleted, or was
// replaced by another of the same name) since the restore began, nil when it is still there.
func (h *restoreHandler) goneMeanwhile(ctx context.Context) error {
	resource, name := etcdaas.Resource(RestoreResourcePath), h.instance.Name
	ctx = genericapirequest.WithNamespace(ctx, h.namespace)
	obj, err := h.rest.status.Get(ctx, name, &metav1.GetOptions{})
	current, ok := obj.(*etcdaas.ETCDInstance)
	switch {
	case apierrors.IsNotFound(err), err == nil && ok && current.UID != h.instance.UID:
		return apierrors.NewConflict(resource, name, errors.New("the instance was deleted while the snapshot was being received; nothing was restored"))
	case err == nil && ok && current.DeletionTimestamp != nil:
		return apierrors.NewConflict(resource, name, errors.New("the instance is being deleted; nothing was restored"))
	}
	return nil
}

// stagingError answers a stager's refusal: a destination it cannot use as the backups
// subresource answers it, by who can fix it (503 with Retry-After for a store or credentials
// Secret unavailable for now, 409 for a configuration to change); the Kubernetes API failing
// for now to give or take the instance's StatefulSet a 503 with Retry-After too; a restore
// pending, a recovery under way, an instance that cannot be restored as it is configured or has no members (any
// more) a 409; anything else a 500. Nothing is staged in any of these cases.
func stagingError(name string, err error) error {
	switch {
	case isDestinationError(err):
		return stagingRestore.answer(name, err)
	case errors.Is(err, snapshot.ErrRestorePending), errors.Is(err, snapshot.ErrRecoveryUnderWay),
		errors.Is(err, snapshot.ErrCannotStage), errors.Is(err, etcdcluster.ErrNoMembers):
		return apierrors.NewConflict(etcdaas.Resource(RestoreResourcePath), name, err)
	case backup.TransientAPIError(err):
		return stagingRestore.unavailable(name, err)
	}
	return apierrors.NewInternalError(fmt.Errorf("restore of %q: %w", name, err))
}

// recoveryRequested reports whether a recovery requested through the recover subresource
// waits for the controller: a restore accepted now would race it for the members.
func recoveryRequested(instance *etcdaas.ETCDInstance) bool {
	_, requested := instance.Annotations[etcdaas.RecoverRequestedAnnotation]
	return requested
}

// recoveryFrom says which member the requested recovery rebuilds the cluster from.
func recoveryFrom(instance *etcdaas.ETCDInstance) string {
	if member := instance.Annotations[etcdaas.RecoverRequestedAnnotation]; member != "" {
		return "member " + member
	}
	return "the most advanced surviving member"
}

// acceptedMediaType reports whether a restore's Content-Type is the snapshot's media type (any
// parameters aside) or absent: kubectl create --raw -f FILE sends none, and the body is checked
// as a snapshot anyway. Any other type (curl --data-binary's form encoding, JSON) is refused
// before the body is read, as kube-apiserver refuses a body in a type an endpoint does not take.
func acceptedMediaType(contentType string) bool {
	if contentType == "" {
		return true
	}
	mediaType, _, err := mime.ParseMediaType(contentType)
	return err == nil && mediaType == RestoreMediaType
}

// reportRequested sets phase Restoring and the Progressing condition, so that clients see the
// restore at once and the controller is told through its watch.
func (h *restoreHandler) reportRequested(ctx context.Context, staged *snapshot.Staged) (runtime.Object, error) {
	uid := h.instance.UID
	transform := func(_ context.Context, _, oldObj runtime.Object) (runtime.Object, error) {
		old, ok := oldObj.(*etcdaas.ETCDInstance)
		if !ok {
			return nil, fmt.Errorf("unexpected object %T", oldObj)
		}
		if old.UID != uid {
			return nil, apierrors.NewConflict(etcdaas.Resource(RestoreResourcePath), old.Name, errors.New("the instance was replaced"))
		}
		inst := old.DeepCopy()
		inst.Status.Phase = etcdaas.PhaseRestoring
		meta.SetStatusCondition(&inst.Status.Conditions, metav1.Condition{
			Type: etcdaas.ConditionProgressing, Status: metav1.ConditionTrue, Reason: ReasonRestoreRequested,
			Message: fmt.Sprintf("restore %s accepted: snapshot of revision %d, %d keys, %d bytes, sha256 %s",
				staged.ID, staged.Info.Revision, staged.Info.TotalKeys, staged.Info.Size, staged.Info.SHA256),
			ObservedGeneration: inst.Generation,
		})
		return inst, nil
	}
	ctx = genericapirequest.WithNamespace(ctx, h.namespace)
	obj, _, err := h.rest.status.Update(ctx, h.instance.Name, rest.DefaultUpdatedObjectInfo(nil, transform),
		rest.ValidateAllObjectFunc, rest.ValidateAllObjectUpdateFunc, false, &metav1.UpdateOptions{})
	return obj, err
}

// runningVersion is the etcd version the instance runs (spec.version or the default).
func runningVersion(instance *etcdaas.ETCDInstance) string {
	if instance.Spec.Version != "" {
		return instance.Spec.Version
	}
	return etcdaas.DefaultVersion
}

func tooLarge(name string, size, limit int64) error {
	if size > 0 {
		return apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("restore of %q: the snapshot has %d bytes, this server accepts at most %d", name, size, limit))
	}
	return apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("restore of %q: the snapshot is larger than the %d bytes this server accepts", name, limit))
}

// invalidSnapshot is a 422 about the request body. Its details name the kind, as a 422 about
// the instance itself does, so that kubectl prints `The ETCDInstance "NAME" is invalid: body: …`.
func invalidSnapshot(name, reason string) error {
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		Status:  metav1.StatusFailure,
		Code:    http.StatusUnprocessableEntity,
		Reason:  metav1.StatusReasonInvalid,
		Message: fmt.Sprintf("restore of %q refused, nothing was changed: %s", name, reason),
		Details: &metav1.StatusDetails{
			Name: name, Group: etcdaas.GroupName, Kind: "ETCDInstance",
			Causes: []metav1.StatusCause{{Type: metav1.CauseTypeFieldValueInvalid, Message: reason, Field: "body"}},
		},
	}}
}
