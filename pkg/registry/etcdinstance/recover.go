package etcdinstance

import (
	"context"
	"fmt"
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/apiserver/pkg/registry/rest"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
)

// RecoverResourcePath is the storage map key of the recover subresource.
const RecoverResourcePath = "etcdinstances/recover"

// RecoverMemberParameter is the optional query parameter of a recovery naming the surviving
// member to rebuild the cluster from.
const RecoverMemberParameter = "member"

// reasonQuorumLost is the Degraded condition's reason the controller sets when the
// instance lost quorum; only then is a recovery accepted.
const reasonQuorumLost = "QuorumLost"

// RecoverREST serves POST etcdinstances/NAME/recover[?member=MEMBER]: a person's request to
// rebuild an instance that lost quorum from one surviving member. It records the request in
// etcdaas.RecoverRequestedAnnotation, with a new etcdaas.RecoverRequestIDAnnotation, through
// the status store; the controller performs the recovery and removes both. RBAC authorizes it
// as the etcdinstances/recover subresource, separately from editing the instance.
type RecoverREST struct {
	status statusStore
}

// statusStore is what the recover subresource needs of the status store.
type statusStore interface {
	Get(ctx context.Context, name string, options *metav1.GetOptions) (runtime.Object, error)
	Update(ctx context.Context, name string, objInfo rest.UpdatedObjectInfo, createValidation rest.ValidateObjectFunc,
		updateValidation rest.ValidateObjectUpdateFunc, forceAllowCreate bool, options *metav1.UpdateOptions) (runtime.Object, bool, error)
}

var _ rest.Connecter = &RecoverREST{}

// NewRecoverREST returns the recover subresource writing through status, the status store.
func NewRecoverREST(status statusStore) *RecoverREST {
	return &RecoverREST{status: status}
}

// New returns an empty instance, the object the subresource belongs to.
func (r *RecoverREST) New() runtime.Object { return &etcdaas.ETCDInstance{} }

// Destroy does nothing: the store is shared with REST, which destroys it.
func (r *RecoverREST) Destroy() {}

// ConnectMethods returns POST, the only method the subresource serves.
func (r *RecoverREST) ConnectMethods() []string { return []string{http.MethodPost} }

// NewConnectOptions returns no options object: the handler reads the optional member query
// parameter itself.
func (r *RecoverREST) NewConnectOptions() (runtime.Object, bool, string) { return nil, false, "" }

// Connect returns the handler that records the recovery request of the instance name.
func (r *RecoverREST) Connect(ctx context.Context, name string, _ runtime.Object, responder rest.Responder) (http.Handler, error) {
	if _, err := r.status.Get(ctx, name, &metav1.GetOptions{}); err != nil {
		return nil, err // 404 for a missing instance
	}
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		member := req.URL.Query().Get(RecoverMemberParameter)
		if err := r.request(ctx, name, member); err != nil {
			responder.Error(err)
			return
		}
		from := "the most advanced surviving member"
		if member != "" {
			from = "member " + member
		}
		responder.Object(http.StatusAccepted, &metav1.Status{
			Status: metav1.StatusSuccess, Code: http.StatusAccepted, Reason: "Accepted",
			Message: fmt.Sprintf("recovery of %s from %s requested; the controller rebuilds the cluster from it and adds members back as learners", name, from),
			Details: &metav1.StatusDetails{Name: name, Group: etcdaas.GroupName, Kind: "etcdinstances"},
		})
	}), nil
}

// request records the recovery request on the instance, retrying on write conflicts (a
// refusal is final). A request identical to one already recorded succeeds again; a
// different one conflicts.
func (r *RecoverREST) request(ctx context.Context, name, member string) error {
	resource := etcdaas.Resource(RecoverResourcePath)
	return retryWriteConflicts(func() error {
		obj, err := r.status.Get(ctx, name, &metav1.GetOptions{})
		if err != nil {
			return err
		}
		instance, ok := obj.(*etcdaas.ETCDInstance)
		if !ok {
			return apierrors.NewInternalError(fmt.Errorf("unexpected object %T", obj))
		}
		if err := recoverable(instance, member); err != nil {
			return refusal{err}
		}
		if requested, ok := instance.Annotations[etcdaas.RecoverRequestedAnnotation]; ok {
			if requested == member {
				return nil
			}
			return refusal{apierrors.NewConflict(resource, name, fmt.Errorf("a recovery from %q is already requested", requested))}
		}
		instance = instance.DeepCopy()
		if instance.Annotations == nil {
			instance.Annotations = map[string]string{}
		}
		instance.Annotations[etcdaas.RecoverRequestedAnnotation] = member
		instance.Annotations[etcdaas.RecoverRequestIDAnnotation] = string(uuid.NewUUID())
		_, _, err = r.status.Update(ctx, name, rest.DefaultUpdatedObjectInfo(instance), rest.ValidateAllObjectFunc, rest.ValidateAllObjectUpdateFunc, false, &metav1.UpdateOptions{})
		return err
	})
}

// quorumLost reports whether the controller found instance's quorum lost (its Degraded
// condition True with reason QuorumLost), and the condition's message, which says how.
func quorumLost(instance *etcdaas.ETCDInstance) (message string, lost bool) {
	c := meta.FindStatusCondition(instance.Status.Conditions, etcdaas.ConditionDegraded)
	if c == nil || c.Status != metav1.ConditionTrue || c.Reason != reasonQuorumLost {
		return "", false
	}
	return c.Message, true
}

// recoverable checks that instance lost quorum (409 otherwise, saying so when a recovery is
// under way) and that member, when set, is one of its members (400 otherwise).
func recoverable(instance *etcdaas.ETCDInstance, member string) error {
	resource := etcdaas.Resource(RecoverResourcePath)
	if instance.DeletionTimestamp != nil {
		return apierrors.NewConflict(resource, instance.Name, fmt.Errorf("the instance is being deleted"))
	}
	_, lost := quorumLost(instance)
	if !lost && instance.Status.Phase == etcdaas.PhaseRecovering {
		return apierrors.NewConflict(resource, instance.Name, fmt.Errorf("a recovery is under way (phase %s): the controller is rebuilding the cluster "+
			"from a survivor and adding the members back; another recovery runs only once the Degraded condition's reason is %s", etcdaas.PhaseRecovering, reasonQuorumLost))
	}
	if !lost {
		return apierrors.NewConflict(resource, instance.Name, fmt.Errorf("quorum is not lost: a recovery only runs when the Degraded condition's reason is %s", reasonQuorumLost))
	}
	if member == "" {
		return nil
	}
	for _, m := range instance.Status.Members {
		if m.Name == member {
			return nil
		}
	}
	return apierrors.NewBadRequest(fmt.Sprintf("member %q is not a member of %s", member, instance.Name))
}
