package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/rest"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/controller/backend/local"
)

// postRecover POSTs the recover subresource and returns the status code and body.
func (e *ctlEnv) postRecover(ns, name, query string) (int, string) {
	e.t.Helper()
	cfg := e.srv.Config()
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	url := fmt.Sprintf("%s/apis/etcdaas.dev/v1beta1/namespaces/%s/etcdinstances/%s/recover%s", cfg.Host, ns, name, query)
	resp, err := hc.Post(url, "application/json", nil)
	if err != nil {
		e.t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestQuorumLossAndRecovery loses two of three members for good: the instance reports
// QuorumLost and nothing happens until a person POSTs recover, which rebuilds it from the
// survivor with every key.
func TestQuorumLossAndRecovery(t *testing.T) {
	t.Parallel()
	e := ctlStart(t, local.Options{})
	ns, name := "recover", "db"
	ctx := context.Background()
	cli := e.runningClient(ns, name, 3)
	for i := range 100 {
		if _, err := cli.Put(ctx, fmt.Sprintf("/k/%03d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	if code, body := e.postRecover(ns, name, ""); code != http.StatusConflict || !strings.Contains(body, "quorum is not lost") {
		t.Fatalf("recover with quorum: %d %s", code, body)
	}

	// Members 1 and 2 lose their disks while the controller is down.
	e.stopController()
	for _, member := range []string{"db-1", "db-2"} {
		data := filepath.Join(e.dir, "instances", ns, name, member)
		if err := os.RemoveAll(data); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(data, []byte("lost"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	e.startController()
	lost := e.waitFor(ns, name, time.Minute, "QuorumLost", func(i *v1beta1.ETCDInstance) bool {
		c := meta.FindStatusCondition(i.Status.Conditions, etcdaas.ConditionDegraded)
		return i.Status.Phase == v1beta1.PhaseFailed && c != nil && c.Reason == "QuorumLost"
	})
	if c := meta.FindStatusCondition(lost.Status.Conditions, etcdaas.ConditionDegraded); !strings.Contains(c.Message, "db-1, db-2") {
		t.Fatalf("Degraded does not name the lost members: %+v", c)
	}
	checkRefusedAfterQuorumLoss(t, e, ns, name)

	start := time.Now()
	if code, body := e.postRecover(ns, name, ""); code != http.StatusAccepted {
		t.Fatalf("recover: %d %s", code, body)
	}
	e.waitFor(ns, name, time.Minute, "Recovering", func(i *v1beta1.ETCDInstance) bool {
		return i.Status.Phase == v1beta1.PhaseRecovering || i.Status.Phase == v1beta1.PhaseRunning
	})
	inst := e.running(ns, name, 2*time.Minute)
	t.Logf("FIGURE recovery from quorum loss (recover POST to Running, 3 members): %s", time.Since(start).Round(time.Millisecond))
	if _, ok := inst.Annotations[etcdaas.RecoverRequestedAnnotation]; ok {
		t.Fatal("the recover request is still recorded after the recovery")
	}
	checkRecoveredFromDB0(t, ctx, e, inst)
}

// checkRefusedAfterQuorumLoss checks what instance ns/name refuses once it lost quorum: a
// backup, at once and saying why instead of inviting retries; a defragmentation that could
// not run before a recovery; a recovery from a member it does not have.
func checkRefusedAfterQuorumLoss(t *testing.T, e *ctlEnv, ns, name string) {
	t.Helper()
	// A backup says why none can be taken, at once, instead of inviting retries.
	resp := e.backup(context.Background(), ns, name)
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusConflict || resp.Header.Get("Retry-After") != "" || !strings.Contains(string(body), "the instance lost quorum") {
		t.Fatalf("GET backup after quorum loss: %d (Retry-After %q) %s, want 409", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	// Nor is a defragmentation accepted that could not run before a recovery.
	if code, body := e.postDefrag(ns, name); code != http.StatusConflict || !strings.Contains(body, "the instance is Failed (QuorumLost") {
		t.Fatalf("defrag after quorum loss: %d %s, want 409", code, body)
	}
	if code, body := e.postRecover(ns, name, "?member=db-9"); code != http.StatusBadRequest {
		t.Fatalf("recover from an unknown member: %d %s", code, body)
	}
}

// checkRecoveredFromDB0 checks inst, recovered from member db-0: db-0 and two new members,
// the 100 keys /k/ kept.
func checkRecoveredFromDB0(t *testing.T, ctx context.Context, e *ctlEnv, inst *v1beta1.ETCDInstance) {
	t.Helper()
	var names []string
	for _, m := range inst.Status.Members {
		names = append(names, m.Name)
	}
	if strings.Join(names, ",") != "db-0,db-3,db-4" {
		t.Fatalf("members after recovery: %v", names)
	}
	cli := e.etcdClient(inst.Namespace, inst.Name)
	got, err := cli.Get(ctx, "/k/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || got.Count != 100 {
		t.Fatalf("keys after recovery: %v, %v", got, err)
	}
}

// TestQuorumRegainedByItself loses two of three members while the controller is down, then
// gives one back its data: quorum is back without a recovery, and the instance is in service
// again (Running, Available with reason QuorumReady, Degraded naming the member still lost)
// rather than a new cluster being deployed (it was Deploying with Available False, "the new
// cluster is still being deployed", until every member was back).
func TestQuorumRegainedByItself(t *testing.T) {
	t.Parallel()
	e := ctlStart(t, local.Options{})
	ns, name := "regain", "db"
	e.runningClient(ns, name, 3)

	e.stopController()
	dir := filepath.Join(e.dir, "instances", ns, name)
	for _, member := range []string{"db-1", "db-2"} {
		if err := os.Rename(filepath.Join(dir, member), filepath.Join(dir, member+".aside")); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, member), []byte("lost"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	e.startController()
	e.waitFor(ns, name, time.Minute, "QuorumLost", func(i *v1beta1.ETCDInstance) bool {
		c := meta.FindStatusCondition(i.Status.Conditions, etcdaas.ConditionDegraded)
		return i.Status.Phase == v1beta1.PhaseFailed && c != nil && c.Reason == "QuorumLost"
	})

	// db-1's data is back: it starts again and, with db-0, makes a quorum.
	if err := os.Remove(filepath.Join(dir, "db-1")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "db-1.aside"), filepath.Join(dir, "db-1")); err != nil {
		t.Fatal(err)
	}
	back := e.waitFor(ns, name, time.Minute, "2 of 3 members ready", func(i *v1beta1.ETCDInstance) bool {
		return i.Status.ReadyReplicas == 2
	})
	available := meta.FindStatusCondition(back.Status.Conditions, etcdaas.ConditionAvailable)
	degraded := meta.FindStatusCondition(back.Status.Conditions, etcdaas.ConditionDegraded)
	if back.Status.Phase != v1beta1.PhaseRunning || available == nil || available.Status != "True" || available.Reason != "QuorumReady" ||
		degraded == nil || !strings.Contains(degraded.Message, "db-2") {
		t.Fatalf("quorum back with db-2 still lost: phase %s, Available %+v, Degraded %+v; want Running, True (QuorumReady), db-2 named",
			back.Status.Phase, available, degraded)
	}
}
