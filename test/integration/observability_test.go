package integration

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/controller/backend/local"
	"github.com/etcdaas/etcdaas/test/integration/framework"
)

// scrape reads the server's /metrics, as Prometheus would, and parses it.
func (e *ctlEnv) scrape() map[string]*dto.MetricFamily {
	e.t.Helper()
	kube, err := kubernetes.NewForConfig(e.srv.Config())
	if err != nil {
		e.t.Fatal(err)
	}
	body, err := kube.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		e.t.Fatalf("parsing /metrics: %v", err)
	}
	return families
}

// sample returns the sum of the values of the family's series that have the labels (a series
// has others too: apiserver_request_total's verb and code), and whether there is one.
func sample(families map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	f := families[name]
	if f == nil {
		return 0, false
	}
	sum, found := 0.0, false
	for _, m := range f.GetMetric() {
		match := true
		for k, v := range labels {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			match = match && found
		}
		if !match {
			continue
		}
		switch {
		case m.Gauge != nil:
			sum, found = sum+m.GetGauge().GetValue(), true
		case m.Counter != nil:
			sum, found = sum+m.GetCounter().GetValue(), true
		case m.Histogram != nil:
			sum, found = sum+float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return sum, found
}

// TestStandaloneMetricsIncludeTheController creates an instance and scales it to 3, then reads
// the standalone server's own /metrics (server and controller in one process): the
// controller's series are there with the values the status reports. Counters without an
// instance label are process-wide (every server and controller of the package registers in
// one registry), so they must have grown during this test, which is not parallel: no other
// controller runs meanwhile.
func TestStandaloneMetricsIncludeTheController(t *testing.T) {
	const quota = 1 << 30 // etcdaas-controller --quota-backend-bytes
	e := ctlStart(t, local.Options{QuotaBackendBytes: quota})
	counters := []struct {
		name   string
		labels map[string]string
	}{
		{"etcdaas_controller_reconcile_total", map[string]string{"result": "success"}},
		{"etcdaas_controller_reconcile_duration_seconds", map[string]string{"result": "success"}},
		{"workqueue_adds_total", map[string]string{"name": "etcdinstances"}},
		// The server's own series stay.
		{"apiserver_request_total", map[string]string{"resource": "etcdinstances"}},
	}
	before := map[string]float64{}
	start := e.scrape()
	for _, c := range counters {
		before[c.name], _ = sample(start, c.name, c.labels)
	}
	e.create("metrics", &v1beta1.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: "db"}, Spec: v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](1)}})
	e.running("metrics", "db", time.Minute)
	e.scale("metrics", "db", 3)
	running := e.running("metrics", "db", 2*time.Minute)

	inst := map[string]string{"namespace": "metrics", "name": "db"}
	deadline := time.Now().Add(30 * time.Second)
	for {
		families := e.scrape()
		members, _ := sample(families, "etcdaas_instance_members", inst)
		ready, _ := sample(families, "etcdaas_instance_ready_members", inst)
		if members == 3 && ready == 3 {
			for _, c := range counters {
				if v, ok := sample(families, c.name, c.labels); !ok || v <= before[c.name] {
					t.Errorf("%s%v = %v (present %v), want more than the %v before this test", c.name, c.labels, v, ok, before[c.name])
				}
			}
			dbLabels := map[string]string{"namespace": "metrics", "name": "db", "member": "db-2"}
			if v, ok := sample(families, "etcdaas_member_db_size_bytes", dbLabels); !ok || v <= 0 {
				t.Errorf("etcdaas_member_db_size_bytes%v = %v (present %v), want > 0", dbLabels, v, ok)
			}
			if _, ok := sample(families, "etcdaas_instance_leader_changes_total", inst); !ok {
				t.Error("no etcdaas_instance_leader_changes_total for the instance")
			}
			// The quota an alert divides the size by is the one the member runs with, as it
			// reports it itself.
			if v, ok := sample(families, "etcdaas_member_db_quota_bytes", dbLabels); !ok || v != quota {
				t.Errorf("etcdaas_member_db_quota_bytes%v = %v (present %v), want %d", dbLabels, v, ok, quota)
			}
			checkMemberQuota(t, e, running, "db-2", quota)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics say %v members, %v ready; want 3 and 3", members, ready)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// A deleted instance's series go.
	if err := e.client.EtcdaasV1beta1().ETCDInstances("metrics").Delete(context.Background(), "db", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for {
		if _, ok := sample(e.scrape(), "etcdaas_instance_members", inst); !ok {
			break
		}
		if time.Now().After(deadline.Add(time.Minute)) {
			t.Fatal("the deleted instance still has series")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestStandaloneEventsAndDescribe creates an instance and scales it to 3: every member added
// and promoted is a core/v1 Event on the instance in the standalone server, found with the
// field selector kubectl describe uses, and `kubectl describe etcd` (every kubectl tested)
// shows them.
func TestStandaloneEventsAndDescribe(t *testing.T) {
	t.Parallel()
	e := ctlStart(t, local.Options{})
	created := e.create("events", &v1beta1.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: "db"}, Spec: v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](1)}})
	e.running("events", "db", time.Minute)
	e.scale("events", "db", 3)
	e.running("events", "db", 2*time.Minute)

	kube, err := kubernetes.NewForConfig(e.srv.Config())
	if err != nil {
		t.Fatal(err)
	}
	selector := fields.Set{
		"involvedObject.kind":      "ETCDInstance",
		"involvedObject.namespace": "events",
		"involvedObject.name":      "db",
		"involvedObject.uid":       string(created.UID),
	}.AsSelector().String()
	want := []string{
		"MemberAdded Started the first member db-0",
		"MemberAdded Added member db-1",
		"MemberPromoted Promoted member db-1",
		"MemberAdded Added member db-2",
		"MemberPromoted Promoted member db-2",
	}
	checkEventsRecorded(t, kube, selector, want)
	// Another instance's events are not selected.
	other, err := kube.CoreV1().Events("events").List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=other"})
	if err != nil || len(other.Items) != 0 {
		t.Errorf("events of another name: %v (%v)", other, err)
	}
	// An unknown field is refused, as kube-apiserver does.
	if _, err := kube.CoreV1().Events("events").List(context.Background(), metav1.ListOptions{FieldSelector: "spec.nope=x"}); !apierrors.IsBadRequest(err) {
		t.Errorf("unknown field selector: %v, want 400", err)
	}

	checkKubectlShowsEvents(t, e.srv.KubeconfigPath)
}

// checkEventsRecorded waits up to 30 s for the Events selector selects in namespace events to
// be as many as want, and checks that they are the controller's Normal Events with
// managedFields, one starting with each of want.
func checkEventsRecorded(t *testing.T, kube kubernetes.Interface, selector string, want []string) {
	t.Helper()
	var got []string
	deadline := time.Now().Add(30 * time.Second)
	for {
		list, err := kube.CoreV1().Events("events").List(context.Background(), metav1.ListOptions{FieldSelector: selector})
		if err != nil {
			t.Fatal(err)
		}
		got = got[:0]
		for _, ev := range list.Items {
			if ev.Type != "Normal" || ev.Source.Component != "etcdaas-controller" || ev.InvolvedObject.APIVersion != v1beta1.SchemeGroupVersion.String() {
				t.Fatalf("event %+v", ev)
			}
			// The server tracks who wrote which field of an Event, as kube-apiserver does: it
			// has their schema.
			if len(ev.ManagedFields) == 0 {
				t.Fatalf("event %s has no managedFields", ev.Name)
			}
			got = append(got, ev.Reason+" "+ev.Message)
		}
		if len(got) >= len(want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("events %q, want %d", got, len(want))
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, w := range want {
		if !slices.ContainsFunc(got, func(g string) bool { return strings.HasPrefix(g, w) }) {
			t.Errorf("no event %q in %q", w, got)
		}
	}
}

// checkKubectlShowsEvents checks, with every kubectl under test, that describe shows the
// Events of events/db and that get and explain show Events as for kube-apiserver.
func checkKubectlShowsEvents(t *testing.T, kubeconfig string) {
	t.Helper()
	for label, bin := range framework.KubectlBinaries(t) {
		t.Run(label, func(t *testing.T) {
			k := newKubectl(t, bin)
			k.ns = "events"
			k.env = append(k.env, "KUBECONFIG="+kubeconfig)
			r := k.must("describe", "etcd", "db")
			r.contains(t, "Events:", "MemberAdded", "MemberPromoted", "Promoted member db-2", "etcdaas-controller")
			// kubectl get events prints kube-apiserver's columns, by its short name too.
			r = k.must("get", "ev")
			r.contains(t, "LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE", "MemberPromoted", "etcdinstance/db", "Promoted member db-2")
			r.lacks(t, "CREATED AT", "SOURCE")
			r = k.must("get", "events", "-o", "wide")
			r.contains(t, "SUBOBJECT", "SOURCE", "FIRST SEEN", "COUNT", "NAME", "etcdaas-controller")
			// kubectl explain reads the Event schema from OpenAPI v3.
			r = k.must("explain", "events.involvedObject")
			r.contains(t, "KIND:", "Event", "ObjectReference", "fieldPath")
			// kind and apiVersion are described as kube-apiserver describes them.
			r = k.must("explain", "events")
			r.contains(t, "APIVersion defines the versioned schema", "Kind is a string value representing")
		})
	}
}

// checkMemberQuota fails unless the member of inst says it runs with the given quota.
func checkMemberQuota(t *testing.T, e *ctlEnv, inst *v1beta1.ETCDInstance, member string, quota int64) {
	t.Helper()
	for _, m := range inst.Status.Members {
		if m.Name != member {
			continue
		}
		st, err := e.etcdClient(inst.Namespace, inst.Name, m.ClientURL).Status(context.Background(), m.ClientURL)
		if err != nil {
			t.Fatal(err)
		}
		if st.DbSizeQuota != quota {
			t.Errorf("member %s runs with a quota of %d, want %d", member, st.DbSizeQuota, quota)
		}
		return
	}
	t.Fatalf("no member %s in %+v", member, inst.Status.Members)
}
