package etcdinstance

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
)

// postDefrag calls the subresource's handler and returns the recorded answer.
func postDefrag(t *testing.T, r *DefragREST, name string) *recoverResponder {
	t.Helper()
	resp := &recoverResponder{}
	h, err := r.Connect(context.Background(), name, nil, resp)
	if err != nil {
		resp.Error(err)
		return resp
	}
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/defrag", nil))
	return resp
}

// deployed is the status of an instance whose one member serves.
var deployed = etcdaas.ETCDInstanceStatus{Phase: etcdaas.PhaseRunning, Replicas: 1, ReadyReplicas: 1,
	Members: []etcdaas.MemberStatus{{Name: "db-0", ID: "8e9e05c52164694d", Ready: true, Leader: true}}}

// TestDefragOfAnInstanceNeverDeployedConflicts: an instance no member ever served (its status
// lists none) has nothing to defragment; the request is refused with 409, as restore and
// recover refuse it, instead of being accepted and waiting for good.
func TestDefragOfAnInstanceNeverDeployedConflicts(t *testing.T) {
	for _, status := range []etcdaas.ETCDInstanceStatus{{}, {Phase: etcdaas.PhaseDeploying}} {
		store := &fakeStatusStore{instance: &etcdaas.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "ns"}, Status: status}}
		resp := postDefrag(t, NewDefragREST(store), "db")
		if !apierrors.IsConflict(resp.err) || resp.code == http.StatusAccepted {
			t.Fatalf("defrag of an instance without members (phase %q): %d %v, want 409", status.Phase, resp.code, resp.err)
		}
		if want := `Operation cannot be fulfilled on etcdinstances/defrag.etcdaas.dev "db": there is no running cluster to defragment yet: the instance has no members`; !strings.Contains(resp.err.Error(), want) {
			t.Errorf("message %q lacks %q", resp.err.Error(), want)
		}
		if _, ok := store.instance.Annotations[etcdaas.DefragRequestedAnnotation]; ok || store.updates != 0 {
			t.Errorf("a defragmentation without members was recorded: %v, %d updates", store.instance.Annotations, store.updates)
		}
		// The refusal is an answer, not a write conflict to retry: one read to find the
		// instance, one to decide.
		if store.gets != 2 {
			t.Errorf("the refusal read the instance %d times, want 2", store.gets)
		}
	}
}

func TestDefragRecordsOneRequest(t *testing.T) {
	store := &fakeStatusStore{instance: &etcdaas.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "ns", Annotations: map[string]string{"other": "x"}},
		Status: deployed}}
	r := NewDefragREST(store)
	r.now = func() time.Time { return time.Date(2026, 11, 29, 6, 0, 0, 0, time.UTC) }
	if resp := postDefrag(t, r, "nope"); !apierrors.IsNotFound(resp.err) {
		t.Fatalf("defrag of a missing instance: %v", resp.err)
	}
	resp := postDefrag(t, r, "db")
	if resp.err != nil || resp.code != http.StatusAccepted {
		t.Fatalf("defrag: %d %v", resp.code, resp.err)
	}
	if got := store.instance.Annotations; got[etcdaas.DefragRequestedAnnotation] != "2026-11-29T06:00:00Z" || got["other"] != "x" {
		t.Fatalf("request not recorded: %v", got)
	}
	// A second request while the first is pending joins it.
	r.now = func() time.Time { return time.Date(2026, 11, 29, 7, 0, 0, 0, time.UTC) }
	if resp := postDefrag(t, r, "db"); resp.err != nil || resp.code != http.StatusAccepted || store.updates != 1 ||
		store.instance.Annotations[etcdaas.DefragRequestedAnnotation] != "2026-11-29T06:00:00Z" {
		t.Fatalf("repeated defrag: %d %v, %d updates, %v", resp.code, resp.err, store.updates, store.instance.Annotations)
	}
	// A Failed instance (here: quorum lost) is not defragmented: the request would wait for
	// good, and the client with it.
	delete(store.instance.Annotations, etcdaas.DefragRequestedAnnotation)
	store.instance.Status = etcdaas.ETCDInstanceStatus{Phase: etcdaas.PhaseFailed, Conditions: []metav1.Condition{{Type: etcdaas.ConditionDegraded,
		Status: metav1.ConditionTrue, Reason: reasonQuorumLost, Message: "quorum lost: 2 of 3 voting members do not answer (db-1, db-2)"}}}
	if resp := postDefrag(t, r, "db"); !apierrors.IsConflict(resp.err) || !strings.Contains(resp.err.Error(),
		"the instance is Failed (QuorumLost: quorum lost: 2 of 3 voting members do not answer (db-1, db-2); POST etcdinstances/db/recover rebuilds it first)") {
		t.Fatalf("defrag of a Failed instance: %v", resp.err)
	}
	if _, ok := store.instance.Annotations[etcdaas.DefragRequestedAnnotation]; ok {
		t.Fatal("a defragmentation of a Failed instance was recorded")
	}
	store.instance.Status = deployed
	// An instance being deleted is not defragmented.
	delete(store.instance.Annotations, etcdaas.DefragRequestedAnnotation)
	store.instance.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	if resp := postDefrag(t, r, "db"); !apierrors.IsConflict(resp.err) {
		t.Fatalf("defrag while deleting: %v", resp.err)
	}
}

func TestOnlyTheDefragSubresourceRequestsADefragmentation(t *testing.T) {
	ctx := context.Background()
	created := &etcdaas.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: "db", Annotations: map[string]string{etcdaas.DefragRequestedAnnotation: "now"}}}
	Strategy{}.PrepareForCreate(ctx, created)
	if created.Annotations != nil {
		t.Fatalf("a create requested a defragmentation: %v", created.Annotations)
	}
	old := &etcdaas.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: "db", Annotations: map[string]string{etcdaas.DefragRequestedAnnotation: "t1"}}}
	edited := &etcdaas.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: "db", Annotations: map[string]string{etcdaas.DefragRequestedAnnotation: "t2"}}}
	Strategy{}.PrepareForUpdate(ctx, edited, old)
	if got := edited.Annotations[etcdaas.DefragRequestedAnnotation]; got != "t1" {
		t.Fatalf("an update changed the defrag request to %q", got)
	}
	requested := &etcdaas.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: "db", Annotations: map[string]string{etcdaas.DefragRequestedAnnotation: "t"}}}
	Strategy{}.PrepareForUpdate(ctx, requested, &etcdaas.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: "db"}})
	if requested.Annotations != nil {
		t.Fatalf("an update requested a defragmentation: %v", requested.Annotations)
	}
}

// TestDefragRetriesAWriteThatConflicts: a write of the request that conflicts with another
// (the controller's status update) is tried again on the instance read anew, and recorded.
func TestDefragRetriesAWriteThatConflicts(t *testing.T) {
	store := &fakeStatusStore{instance: &etcdaas.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "ns"}, Status: deployed}, conflicts: 2}
	resp := postDefrag(t, NewDefragREST(store), "db")
	if resp.err != nil || resp.code != http.StatusAccepted || store.updates != 1 || store.gets != 4 {
		t.Fatalf("defrag whose write conflicted twice: %d %v, %d updates, %d reads", resp.code, resp.err, store.updates, store.gets)
	}
	if _, ok := store.instance.Annotations[etcdaas.DefragRequestedAnnotation]; !ok {
		t.Fatalf("the request is not recorded: %v", store.instance.Annotations)
	}
}
