package kubernetes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/backup"
	"github.com/etcdaas/etcdaas/pkg/etcdcluster"
	"github.com/etcdaas/etcdaas/pkg/snapshot"
)

// RestoresPrefix is the staging area of accepted restores below an instance's S3 prefix. A
// listing of the instance's backups does not descend into it, so staged snapshots are never
// listed, pruned or restored from as backups. Each request stages below a prefix of its own,
// RestoresPrefix + its ID + "/", so that two requests never share an object, whatever their
// time and revision.
const RestoresPrefix = "restores/"

// Stager hands the snapshots the API server accepted for the kubernetes backend's instances to
// their member pods: it uploads each to the instance's S3 destination, below RestoresPrefix,
// with its provenance, and records the request on the instance's StatefulSet
// (annotationRestoreRequest), where the controller finds it. The API server's replicas share
// nothing but the cluster and the store, so the snapshot travels through the store the
// instance already writes its backups to.
type Stager struct {
	// Client reads and annotates the instances' StatefulSets.
	Client kubernetes.Interface
	// Resolver opens the instances' destinations with the credentials their Secrets hold.
	Resolver *backup.Resolver
	// Dir receives snapshots before they are checked (default: the system's temporary
	// directory).
	Dir string
}

// SpoolDir checks that the instance can be restored (it runs members, it has an S3
// destination, no restore is pending) and returns the directory to receive the snapshot in.
func (s Stager) SpoolDir(ctx context.Context, instance *etcdaas.ETCDInstance) (string, error) {
	if _, _, err := s.destination(ctx, instance, ""); err != nil {
		return "", err
	}
	sts, err := s.Client.AppsV1().StatefulSets(instance.Namespace).Get(ctx, instance.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "", fmt.Errorf("%w: instance %s/%s has not been deployed yet", etcdcluster.ErrNoMembers, instance.Namespace, instance.Name)
	}
	if err != nil {
		return "", err
	}
	if !ownedByUID(sts, instance) || ptr.Deref(sts.Spec.Replicas, 0) == 0 {
		return "", fmt.Errorf("%w: instance %s/%s has not been deployed yet", etcdcluster.ErrNoMembers, instance.Namespace, instance.Name)
	}
	if err := restoreRefused(sts); err != nil {
		return "", err
	}
	dir := s.Dir
	if dir == "" {
		dir = os.TempDir()
	}
	dir = filepath.Join(dir, "etcdaas-restores")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	// Receipts cut short by a crash of this server leave their spool files (the directory is
	// shared by every instance; a receipt in progress keeps writing its file).
	deleted, err := snapshot.RemoveStaleSpool(dir, time.Now().Add(-snapshot.StaleSpoolAge))
	if len(deleted) > 0 || err != nil {
		klog.InfoS("Deleted the spool files of interrupted restores", "directory", dir, "deleted", deleted, "err", err)
	}
	return dir, nil
}

// Stage uploads the verified snapshot at path to the staging area of the instance's
// destination and records the restore request on its StatefulSet. Of two concurrent
// requests, one is recorded; the other's upload is deleted and it gets
// snapshot.ErrRestorePending (snapshot.ErrRecoveryUnderWay when a recovery was recorded
// meanwhile).
func (s Stager) Stage(ctx context.Context, instance *etcdaas.ETCDInstance, staged *snapshot.Staged, path string) error {
	if staged.ID == "" || strings.ContainsAny(staged.ID, "/\\") || staged.ID == "." || staged.ID == ".." {
		return fmt.Errorf("restore ID %q cannot name a staging prefix", staged.ID)
	}
	dest, staging, err := s.destination(ctx, instance, staged.ID)
	if err != nil {
		return err
	}
	key := backup.Key(staged.RequestedAt, staged.Info.Revision)
	if err := upload(ctx, staging, key, staged, path); err != nil {
		return fmt.Errorf("staging the snapshot in %s: %w", staging, err)
	}
	req := RestoreRequest{Staged: *staged, S3: *dest, Key: key}
	data, err := json.Marshal(req)
	if err != nil {
		return err
	}
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		sts, err := s.Client.AppsV1().StatefulSets(instance.Namespace).Get(ctx, instance.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if err := restoreRefused(sts); err != nil {
			return err
		}
		if !ownedByUID(sts, instance) {
			return fmt.Errorf("%w: instance %s/%s was replaced", etcdcluster.ErrNoMembers, instance.Namespace, instance.Name)
		}
		sts = sts.DeepCopy()
		if sts.Annotations == nil {
			sts.Annotations = map[string]string{}
		}
		sts.Annotations[annotationRestoreRequest] = string(data)
		_, err = s.Client.AppsV1().StatefulSets(instance.Namespace).Update(ctx, sts, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		if err := s.unrecorded(ctx, instance, staged.ID, staging, key, err); err != nil {
			return err
		}
	}
	// The request is recorded: the spool file is only a leftover now.
	if err := os.Remove(path); err != nil {
		klog.ErrorS(err, "Deleting the spool file of a staged restore", "path", path)
	}
	return nil
}

// unrecorded handles err, the failure to record the restore request id staged under key:
// an update whose answer was lost (a timeout) may have gone through, and the controller then
// carries the request out, reading the staged snapshot. The snapshot is deleted only once the
// StatefulSet is read without the request; with it, the restore is accepted (nil).
func (s Stager) unrecorded(ctx context.Context, instance *etcdaas.ETCDInstance, id string, staging backup.Destination, key string, err error) error {
	ctx = context.WithoutCancel(ctx)
	sts, gerr := s.Client.AppsV1().StatefulSets(instance.Namespace).Get(ctx, instance.Name, metav1.GetOptions{})
	if gerr != nil && !apierrors.IsNotFound(gerr) {
		klog.ErrorS(gerr, "Keeping a staged snapshot whose request may be recorded", "destination", staging.String(), "key", key)
		return err
	}
	if gerr == nil && ownedByUID(sts, instance) {
		if req, rerr := restoreRequestOf(sts.Annotations); rerr == nil && req != nil && req.ID == id {
			return nil
		}
	}
	if derr := staging.Delete(ctx, key); derr != nil {
		klog.ErrorS(derr, "Deleting a staged snapshot that was not requested", "destination", staging.String(), "key", key)
	}
	return err
}

// upload writes the snapshot file under key with its provenance.
func upload(ctx context.Context, dest backup.Destination, key string, staged *snapshot.Staged, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	up, err := dest.Write(ctx, key, staged.InstanceUID, f)
	if err != nil {
		return err
	}
	err = up.Commit(ctx, backup.Info{
		Key: key, InstanceUID: staged.InstanceUID, Revision: staged.Info.Revision, EtcdVersion: staged.Info.StorageVersion,
		SHA256: staged.Info.SHA256, Size: staged.Info.Size, Time: staged.RequestedAt,
	})
	if err != nil {
		// Nothing sweeps the staging area's incomplete uploads: this one goes now.
		if aerr := up.Abort(context.WithoutCancel(ctx)); aerr != nil {
			klog.ErrorS(aerr, "Deleting a staged snapshot that could not be committed", "destination", dest.String(), "key", key)
		}
		return err
	}
	return nil
}

// destination is the staging area of the instance's restore id (of the whole staging area when
// id is empty): its S3 destination with the prefix resolved and RestoresPrefix, then id, below
// it, and that destination opened with its credentials.
func (s Stager) destination(ctx context.Context, instance *etcdaas.ETCDInstance, id string) (*v1beta1.S3Destination, backup.Destination, error) {
	if instance.Spec.Backup == nil || instance.Spec.Backup.Destination.S3 == nil {
		return nil, nil, fmt.Errorf("%w: the instance has no S3 backup destination: the kubernetes backend's members read a restored snapshot from it (spec.backup.destination.s3)", snapshot.ErrCannotStage)
	}
	var dest v1beta1.BackupDestination
	if err := v1beta1.Convert_etcdaas_BackupDestination_To_v1beta1_BackupDestination(&instance.Spec.Backup.Destination, &dest, nil); err != nil {
		return nil, nil, err
	}
	// The conversion shares memory with the instance, which must not change.
	s3 := dest.S3.DeepCopy()
	if s3.Prefix == "" {
		s3.Prefix = backup.DefaultPrefix(instance.Namespace, instance.Name)
	}
	if s3.Prefix[len(s3.Prefix)-1] != '/' {
		s3.Prefix += "/"
	}
	s3.Prefix += RestoresPrefix
	if id != "" {
		s3.Prefix += id + "/"
	}
	// The credentials must be readable now: a request the members could not read would stop
	// the cluster for nothing. A Secret the Kubernetes API cannot give for now is an error
	// about credentials too, but the instance can be restored as it is configured: it keeps
	// its class alone (ErrStoreUnavailable), so that the client is told to retry.
	opened, err := s.Resolver.Destination(ctx, instance.Namespace, instance.Name, v1beta1.BackupDestination{S3: s3})
	switch {
	case errors.Is(err, backup.ErrStoreUnavailable):
		return nil, nil, err
	case errors.Is(err, backup.ErrCredentials), errors.Is(err, backup.ErrNoDestination), errors.Is(err, backup.ErrMisconfigured):
		return nil, nil, fmt.Errorf("%w: %w", snapshot.ErrCannotStage, err)
	case err != nil:
		return nil, nil, err
	}
	return s3, opened, nil
}

// ownedByUID reports whether the StatefulSet belongs to this instance (not to an earlier one
// of the same name).
func ownedByUID(sts metav1.Object, instance *etcdaas.ETCDInstance) bool {
	ref := metav1.GetControllerOf(sts)
	return ref != nil && ref.UID == instance.UID
}

// restoreRefused says why the StatefulSet takes no restore request now: one is pending
// already, or a quorum-loss recovery is under way (a restore would take it over while volumes
// of the old cluster are still to be discarded).
func restoreRefused(sts *appsv1.StatefulSet) error {
	if _, pending := sts.Annotations[annotationRestoreRequest]; pending {
		if r, err := restoreRequestOf(sts.Annotations); err == nil {
			return snapshot.PendingError(&r.Staged)
		}
		return snapshot.ErrRestorePending
	}
	s, err := seedOf(sts.Annotations)
	if err != nil {
		return fmt.Errorf("%w: the seed recorded on the StatefulSet cannot be read: %v", snapshot.ErrRestorePending, err)
	}
	if s != nil && s.Recover != "" {
		return snapshot.RecoveryError("member " + s.Recover)
	}
	return nil
}
