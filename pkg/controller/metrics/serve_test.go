package metrics

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"k8s.io/apiserver/pkg/server/healthz"

	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
)

func TestServeExposesTheControllerMetrics(t *testing.T) {
	Register()
	ObserveMembers("ns", "served", []v1beta1.MemberStatus{member("served-0", true, true, 4096)}, 2<<30)
	defer ForgetInstance("ns", "served")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, l) }()
	resp, err := http.Get("http://" + l.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"etcdaas_instance_members", "etcdaas_member_db_size_bytes", "etcdaas_member_db_quota_bytes", "process_resident_memory_bytes", "go_goroutines"} {
		if families[name] == nil {
			t.Errorf("no %s in /metrics", name)
		}
	}
	if f := families["etcdaas_member_db_size_bytes"]; f != nil && f.GetMetric()[0].GetGauge().GetValue() != 4096 {
		t.Errorf("db size %v", f.GetMetric()[0])
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestServeAnswersHealthProbes asks the health endpoints a kubelet probe and an SRE use:
// etcdaas-controller answered 404 on each, so a Deployment could not probe it.
func TestServeAnswersHealthProbes(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var notReady atomic.Bool
	check := healthz.NamedCheck("informer-sync", func(*http.Request) error {
		if notReady.Load() {
			return errors.New("the ETCDInstance cache has not synced yet")
		}
		return nil
	})
	go func() { done <- Serve(ctx, l, check) }()
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + l.Addr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(body)
	}
	for _, c := range []struct {
		notReady   bool
		path, want string
		code       int
	}{
		{false, "/livez", "ok", 200},
		{false, "/healthz", "ok", 200},
		{false, "/readyz", "ok", 200},
		{false, "/readyz?verbose", "[+]informer-sync ok", 200},
		{false, "/readyz/informer-sync", "ok", 200},
		{false, "/livez/ping", "ok", 200},
		{true, "/readyz?verbose", "[-]informer-sync failed", 500},
		{true, "/readyz/informer-sync", "has not synced yet", 500},
		{true, "/healthz", "informer-sync failed", 500},
		{true, "/readyz?exclude=informer-sync", "ok", 200},
		{true, "/livez", "ok", 200},
	} {
		notReady.Store(c.notReady)
		if code, body := get(c.path); code != c.code || !strings.Contains(body, c.want) {
			t.Errorf("GET %s (cache synced: %t): %d %q, want %d with %q", c.path, !c.notReady, code, body, c.code, c.want)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
