package etcdinstance

import (
	"errors"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/util/retry"
)

// refusal is the answer a subresource gives a request it cannot act on (a 409, a 400), as
// opposed to a write of its that conflicted with another and is tried again.
type refusal struct{ error }

func (r refusal) Unwrap() error { return r.error }

// retryWriteConflicts runs fn, which reads an instance, decides and writes it, again while
// its write conflicts with another (retry.DefaultRetry, as retry.RetryOnConflict); a refusal
// fn answers, a 409 included, is returned at once, unwrapped.
func retryWriteConflicts(fn func() error) error {
	err := retry.OnError(retry.DefaultRetry, func(err error) bool {
		return apierrors.IsConflict(err) && !errors.As(err, new(refusal))
	}, fn)
	if r := (refusal{}); errors.As(err, &r) {
		return r.error
	}
	return err
}
