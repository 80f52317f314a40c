package etcdinstance

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/registry/rest"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
)

// fakeStatusStore holds one instance; Update applies the update like the status store.
type fakeStatusStore struct {
	instance *etcdaas.ETCDInstance
	updates  int
	// gets counts the reads.
	gets int
	// conflicts is how many writes to refuse next as conflicting with another.
	conflicts int
}

func (f *fakeStatusStore) Get(_ context.Context, name string, _ *metav1.GetOptions) (runtime.Object, error) {
	f.gets++
	if f.instance == nil || f.instance.Name != name {
		return nil, apierrors.NewNotFound(etcdaas.Resource("etcdinstances"), name)
	}
	return f.instance.DeepCopy(), nil
}

func (f *fakeStatusStore) Update(ctx context.Context, name string, objInfo rest.UpdatedObjectInfo, _ rest.ValidateObjectFunc, _ rest.ValidateObjectUpdateFunc, _ bool, _ *metav1.UpdateOptions) (runtime.Object, bool, error) {
	if f.conflicts > 0 {
		f.conflicts--
		return nil, false, apierrors.NewConflict(etcdaas.Resource("etcdinstances"), name, errors.New("the object has been modified"))
	}
	obj, err := objInfo.UpdatedObject(ctx, f.instance.DeepCopy())
	if err != nil {
		return nil, false, err
	}
	f.instance = obj.(*etcdaas.ETCDInstance)
	f.updates++
	return obj, false, nil
}

func quorumLostInstance(reason string) *etcdaas.ETCDInstance {
	return &etcdaas.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "ns"},
		Status: etcdaas.ETCDInstanceStatus{
			Members:    []etcdaas.MemberStatus{{Name: "db-0"}, {Name: "db-1"}, {Name: "db-2"}},
			Conditions: []metav1.Condition{{Type: etcdaas.ConditionDegraded, Status: metav1.ConditionTrue, Reason: reason}},
		},
	}
}

// recoverResponder records what the handler answered.
type recoverResponder struct {
	code int
	obj  runtime.Object
	err  error
}

func (r *recoverResponder) Object(statusCode int, obj runtime.Object) {
	r.code, r.obj = statusCode, obj
}
func (r *recoverResponder) Error(err error) { r.err = err }

// postRecover calls the subresource's handler and returns the recorded answer.
func postRecover(t *testing.T, r *RecoverREST, name, query string) *recoverResponder {
	t.Helper()
	resp := &recoverResponder{}
	h, err := r.Connect(context.Background(), name, nil, resp)
	if err != nil {
		resp.Error(err)
		return resp
	}
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/recover"+query, nil))
	return resp
}

func TestRecoverRecordsTheRequestOnlyAfterQuorumLoss(t *testing.T) {
	// Quorum holds: 409, nothing recorded.
	store := &fakeStatusStore{instance: quorumLostInstance("MemberUnhealthy")}
	r := NewRecoverREST(store)
	if resp := postRecover(t, r, "db", ""); !apierrors.IsConflict(resp.err) || !strings.Contains(resp.err.Error(), "quorum is not lost") {
		t.Fatalf("recover with quorum: %v", resp.err)
	}
	if store.updates != 0 {
		t.Fatal("a refused recovery changed the instance")
	}
	// The refusal is an answer, not a write conflict to retry: one read to find the
	// instance, one to decide.
	if store.gets != 2 {
		t.Errorf("the refusal read the instance %d times, want 2", store.gets)
	}

	// Missing instance: 404; unknown member: 400.
	store.instance = quorumLostInstance("QuorumLost")
	if resp := postRecover(t, r, "nope", ""); !apierrors.IsNotFound(resp.err) {
		t.Fatalf("recover of a missing instance: %v", resp.err)
	}
	if resp := postRecover(t, r, "db", "?member=db-7"); !apierrors.IsBadRequest(resp.err) {
		t.Fatalf("recover from an unknown member: %v", resp.err)
	}

	// Accepted: the request is recorded for the controller; the same request again is fine,
	// another one conflicts.
	resp := postRecover(t, r, "db", "?member=db-1")
	if resp.err != nil || resp.code != http.StatusAccepted {
		t.Fatalf("recover: %d %v", resp.code, resp.err)
	}
	if got, ok := store.instance.Annotations[etcdaas.RecoverRequestedAnnotation]; !ok || got != "db-1" {
		t.Fatalf("recover request not recorded: %v", store.instance.Annotations)
	}
	// With an ID of its own, which the backend records with the recovery it carries out.
	id := store.instance.Annotations[etcdaas.RecoverRequestIDAnnotation]
	if id == "" {
		t.Fatalf("recover request recorded without an ID: %v", store.instance.Annotations)
	}
	if resp := postRecover(t, r, "db", "?member=db-1"); resp.err != nil || resp.code != http.StatusAccepted || store.updates != 1 {
		t.Fatalf("repeated recover: %d %v, %d updates", resp.code, resp.err, store.updates)
	}
	if got := store.instance.Annotations[etcdaas.RecoverRequestIDAnnotation]; got != id {
		t.Fatalf("the same request again changed its ID from %q to %q", id, got)
	}
	store.gets = 0
	if resp := postRecover(t, r, "db", ""); !apierrors.IsConflict(resp.err) || store.gets != 2 {
		t.Fatalf("a second, different recover: %v, %d reads of the instance (want 2)", resp.err, store.gets)
	}
}

func TestOnlyTheRecoverSubresourceRequestsARecovery(t *testing.T) {
	ctx := context.Background()
	created := &etcdaas.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: "db", Annotations: map[string]string{etcdaas.RecoverRequestedAnnotation: ""}}}
	Strategy{}.PrepareForCreate(ctx, created)
	if _, ok := created.Annotations[etcdaas.RecoverRequestedAnnotation]; ok {
		t.Fatal("a create requested a recovery")
	}
	old := &etcdaas.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: "db", Annotations: map[string]string{etcdaas.RecoverRequestedAnnotation: "db-0"}}}
	cancelled := &etcdaas.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: "db", Annotations: map[string]string{"other": "x"}}}
	Strategy{}.PrepareForUpdate(ctx, cancelled, old)
	if got := cancelled.Annotations[etcdaas.RecoverRequestedAnnotation]; got != "db-0" || cancelled.Annotations["other"] != "x" {
		t.Fatalf("an update changed the recover request: %v", cancelled.Annotations)
	}
	requested := &etcdaas.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: "db", Annotations: map[string]string{etcdaas.RecoverRequestedAnnotation: ""}}}
	Strategy{}.PrepareForUpdate(ctx, requested, &etcdaas.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: "db"}})
	if requested.Annotations != nil {
		t.Fatalf("an update requested a recovery: %v", requested.Annotations)
	}
	// Nor does an update change a request's ID: one naming a recovery carried out already
	// would have the controller drop the request as done.
	pending := &etcdaas.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: "db", Annotations: map[string]string{
		etcdaas.RecoverRequestedAnnotation: "", etcdaas.RecoverRequestIDAnnotation: "id-1"}}}
	forged := pending.DeepCopy()
	forged.Annotations[etcdaas.RecoverRequestIDAnnotation] = "id-0"
	Strategy{}.PrepareForUpdate(ctx, forged, pending)
	if got := forged.Annotations[etcdaas.RecoverRequestIDAnnotation]; got != "id-1" {
		t.Fatalf("an update changed the recover request's ID to %q", got)
	}
}

// TestRecoverWhileRecovering: a recovery asked for again once the controller took the first
// one (phase Recovering: the request consumed, quorum back, the members being added back) is
// a 409 saying a recovery is under way, not only that quorum is not lost, which reads as if
// the first request had been refused.
func TestRecoverWhileRecovering(t *testing.T) {
	inst := quorumLostInstance("MemberUnhealthy")
	inst.Status.Phase = etcdaas.PhaseRecovering
	store := &fakeStatusStore{instance: inst}
	resp := postRecover(t, NewRecoverREST(store), "db", "")
	if !apierrors.IsConflict(resp.err) || !strings.Contains(resp.err.Error(), "a recovery is under way") {
		t.Fatalf("recover while Recovering: %v, want a 409 saying a recovery is under way", resp.err)
	}
	if store.updates != 0 {
		t.Fatal("a refused recovery changed the instance")
	}
}
