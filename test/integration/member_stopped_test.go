package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/controller"
	"github.com/etcdaas/etcdaas/pkg/controller/backend/local"
)

// memberLoad is clients of an instance writing and reading back their own keys.
type memberLoad struct {
	cli   *clientv3.Client
	stop  chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex
	acked map[string]string
	errs  []string
	// counting is true while the member is down; counted are the writes acknowledged and
	// read back meanwhile.
	counting bool
	counted  int
}

// startMemberLoad starts n clients, each putting a new key and reading it back (a
// linearizable read) in a loop.
func startMemberLoad(cli *clientv3.Client, n int) *memberLoad {
	l := &memberLoad{cli: cli, stop: make(chan struct{}), acked: map[string]string{}}
	for g := range n {
		l.wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				key, value := fmt.Sprintf("/load/%d/%05d", g, i), fmt.Sprintf("v%d-%d", g, i)
				if err := l.putAndRead(key, value); err != nil {
					l.mu.Lock()
					l.errs = append(l.errs, err.Error())
					l.mu.Unlock()
					time.Sleep(50 * time.Millisecond)
				}
			}
		})
	}
	return l
}

func (l *memberLoad) putAndRead(key, value string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := l.cli.Put(ctx, key, value); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	l.mu.Lock()
	l.acked[key] = value
	l.mu.Unlock()
	got, err := l.cli.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("get %s: %w", key, err)
	}
	if len(got.Kvs) != 1 || string(got.Kvs[0].Value) != value {
		return fmt.Errorf("get %s: %v, want %q", key, got.Kvs, value)
	}
	l.mu.Lock()
	if l.counting {
		l.counted++
	}
	l.mu.Unlock()
	return nil
}

// count starts or stops counting the writes that are acknowledged and read back; it returns
// how many were counted so far.
func (l *memberLoad) count(on bool) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.counting = on
	return l.counted
}

func (l *memberLoad) halt() {
	close(l.stop)
	l.wg.Wait()
}

// TestStoppedMemberOfThree stops one member of a 3-member instance while its clients write
// and read: they go on, the status says Degraded naming the member, and once the member is
// back it holds every write acknowledged meanwhile. The member is stopped the only way the
// local backend lets a member stay down: its data directory is moved aside while the
// controller (whose process runs the members) restarts, so that it cannot start; moving it
// back lets the running controller start it again.
func TestStoppedMemberOfThree(t *testing.T) {
	t.Parallel()
	e := ctlStart(t, local.Options{})
	ns, name := "stopped-member", "db"
	e.create(ns, &v1beta1.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](3)}})
	inst := e.running(ns, name, 2*time.Minute)
	var stoppedURL string
	for _, m := range inst.Status.Members {
		if m.Name == "db-2" {
			stoppedURL = m.ClientURL
		}
	}

	data := restartControllerWithoutDB2(t, e, ns, name)

	// The restarted controller restarts db-0 and db-1, which elect a leader: the clients start
	// once the status says both serve again. Started earlier, their first requests would wait
	// out that election, a few seconds on a busy machine, against their 5 s timeout.
	downSince := time.Now()
	deg := e.waitFor(ns, name, time.Minute, "Degraded naming db-2 with the others ready", func(i *v1beta1.ETCDInstance) bool {
		c := meta.FindStatusCondition(i.Status.Conditions, etcdaas.ConditionDegraded)
		return c != nil && c.Status == metav1.ConditionTrue && c.Reason == controller.ReasonMemberUnhealthy && strings.Contains(c.Message, "db-2") &&
			i.Status.ReadyReplicas == 2
	})
	degradedAfter := time.Since(downSince)
	// Two of three serve: the cluster runs, Degraded and Available say what is wrong.
	if deg.Status.Phase != v1beta1.PhaseRunning {
		t.Errorf("phase %s while db-2 is down, want Running", deg.Status.Phase)
	}
	cli := e.etcdClient(ns, name)
	load := startMemberLoad(cli, 4)
	load.count(true)
	for _, m := range deg.Status.Members {
		if m.Ready != (m.Name != "db-2") {
			t.Errorf("member %s ready=%v while db-2 is down", m.Name, m.Ready)
		}
	}
	cond := meta.FindStatusCondition(deg.Status.Conditions, etcdaas.ConditionDegraded)
	time.Sleep(3 * time.Second) // the clients keep going on two members

	whileDown := load.count(false)
	if err := os.Remove(data); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(data+".away", data); err != nil {
		t.Fatal(err)
	}
	returned := time.Now()
	e.waitFor(ns, name, 2*time.Minute, "every member healthy again", func(i *v1beta1.ETCDInstance) bool {
		c := meta.FindStatusCondition(i.Status.Conditions, etcdaas.ConditionDegraded)
		return c != nil && c.Status == metav1.ConditionFalse && i.Status.ReadyReplicas == 3
	})
	healthyAfter := time.Since(returned)
	time.Sleep(time.Second)
	load.halt()

	if whileDown == 0 {
		t.Error("no write was acknowledged and read back while db-2 was down")
	}
	if len(load.errs) > 0 {
		t.Errorf("%d client errors, first: %s", len(load.errs), load.errs[0])
	}
	// The returned member has every acknowledged write, read from it alone.
	checkHoldsAckedWrites(t, e.etcdClient(ns, name, stoppedURL), load.acked)
	t.Logf("FIGURE stopped member of 3: Degraded (%s: %q) %s after the restart without it; %d writes acknowledged and read back while it was down, %d in all, %d client errors; healthy again %s after its data returned; the returned member holds all %d keys",
		cond.Reason, cond.Message, degradedAfter.Round(time.Millisecond), whileDown, len(load.acked), len(load.errs), healthyAfter.Round(time.Millisecond), len(load.acked))
}

// restartControllerWithoutDB2 restarts the controller with ns/name's member db-2 unable to
// start: its data directory moved away (to the returned path + ".away") and a file in its
// place.
func restartControllerWithoutDB2(t *testing.T, e *ctlEnv, ns, name string) string {
	t.Helper()
	e.stopController()
	data := filepath.Join(e.dir, "instances", ns, name, "db-2")
	if err := os.Rename(data, data+".away"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(data, []byte("stopped by the test"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.startController()
	return data
}

// checkHoldsAckedWrites waits up to 30 s for the member alone talks to to hold every
// acknowledged write, read from it alone (serializable).
func checkHoldsAckedWrites(t *testing.T, alone *clientv3.Client, acked map[string]string) {
	t.Helper()
	var missing []string
	deadline := time.Now().Add(30 * time.Second)
	for {
		missing = missing[:0]
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		got, err := alone.Get(ctx, "/load/", clientv3.WithPrefix(), clientv3.WithSerializable())
		cancel()
		if err == nil {
			have := map[string]string{}
			for _, kv := range got.Kvs {
				have[string(kv.Key)] = string(kv.Value)
			}
			for k, v := range acked {
				if have[k] != v {
					missing = append(missing, k)
				}
			}
		}
		if err == nil && len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("db-2 lacks %d of %d acknowledged keys (e.g. %v) 30s after it returned: %v", len(missing), len(acked), missing[:min(3, len(missing))], err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
