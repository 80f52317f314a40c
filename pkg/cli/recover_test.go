package cli

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
)

// quorumLost is an instance of three members that lost two.
func quorumLost(ns, name string) *v1beta1.ETCDInstance {
	in := instance(ns, name, 3)
	in.Status.Phase, in.Status.ReadyReplicas = v1beta1.PhaseFailed, 0
	in.Status.Members = []v1beta1.MemberStatus{{Name: name + "-0"}, {Name: name + "-1"}, {Name: name + "-2"}}
	meta.SetStatusCondition(&in.Status.Conditions, metav1.Condition{Type: etcdaas.ConditionDegraded, Status: metav1.ConditionTrue, Reason: "QuorumLost", Message: "quorum lost: 2 of 3 voting members do not answer (db-1, db-2); 2 are needed"})
	return in
}

// serveRecover answers the recover subresource as the server does (409 while quorum holds,
// 400 for an unknown member, else the annotation is set and 202), and then acts as the
// controller would after a moment: with carriedOut, the instance runs again; without, the
// request is consumed and the instance stays failed.
func (s *fakeServer) serveRecover(carriedOut bool) {
	s.recover = func(w http.ResponseWriter, r *http.Request) {
		parts := strings.Split(r.URL.Path, "/")
		ns, name := parts[5], parts[7]
		member := r.URL.Query().Get("member")
		s.mu.Lock()
		in := s.objects[ns+"/"+name]
		var err error
		switch {
		case in == nil:
			err = apierrors.NewNotFound(etcdinstancesResource, name)
		case meta.FindStatusCondition(in.Status.Conditions, etcdaas.ConditionDegraded) == nil:
			err = apierrors.NewConflict(etcdaas.Resource("etcdinstances/recover"), name, fmt.Errorf("quorum is not lost: a recovery only runs when the Degraded condition's reason is QuorumLost"))
		case member != "" && member != name+"-0":
			err = apierrors.NewBadRequest(fmt.Sprintf("member %q is not a member of %s", member, name))
		default:
			in.Annotations = map[string]string{etcdaas.RecoverRequestedAnnotation: member}
		}
		s.mu.Unlock()
		if err != nil {
			s.writeStatus(w, err)
			return
		}
		s.writeJSON(w, http.StatusAccepted, &metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusSuccess, Code: http.StatusAccepted,
			Message: "recovery of " + name + " requested; the controller rebuilds the cluster from it and adds members back as learners"})
		go func() {
			time.Sleep(50 * time.Millisecond)
			s.mu.Lock()
			defer s.mu.Unlock()
			delete(in.Annotations, etcdaas.RecoverRequestedAnnotation)
			if carriedOut {
				in.Status = instance(ns, name, 3).Status
			}
		}()
	}
}

func TestRecover(t *testing.T) {
	recoverPollInterval = 10 * time.Millisecond
	s := newFakeServer(t)
	s.add(quorumLost("team", "db"))
	s.add(instance("team", "healthy", 3))
	s.serveRecover(true)

	r := s.run(t, "recover", "db", "--member", "db-0")
	expectCode(t, r, 0)
	want := "etcdinstance.etcdaas.dev/db recovery requested: recovery of db requested; the controller rebuilds the cluster from it and adds members back as learners\n" +
		"etcdinstance.etcdaas.dev/db recovered: 3/3 members ready\n"
	if r.stdout != want {
		t.Errorf("stdout\n got %q\nwant %q", r.stdout, want)
	}
	var posted bool
	for _, req := range s.recorded() {
		if req.Method == "POST" && req.Path == "/apis/etcdaas.dev/v1beta1/namespaces/team/etcdinstances/db/recover" && req.Query == "member=db-0" {
			posted = true
		}
	}
	if !posted {
		t.Errorf("no POST to the recover subresource naming the member: %+v", s.recorded())
	}

	s.add(quorumLost("team", "db"))
	for _, tc := range []struct {
		name   string
		args   []string
		stderr string
	}{
		{"no name", []string{"recover"}, "error: exactly one NAME is required, got 0\nSee 'kubectl etcdaas recover -h' for help and examples\n"},
		{"quorum holds", []string{"recover", "healthy"}, "Error from server (Conflict): Operation cannot be fulfilled on etcdinstances/recover.etcdaas.dev \"healthy\": quorum is not lost: a recovery only runs when the Degraded condition's reason is QuorumLost\n"},
		{"unknown member", []string{"recover", "db", "--member", "db-9"}, "Error from server (BadRequest): member \"db-9\" is not a member of db\n"},
		{"not found", []string{"recover", "nope"}, "Error from server (NotFound): etcdinstances.etcdaas.dev \"nope\" not found\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := s.run(t, tc.args...)
			expectCode(t, r, 1)
			if r.stderr != tc.stderr {
				t.Errorf("stderr\n got %q\nwant %q", r.stderr, tc.stderr)
			}
		})
	}
}

func TestRecoverNotCarriedOut(t *testing.T) {
	recoverPollInterval = 10 * time.Millisecond
	s := newFakeServer(t)
	s.add(quorumLost("team", "db"))
	s.serveRecover(false)

	r := s.run(t, "recover", "db", "--wait=false")
	expectCode(t, r, 0)
	if !strings.HasPrefix(r.stdout, "etcdinstance.etcdaas.dev/db recovery requested: ") || strings.Contains(r.stdout, "recovered") {
		t.Errorf("stdout %q", r.stdout)
	}

	s.add(quorumLost("team", "db"))
	r = s.run(t, "recover", "db")
	expectCode(t, r, 1)
	if want := "error: team/db is still failed: quorum lost: 2 of 3 voting members do not answer (db-1, db-2); 2 are needed; 'kubectl describe etcd db' shows the RecoveryFailed event\n"; r.stderr != want {
		t.Errorf("stderr\n got %q\nwant %q", r.stderr, want)
	}

	s.add(quorumLost("team", "slow"))
	s.recover = func(w http.ResponseWriter, _ *http.Request) {
		// A controller that does not get to it: the request stays pending.
		s.mu.Lock()
		s.objects["team/slow"].Annotations = map[string]string{etcdaas.RecoverRequestedAnnotation: ""}
		s.mu.Unlock()
		s.writeJSON(w, http.StatusAccepted, &metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusSuccess, Code: http.StatusAccepted, Message: "requested"})
	}
	r = s.run(t, "recover", "slow", "--timeout", "100ms")
	expectCode(t, r, 1)
	if want := "error: team/slow did not run again within 100ms: the recovery goes on, see 'kubectl describe etcd slow'\n"; r.stderr != want {
		t.Errorf("stderr\n got %q\nwant %q", r.stderr, want)
	}
}
