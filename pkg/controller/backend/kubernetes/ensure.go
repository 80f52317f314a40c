package kubernetes

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/etcdaas/etcdaas/pkg/controller/backend"
)

// objectClient is the part of a typed client-go client that ensureObject uses.
type objectClient[T runtime.Object] interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error)
	Create(ctx context.Context, obj T, opts metav1.CreateOptions) (T, error)
	Update(ctx context.Context, obj T, opts metav1.UpdateOptions) (T, error)
}

// ensureObject creates want, an object of kind owned by owner, when no object of its name
// exists. When one does, it must be owner's (names of different instances' objects can be the
// same: the client Service of "db-peers" and the peer Service of "db"); then amend (if not
// nil) changes a copy of it to what want says and reports whether it changed anything; the
// changed copy is updated.
func ensureObject[T interface {
	runtime.Object
	metav1.Object
}](ctx context.Context, client objectClient[T], kind string, owner metav1.Object, want T, amend func(got T) bool) error {
	got, err := client.Get(ctx, want.GetName(), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = client.Create(ctx, want, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	if err := checkOwner(kind, got, owner); err != nil || amend == nil {
		return err
	}
	changed, ok := got.DeepCopyObject().(T)
	if !ok {
		return fmt.Errorf("a copy of %T is a %T", got, got.DeepCopyObject())
	}
	if !amend(changed) {
		return nil
	}
	_, err = client.Update(ctx, changed, metav1.UpdateOptions{})
	return err
}

// checkOwner refuses obj, an existing object of kind with the name of one of owner's, unless
// owner controls it.
func checkOwner(kind string, obj, owner metav1.Object) error {
	if metav1.IsControlledBy(obj, owner) {
		return nil
	}
	return nameConflict(kind, obj)
}

// NameConflictRetry is how often an instance refused with a NameConflict is looked at again:
// the object holding the name may be deleted by its owner without the instance changing.
const NameConflictRetry = 30 * time.Second

// nameConflict is the error of an instance that needs the name of obj, an object of kind it
// does not control. It lasts until the object goes; the instance is looked at again every
// NameConflictRetry meanwhile.
func nameConflict(kind string, obj metav1.Object) error {
	return &backend.PermanentError{
		Reason:     "NameConflict",
		Message:    fmt.Sprintf("%s %s/%s exists and is not owned by this instance", kind, obj.GetNamespace(), obj.GetName()),
		RetryAfter: NameConflictRetry,
	}
}

// objectDeleter is the part of a typed client-go client that deleteOwned uses.
type objectDeleter[T metav1.Object] interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error)
	Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error
}

// deleteOwned deletes the named object when owner controls it (and only that object: a UID
// precondition), leaving alone another's of the same name. An object already gone is fine.
func deleteOwned[T metav1.Object](ctx context.Context, client objectDeleter[T], owner metav1.Object, name string, opts metav1.DeleteOptions) error {
	got, err := client.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if !metav1.IsControlledBy(got, owner) {
		return nil
	}
	uid := got.GetUID()
	opts.Preconditions = &metav1.Preconditions{UID: &uid}
	err = client.Delete(ctx, name, opts)
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
