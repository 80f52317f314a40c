package etcdinstance

import (
	"context"
	"fmt"
	"net/http"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/registry/rest"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	"github.com/etcdaas/etcdaas/pkg/etcdcluster"
)

// DefragResourcePath is the storage map key of the defrag subresource.
const DefragResourcePath = "etcdinstances/defrag"

// DefragREST serves POST etcdinstances/NAME/defrag: a request to defragment every member of
// an instance now, whatever its thresholds. It records the request in
// etcdaas.DefragRequestedAnnotation through the status store; the controller defragments the
// members one at a time, followers first and the leader last, each once the cluster is
// healthy, and removes the annotation when all are done. An instance being deleted, Failed,
// or without members in its status (never deployed) is refused with 409 Conflict, as restore
// and recover refuse one they cannot act on. RBAC authorizes it as the etcdinstances/defrag
// subresource.
type DefragREST struct {
	status statusStore
	now    func() time.Time
}

var _ rest.Connecter = &DefragREST{}

// NewDefragREST returns the defrag subresource writing through status, the status store.
func NewDefragREST(status statusStore) *DefragREST {
	return &DefragREST{status: status, now: time.Now}
}

// New returns an empty instance, the object the subresource belongs to.
func (r *DefragREST) New() runtime.Object { return &etcdaas.ETCDInstance{} }

// Destroy does nothing: the store is shared with REST, which destroys it.
func (r *DefragREST) Destroy() {}

// ConnectMethods returns POST, the only method the subresource serves.
func (r *DefragREST) ConnectMethods() []string { return []string{http.MethodPost} }

// NewConnectOptions returns no options object: the request has no parameters.
func (r *DefragREST) NewConnectOptions() (runtime.Object, bool, string) { return nil, false, "" }

// Connect returns the handler that records the defragmentation request of the instance name.
func (r *DefragREST) Connect(ctx context.Context, name string, _ runtime.Object, responder rest.Responder) (http.Handler, error) {
	if _, err := r.status.Get(ctx, name, &metav1.GetOptions{}); err != nil {
		return nil, err // 404 for a missing instance
	}
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		since, err := r.request(ctx, name)
		if err != nil {
			responder.Error(err)
			return
		}
		responder.Object(http.StatusAccepted, &metav1.Status{
			Status: metav1.StatusSuccess, Code: http.StatusAccepted, Reason: "Accepted",
			Message: fmt.Sprintf("defragmentation of every member of %s requested at %s; the controller defragments them one at a time, followers first and the leader last, and records a Defragmented Event for each", name, since),
			Details: &metav1.StatusDetails{Name: name, Group: etcdaas.GroupName, Kind: "etcdinstances"},
		})
	}), nil
}

// request records the request on the instance, retrying on write conflicts (a refusal is
// final), and returns its time. A request made while another is pending joins it: the
// pending one covers every member.
func (r *DefragREST) request(ctx context.Context, name string) (string, error) {
	var since string
	err := retryWriteConflicts(func() error {
		obj, err := r.status.Get(ctx, name, &metav1.GetOptions{})
		if err != nil {
			return err
		}
		instance, ok := obj.(*etcdaas.ETCDInstance)
		if !ok {
			return apierrors.NewInternalError(fmt.Errorf("unexpected object %T", obj))
		}
		if instance.DeletionTimestamp != nil {
			return refusal{apierrors.NewConflict(etcdaas.Resource(DefragResourcePath), name, fmt.Errorf("the instance is being deleted"))}
		}
		if instance.Status.Phase == etcdaas.PhaseFailed {
			// The controller defragments only while every member serves: the request would
			// wait, and a client with it, until something else brought the instance back.
			return refusal{apierrors.NewConflict(etcdaas.Resource(DefragResourcePath), name, fmt.Errorf(
				"the instance is Failed (%s): a defragmentation runs only while every member serves", failure(instance)))}
		}
		if len(instance.Status.Members) == 0 {
			// Never deployed (or not yet): no member to defragment, and the request would wait
			// for a cluster nobody may ever start. Restore and recover answer 409 alike.
			return refusal{apierrors.NewConflict(etcdaas.Resource(DefragResourcePath), name, fmt.Errorf(
				"there is no running cluster to defragment yet: %w (status.members is empty)", etcdcluster.ErrNoMembers))}
		}
		if requested, ok := instance.Annotations[etcdaas.DefragRequestedAnnotation]; ok {
			since = requested
			return nil
		}
		since = r.now().UTC().Format(time.RFC3339Nano)
		instance = instance.DeepCopy()
		if instance.Annotations == nil {
			instance.Annotations = map[string]string{}
		}
		instance.Annotations[etcdaas.DefragRequestedAnnotation] = since
		_, _, err = r.status.Update(ctx, name, rest.DefaultUpdatedObjectInfo(instance), rest.ValidateAllObjectFunc, rest.ValidateAllObjectUpdateFunc, false, &metav1.UpdateOptions{})
		return err
	})
	return since, err
}

// failure is the reason and message of a Failed instance's Degraded condition, with the
// recover subresource's name when quorum is lost.
func failure(instance *etcdaas.ETCDInstance) string {
	if msg, lost := quorumLost(instance); lost {
		return fmt.Sprintf("%s: %s; POST etcdinstances/%s/recover rebuilds it first", reasonQuorumLost, msg, instance.Name)
	}
	c := meta.FindStatusCondition(instance.Status.Conditions, etcdaas.ConditionDegraded)
	if c == nil {
		return "no Degraded condition yet"
	}
	return c.Reason + ": " + c.Message
}
