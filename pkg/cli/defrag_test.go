package cli

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
)

// serveDefrag answers the defrag subresource as the server does (404 for a missing instance,
// 409 for one without members, else the annotation is set and 202), and then consumes the request as the controller does
// once every member is done, unless stuck.
func (s *fakeServer) serveDefrag(stuck bool) {
	s.defrag = func(w http.ResponseWriter, r *http.Request) {
		parts := strings.Split(r.URL.Path, "/")
		ns, name := parts[5], parts[7]
		s.mu.Lock()
		in := s.objects[ns+"/"+name]
		deployed := in != nil && len(in.Status.Members) > 0
		if deployed {
			in.Annotations = map[string]string{etcdaas.DefragRequestedAnnotation: "2026-11-29T07:00:00Z"}
		}
		s.mu.Unlock()
		switch {
		case in == nil:
			s.writeStatus(w, apierrors.NewNotFound(etcdinstancesResource, name))
			return
		case !deployed:
			s.writeStatus(w, apierrors.NewConflict(schema.GroupResource{Group: etcdaas.GroupName, Resource: "etcdinstances/defrag"}, name,
				errors.New("there is no running cluster to defragment yet: the instance has no members (status.members is empty)")))
			return
		}
		s.writeJSON(w, http.StatusAccepted, &metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusSuccess, Code: http.StatusAccepted,
			Message: "defragmentation of every member of " + name + " requested"})
		if stuck {
			return
		}
		go func() {
			time.Sleep(50 * time.Millisecond)
			s.mu.Lock()
			defer s.mu.Unlock()
			delete(in.Annotations, etcdaas.DefragRequestedAnnotation)
		}()
	}
}

func TestDefrag(t *testing.T) {
	defragPollInterval = 10 * time.Millisecond
	s := newFakeServer(t)
	s.add(instance("team", "db", 3))
	undeployed := instance("team", "new", 1)
	undeployed.Status = v1beta1.ETCDInstanceStatus{}
	s.add(undeployed)
	s.serveDefrag(false)

	r := s.run(t, "defrag", "db")
	expectCode(t, r, 0)
	want := "etcdinstance.etcdaas.dev/db defragmentation requested: defragmentation of every member of db requested\n" +
		"etcdinstance.etcdaas.dev/db defragmented: every member, see its Defragmented Events\n"
	if r.stdout != want {
		t.Errorf("stdout\n got %q\nwant %q", r.stdout, want)
	}
	var posted bool
	for _, req := range s.recorded() {
		if req.Method == "POST" && req.Path == "/apis/etcdaas.dev/v1beta1/namespaces/team/etcdinstances/db/defrag" {
			posted = true
		}
	}
	if !posted {
		t.Errorf("no POST to the defrag subresource: %+v", s.recorded())
	}

	// Without waiting, the command returns once the request is recorded.
	s.serveDefrag(true)
	r = s.run(t, "defrag", "db", "--wait=false")
	expectCode(t, r, 0)
	if r.stdout != "etcdinstance.etcdaas.dev/db defragmentation requested: defragmentation of every member of db requested\n" {
		t.Errorf("stdout %q", r.stdout)
	}
	// A request the controller does not finish in time is reported, not hidden.
	r = s.run(t, "defrag", "db", "--timeout=100ms")
	expectCode(t, r, 1)
	if !strings.Contains(r.stderr, "team/db was not defragmented within 100ms") {
		t.Errorf("stderr %q", r.stderr)
	}

	for _, tc := range []struct {
		name   string
		args   []string
		stderr string
	}{
		{"no name", []string{"defrag"}, "error: exactly one NAME is required, got 0\nSee 'kubectl etcdaas defrag -h' for help and examples\n"},
		{"not found", []string{"defrag", "nope"}, "Error from server (NotFound): etcdinstances.etcdaas.dev \"nope\" not found\n"},
		// Never deployed: the server's 409 reads as kubectl prints a conflict.
		{"no members", []string{"defrag", "new"}, "Error from server (Conflict): Operation cannot be fulfilled on etcdinstances/defrag.etcdaas.dev \"new\": " +
			"there is no running cluster to defragment yet: the instance has no members (status.members is empty)\n"},
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
