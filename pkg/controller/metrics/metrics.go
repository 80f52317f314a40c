// Package metrics holds the controller's Prometheus metrics: reconciles, the workqueue, the
// leader election and the requests to the API server (through client-go's metrics
// providers), and per instance its members, ready members, leader changes, each member's
// database size and quota, the last backup and when the next scheduled one is due. They live in component-base's global
// registry, so that etcdaas-controller's /metrics and, in standalone mode, the server's own
// /metrics (one process) expose them; a process that runs no controller exposes none.
package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/component-base/metrics/legacyregistry"

	// Whether this replica leads (leader_election_master_status{name}), once it elects.
	_ "k8s.io/component-base/metrics/prometheus/clientgo/leaderelection"
	// Requests to the API server by code, method and host (rest_client_requests_total, ...).
	_ "k8s.io/component-base/metrics/prometheus/restclient"
	// Workqueue metrics (workqueue_depth, workqueue_adds_total, ...) of every named queue.
	_ "k8s.io/component-base/metrics/prometheus/workqueue"

	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
)

// Namespace prefixes every metric of this package.
const Namespace = "etcdaas"

// Reconcile results, the values of the result label.
const (
	// ResultSuccess: the reconcile finished; the instance is looked at again later or not.
	ResultSuccess = "success"
	// ResultWaiting: members are unhealthy; the instance is retried with backoff.
	ResultWaiting = "waiting"
	// ResultError: the reconcile failed and is retried with backoff.
	ResultError = "error"
)

var (
	reconciles = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "controller", Name: "reconcile_total",
		Help: "Reconciles of ETCDInstances by result (success, waiting, error).",
	}, []string{"result"})
	reconcileDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Subsystem: "controller", Name: "reconcile_duration_seconds",
		Help:    "Duration of reconciles of ETCDInstances by result.",
		Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60},
	}, []string{"result"})

	instanceLabels = []string{"namespace", "name"}
	memberLabels   = []string{"namespace", "name", "member"}
	members        = gauge("instance", "members", "Members of the instance's etcd cluster, learners included.", instanceLabels)
	readyMembers   = gauge("instance", "ready_members", "Members of the instance's etcd cluster that answer health checks.", instanceLabels)
	voters         = gauge("instance", "voting_members", "Voting members of the instance's etcd cluster: its members but the learners, those its quorum counts.", instanceLabels)
	readyVoters    = gauge("instance", "ready_voting_members", "Voting members of the instance's etcd cluster that answer health checks: the cluster has quorum while they are more than half of voting_members.", instanceLabels)
	leaderChanges  = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "instance", Name: "leader_changes_total",
		Help: "Changes of the raft leader the controller observed (another member became leader).",
	}, instanceLabels)
	dbSize         = gauge("member", "db_size_bytes", "Size of the member's backend database file, including space only a defragmentation frees.", memberLabels)
	dbSizeInUse    = gauge("member", "db_size_in_use_bytes", "Bytes of the member's backend database file that hold data.", memberLabels)
	dbQuota        = gauge("member", "db_quota_bytes", "The member's backend quota (etcd's --quota-backend-bytes): once db_size_bytes reaches it, etcd raises a NOSPACE alarm and refuses writes.", memberLabels)
	backupTime     = gauge("backup", "last_success_timestamp_seconds", "Unix time the instance's last successful backup finished.", instanceLabels)
	backupDuration = gauge("backup", "last_duration_seconds", "How long the instance's last successful backup took.", instanceLabels)
	backupBytes    = gauge("backup", "last_size_bytes", "Size of the instance's last successful backup.", instanceLabels)
	backupFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "backup", Name: "failures_total",
		Help: "Backups of the instance that failed.",
	}, instanceLabels)
	backupNext = gauge("backup", "next_scheduled_timestamp_seconds", "Unix time the instance's scheduled backup is due: the first slot of spec.backup.schedule after the last successful backup (after the instance's creation before the first). In the past while that backup runs, is retried or is not taken.", instanceLabels)

	instanceVecs = []interface {
		DeletePartialMatch(prometheus.Labels) int
	}{members, readyMembers, voters, readyVoters, leaderChanges, dbSize, dbSizeInUse, dbQuota, backupTime, backupDuration, backupBytes, backupFailures, backupNext}

	registerOnce sync.Once

	// states is what the last sync of each instance observed.
	stateMu sync.Mutex
	states  = map[instanceKey]*instanceState{}
)

type instanceKey struct{ namespace, name string }

// instanceState is the members and the leader last observed in an instance.
type instanceState struct {
	members map[string]bool
	leader  string
}

// Register adds the metrics to component-base's global registry. Every controller calls it;
// only the first call registers.
func Register() {
	registerOnce.Do(func() {
		legacyregistry.Registerer().MustRegister(reconciles, reconcileDuration, members, readyMembers, voters, readyVoters,
			leaderChanges, dbSize, dbSizeInUse, dbQuota, backupTime, backupDuration, backupBytes, backupFailures, backupNext)
	})
}

// ObserveReconcile counts a reconcile with its result and duration.
func ObserveReconcile(result string, d time.Duration) {
	reconciles.WithLabelValues(result).Inc()
	reconcileDuration.WithLabelValues(result).Observe(d.Seconds())
}

// ObserveMembers records the members a sync of the instance observed: their number, how many
// are ready, the same of the voting members (learners left out), each answering one's database size and quota (quota: the bytes the members run
// with, none when zero or less), and a leader change when another member than the last
// observed one leads. Members that are gone, and the sizes of members that did not answer,
// lose their series.
func ObserveMembers(namespace, name string, observed []v1beta1.MemberStatus, quota int64) {
	var ready, voting, readyVoting int
	leader := ""
	current := map[string]bool{}
	for _, m := range observed {
		current[m.Name] = true
		if m.Ready {
			ready++
		}
		if !m.Learner {
			voting++
			if m.Ready {
				readyVoting++
			}
		}
		if m.Leader {
			leader = m.Name
		}
		if m.DBSize > 0 {
			dbSize.WithLabelValues(namespace, name, m.Name).Set(float64(m.DBSize))
			dbSizeInUse.WithLabelValues(namespace, name, m.Name).Set(float64(m.DBSizeInUse))
			setQuota(namespace, name, m.Name, quota)
		} else { // it did not answer: its size is unknown, not the last one it reported
			deleteMemberSizes(namespace, name, m.Name)
		}
	}
	members.WithLabelValues(namespace, name).Set(float64(len(observed)))
	readyMembers.WithLabelValues(namespace, name).Set(float64(ready))
	voters.WithLabelValues(namespace, name).Set(float64(voting))
	readyVoters.WithLabelValues(namespace, name).Set(float64(readyVoting))
	changes := leaderChanges.WithLabelValues(namespace, name) // the series exists from the first sync

	key := instanceKey{namespace, name}
	stateMu.Lock()
	defer stateMu.Unlock()
	last := states[key]
	if last != nil {
		for m := range last.members {
			if !current[m] {
				deleteMemberSizes(namespace, name, m)
			}
		}
		if leader != "" && last.leader != "" && leader != last.leader {
			changes.Inc()
		}
	}
	next := &instanceState{members: current, leader: leader}
	if leader == "" && last != nil {
		next.leader = last.leader // no leader seen this time: compare with the last one seen
	}
	states[key] = next
}

// setQuota records a member's quota; a quota of zero or less is none (etcd's
// --quota-backend-bytes below zero turns it off).
func setQuota(namespace, name, member string, quota int64) {
	if quota <= 0 {
		dbQuota.DeleteLabelValues(namespace, name, member)
		return
	}
	dbQuota.WithLabelValues(namespace, name, member).Set(float64(quota))
}

// deleteMemberSizes deletes the database size series of a member that is gone or did not
// answer.
func deleteMemberSizes(namespace, name, member string) {
	for _, vec := range []*prometheus.GaugeVec{dbSize, dbSizeInUse, dbQuota} {
		vec.DeleteLabelValues(namespace, name, member)
	}
}

// ObserveBackupSchedule records when the instance's next scheduled backup is due (the first
// slot after its last successful backup), and makes its failures series exist from zero, so
// that rate() and increase() count its first failure. The backup step calls it while
// spec.backup has a schedule it runs.
func ObserveBackupSchedule(namespace, name string, due time.Time) {
	backupNext.WithLabelValues(namespace, name).Set(float64(due.UnixNano()) / 1e9)
	backupFailures.WithLabelValues(namespace, name)
}

// ForgetBackupSchedule deletes the due time of an instance whose backups are no longer
// scheduled (spec.backup removed, or a schedule it cannot run).
func ForgetBackupSchedule(namespace, name string) {
	backupNext.DeleteLabelValues(namespace, name)
}

// ObserveBackupSuccess records the instance's last successful backup: when it finished, how
// long it took and its size. The backup step calls it.
func ObserveBackupSuccess(namespace, name string, finished time.Time, took time.Duration, bytes int64) {
	backupTime.WithLabelValues(namespace, name).Set(float64(finished.UnixNano()) / 1e9)
	backupDuration.WithLabelValues(namespace, name).Set(took.Seconds())
	backupBytes.WithLabelValues(namespace, name).Set(float64(bytes))
}

// ObserveBackupFailure counts a failed backup of the instance. The backup step calls it.
func ObserveBackupFailure(namespace, name string) {
	backupFailures.WithLabelValues(namespace, name).Inc()
}

// ForgetInstance deletes every series of a deleted instance.
func ForgetInstance(namespace, name string) {
	for _, vec := range instanceVecs {
		vec.DeletePartialMatch(prometheus.Labels{"namespace": namespace, "name": name})
	}
	stateMu.Lock()
	delete(states, instanceKey{namespace, name})
	stateMu.Unlock()
}

// gauge is a gauge vector of this package's namespace.
func gauge(subsystem, name, help string, labels []string) *prometheus.GaugeVec {
	return prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: Namespace, Subsystem: subsystem, Name: name, Help: help}, labels)
}
