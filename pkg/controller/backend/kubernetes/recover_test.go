package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/etcdaas/etcdaas/pkg/controller/backend"
	"github.com/etcdaas/etcdaas/pkg/etcdcluster"
	"github.com/etcdaas/etcdaas/pkg/snapshot"
)

// lostQuorum is a cluster of n members of which those with a revision (by ordinal) answer,
// without a leader; the others do not answer.
func lostQuorum(n int, revisions map[int]int64) *fakeMembership {
	cluster := healthyCluster(n)
	cluster.listErr = errors.New("context deadline exceeded")
	for i := range cluster.statuses {
		rev, ok := revisions[i]
		if !ok {
			cluster.statuses[i] = etcdcluster.EndpointStatus{Err: errors.New("not answering: connection refused")}
			continue
		}
		cluster.statuses[i] = etcdcluster.EndpointStatus{MemberID: uint64(100 + i), Revision: rev, RaftAppliedIndex: uint64(rev), Err: errors.New("member has no leader")}
	}
	return cluster
}

func (f *stepsFixture) sts(t *testing.T) *appsv1.StatefulSet {
	t.Helper()
	sts, err := f.client.AppsV1().StatefulSets("ns").Get(context.Background(), "db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return sts
}

func (f *stepsFixture) pods(t *testing.T) []string {
	t.Helper()
	list, err := f.client.CoreV1().Pods("ns").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range list.Items {
		out = append(out, p.Name)
	}
	slices.Sort(out)
	return out
}

// syncUntil runs Syncs (at most 6) until done says the step it waits for was taken.
func (f *stepsFixture) syncUntil(t *testing.T, what string, done func(*backend.Result) bool) *backend.Result {
	t.Helper()
	for range 6 {
		res, err := f.b.Sync(context.Background(), f.inst)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if res.StepReason != backend.StepRecovering {
			t.Fatalf("%s: step %s %q, want Recovering", what, res.StepReason, res.Step)
		}
		if done(res) {
			return res
		}
	}
	t.Fatalf("%s: not reached", what)
	return nil
}

func TestRecoverRefusesWhatItCannotCarryOut(t *testing.T) {
	ctx := context.Background()
	f := newStepsFixture(t, 3, 3, 3, healthyCluster(3))
	if _, err := f.b.Recover(ctx, f.inst, backend.RecoverRequest{}); !errors.Is(err, backend.ErrCannotRecover) || !strings.Contains(err.Error(), "--tools-image") {
		t.Fatalf("without the etcdaas image: %v", err)
	}
	f.b.opts.ToolsImage = toolsImage
	if _, err := f.b.Recover(ctx, f.inst, backend.RecoverRequest{}); !errors.Is(err, backend.ErrCannotRecover) || !strings.Contains(err.Error(), "quorum is not lost") {
		t.Fatalf("with quorum: %v", err)
	}

	cluster := lostQuorum(3, map[int]int64{2: 50})
	g := newStepsFixture(t, 3, 3, 1, cluster)
	g.b.opts.ToolsImage = toolsImage
	for member, want := range map[string]string{
		"db-1": "member db-1 does not answer (not answering: connection refused); only member db-0 can be rebuilt from without answering",
		"db-7": "db-7 is not a member with a pod",
		"x-0":  "x-0 is not a member with a pod",
	} {
		if _, err := g.b.Recover(ctx, g.inst, backend.RecoverRequest{Member: member}); !errors.Is(err, backend.ErrCannotRecover) || !strings.Contains(err.Error(), want) {
			t.Errorf("recover from %s: %v, want %q", member, err, want)
		}
	}
	cluster.statuses[2].IsLearner = true
	if _, err := g.b.Recover(ctx, g.inst, backend.RecoverRequest{}); !errors.Is(err, backend.ErrCannotRecover) || !strings.Contains(err.Error(), "name member db-0") {
		t.Errorf("no voting member answers: %v", err)
	}
	if _, ok := g.sts(t).Annotations[annotationSeed]; ok {
		t.Error("a refused recovery recorded a plan")
	}
}

// Members 1 and 2 are lost; member 0 survives. The plan is recorded before anything changes,
// the lost members' pods and volumes go, member 0 restarts rebuilt from its own database as a
// new cluster, the recovery ends, and a controller that starts over resumes it; then the
// ordinary steps add learners.
func TestRecoverFromMemberZero(t *testing.T) {
	ctx := context.Background()
	cluster := lostQuorum(3, map[int]int64{0: 500})
	f := newStepsFixture(t, 3, 3, 1, cluster)
	f.withVolumes(t, 3)
	f.b.opts.ToolsImage = toolsImage

	res, err := f.b.Recover(ctx, f.inst, backend.RecoverRequest{ID: "req-1"})
	if err != nil || res.StepReason != backend.StepRecovering || !strings.Contains(res.Step, "recovering from member db-0") {
		t.Fatalf("recover: %+v, %v", res, err)
	}
	s := checkRecoveryPlanned(t, f)

	// A controller that starts over (a new backend) resumes the recorded plan.
	restarted, err := New(Options{Client: f.client, ToolsImage: toolsImage})
	if err != nil {
		t.Fatal(err)
	}
	restarted.connect = f.b.connect
	f.b = restarted
	f.syncUntil(t, "old members stopped, member 0 restarted", func(*backend.Result) bool {
		return slices.Equal(f.pods(t), []string{})
	})
	if got := f.volumes(t); !slices.Equal(got, []string{"data-db-0"}) {
		t.Fatalf("volumes %v: the lost members' are deleted, member 0's kept", got)
	}
	// The StatefulSet brings member 0 back through the init container.
	if _, err := f.client.CoreV1().Pods("ns").Create(ctx, readyPod("db-0", s.ID), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	res = f.syncUntil(t, "recovery ended", func(res *backend.Result) bool { return len(res.Events) > 0 })
	if reasons(res) != "Recovered" || !strings.Contains(res.Events[0].Note, "Rebuilt the cluster from member db-0 (revision 500, raised by 1000000000)") {
		t.Fatalf("events %+v", res.Events)
	}
	sts := f.sts(t)
	if _, ok := sts.Annotations[annotationSeed]; ok || len(sts.Spec.Template.Spec.InitContainers) != 0 || *sts.Spec.Replicas != 1 {
		t.Fatalf("the recovery did not end: %v, %d init containers, %d replicas", sts.Annotations, len(sts.Spec.Template.Spec.InitContainers), *sts.Spec.Replicas)
	}
	if env(t, sts.Spec.Template.Spec.Containers[0], "ETCD_INITIAL_CLUSTER_STATE") != "existing" || env(t, sts.Spec.Template.Spec.Containers[0], "ETCD_INITIAL_CLUSTER_TOKEN") != s.Token {
		t.Error("members added later must join the new cluster")
	}
	checkGrowsBackAfterRecovery(t, f, cluster, sts)
}

// checkRecoveryPlanned checks the plan a recovery from member db-0 records on f's StatefulSet
// (scaled to one member, a new cluster token) and the seed init container that carries it out;
// it returns the plan.
func checkRecoveryPlanned(t *testing.T, f *stepsFixture) *seed {
	t.Helper()
	sts := f.sts(t)
	s, err := seedOf(sts.Annotations)
	if err != nil || s == nil || s.Recover != "db-0" || s.RecoverRequest != "req-1" || s.From != "" || s.Replaced != 3 || s.Revision != 500 || s.RevisionBump != fallbackRevisionBump {
		t.Fatalf("plan: %+v, %v", s, err)
	}
	if *sts.Spec.Replicas != 1 || sts.Annotations[annotationClusterToken] != s.Token || !strings.HasPrefix(s.Token, "ns-db-uid-1-recover-") {
		t.Fatalf("StatefulSet: %d replicas, token %q", *sts.Spec.Replicas, sts.Annotations[annotationClusterToken])
	}
	c, _ := seedContainerOf(t, f.client)
	if c == nil || !slices.Contains(c.Command, "--from-own-data") || arg(t, *c, "initial-cluster-token") != s.Token ||
		arg(t, *c, "revision-bump") != fmt.Sprint(fallbackRevisionBump) || arg(t, *c, "member") != "db-0" {
		t.Fatalf("seed container: %+v", c)
	}
	if slices.ContainsFunc(c.Command, func(a string) bool { return strings.HasPrefix(a, "--s3-") }) {
		t.Errorf("a recovery needs no S3 destination: %v", c.Command)
	}
	if env(t, sts.Spec.Template.Spec.Containers[0], "ETCD_INITIAL_CLUSTER_STATE") != "new" {
		t.Error("member 0 must start a new cluster")
	}
	return s
}

// checkGrowsBackAfterRecovery checks what follows a recovery once its member serves (cluster
// healthy, sts ready): the request carried out is answered ErrRecoveredAlready, a new one is
// refused, and the new cluster of one member grows back by learners.
func checkGrowsBackAfterRecovery(t *testing.T, f *stepsFixture, cluster *fakeMembership, sts *appsv1.StatefulSet) {
	t.Helper()
	ctx := context.Background()
	*cluster = *healthyCluster(1)
	sts.Status.ReadyReplicas = 1
	if _, err := f.client.AppsV1().StatefulSets("ns").UpdateStatus(ctx, sts, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The request, still recorded when its consumption failed, was carried out; a new one
	// is refused, quorum being back.
	if _, err := f.b.Recover(ctx, f.inst, backend.RecoverRequest{ID: "req-1"}); !errors.Is(err, backend.ErrRecoveredAlready) {
		t.Fatalf("the request carried out, again: %v, want ErrRecoveredAlready", err)
	}
	if _, err := f.b.Recover(ctx, f.inst, backend.RecoverRequest{ID: "req-2"}); !errors.Is(err, backend.ErrCannotRecover) || !strings.Contains(err.Error(), "quorum is not lost") {
		t.Fatalf("a new request once quorum is back: %v, want ErrCannotRecover", err)
	}
	res, err := f.b.Sync(ctx, f.inst)
	if err != nil || !slices.Equal(cluster.added, []string{fmt.Sprintf(peerURLFormat, 1)}) || reasons(res) != "MemberAdded" {
		t.Fatalf("after the recovery: %+v, %v, added %v", res, err, cluster.added)
	}
}

// Two of five answer; the most advanced survivor is member 2: members 1, 3 and 4 are discarded first, member 0 is rebuilt
// from a snapshot streamed from member 2 while member 2's pod still runs, and only then do
// member 2's pod and volume go.
func TestRecoverFromAnotherMember(t *testing.T) {
	ctx := context.Background()
	cluster := lostQuorum(5, map[int]int64{1: 400, 2: 420})
	f := newStepsFixture(t, 5, 5, 2, cluster)
	f.withVolumes(t, 5)
	f.b.opts.ToolsImage = toolsImage

	// Named by hand, a survivor behind the others: the revision is raised by etcd's margin.
	v := f.view(t)
	if o, err := v.chooseSurvivor(cluster.statuses, "db-1"); err != nil || o != 1 {
		t.Fatalf("db-1 named: %d, %v", o, err)
	}
	if s := f.b.recoveryPlan(v, cluster.statuses, 1); s.RevisionBump != fallbackRevisionBump || s.From != "http://db-1.db-peers.ns.svc.cluster.local:2379" {
		t.Fatalf("plan from db-1: %+v", s)
	}
	if o, err := v.chooseSurvivor(cluster.statuses, "db-0"); err != nil || o != 0 {
		t.Fatalf("member 0 named, not answering: %d, %v", o, err)
	}
	if s := f.b.recoveryPlan(v, cluster.statuses, 0); s.RevisionBump != fallbackRevisionBump {
		t.Fatalf("plan from member 0 that does not answer: %+v", s)
	}

	res, err := f.b.Recover(ctx, f.inst, backend.RecoverRequest{})
	if err != nil || res.StepReason != backend.StepRecovering {
		t.Fatalf("recover: %+v, %v", res, err)
	}
	sts := f.sts(t)
	s, err := seedOf(sts.Annotations)
	if err != nil || s == nil || s.Recover != "db-2" || s.From != "http://db-2.db-peers.ns.svc.cluster.local:2379" || s.RevisionBump != fallbackRevisionBump {
		t.Fatalf("plan: %+v, %v", s, err)
	}
	if *sts.Spec.Replicas != 3 {
		t.Fatalf("replicas %d: the pods up to the survivor's stay while member 0 is rebuilt", *sts.Spec.Replicas)
	}
	// While it is under way, neither a restore nor a recovery from another member takes over.
	if err := restoreRefused(sts); !errors.Is(err, snapshot.ErrRecoveryUnderWay) || !strings.Contains(err.Error(), "from member db-2") {
		t.Fatalf("a restore during the recovery: %v, want ErrRecoveryUnderWay naming db-2", err)
	}
	if _, err := f.b.Recover(ctx, f.inst, backend.RecoverRequest{Member: "db-1"}); !errors.Is(err, backend.ErrCannotRecover) || !strings.Contains(err.Error(), "db-2") {
		t.Fatalf("a recovery from db-1 during the one from db-2: %v, want ErrCannotRecover", err)
	}
	c, _ := seedContainerOf(t, f.client)
	if c == nil || arg(t, *c, "from-member") != s.From || slices.Contains(c.Command, "--from-own-data") {
		t.Fatalf("seed container: %+v", c)
	}
	f.syncUntil(t, "members 1, 3, 4 discarded, member 0 restarted", func(*backend.Result) bool {
		return slices.Equal(f.pods(t), []string{"db-2"})
	})
	if got := f.volumes(t); !slices.Equal(got, []string{"data-db-0", "data-db-2"}) {
		t.Fatalf("volumes %v while member 0 is rebuilt", got)
	}
	if _, err := f.client.CoreV1().Pods("ns").Create(ctx, readyPod("db-0", s.ID), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	res = f.syncUntil(t, "recovery ended", func(res *backend.Result) bool { return len(res.Events) > 0 })
	if reasons(res) != "Recovered" || !strings.Contains(res.Events[0].Note, "from member db-2 (revision 420") {
		t.Fatalf("events %+v", res.Events)
	}
	if got := f.pods(t); !slices.Equal(got, []string{"db-0"}) {
		t.Fatalf("pods %v after the recovery", got)
	}
	if got := f.volumes(t); !slices.Equal(got, []string{"data-db-0"}) {
		t.Fatalf("volumes %v after the recovery", got)
	}
	if _, err := f.client.CoreV1().Pods("ns").Get(ctx, "db-2", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the survivor's pod: %v", err)
	}
	if n, _ := f.statefulSet(t); n != 1 {
		t.Fatalf("replicas %d", n)
	}
}

// A pod that runs the recovery's template on a new volume (the StatefulSet recreated a
// discarded member) is left alone until the StatefulSet shrinks.
func TestRecoverLeavesPodsOfTheNewTemplate(t *testing.T) {
	f := newStepsFixture(t, 3, 3, 1, lostQuorum(3, map[int]int64{0: 1}))
	pod := readyPod("db-1", "recover-1")
	pod.Status = corev1.PodStatus{}
	if _, err := f.client.CoreV1().Pods("ns").Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	v := f.view(t)
	s := &seed{ID: "recover-1", Recover: "db-2", Replaced: 3}
	if stopped, err := f.b.discardMember(context.Background(), v, s, 1); err != nil || !stopped || len(f.pods(t)) != 1 {
		t.Fatalf("before the shrink: stopped %t, %v, pods %v", stopped, err, f.pods(t))
	}
	s.Seeded = true
	if stopped, err := f.b.discardMember(context.Background(), v, s, 1); err != nil || stopped || len(f.pods(t)) != 0 {
		t.Fatalf("after the shrink: stopped %t, %v, pods %v", stopped, err, f.pods(t))
	}
}

// On a TLS instance member 0 streams the survivor's snapshot with the instance's client
// certificate, from the TLS Secret's volume; rebuilding from its own data needs neither.
func TestRecoverInitContainerUsesTheClientCertificate(t *testing.T) {
	f := newStepsFixture(t, 3, 3, 1, lostQuorum(3, map[int]int64{2: 1}))
	b := f.b
	b.opts.ToolsImage = toolsImage
	inst := testInstance() // TLS enabled
	s := &seed{ID: "recover-1", Recover: "db-2", From: b.clientURL(inst, 2), Token: "t", RevisionBump: revisionMargin}
	c := b.seedInitContainer(inst, b.seedConfig(inst, s))
	if arg(t, c, "from-member") != "https://db-2.db-peers.ns.svc.cluster.local:2379" || arg(t, c, "client-cert") != tlsDir+"/"+SecretClientCert ||
		arg(t, c, "client-key") != tlsDir+"/"+SecretClientKey || arg(t, c, "trusted-ca") != tlsDir+"/"+SecretCACert {
		t.Fatalf("command %v", c.Command)
	}
	if !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == tlsVolume && m.ReadOnly }) {
		t.Fatalf("mounts %v: the TLS Secret is needed", c.VolumeMounts)
	}
	s.From = ""
	c = b.seedInitContainer(inst, b.seedConfig(inst, s))
	if !slices.Contains(c.Command, "--from-own-data") || len(c.VolumeMounts) != 1 || len(c.Env) != 1 {
		t.Fatalf("from its own data: command %v, mounts %v, env %v", c.Command, c.VolumeMounts, c.Env)
	}
}

// Member 0 named while it does not answer is rebuilt from its own database, and the other
// members' volumes are deleted first: it is refused when the StatefulSet records that member
// 0 does not hold the cluster's data — a replacement of member 0 under way (it is a learner
// on a new volume, or not even that yet) or its volume claim replaced since it was seen
// healthy — while a voting member that answers still holds it. Nothing is planned or deleted.
func TestRecoverRefusesMemberZeroWithoutItsData(t *testing.T) {
	ctx := context.Background()
	for name, annotations := range map[string]map[string]string{
		"member 0 being replaced":   {annotationReplacement: `{"ordinal":0,"oldID":"64","why":"down"}`},
		"member 0's claim replaced": {annotationMemberVolumes: `{"db-0":{"member":"64","claim":"claim-old"},"db-1":{"member":"65","claim":"claim-1"}}`},
	} {
		t.Run(name, func(t *testing.T) {
			cluster := lostQuorum(3, map[int]int64{1: 500})
			f := newStepsFixture(t, 3, 3, 1, cluster)
			f.withVolumes(t, 3)
			f.b.opts.ToolsImage = toolsImage
			sts := f.sts(t)
			for k, val := range annotations {
				sts.Annotations[k] = val
			}
			if _, err := f.client.AppsV1().StatefulSets("ns").Update(ctx, sts, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
			_, err := f.b.Recover(ctx, f.inst, backend.RecoverRequest{ID: "req-1", Member: "db-0"})
			if !errors.Is(err, backend.ErrCannotRecover) || !strings.Contains(err.Error(), "member db-0") {
				t.Fatalf("recover from db-0: %v, want ErrCannotRecover naming db-0", err)
			}
			if _, ok := f.sts(t).Annotations[annotationSeed]; ok {
				t.Error("a refused recovery recorded a plan")
			}
			if got := f.volumes(t); !slices.Equal(got, []string{"data-db-0", "data-db-1", "data-db-2"}) {
				t.Errorf("volumes %v after a refused recovery", got)
			}
			// Unnamed, the voting member that answers is chosen.
			if o, err := f.view(t).chooseSurvivor(cluster.statuses, ""); err != nil || o != 1 {
				t.Errorf("survivor %d, %v; want db-1", o, err)
			}
		})
	}
}
