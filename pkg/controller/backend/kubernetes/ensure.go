package kubernetes

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// objectClient is the part of a typed client-go client that ensureObject uses.
type objectClient[T runtime.Object] interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error)
	Create(ctx context.Context, obj T, opts metav1.CreateOptions) (T, error)
	Update(ctx context.Context, obj T, opts metav1.UpdateOptions) (T, error)
}

// ensureObject creates want when no object of its name exists. When one does, amend (if not
// nil) changes a copy of it to what want says and reports whether it changed anything; the
// changed copy is updated.
func ensureObject[T interface {
	runtime.Object
	metav1.Object
}](ctx context.Context, client objectClient[T], want T, amend func(got T) bool) error {
	got, err := client.Get(ctx, want.GetName(), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = client.Create(ctx, want, metav1.CreateOptions{})
		return err
	}
	if err != nil || amend == nil {
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
