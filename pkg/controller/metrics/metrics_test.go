package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/component-base/metrics/legacyregistry"

	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
)

func member(name string, ready, leader bool, size int64) v1beta1.MemberStatus {
	return v1beta1.MemberStatus{Name: name, Ready: ready, Leader: leader, DBSize: size, DBSizeInUse: size / 2}
}

func TestObserveMembers(t *testing.T) {
	ObserveMembers("ns", "db", []v1beta1.MemberStatus{member("db-0", true, true, 100), member("db-1", true, false, 200), member("db-2", false, false, 300)}, 0)
	if got := testutil.ToFloat64(members.WithLabelValues("ns", "db")); got != 3 {
		t.Errorf("members %v, want 3", got)
	}
	if got := testutil.ToFloat64(readyMembers.WithLabelValues("ns", "db")); got != 2 {
		t.Errorf("ready members %v, want 2", got)
	}
	if got := testutil.ToFloat64(dbSize.WithLabelValues("ns", "db", "db-2")); got != 300 {
		t.Errorf("db size of db-2 %v, want 300", got)
	}
	if got := testutil.ToFloat64(dbSizeInUse.WithLabelValues("ns", "db", "db-1")); got != 100 {
		t.Errorf("db size in use of db-1 %v, want 100", got)
	}

	// A learner being added, not ready yet, while a voting member is down: three voting
	// members, two of them ready, quorum held, though only half of all the members are ready.
	learner := member("db-3", false, false, 0)
	learner.Learner = true
	ObserveMembers("ns", "db", []v1beta1.MemberStatus{member("db-0", true, true, 100), member("db-1", true, false, 200), member("db-2", false, false, 0), learner}, 0)
	for _, c := range []struct {
		name string
		vec  *prometheus.GaugeVec
		want float64
	}{{"members", members, 4}, {"ready members", readyMembers, 2}, {"voting members", voters, 3}, {"ready voting members", readyVoters, 2}} {
		if got := testutil.ToFloat64(c.vec.WithLabelValues("ns", "db")); got != c.want {
			t.Errorf("%s %v, want %v", c.name, got, c.want)
		}
	}

	// The same leader, then none seen, then another: one change.
	ObserveMembers("ns", "db", []v1beta1.MemberStatus{member("db-0", true, true, 100), member("db-1", true, false, 200), member("db-2", true, false, 300)}, 0)
	ObserveMembers("ns", "db", []v1beta1.MemberStatus{member("db-0", false, false, 0), member("db-1", true, false, 200), member("db-2", true, false, 300)}, 0)
	ObserveMembers("ns", "db", []v1beta1.MemberStatus{member("db-0", true, false, 100), member("db-1", true, true, 200)}, 0)
	if got := testutil.ToFloat64(leaderChanges.WithLabelValues("ns", "db")); got != 1 {
		t.Errorf("leader changes %v, want 1", got)
	}
	// db-2 was removed: its series are gone; the other instance's are not touched.
	ObserveMembers("ns", "other", []v1beta1.MemberStatus{member("other-0", true, true, 10)}, 0)
	if n := testutil.CollectAndCount(dbSize); n != 3 {
		t.Errorf("%d db size series, want 3 (db-0, db-1, other-0)", n)
	}

	ForgetInstance("ns", "db")
	if n := testutil.CollectAndCount(dbSize); n != 1 {
		t.Errorf("%d db size series after deleting db, want 1", n)
	}
	if n := testutil.CollectAndCount(members); n != 1 {
		t.Errorf("%d members series after deleting db, want 1", n)
	}
	ForgetInstance("ns", "other")
}

func TestBackupAndReconcileMetricsAreExposed(t *testing.T) {
	Register()
	Register() // idempotent
	ObserveBackupSuccess("ns", "db", time.Unix(1700000000, 500000000), 1500*time.Millisecond, 4096)
	ObserveBackupFailure("ns", "db")
	ObserveReconcile(ResultSuccess, 20*time.Millisecond)
	defer ForgetInstance("ns", "db")
	want := `
# HELP etcdaas_backup_last_size_bytes Size of the instance's last successful backup.
# TYPE etcdaas_backup_last_size_bytes gauge
etcdaas_backup_last_size_bytes{name="db",namespace="ns"} 4096
# HELP etcdaas_backup_last_success_timestamp_seconds Unix time the instance's last successful backup finished.
# TYPE etcdaas_backup_last_success_timestamp_seconds gauge
etcdaas_backup_last_success_timestamp_seconds{name="db",namespace="ns"} 1.7000000005e+09
# HELP etcdaas_backup_last_duration_seconds How long the instance's last successful backup took.
# TYPE etcdaas_backup_last_duration_seconds gauge
etcdaas_backup_last_duration_seconds{name="db",namespace="ns"} 1.5
# HELP etcdaas_backup_failures_total Backups of the instance that failed.
# TYPE etcdaas_backup_failures_total counter
etcdaas_backup_failures_total{name="db",namespace="ns"} 1
`
	if err := testutil.GatherAndCompare(legacyregistry.DefaultGatherer, strings.NewReader(want),
		"etcdaas_backup_last_size_bytes", "etcdaas_backup_last_success_timestamp_seconds",
		"etcdaas_backup_last_duration_seconds", "etcdaas_backup_failures_total"); err != nil {
		t.Fatal(err)
	}
	n, err := testutil.GatherAndCount(legacyregistry.DefaultGatherer, "etcdaas_controller_reconcile_total", "etcdaas_controller_reconcile_duration_seconds")
	if err != nil || n != 2 {
		t.Fatalf("%d reconcile series (%v), want 2", n, err)
	}
}

// TestDBSizeOfAMemberThatStopsAnsweringGoes: a member that does not answer reports no size;
// its series must go rather than show, for as long as it is down, the size it had when it
// last answered (a dashboard would draw a dead member as a healthy flat line), and come back
// once it answers again.
func TestDBSizeOfAMemberThatStopsAnsweringGoes(t *testing.T) {
	defer ForgetInstance("ns", "down")
	ObserveMembers("ns", "down", []v1beta1.MemberStatus{member("down-0", true, true, 100), member("down-1", true, false, 200)}, 0)
	ObserveMembers("ns", "down", []v1beta1.MemberStatus{member("down-0", true, true, 100), {Name: "down-1", Version: "3.7.3"}}, 0)
	if n := testutil.CollectAndCount(dbSize); n != 1 {
		t.Errorf("%d db size series with down-1 down, want 1 (down-0)", n)
	}
	if n := testutil.CollectAndCount(dbSizeInUse); n != 1 {
		t.Errorf("%d db size in use series with down-1 down, want 1 (down-0)", n)
	}
	ObserveMembers("ns", "down", []v1beta1.MemberStatus{member("down-0", true, true, 100), member("down-1", true, false, 300)}, 0)
	if got := testutil.ToFloat64(dbSize.WithLabelValues("ns", "down", "down-1")); got != 300 {
		t.Errorf("db size of down-1 once back %v, want 300", got)
	}
}

// TestDBQuotaOfEachAnsweringMember: a member's quota is exported next to its database size,
// so that an alert divides one by the other, and goes with the size when the member stops
// answering or is removed; a quota of zero or less (etcd's quota turned off) is no series.
func TestDBQuotaOfEachAnsweringMember(t *testing.T) {
	defer ForgetInstance("ns", "quota")
	const gib = 1 << 30
	ObserveMembers("ns", "quota", []v1beta1.MemberStatus{member("quota-0", true, true, 100), member("quota-1", true, false, 200)}, 2*gib)
	if got := testutil.ToFloat64(dbQuota.WithLabelValues("ns", "quota", "quota-1")); got != 2*gib {
		t.Errorf("quota of quota-1 %v, want 2 GiB", got)
	}
	ObserveMembers("ns", "quota", []v1beta1.MemberStatus{member("quota-0", true, true, 100), {Name: "quota-1"}}, 2*gib)
	if n := testutil.CollectAndCount(dbQuota); n != 1 {
		t.Errorf("%d quota series with quota-1 down, want 1 (quota-0)", n)
	}
	ObserveMembers("ns", "quota", []v1beta1.MemberStatus{member("quota-0", true, true, 100)}, -1)
	if n := testutil.CollectAndCount(dbQuota); n != 0 {
		t.Errorf("%d quota series with the quota turned off, want none", n)
	}
}

// TestBackupScheduleIsExposed: the next scheduled backup's due time is a gauge a rule compares
// with time(), and the instance's failures series exists at zero from then on: a counter
// born at 1 on the first failure is invisible to increase(), so an alert on failures would
// miss the first one.
func TestBackupScheduleIsExposed(t *testing.T) {
	Register()
	defer ForgetInstance("ns", "sched")
	ObserveBackupSchedule("ns", "sched", time.Unix(1700003600, 0))
	want := `
# HELP etcdaas_backup_next_scheduled_timestamp_seconds Unix time the instance's scheduled backup is due: the first slot of spec.backup.schedule after the last successful backup (after the instance's creation before the first). In the past while that backup runs, is retried or is not taken.
# TYPE etcdaas_backup_next_scheduled_timestamp_seconds gauge
etcdaas_backup_next_scheduled_timestamp_seconds{name="sched",namespace="ns"} 1.7000036e+09
# HELP etcdaas_backup_failures_total Backups of the instance that failed.
# TYPE etcdaas_backup_failures_total counter
etcdaas_backup_failures_total{name="sched",namespace="ns"} 0
`
	if err := testutil.GatherAndCompare(legacyregistry.DefaultGatherer, strings.NewReader(want),
		"etcdaas_backup_next_scheduled_timestamp_seconds", "etcdaas_backup_failures_total"); err != nil {
		t.Fatal(err)
	}
	ObserveBackupFailure("ns", "sched")
	if got := testutil.ToFloat64(backupFailures.WithLabelValues("ns", "sched")); got != 1 {
		t.Errorf("failures %v after one, want 1", got)
	}
	ForgetBackupSchedule("ns", "sched")
	if n := testutil.CollectAndCount(backupNext); n != 0 {
		t.Errorf("%d next scheduled series once unscheduled, want none", n)
	}
}
