package etcdinstance

import (
	"errors"
	"fmt"
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	"github.com/etcdaas/etcdaas/pkg/backup"
)

// destinationRetryAfter is the Retry-After of a 503 about a destination unavailable for now.
const destinationRetryAfter = 10

// destinationUse is a subresource that uses an instance's backup destination, as its errors
// name it.
type destinationUse struct {
	// resource is the subresource's storage path, which its 409s name.
	resource string
	// subject is what the request is about, as in "backups" of "NAME".
	subject string
	// action is what cannot be done for now, as in "cannot be listed for now".
	action string
}

var (
	// listingBackups is GET etcdinstances/NAME/backups.
	listingBackups = destinationUse{resource: BackupsResourcePath, subject: "backups", action: "listed"}
	// stagingRestore is POST etcdinstances/NAME/restore, whose stager may upload the snapshot
	// to the instance's destination.
	stagingRestore = destinationUse{resource: RestoreResourcePath, subject: "restore", action: "accepted"}
)

// isDestinationError reports whether err is about a destination, of a class answer answers by
// who can fix it.
func isDestinationError(err error) bool {
	return errors.Is(err, backup.ErrStoreUnavailable) || backup.NeedsConfigurationChange(err)
}

// answer answers a destination the server cannot use for the instance name, as kube-apiserver
// answers by who can fix it: a store that does not answer or answers that it cannot serve now,
// or a Secret with its credentials that the Kubernetes API cannot give for now, is a 503 with
// Retry-After (tested first: such a Secret's error is about credentials too); a configuration
// only the user (or the server's administrator) can change — credentials that cannot be read
// or that the store refuses, a bucket that does not exist, an endpoint or caBundle the store
// cannot be reached with, a destination this server does not serve — is a 409 whose message
// says what to change; anything else (a backup's unreadable provenance, a local directory the
// server cannot read) is the server's failure, a 500.
func (u destinationUse) answer(name string, err error) error {
	switch {
	case errors.Is(err, backup.ErrStoreUnavailable):
		return u.unavailable(name, err)
	case backup.NeedsConfigurationChange(err):
		return apierrors.NewConflict(etcdaas.Resource(u.resource), name, err)
	}
	return apierrors.NewInternalError(fmt.Errorf("%s of %q: %w", u.subject, name, err))
}

// unavailable is the 503 with Retry-After of a request about the instance name that err, a
// failure that may pass, stopped for now.
func (u destinationUse) unavailable(name string, err error) error {
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		Status:  metav1.StatusFailure,
		Code:    http.StatusServiceUnavailable,
		Reason:  metav1.StatusReasonServiceUnavailable,
		Message: fmt.Sprintf("%s of %q cannot be %s for now: %v", u.subject, name, u.action, err),
		Details: &metav1.StatusDetails{Name: name, Group: etcdaas.GroupName, Kind: "etcdinstances", RetryAfterSeconds: destinationRetryAfter},
	}}
}
