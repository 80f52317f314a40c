package etcdinstance

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/registry/rest"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/backup"
)

// BackupsResourcePath is the storage map key of the backups subresource.
const BackupsResourcePath = "etcdinstances/backups"

// BackupsREST serves GET etcdinstances/NAME/backups: the backups the instance's destination
// holds, newest first, with their provenance, read from the destination itself with the
// server's credentials, so that a client never needs them. RBAC authorizes it as the
// etcdinstances/backups subresource.
type BackupsREST struct {
	getter   rest.Getter
	resolver *backup.Resolver
}

var (
	_ rest.Getter         = &BackupsREST{}
	_ rest.TableConvertor = &BackupsREST{}
)

// NewBackupsREST returns the backups subresource over the main resource's store. A nil
// resolver serves no destination: listing one is a 409 saying so.
func NewBackupsREST(getter rest.Getter, resolver *backup.Resolver) *BackupsREST {
	if resolver == nil {
		resolver = &backup.Resolver{}
	}
	return &BackupsREST{getter: getter, resolver: resolver}
}

// New returns an empty list, the object the subresource serves.
func (r *BackupsREST) New() runtime.Object { return &etcdaas.ETCDInstanceBackupList{} }

// Destroy does nothing: the store is shared with REST, which destroys it.
func (r *BackupsREST) Destroy() {}

// ConvertToTable renders the backups as `kubectl get etcd NAME --subresource=backups` prints
// them, one row per backup (the default table would print one empty NAME per backup).
func (r *BackupsREST) ConvertToTable(ctx context.Context, object runtime.Object, tableOptions runtime.Object) (*metav1.Table, error) {
	return BackupsTableConvertor{}.ConvertToTable(ctx, object, tableOptions)
}

// Get lists the backups of the named instance. An instance without spec.backup has none.
func (r *BackupsREST) Get(ctx context.Context, name string, options *metav1.GetOptions) (runtime.Object, error) {
	obj, err := r.getter.Get(ctx, name, &metav1.GetOptions{})
	if err != nil {
		return nil, err // 404 for a missing instance
	}
	instance, ok := obj.(*etcdaas.ETCDInstance)
	if !ok {
		return nil, apierrors.NewInternalError(fmt.Errorf("unexpected object %T", obj))
	}
	list := &etcdaas.ETCDInstanceBackupList{Items: []etcdaas.BackupInfo{}}
	if instance.Spec.Backup == nil {
		return list, nil
	}
	var dest v1beta1.BackupDestination
	if err := v1beta1.Convert_etcdaas_BackupDestination_To_v1beta1_BackupDestination(&instance.Spec.Backup.Destination, &dest, nil); err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	destination, err := r.resolver.Destination(ctx, instance.Namespace, instance.Name, dest)
	if err != nil {
		return nil, listingBackups.answer(name, err)
	}
	backups, err := destination.List(ctx)
	if err != nil {
		return nil, listingBackups.answer(name, err)
	}
	for _, b := range backups {
		list.Items = append(list.Items, etcdaas.BackupInfo{Key: b.Key, Revision: b.Revision, SizeBytes: b.Size, SHA256: b.SHA256,
			EtcdVersion: b.EtcdVersion, CompletionTime: metav1.NewTime(b.Time), InstanceUID: b.InstanceUID})
	}
	return list, nil
}
