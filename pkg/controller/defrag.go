package controller

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/controller/backend"
	"github.com/etcdaas/etcdaas/pkg/etcdcluster"
)

// Defaults of automatic defragmentation.
const (
	// DefaultDefragFreePercent is the default share of a member's database file, in percent,
	// that must be free before it is defragmented.
	DefaultDefragFreePercent = 50
	// DefaultDefragFreeBytes is the default number of free bytes in a member's database file
	// before it is defragmented.
	DefaultDefragFreeBytes = 64 << 20
	// DefaultDefragTimeout bounds the defragmentation of one member.
	DefaultDefragTimeout = 5 * time.Minute
)

// alarmNoSpace is the alarm etcd raises when a member's database reaches its quota.
const alarmNoSpace = "NOSPACE"

// NoSpaceInterval is how often the controller looks at an instance whose members are out of
// space (and otherwise ready) for a compaction of its history: a compaction sends no event,
// and a backoff growing while the alarm lasts would leave the instance refusing writes long
// after its keys were compacted.
const NoSpaceInterval = 2 * time.Second

// DefragOptions configure when members are defragmented. spec.defragmentation overrides the
// thresholds per instance.
type DefragOptions struct {
	// FreePercent is the share of a member's database file, in percent (1..100), that must be
	// free (dbSize - dbSizeInUse) before the member is defragmented. Zero means
	// DefaultDefragFreePercent, and then a zero FreeBytes means DefaultDefragFreeBytes.
	FreePercent int32
	// FreeBytes is how many bytes of the file must be free as well.
	FreeBytes int64
	// Timeout bounds the defragmentation of one member (default DefaultDefragTimeout).
	Timeout time.Duration
}

// withDefaults fills what o leaves unset.
func (o DefragOptions) withDefaults() DefragOptions {
	if o.FreePercent == 0 {
		o.FreePercent = DefaultDefragFreePercent
		if o.FreeBytes == 0 {
			o.FreeBytes = DefaultDefragFreeBytes
		}
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultDefragTimeout
	}
	return o
}

// defragThresholds are the thresholds that apply to one instance.
type defragThresholds struct {
	freePercent int32
	freeBytes   int64
}

// thresholds are the controller's defaults overridden by inst's spec.defragmentation.
func (o DefragOptions) thresholds(inst *v1beta1.ETCDInstance) defragThresholds {
	t := defragThresholds{freePercent: o.FreePercent, freeBytes: o.FreeBytes}
	if d := inst.Spec.Defragmentation; d != nil {
		if d.FreePercent != nil {
			t.freePercent = *d.FreePercent
		}
		if d.FreeBytes != nil {
			t.freeBytes = d.FreeBytes.Value()
		}
	}
	return t
}

// due reports whether a member with the given database sizes has enough free space to be
// defragmented: both thresholds are reached and something is free at all.
func (t defragThresholds) due(dbSize, inUse int64) bool {
	free := dbSize - inUse
	return free > 0 && free >= t.freeBytes && free*100 >= int64(t.freePercent)*dbSize
}

// defragmenter defragments the members of instances in rounds, one member per reconcile. A
// round starts when a member's free space passes the thresholds (automatic) or when a person
// requests one (on demand), and covers every member once, the followers first and the leader
// last: members hold the same data, so when one has space to return the others have too,
// even if they report it only at their next commit. Before the leader is defragmented its
// leadership goes to another member (see handOver): a member being defragmented applies
// nothing, and as the leader it would hold up every write of the cluster.
type defragmenter struct {
	opts   DefragOptions
	dialer etcdcluster.Dialer
	// moveLeaderAway and defragment are etcdcluster.MoveLeaderAway and
	// etcdcluster.Defragment; tests wrap them to see when they run.
	moveLeaderAway func(ctx context.Context, access *etcdcluster.Access, from uint64, members []etcdcluster.Member, statuses []etcdcluster.EndpointStatus) error
	defragment     func(ctx context.Context, access *etcdcluster.Access, endpoint string, timeout time.Duration) error

	mu sync.Mutex
	// rounds are the rounds under way, by instance.
	rounds map[types.UID]*defragRound
	// oldest is, by instance whose members are out of space, the oldest revision of its
	// history that could be read when it was last looked at.
	oldest map[types.UID]historyMark
}

// historyMark is the oldest readable revision of an instance (namespace/name) out of space.
type historyMark struct {
	instance string
	oldest   int64
}

// defragRound is a round under way: the instance (namespace/name), the on-demand request it
// serves (its annotation value; empty for an automatic round) and the members it
// defragmented.
type defragRound struct {
	instance string
	request  string
	done     []string
}

func newDefragmenter(opts DefragOptions, dialer etcdcluster.Dialer) *defragmenter {
	return &defragmenter{opts: opts.withDefaults(), dialer: dialer,
		moveLeaderAway: etcdcluster.MoveLeaderAway, defragment: etcdcluster.Defragment,
		rounds: map[types.UID]*defragRound{}, oldest: map[types.UID]historyMark{}}
}

// forget drops the round of the instance with key namespace/name (whatever its UID): the
// instance is deleted, or gone.
func (d *defragmenter) forget(key string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for uid, r := range d.rounds {
		if r.instance == key {
			delete(d.rounds, uid)
		}
	}
	for uid, m := range d.oldest {
		if m.instance == key {
			delete(d.oldest, uid)
		}
	}
}

// round returns the round of inst under way or starting now, and the members it covered; ok
// is false when there is none. An on-demand request replaces an automatic round; a newer
// request starts over. An automatic round starts when a member of members is due, or when
// the history of an instance out of space was compacted.
func (d *defragmenter) round(inst *v1beta1.ETCDInstance, members []v1beta1.MemberStatus, t defragThresholds, compacted bool) (request string, done []string, ok bool) {
	request, requested := inst.Annotations[etcdaas.DefragRequestedAnnotation]
	d.mu.Lock()
	defer d.mu.Unlock()
	r := d.rounds[inst.UID]
	key := instanceKey(inst)
	switch {
	case requested && (r == nil || r.request != request):
		r = &defragRound{instance: key, request: request}
	case !requested && r != nil && r.request != "":
		r = nil // the request was consumed: its round is over
	}
	if r == nil && (compacted || slices.ContainsFunc(members, func(m v1beta1.MemberStatus) bool { return t.due(m.DBSize, m.DBSizeInUse) })) {
		r = &defragRound{instance: key}
	}
	if r == nil {
		delete(d.rounds, inst.UID)
		return "", nil, false
	}
	d.rounds[inst.UID] = r
	return r.request, slices.Clone(r.done), true
}

// markDone records that the round serving request defragmented member. An automatic round
// that covered every one of members is over.
func (d *defragmenter) markDone(uid types.UID, request, member string, members []v1beta1.MemberStatus) {
	d.mu.Lock()
	defer d.mu.Unlock()
	r := d.rounds[uid]
	if r == nil || r.request != request {
		return
	}
	if !slices.Contains(r.done, member) {
		r.done = append(r.done, member)
	}
	if r.request == "" && next(members, r.done, "") < 0 {
		delete(d.rounds, uid)
	}
}

// covered reports whether the round serving the on-demand request covered every one of
// members.
func (d *defragmenter) covered(uid types.UID, request string, members []v1beta1.MemberStatus) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	r := d.rounds[uid]
	return r != nil && r.request == request && next(members, r.done, "") < 0
}

// next chooses the member a round defragments next among members: one it has not covered,
// a follower before the leader (the member with ID leaderID). It returns -1 when the round
// covered every member.
func next(members []v1beta1.MemberStatus, done []string, leaderID string) int {
	leader := -1
	for i, m := range members {
		if slices.Contains(done, m.Name) {
			continue
		}
		if m.ID != leaderID {
			return i
		}
		leader = i
	}
	return leader
}

// outOfSpace reports whether etcd raised its NOSPACE alarm on m.
func outOfSpace(m v1beta1.MemberStatus) bool { return slices.Contains(m.Alarms, alarmNoSpace) }

// stable reports whether res shows a cluster whose membership is not changing: no step under
// way, quorum, and only voting members that started.
func stable(res *backend.Result) bool {
	return res != nil && res.Step == "" && res.QuorumLost == "" && len(res.Members) > 0 &&
		!slices.ContainsFunc(res.Members, func(m v1beta1.MemberStatus) bool { return m.Learner || m.ID == "" })
}

// mayDefragment reports whether a Sync's result lets a defragmentation run: a stable cluster
// whose members are all ready, or some out of space (a NOSPACE alarm makes members unready,
// and defragmentation is what clears it). defragment checks the members' health itself before
// it starts.
func mayDefragment(res *backend.Result, syncErr error) bool {
	return syncErr == nil && stable(res) && (res.Converged || slices.ContainsFunc(res.Members, outOfSpace))
}

// waitingForSpace reports whether res shows members that are out of space with nothing else
// wrong: a stable cluster, no stalled work, every other member ready. Only a compaction (and
// then a defragmentation) helps them.
func waitingForSpace(res *backend.Result) bool {
	return stable(res) && res.Stalled == "" && slices.ContainsFunc(res.Members, outOfSpace) &&
		!slices.ContainsFunc(res.Members, func(m v1beta1.MemberStatus) bool { return !m.Ready && !outOfSpace(m) })
}

// compactedOutOfSpace reports whether the history of inst was compacted while its members
// were out of space, or, when they are first seen so, compacted up to its head revision.
// That is when a defragmentation can return space, and the members may not show it: etcd
// counts the pages a compaction frees as free (dbSize - dbSizeInUse) only after later
// commits of the database, which a member refusing writes may not make.
func (d *defragmenter) compactedOutOfSpace(ctx context.Context, inst *v1beta1.ETCDInstance, members []v1beta1.MemberStatus, dial accessFunc) bool {
	d.mu.Lock()
	mark, seen := d.oldest[inst.UID]
	if !slices.ContainsFunc(members, outOfSpace) {
		delete(d.oldest, inst.UID)
		d.mu.Unlock()
		return false
	}
	d.mu.Unlock()
	access, err := dial()
	if err != nil {
		return false
	}
	h, err := etcdcluster.ReadHistory(ctx, access, mark.oldest)
	if err != nil {
		klog.V(2).InfoS("Could not read how far the history was compacted", "instance", instanceKey(inst), "err", err)
		return false
	}
	d.mu.Lock()
	d.oldest[inst.UID] = historyMark{instance: instanceKey(inst), oldest: h.Oldest}
	d.mu.Unlock()
	if seen {
		return h.Oldest > mark.oldest
	}
	return h.Oldest == h.Head
}

// accessFunc returns how to reach the members of an instance.
type accessFunc func() (*etcdcluster.Access, error)

// accessOnce asks the dialer how to reach inst's members at most once, however often the
// result is used: the kubernetes backend reads the instance's StatefulSet and Secret for it.
func (d *defragmenter) accessOnce(ctx context.Context, inst *v1beta1.ETCDInstance) accessFunc {
	return sync.OnceValues(func() (*etcdcluster.Access, error) { return d.dialer.Access(ctx, inst.Namespace, inst.Name) })
}

// step defragments at most one member of inst after a Sync that returned res and syncErr,
// records what it did as Events in res and updates the member's sizes in res. It reports
// whether it defragmented a member; an error means the defragmentation (or disarming the
// NOSPACE alarm after it) failed.
func (d *defragmenter) step(ctx context.Context, inst *v1beta1.ETCDInstance, res *backend.Result, syncErr error) (bool, error) {
	if !mayDefragment(res, syncErr) {
		return false, nil
	}
	t := d.opts.thresholds(inst)
	dial := d.accessOnce(ctx, inst)
	compacted := d.compactedOutOfSpace(ctx, inst, res.Members, dial)
	request, done, ok := d.round(inst, res.Members, t, compacted)
	if !ok || next(res.Members, done, "") < 0 {
		return false, nil
	}
	view, err := d.healthyCluster(ctx, dial)
	if err != nil {
		klog.V(2).InfoS("Not defragmenting while the cluster is not healthy", "instance", inst.Namespace+"/"+inst.Name, "reason", err)
		return false, nil
	}
	access := view.access
	// The leader as the members report it now: a member out of space is not ready, and its
	// result does not flag it as the leader.
	i := next(res.Members, done, view.leaderID())
	target := &res.Members[i]
	before, ok := statusOf(view.statuses, target.ID)
	if !ok {
		return false, nil
	}
	role, handedOver := "follower", ""
	if before.MemberID == view.leader {
		role = "leader"
		if handedOver, err = d.handOver(ctx, view, before, res.Members); err != nil {
			res.Record(backend.ReasonDefragmentFailed, "Not defragmenting member %s (leader) yet: %v; "+
				"defragmenting the leader would hold up every write of the cluster, so it waits for the next look", target.Name, err)
			return false, fmt.Errorf("moving leadership away from member %s before defragmenting it: %w", target.Name, err)
		}
	}
	started := time.Now()
	if err := d.defragment(ctx, access, before.Endpoint, d.opts.Timeout); err != nil {
		res.Record(backend.ReasonDefragmentFailed, "Defragmenting member %s (%s) failed: %v", target.Name, role, err)
		return false, err
	}
	took := time.Since(started).Round(time.Millisecond)
	after := etcdcluster.Status(ctx, access, before.Endpoint)
	note, freed := defragmentedNote(target.Name, role, took, before, after)
	note += handedOver
	disarmed, err := disarmIfFreed(ctx, access, before, after, freed, t.freeBytes)
	res.Record(backend.ReasonDefragmented, "%s", note+disarmed)
	if err != nil {
		return true, err
	}
	klog.InfoS("Defragmented an etcd member", "instance", inst.Namespace+"/"+inst.Name, "member", target.Name, "role", role,
		"before", before.DBSize, "after", after.DBSize, "duration", took)
	if after.MemberID != 0 {
		*target = backend.WithEndpointStatus(*target, after)
	}
	d.markDone(inst.UID, request, target.Name, res.Members)
	return true, nil
}

// defragmentedNote is the note of the Defragmented event of member name (role, defragmented
// in took; its status before and after), with the bytes the defragmentation freed: 0 when
// its new size could not be read.
func defragmentedNote(name, role string, took time.Duration, before, after etcdcluster.EndpointStatus) (string, int64) {
	if after.MemberID == 0 {
		return fmt.Sprintf("Defragmented member %s (%s) in %s: database file was %s; its new size could not be read: %v",
			name, role, took, bytesString(before.DBSize), after.Err), 0
	}
	return fmt.Sprintf("Defragmented member %s (%s) in %s: database file %s -> %s (%s in use)",
		name, role, took, bytesString(before.DBSize), bytesString(after.DBSize), bytesString(after.DBSizeInUse)), before.DBSize - after.DBSize
}

// disarmIfFreed disarms the NOSPACE alarm a defragmented member raised (its status before
// and after) once the defragmentation freed at least freeBytes, and returns what to add to
// the event's note about the alarm: nothing without the alarm, or with an error disarming it.
func disarmIfFreed(ctx context.Context, access *etcdcluster.Access, before, after etcdcluster.EndpointStatus, freed, freeBytes int64) (string, error) {
	if !slices.Contains(before.Alarms, alarmNoSpace) || after.MemberID == 0 {
		return "", nil
	}
	if freed <= 0 || freed < freeBytes {
		return fmt.Sprintf("; NOSPACE alarm kept: %s freed, %s needed", bytesString(freed), bytesString(max(freeBytes, 1))), nil
	}
	if err := etcdcluster.DisarmNoSpace(ctx, access, before.MemberID); err != nil {
		return "", err
	}
	return "; NOSPACE alarm disarmed", nil
}

// clusterView is what healthyCluster saw of a cluster: how to reach its members, its
// membership, their statuses and the leader's ID.
type clusterView struct {
	access   *etcdcluster.Access
	members  []etcdcluster.Member
	statuses []etcdcluster.EndpointStatus
	leader   uint64
}

// leaderID is the leader's hexadecimal ID, as member statuses give it.
func (v clusterView) leaderID() string { return etcdcluster.FormatID(v.leader) }

// healthyCluster checks, right before a defragmentation, that every member of the cluster is
// a voting member that serves (a leader and a linearizable read) with no alarm other than
// NOSPACE, and returns what it saw.
func (d *defragmenter) healthyCluster(ctx context.Context, dial accessFunc) (clusterView, error) {
	access, err := dial()
	if err != nil {
		return clusterView{}, err
	}
	cli, err := access.New()
	if err != nil {
		return clusterView{}, err
	}
	members, err := etcdcluster.MemberList(ctx, cli)
	_ = cli.Close()
	if err != nil {
		return clusterView{}, err
	}
	statuses := etcdcluster.StatusAll(ctx, access, access.Endpoints)
	var leader uint64
	for _, m := range members {
		if m.IsLearner {
			return clusterView{}, fmt.Errorf("member %s is a learner", m.Name)
		}
		st, ok := statusOf(statuses, m.IDString())
		if !ok || !st.Serving {
			return clusterView{}, fmt.Errorf("member %s does not serve", m.Name)
		}
		if slices.ContainsFunc(st.Alarms, func(a string) bool { return a != alarmNoSpace }) {
			return clusterView{}, fmt.Errorf("member %s has alarms %v", m.Name, st.Alarms)
		}
		if leader != 0 && st.Leader != leader {
			return clusterView{}, fmt.Errorf("members disagree on the leader: %s and %s", etcdcluster.FormatID(leader), etcdcluster.FormatID(st.Leader))
		}
		leader = st.Leader
	}
	return clusterView{access: access, members: members, statuses: statuses, leader: leader}, nil
}

// handOver moves leadership away from leader, the member a round defragments next, to
// another healthy voting member, as the upgrade roll does, and checks that leader follows
// now. It returns what the Defragmented Event adds: which member leads now, or why nothing was
// moved. A cluster of one member has nobody to hand over to (its writes wait while it is
// defragmented); a cluster whose NOSPACE alarm refuses writes has nothing to lose by waiting
// (MoveLeaderAway would find no healthy member; the defragmentation is what lets it disarm the
// alarm).
func (d *defragmenter) handOver(ctx context.Context, view clusterView, leader etcdcluster.EndpointStatus, members []v1beta1.MemberStatus) (string, error) {
	if len(view.members) < 2 {
		return "", nil
	}
	if slices.ContainsFunc(view.statuses, func(st etcdcluster.EndpointStatus) bool { return slices.Contains(st.Alarms, alarmNoSpace) }) {
		return "; leadership not moved: the NOSPACE alarm refused writes anyway", nil
	}
	if err := d.moveLeaderAway(ctx, view.access, leader.MemberID, view.members, view.statuses); err != nil {
		return "", fmt.Errorf("moving leadership to another member failed: %w", err)
	}
	now := etcdcluster.Status(ctx, view.access, leader.Endpoint)
	if now.MemberID == 0 {
		return "", fmt.Errorf("its status after moving leadership could not be read: %w", now.Err)
	}
	if now.Leader == 0 || now.Leader == leader.MemberID {
		return "", fmt.Errorf("leadership did not move: the member reports leader %s", etcdcluster.FormatID(now.Leader))
	}
	name := etcdcluster.FormatID(now.Leader)
	if i := slices.IndexFunc(members, func(m v1beta1.MemberStatus) bool { return m.ID == name }); i >= 0 {
		name = members[i].Name
	}
	return fmt.Sprintf("; leadership moved to member %s first, which leads now", name), nil
}

// statusOf finds the status of the member with the given hexadecimal ID.
func statusOf(statuses []etcdcluster.EndpointStatus, id string) (etcdcluster.EndpointStatus, bool) {
	for _, st := range statuses {
		if st.MemberID != 0 && etcdcluster.FormatID(st.MemberID) == id {
			return st, true
		}
	}
	return etcdcluster.EndpointStatus{}, false
}

// bytesString formats a size the way Kubernetes quantities print, such as "12Mi".
func bytesString(n int64) string {
	return resource.NewQuantity(n, resource.BinarySI).String()
}

// finishDefragRequest removes an on-demand request once its round covered every member, unless a newer
// request replaced it meanwhile; that one starts over.
func (c *Controller) finishDefragRequest(ctx context.Context, inst *v1beta1.ETCDInstance, res *backend.Result) error {
	value, requested := inst.Annotations[etcdaas.DefragRequestedAnnotation]
	if !requested || res == nil || len(res.Members) == 0 {
		return nil
	}
	if !c.defrag.covered(inst.UID, value, res.Members) {
		return nil
	}
	client := c.opts.Client.EtcdaasV1beta1().ETCDInstances(inst.Namespace)
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		latest, err := client.Get(ctx, inst.Name, metav1.GetOptions{})
		if err != nil || latest.UID != inst.UID || latest.Annotations[etcdaas.DefragRequestedAnnotation] != value {
			return err
		}
		updated := latest.DeepCopy()
		delete(updated.Annotations, etcdaas.DefragRequestedAnnotation)
		_, err = client.UpdateStatus(ctx, updated, metav1.UpdateOptions{})
		return err
	})
}
