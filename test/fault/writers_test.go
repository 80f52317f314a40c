package fault

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"syscall"
	"testing"

	"golang.org/x/net/http2"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// TestClassify: what a client sees while a server is away counts as a clean failure; a
// wrong answer (a conflict, a 404, a 422) does not.
func TestClassify(t *testing.T) {
	gr := schema.GroupResource{Group: "etcdaas.dev", Resource: "etcdinstances"}
	post := func(err error) error { return &url.Error{Op: "Post", URL: "https://127.0.0.1:6443/apis", Err: err} }
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}}
	reset := &net.OpError{Op: "read", Net: "tcp", Err: &os.SyscallError{Syscall: "read", Err: syscall.ECONNRESET}}
	for _, c := range []struct {
		err  error
		want string
	}{
		{post(refused), "connection refused"},
		{post(reset), "connection closed"},
		{post(io.ErrUnexpectedEOF), "connection closed"},
		{post(http2.StreamError{StreamID: 7, Code: http2.ErrCodeInternal}), "stream reset"},
		{post(context.DeadlineExceeded), "timeout"},
		{apierrors.NewServiceUnavailable("service unavailable"), "HTTP 503"},
		{apierrors.NewTimeoutError("request did not complete", 0), "HTTP 504"},
		{apierrors.NewInternalError(errors.New("boom")), "HTTP 500"},
		{apierrors.NewTooManyRequests("slow down", 1), "HTTP 429"},
		{apierrors.NewConflict(gr, "x", errors.New("modified")), ""},
		{apierrors.NewNotFound(gr, "x"), ""},
		{apierrors.NewBadRequest("bad"), ""},
		{fmt.Errorf("decoding: %w", errors.New("unexpected field")), ""},
	} {
		if got := Classify(c.err); got != c.want {
			t.Errorf("Classify(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}

// TestTally counts clean and unclean errors, when they happened, and acknowledgements.
func TestTally(t *testing.T) {
	var tally Tally
	if first, last := tally.Window(); !first.IsZero() || !last.IsZero() || tally.Total() != 0 {
		t.Fatalf("an empty tally has a window or errors: %v %v %d", first, last, tally.Total())
	}
	tally.add(apierrors.NewServiceUnavailable("away"))
	tally.add(apierrors.NewServiceUnavailable("away"))
	tally.add(apierrors.NewBadRequest("wrong"))
	tally.acked(0)
	if got := tally.Kinds(); len(got) != 1 || got["HTTP 503"] != 2 {
		t.Errorf("kinds %v, want 2 × HTTP 503", got)
	}
	if u := tally.Unclean(); len(u) != 1 || tally.Total() != 3 || tally.Acks() != 1 {
		t.Errorf("unclean %v, total %d, acks %d", u, tally.Total(), tally.Acks())
	}
	if first, last := tally.Window(); first.IsZero() || last.Before(first) {
		t.Errorf("window %v .. %v", first, last)
	}
}
