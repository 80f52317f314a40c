package cluster

import (
	"context"
	"crypto/rand"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/test/e2e/framework"
)

// defragBulk is what testDefrag writes and deletes: 48 values of 1 MiB.
const (
	defragBulkValues = 48
	defragBulkValue  = 1 << 20
)

// defragNote parses a Defragmented Event's note.
var defragNote = regexp.MustCompile(`^Defragmented member (\S+) \((follower|leader)\) in \S+: database file (\S+) -> (\S+) `)

// testDefrag writes 48 MiB, deletes and compacts it, so that every member's database file
// holds that much free space, then runs `kubectl etcdaas defrag`: every member is
// defragmented once, the followers first and the leader last once leadership moved to a
// follower (from the Defragmented Events),
// each member's file shrinks by most of the freed space (Events and status), and the instance
// stays Running with its data.
func testDefrag(t *testing.T, e *etcdaasInstall, ns, name string, figs *figures) {
	ctx := t.Context()
	cli := e.memberClient(t, ns, name)
	fillAndCompact(t, ctx, cli)
	const freed = defragBulkValues * defragBulkValue * 3 / 4
	sizeBefore := waitForFreedSpace(t, ctx, e, cli, ns, name, freed)

	start := time.Now()
	mustRunWaiting(t, e.kubectl(e.c.Tools[framework.Kubectl]), 4*time.Minute, "etcdaas", "defrag", name, "-n", ns)
	figs.add(t, fmt.Sprintf("defrag 3 members (%d MiB free each)", defragBulkValues), time.Since(start))

	checkDefragmentedEvents(t, ctx, e, ns, name, start, freed)
	err := framework.Poll(ctx, time.Second, time.Minute, "the status reports the smaller files", func(ctx context.Context) (bool, error) {
		inst, err := e.getInstance(ctx, ns, name)
		if err != nil {
			return false, err
		}
		if !settled(inst, 3) {
			return false, fmt.Errorf("%s", describe(inst))
		}
		for _, m := range inst.Status.Members {
			if sizeBefore[m.Name]-m.DBSize < freed {
				return false, fmt.Errorf("member %s: dbSize %d, was %d", m.Name, m.DBSize, sizeBefore[m.Name])
			}
		}
		return true, nil
	})
	if err != nil {
		t.Error(err)
	}
	clientURL := fmt.Sprintf("--endpoints=http://%s.%s.svc.cluster.local:2379", name, ns)
	if got := e.mustClient(t, ns, "get-after-defrag", "", clientURL, "get", "/before-member-failing", "--print-value-only"); got != "kept" {
		t.Errorf("after the defragmentation /before-member-failing = %q, want kept", got)
	}
}

// fillAndCompact writes the bulk values under /defrag/, deletes them and compacts past the
// deletion, leaving their pages free in every member's database file.
func fillAndCompact(t *testing.T, ctx context.Context, cli *clientv3.Client) {
	t.Helper()
	value := make([]byte, defragBulkValue)
	for i := range defragBulkValues {
		if _, err := rand.Read(value); err != nil {
			t.Fatal(err)
		}
		putCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err := cli.Put(putCtx, fmt.Sprintf("/defrag/%02d", i), string(value))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cli.Delete(ctx, "/defrag/", clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	// A compaction drops a deletion's tombstone only at a later revision.
	after, err := cli.Put(ctx, "/defrag-done", "yes")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, after.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
}

// waitForFreedSpace waits for every member of ns/name to report at least freed bytes free in
// its database file, writing meanwhile (a follower releases pages only at later commits), and
// returns each member's file size then.
func waitForFreedSpace(t *testing.T, ctx context.Context, e *etcdaasInstall, cli *clientv3.Client, ns, name string, freed int64) map[string]int64 {
	t.Helper()
	var before *v1beta1.ETCDInstance
	writes := 0
	err := framework.Poll(ctx, time.Second, 2*time.Minute, "every member reports the freed space", func(ctx context.Context) (bool, error) {
		// The leader reports the pages the compaction freed as free at once; a follower only
		// once later writes (each its own backend commit) released them.
		writes++
		if _, err := cli.Put(ctx, "/defrag-done", strconv.Itoa(writes)); err != nil {
			return false, err
		}
		inst, err := e.getInstance(ctx, ns, name)
		if err != nil {
			return false, nil // the size error of the last read says more
		}
		before = inst
		for _, m := range inst.Status.Members {
			if m.DBSize-m.DBSizeInUse < freed {
				return false, fmt.Errorf("member %s: dbSize %d, in use %d (%s)", m.Name, m.DBSize, m.DBSizeInUse, describe(inst))
			}
		}
		if !settled(inst, 3) {
			return false, fmt.Errorf("%s", describe(inst))
		}
		return true, nil
	})
	if err != nil {
		if before != nil {
			t.Logf("members last reported: %+v", before.Status.Members)
		}
		t.Fatal(err)
	}
	sizeBefore := map[string]int64{}
	for _, m := range before.Status.Members {
		sizeBefore[m.Name] = m.DBSize
	}
	return sizeBefore
}

// checkDefragmentedEvents checks the Defragmented Events of ns/name since start: one per
// member, the followers first, the leader after its leadership moved, each file shrunk by at
// least freed bytes.
func checkDefragmentedEvents(t *testing.T, ctx context.Context, e *etcdaasInstall, ns, name string, start time.Time, freed int64) {
	// The command returns once the request is done; the Events of its last step are written
	// by the controller's event broadcaster a moment later.
	var evs []eventsv1.Event
	err := framework.Poll(ctx, 500*time.Millisecond, 30*time.Second, "3 Defragmented Events", func(ctx context.Context) (bool, error) {
		list, err := e.c.Kube.EventsV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: fields.Set{"regarding.name": name, "reason": "Defragmented"}.AsSelector().String()})
		if err != nil {
			return false, err
		}
		evs = slices.DeleteFunc(list.Items, func(ev eventsv1.Event) bool { return ev.EventTime.Time.Before(start.Add(-time.Second)) })
		if len(evs) < 3 {
			return false, fmt.Errorf("%d Defragmented Events since the command", len(evs))
		}
		return true, nil
	})
	if err != nil {
		t.Error(err)
	}
	slices.SortFunc(evs, func(a, b eventsv1.Event) int { return a.EventTime.Time.Compare(b.EventTime.Time) })
	var order, roles []string
	for _, ev := range evs {
		m := defragNote.FindStringSubmatch(ev.Note)
		if m == nil {
			t.Errorf("Defragmented Event note %q", ev.Note)
			continue
		}
		order, roles = append(order, m[1]+"("+m[2]+")"), append(roles, m[2])
		if m[2] == "leader" && !strings.Contains(ev.Note, "; leadership moved to member ") {
			t.Errorf("the leader %s was defragmented while it led: %q", m[1], ev.Note)
		}
		t.Logf("Defragmented: %s", ev.Note)
		from, err1 := resource.ParseQuantity(m[3])
		to, err2 := resource.ParseQuantity(m[4])
		if err1 != nil || err2 != nil || from.Value()-to.Value() < freed {
			t.Errorf("member %s: database file %s -> %s, want it to shrink by at least %d bytes", m[1], m[3], m[4], freed)
		}
	}
	t.Logf("defragmentation order: %v", order)
	if !slices.Equal(roles, []string{"follower", "follower", "leader"}) {
		t.Errorf("Defragmented Events %v, want each member once: the two followers, then the leader", order)
	}
}
