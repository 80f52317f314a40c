package controller

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"

	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/backup"
	"github.com/etcdaas/etcdaas/pkg/controller/backend"
	"github.com/etcdaas/etcdaas/pkg/generated/clientset/versioned"
)

// Reasons of the Degraded condition when spec.restoreFrom cannot be honoured.
const (
	ReasonRestoreSourceNotFound      = "RestoreSourceNotFound"
	ReasonRestoreSourceNoDestination = "RestoreSourceNoDestination"
	// ReasonRestoreSourceMisconfigured: the source's backup destination cannot be read as it
	// is configured, and only a change of configuration fixes it (credentials missing or
	// refused, a bucket that does not exist, an endpoint or caBundle the store cannot be used
	// with, a destination this controller does not serve).
	ReasonRestoreSourceMisconfigured = "RestoreSourceMisconfigured"
	ReasonNoBackups                  = "NoBackups"
	ReasonBackupNotFound             = "BackupNotFound"
	// ReasonRestoreSourceUnreachable: the members cannot read the source's destination
	// themselves (the kubernetes backend's pods and a server's local backup directory).
	ReasonRestoreSourceUnreachable = "RestoreSourceUnreachable"
)

// RestoreSourceRetryInterval is how often the controller looks again at a spec.restoreFrom
// source whose backup destination only a change of configuration lets it read: nothing it
// watches tells it when a credentials Secret is created or a bucket made.
const RestoreSourceRetryInterval = time.Minute

// BackupRestoreSource opens the backups spec.restoreFrom names from the destination of the
// source instance's spec.backup, resolved as the backup step resolves it (same backup
// directory, same source of S3 credentials).
type BackupRestoreSource struct {
	// Client reads the source instance.
	Client versioned.Interface
	// Resolver builds the source instance's destination.
	Resolver backup.Resolver
	// RetryInterval is how soon to look again at a destination that needs a change of
	// configuration; zero means RestoreSourceRetryInterval.
	RetryInterval time.Duration
}

var _ backend.RemoteRestoreSource = BackupRestoreSource{}

// OpenRestoreSource opens spec.restoreFrom.key of the source instance's destination, or its
// newest backup when no key is given.
func (s BackupRestoreSource) OpenRestoreSource(ctx context.Context, inst *v1beta1.ETCDInstance) (io.ReadCloser, *backend.BackupProvenance, error) {
	from := inst.Spec.RestoreFrom
	if from == nil {
		return nil, nil, errors.New("spec.restoreFrom is not set")
	}
	source, dest, err := s.destination(ctx, inst.Namespace, from.Instance)
	if err != nil {
		return nil, nil, err
	}
	key := from.Key
	if key == "" {
		// The newest backup the source itself took: a bucket and prefix may also hold the
		// backups of another instance, or of an earlier instance of the same name.
		newest, err := backup.Newest(ctx, dest, string(source.UID))
		if errors.Is(err, backup.ErrNotFound) {
			return nil, nil, backend.Permanent(ReasonNoBackups, "spec.restoreFrom: instance %s (UID %s) has no backup of its own yet in %s (%v); the restore starts once it records its first scheduled backup",
				from.Instance, source.UID, dest, err)
		}
		if err != nil {
			return nil, nil, s.destinationError(inst.Namespace, from.Instance, fmt.Errorf("listing the backups of %s: %w", from.Instance, err))
		}
		key = newest.Key
	}
	body, info, err := dest.Open(ctx, key)
	if errors.Is(err, backup.ErrNotFound) {
		return nil, nil, backend.Permanent(ReasonBackupNotFound, "spec.restoreFrom.key: instance %s has no backup %q in %s", from.Instance, key, dest)
	}
	if err != nil {
		return nil, nil, s.destinationError(inst.Namespace, from.Instance, fmt.Errorf("opening backup %s of %s: %w", key, from.Instance, err))
	}
	return body, &backend.BackupProvenance{Key: info.Key, SHA256: info.SHA256, Revision: info.Revision}, nil
}

// LocateRestoreSource finds spec.restoreFrom's backup (as OpenRestoreSource picks it) in the
// source instance's S3 destination, for members that read it themselves.
func (s BackupRestoreSource) LocateRestoreSource(ctx context.Context, inst *v1beta1.ETCDInstance) (*backend.RemoteBackup, error) {
	from := inst.Spec.RestoreFrom
	if from == nil {
		return nil, errors.New("spec.restoreFrom is not set")
	}
	source, err := s.Client.EtcdaasV1beta1().ETCDInstances(inst.Namespace).Get(ctx, from.Instance, metav1.GetOptions{})
	if err != nil || source.Spec.Backup == nil {
		// OpenRestoreSource reads the source again and gives the error its reason.
		body, _, err := s.OpenRestoreSource(ctx, inst)
		if err == nil {
			_ = body.Close()
			err = fmt.Errorf("instance %s/%s changed while it was read; retrying", inst.Namespace, from.Instance)
		}
		return nil, err
	}
	if source.Spec.Backup.Destination.S3 == nil {
		return nil, backend.Permanent(ReasonRestoreSourceUnreachable, "spec.restoreFrom.instance: the backups of %s/%s are in a server's local backup directory, which member pods cannot read; restore from an S3 destination", inst.Namespace, from.Instance)
	}
	body, prov, err := s.OpenRestoreSource(ctx, inst) // the same checks, with their reasons
	if err != nil {
		return nil, err
	}
	_ = body.Close()
	located := &backend.RemoteBackup{S3: *source.Spec.Backup.Destination.S3.DeepCopy(), Provenance: *prov}
	if located.S3.Prefix == "" {
		located.S3.Prefix = backup.DefaultPrefix(inst.Namespace, from.Instance)
	}
	return located, nil
}

// destination reads the instance namespace/name and resolves its backup destination.
func (s BackupRestoreSource) destination(ctx context.Context, namespace, name string) (*v1beta1.ETCDInstance, backup.Destination, error) {
	source, err := s.Client.EtcdaasV1beta1().ETCDInstances(namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil, backend.Permanent(ReasonRestoreSourceNotFound, "spec.restoreFrom.instance: instance %s/%s does not exist", namespace, name)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("reading instance %s/%s: %w", namespace, name, err)
	}
	if source.Spec.Backup == nil {
		return nil, nil, backend.Permanent(ReasonRestoreSourceNoDestination, "spec.restoreFrom.instance: instance %s/%s has no spec.backup, so it has no backups to restore from", namespace, name)
	}
	dest, err := s.Resolver.Destination(ctx, namespace, name, source.Spec.Backup.Destination)
	if errors.Is(err, backup.ErrStoreUnavailable) {
		err = fmt.Errorf("spec.restoreFrom: the backups of %s/%s cannot be read for now: %w", namespace, name, err)
	}
	if err != nil {
		return nil, nil, s.destinationError(namespace, name, err)
	}
	return source, dest, nil
}

// destinationError classifies err, an error of the backup destination of the source instance
// namespace/name, as the backups and restore subresources do: one that only a change of
// configuration fixes (backup.NeedsConfigurationChange: they answer it with a 409) fails the
// new instance with reason RestoreSourceMisconfigured, saying what to change, and is looked
// at again every RetryInterval, since the fix (a Secret created, a bucket made) may come
// from outside the instances; any other, such as a store or a credentials Secret the
// Kubernetes API cannot give for now (a 503 there), is returned as it is, and retried with
// backoff.
func (s BackupRestoreSource) destinationError(namespace, name string, err error) error {
	if !backup.NeedsConfigurationChange(err) {
		return err
	}
	return &backend.PermanentError{
		Reason: ReasonRestoreSourceMisconfigured,
		Message: fmt.Sprintf("spec.restoreFrom: the backups of %s/%s cannot be read as its spec.backup.destination is configured "+
			"(fix it or what it names, such as the credentials Secret or the bucket, and the restore starts by itself): %v", namespace, name, err),
		RetryAfter: cmp.Or(s.RetryInterval, RestoreSourceRetryInterval),
	}
}

// restoreSourceIndex indexes instances by the namespace/name of the instance their
// spec.restoreFrom names.
const restoreSourceIndex = "restoreFrom"

// restoreSourceOf is the index function of restoreSourceIndex.
func restoreSourceOf(obj any) ([]string, error) {
	inst, ok := obj.(*v1beta1.ETCDInstance)
	if !ok || inst.Spec.RestoreFrom == nil || inst.Spec.RestoreFrom.Instance == "" {
		return nil, nil
	}
	return []string{inst.Namespace + "/" + inst.Spec.RestoreFrom.Instance}, nil
}

// enqueueRestoresFrom enqueues the instances whose spec.restoreFrom names obj when what they
// may be waiting for has come: obj was created, its spec.backup changed or it recorded a new
// backup. Its other changes (health, sizes, resyncs) do not concern them.
func (c *Controller) enqueueRestoresFrom(oldObj, obj any) {
	inst, ok := obj.(*v1beta1.ETCDInstance)
	if !ok {
		return
	}
	if old, ok := oldObj.(*v1beta1.ETCDInstance); ok && !restoreSourceChanged(old, inst) {
		return
	}
	dependents, err := c.informer.GetIndexer().ByIndex(restoreSourceIndex, inst.Namespace+"/"+inst.Name)
	if err != nil {
		utilruntime.HandleError(err)
		return
	}
	for _, d := range dependents {
		c.enqueue(d)
	}
}

// restoreSourceChanged reports whether a source instance changed in a way that can let an
// instance restoring from it go on: a new object of that name, another spec.backup, or a
// new latest backup.
func restoreSourceChanged(old, inst *v1beta1.ETCDInstance) bool {
	return old.UID != inst.UID || !apiequality.Semantic.DeepEqual(old.Spec.Backup, inst.Spec.Backup) ||
		lastBackupKey(old) != lastBackupKey(inst)
}

// lastBackupKey is the key of the latest backup inst recorded, empty when none.
func lastBackupKey(inst *v1beta1.ETCDInstance) string {
	if inst.Status.Backup == nil || inst.Status.Backup.LastBackup == nil {
		return ""
	}
	return inst.Status.Backup.LastBackup.Key
}
