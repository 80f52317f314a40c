package etcdinstance

import (
	"context"
	"errors"
	"fmt"
	"net/http"

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

var _ rest.Getter = &BackupsREST{}

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
		return nil, destinationError(name, err)
	}
	backups, err := destination.List(ctx)
	if err != nil {
		return nil, destinationError(name, err)
	}
	for _, b := range backups {
		list.Items = append(list.Items, etcdaas.BackupInfo{Key: b.Key, Revision: b.Revision, SizeBytes: b.Size, SHA256: b.SHA256,
			EtcdVersion: b.EtcdVersion, CompletionTime: metav1.NewTime(b.Time), InstanceUID: b.InstanceUID})
	}
	return list, nil
}

// destinationRetryAfter is the Retry-After of a 503 about a destination unavailable for now.
const destinationRetryAfter = 10

// destinationError answers a destination the server cannot list, as kube-apiserver answers by
// who can fix it: a configuration only the user (or the server's administrator) can change —
// credentials that cannot be read or that the store refuses, a bucket that does not exist, an
// endpoint or caBundle the store cannot be reached with, a destination this server does not
// serve — is a 409 whose message says what to change; a store that does not answer or answers
// that it cannot serve now, or a Secret with its credentials that the Kubernetes API cannot give
// for now, is a 503 with Retry-After; anything else (a backup's unreadable provenance, a local
// directory the server cannot read) is the server's failure, a 500.
func destinationError(name string, err error) error {
	switch {
	case errors.Is(err, backup.ErrStoreUnavailable):
		return &apierrors.StatusError{ErrStatus: metav1.Status{
			Status:  metav1.StatusFailure,
			Code:    http.StatusServiceUnavailable,
			Reason:  metav1.StatusReasonServiceUnavailable,
			Message: fmt.Sprintf("backups of %q cannot be listed for now: %v", name, err),
			Details: &metav1.StatusDetails{Name: name, Group: etcdaas.GroupName, Kind: "etcdinstances", RetryAfterSeconds: destinationRetryAfter},
		}}
	case errors.Is(err, backup.ErrCredentials), errors.Is(err, backup.ErrNoDestination), errors.Is(err, backup.ErrMisconfigured):
		return apierrors.NewConflict(etcdaas.Resource(BackupsResourcePath), name, err)
	}
	return apierrors.NewInternalError(fmt.Errorf("backups of %q: %w", name, err))
}
