package metrics

import (
	"context"
	"net"
	"net/http"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
)

func TestServeExposesTheControllerMetrics(t *testing.T) {
	Register()
	ObserveMembers("ns", "served", []v1beta1.MemberStatus{member("served-0", true, true, 4096)})
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
	for _, name := range []string{"etcdaas_instance_members", "etcdaas_member_db_size_bytes", "process_resident_memory_bytes", "go_goroutines"} {
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
