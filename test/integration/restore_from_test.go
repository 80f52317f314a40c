package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
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

// TestRestoreFromBackup writes keys into an instance backed up every minute to the server's
// backup directory, then creates new instances with spec.restoreFrom: the newest backup (no
// key) brings back every key; a key the source does not hold, a source that does not exist
// and a source without spec.backup each fail with a reason that says so.
func TestRestoreFromBackup(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("waits for a scheduled minute")
	}
	e := ctlStartWithBackups(t, local.Options{}, controller.BackupOptions{})
	ns := "restorefrom"
	e.create(ns, &v1beta1.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: "old"}, Spec: v1beta1.ETCDInstanceSpec{
		Replicas: ptr.To[int32](1),
		Backup: &v1beta1.BackupSpec{Schedule: "* * * * *", Keep: ptr.To[int32](3),
			Destination: v1beta1.BackupDestination{Local: &v1beta1.LocalDestination{}}},
	}})
	// Created before the source has a backup: it fails with NoBackups, then starts by itself
	// once the source records its first backup (well before a 10-minute resync).
	e.create(ns, &v1beta1.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: "early"}, Spec: v1beta1.ETCDInstanceSpec{
		Replicas: ptr.To[int32](1), RestoreFrom: &v1beta1.RestoreSource{Instance: "old"},
	}})
	e.create(ns, &v1beta1.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: "plain"}, Spec: v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](1)}})
	early := e.waitFor(ns, "early", time.Minute, "Failed", func(i *v1beta1.ETCDInstance) bool { return i.Status.Phase == v1beta1.PhaseFailed })
	if cond := meta.FindStatusCondition(early.Status.Conditions, etcdaas.ConditionDegraded); cond == nil || cond.Reason != controller.ReasonNoBackups {
		t.Fatalf("early: Degraded %+v, want reason %s", cond, controller.ReasonNoBackups)
	}
	e.running(ns, "old", 2*time.Minute)

	const n = 200
	cli := e.etcdClient(ns, "old")
	var rev int64
	for i := range n {
		resp, err := cli.Put(context.Background(), fmt.Sprintf("/restore/%03d", i), fmt.Sprintf("value-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		rev = resp.Header.Revision
	}
	// The first scheduled minute may fall before the last write: wait for a backup with it.
	e.waitFor(ns, "old", 3*time.Minute, "a backup holding every write", func(i *v1beta1.ETCDInstance) bool {
		return i.Status.Backup != nil && i.Status.Backup.LastBackup != nil && i.Status.Backup.LastBackup.Revision >= rev
	})

	e.running(ns, "early", 2*time.Minute)

	e.create(ns, &v1beta1.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: "new"}, Spec: v1beta1.ETCDInstanceSpec{
		Replicas: ptr.To[int32](3), RestoreFrom: &v1beta1.RestoreSource{Instance: "old"},
	}})
	e.running(ns, "new", 3*time.Minute)
	checkRestoredKeys(t, e, ns, "new", n)

	checkRestoreFromFailures(t, e, ns)
}

// checkRestoredKeys checks that ns/name holds exactly the n keys /restore/000.. with their
// values value-0..
func checkRestoredKeys(t *testing.T, e *ctlEnv, ns, name string, n int) {
	t.Helper()
	got, err := e.etcdClient(ns, name).Get(context.Background(), "/restore/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Kvs) != n {
		t.Fatalf("the restored instance holds %d keys, want %d", len(got.Kvs), n)
	}
	for i, kv := range got.Kvs {
		if string(kv.Key) != fmt.Sprintf("/restore/%03d", i) || string(kv.Value) != fmt.Sprintf("value-%d", i) {
			t.Fatalf("key %d: %s=%s", i, kv.Key, kv.Value)
		}
	}
}

// checkRestoreFromFailures creates instances restored from a backup that does not exist, an
// instance that does not, and one without backups: each fails, saying why in its Degraded
// condition and in one Event, and answers a backup with 409.
func checkRestoreFromFailures(t *testing.T, e *ctlEnv, ns string) {
	t.Helper()
	for _, c := range []struct {
		name, reason, message string
		from                  v1beta1.RestoreSource
	}{
		{"unknown-key", controller.ReasonBackupNotFound, `no backup "20000101T000000.000Z-r1.db"`, v1beta1.RestoreSource{Instance: "old", Key: "20000101T000000.000Z-r1.db"}},
		{"no-source", controller.ReasonRestoreSourceNotFound, "restorefrom/gone does not exist", v1beta1.RestoreSource{Instance: "gone"}},
		{"no-backup", controller.ReasonRestoreSourceNoDestination, "has no spec.backup", v1beta1.RestoreSource{Instance: "plain"}},
	} {
		e.create(ns, &v1beta1.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: c.name}, Spec: v1beta1.ETCDInstanceSpec{
			Replicas: ptr.To[int32](1), RestoreFrom: &c.from,
		}})
		failed := e.waitFor(ns, c.name, time.Minute, "Failed", func(i *v1beta1.ETCDInstance) bool { return i.Status.Phase == v1beta1.PhaseFailed })
		cond := meta.FindStatusCondition(failed.Status.Conditions, etcdaas.ConditionDegraded)
		if cond == nil || cond.Status != metav1.ConditionTrue || cond.Reason != c.reason || !strings.Contains(cond.Message, c.message) {
			t.Errorf("%s: Degraded %+v, want reason %s with %q", c.name, cond, c.reason, c.message)
		}
		// kubectl describe shows why, once: a Warning Event named by the reason.
		var matching []string
		for _, ev := range e.waitForEvent(ns, failed, c.reason+" ") {
			if strings.HasPrefix(ev, c.reason+" ") {
				matching = append(matching, ev)
			}
		}
		if len(matching) != 1 || !strings.Contains(matching[0], c.message) {
			t.Errorf("%s: events %q, want one %s Event with %q", c.name, matching, c.reason, c.message)
		}
		// No member ever started: a backup says so at once, rather than waiting for one.
		resp := e.backup(context.Background(), ns, c.name)
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusConflict || !strings.Contains(string(body), "has not been deployed yet") {
			t.Errorf("%s: GET backup of an instance never deployed: %d %s, want 409", c.name, resp.StatusCode, body)
		}
	}
}
