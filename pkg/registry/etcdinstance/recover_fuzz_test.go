package etcdinstance

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
)

// FuzzRecoverQuery posts a recovery with an arbitrary raw query string (the ?member=
// parameter, repeated, escaped, malformed or absent) to an instance that lost quorum or
// not, with or without a recovery already requested. It is accepted (202) only when quorum is
// lost, the member is empty or one of the instance's members, and no different recovery is
// pending; the request recorded is then exactly that member. Anything else is a 400 or 409
// Status that leaves the instance untouched. Never a panic or a 5xx.
func FuzzRecoverQuery(f *testing.F) {
	f.Add("member=db-1", true, false, "")
	f.Add("", true, false, "")
	f.Add("member=db-7", true, false, "")
	f.Add("member=db-0&member=db-1", true, false, "")
	f.Add("member=%zz", true, false, "")
	f.Add("member=db-1", false, false, "")
	f.Add("member=db-2", true, true, "db-2")
	f.Add("member=", true, true, "db-0")
	f.Add(";member=db-1;x", true, false, "")
	f.Fuzz(func(t *testing.T, rawQuery string, quorumLost, pending bool, pendingMember string) {
		reason := "MemberUnhealthy"
		if quorumLost {
			reason = reasonQuorumLost
		}
		instance := quorumLostInstance(reason)
		if pending {
			instance.Annotations = map[string]string{etcdaas.RecoverRequestedAnnotation: pendingMember}
		}
		store := &fakeStatusStore{instance: instance}
		before := instance.DeepCopy()
		resp := &recoverResponder{}
		h, err := NewRecoverREST(store).Connect(context.Background(), "db", nil, resp)
		if err != nil {
			t.Fatalf("Connect: %v", err)
		}
		req := httptest.NewRequest(http.MethodPost, "/recover", nil)
		req.URL.RawQuery = rawQuery
		h.ServeHTTP(httptest.NewRecorder(), req)

		member := req.URL.Query().Get("member")
		members := []string{"", "db-0", "db-1", "db-2"}
		if resp.err == nil {
			got, recorded := store.instance.Annotations[etcdaas.RecoverRequestedAnnotation]
			switch {
			case resp.code != http.StatusAccepted:
				t.Fatalf("answered %d without an error", resp.code)
			case !quorumLost || !slices.Contains(members, member) || (pending && pendingMember != member):
				t.Fatalf("accepted member %q (quorum lost %v, pending %v %q)", member, quorumLost, pending, pendingMember)
			case !recorded || got != member:
				t.Fatalf("accepted member %q, recorded %q (%v)", member, got, recorded)
			case pending && store.updates != 0:
				t.Fatalf("the same request again wrote the instance %d times", store.updates)
			}
			return
		}
		var status apierrors.APIStatus
		if !errors.As(resp.err, &status) {
			t.Fatalf("refused with an error that is not a Status: %v", resp.err)
		}
		if code := status.Status().Code; code != http.StatusBadRequest && code != http.StatusConflict {
			t.Fatalf("refused with %d, want 400 or 409: %v", code, resp.err)
		}
		if store.updates != 0 || !equalAnnotations(store.instance, before) {
			t.Fatalf("a refused recovery changed the instance: %v", store.instance.Annotations)
		}
	})
}

func equalAnnotations(a, b *etcdaas.ETCDInstance) bool {
	if len(a.Annotations) != len(b.Annotations) {
		return false
	}
	for k, v := range a.Annotations {
		if w, ok := b.Annotations[k]; !ok || w != v {
			return false
		}
	}
	return true
}
