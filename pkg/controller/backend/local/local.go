// Package local is the controller backend that runs every member of an etcd cluster as an
// embedded etcd server (go.etcd.io/etcd/server/v3/embed) in the controller's process, on
// free 127.0.0.1 ports, with data under DIR/instances/<namespace>/<name>/<member>. It is
// what standalone mode and the tests use.
package local

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/api/v3/version"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"k8s.io/klog/v2"

	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/controller/backend"
	"github.com/etcdaas/etcdaas/pkg/durable"
	"github.com/etcdaas/etcdaas/pkg/embedetcd"
	"github.com/etcdaas/etcdaas/pkg/etcdcluster"
	"github.com/etcdaas/etcdaas/pkg/loopback"
	"github.com/etcdaas/etcdaas/pkg/pki"
)

// Options configure the local backend.
type Options struct {
	// Dir is the data directory; instances live under Dir/instances.
	Dir string
	// SnapshotCount is etcd's --snapshot-count (0: 10000).
	SnapshotCount uint64
	// SnapshotCatchUpEntries is how many raft entries a member keeps for slow followers
	// after a snapshot (0: 5000).
	SnapshotCatchUpEntries uint64
	// QuotaBackendBytes is etcd's --quota-backend-bytes (0: etcd's default, 2 GiB).
	QuotaBackendBytes int64
	// AutoCompaction is how members compact their history by themselves (empty fields:
	// backend.AutoCompaction's defaults, periodic with a retention of an hour).
	AutoCompaction backend.AutoCompaction
	// LogLevel is the members' log level (default "warn").
	LogLevel string
	// LogToStderr sends the members' logs to stderr instead of a file per member,
	// DIR/instances/<namespace>/<name>/<member>.log.
	LogToStderr bool
	// StepTimeout bounds one membership step such as starting a member or promoting a
	// learner (default 60s).
	StepTimeout time.Duration
	// RestoreSource opens the backups spec.restoreFrom names; nil makes an instance with
	// spec.restoreFrom fail permanently.
	RestoreSource backend.RestoreSource
	// MemberRepairGracePeriod is how long a voting member may stay unhealthy (its embedded
	// server keeps dying, or its data directory is lost or corrupt so that it cannot start)
	// before it is replaced by a new member (0: backend.DefaultMemberRepairGracePeriod;
	// negative: never).
	MemberRepairGracePeriod time.Duration
	// JoinDeadline is how long a member added by a scale-up or as the successor of a
	// replaced member may fail to start or to be promoted, or be found behind its leader when
	// promoted, before the instance is reported blocked on it, reason MemberNotJoining (0:
	// backend.JoinDeadline).
	JoinDeadline time.Duration
}

// Backend runs members as embedded etcd servers. It is safe for concurrent use on different
// instances; calls for one instance must not overlap (the controller's workqueue ensures it).
type Backend struct {
	Dialer
	opts Options

	mu      sync.Mutex
	closed  bool
	running map[string]*embedetcd.Etcd // by data directory
	// startErrs are why members could not start, by data directory.
	startErrs map[string]error
	// died are the members whose server stopped on its own, by data directory, until
	// ensureRunning restarts them.
	died map[string]bool
	// health is since when members have been unhealthy, by data directory.
	health *backend.HealthClock
	// promote promotes a learner (etcdcluster.Promote); the tests make etcd find it behind.
	promote func(ctx context.Context, cli *clientv3.Client, id uint64) error
	// ports returns n distinct TCP ports on 127.0.0.1 that are free (loopback.FreePorts); the
	// tests make it return ports recorded for members.
	ports func(n int) ([]int, error)
}

// errClosed is returned for work asked of a closed backend.
var errClosed = errors.New("local backend is closed")

// setStartError records why the member m could not start (nil: it started).
func (b *Backend) setStartError(dir string, m *memberState, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err == nil {
		delete(b.startErrs, filepath.Join(dir, m.Name))
	} else {
		b.startErrs[filepath.Join(dir, m.Name)] = err
	}
}

// startError is why the member m last failed to start, nil when it did not fail.
func (b *Backend) startError(dir string, m *memberState) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.startErrs[filepath.Join(dir, m.Name)]
}

var _ backend.Backend = &Backend{}

// New returns a local backend storing instances under opts.Dir.
func New(opts Options) (*Backend, error) {
	if opts.Dir == "" {
		return nil, errors.New("local backend: a data directory is required")
	}
	abs, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	opts.Dir = abs
	if opts.SnapshotCount == 0 {
		opts.SnapshotCount = 10000
	}
	if opts.SnapshotCatchUpEntries == 0 {
		opts.SnapshotCatchUpEntries = 5000
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "warn"
	}
	opts.AutoCompaction = opts.AutoCompaction.WithDefaults()
	if err := opts.AutoCompaction.Validate(); err != nil {
		return nil, fmt.Errorf("local backend: %w", err)
	}
	if opts.StepTimeout == 0 {
		opts.StepTimeout = 60 * time.Second
	}
	if opts.MemberRepairGracePeriod == 0 {
		opts.MemberRepairGracePeriod = backend.DefaultMemberRepairGracePeriod
	}
	if opts.JoinDeadline == 0 {
		opts.JoinDeadline = backend.JoinDeadline
	}
	if err := durable.MkdirAll(filepath.Join(abs, "instances"), 0o700); err != nil {
		return nil, err
	}
	return &Backend{Dialer: Dialer{Dir: abs}, opts: opts, running: map[string]*embedetcd.Etcd{}, startErrs: map[string]error{},
		died: map[string]bool{}, health: &backend.HealthClock{Grace: opts.MemberRepairGracePeriod}, promote: promoteBounded, ports: loopback.FreePorts}, nil
}

// EmbeddedVersion is the etcd minor version the local backend runs, such as "3.7".
func EmbeddedVersion() string {
	parts := strings.SplitN(version.Version, ".", 3)
	if len(parts) < 2 {
		return version.Version
	}
	return parts[0] + "." + parts[1]
}

// EmbeddedRelease is the etcd release the local backend runs, such as "3.7.3".
func EmbeddedRelease() string { return version.Version }

// checkVersion accepts an empty version and the embedded minor version (with or without a
// leading "v" or a patch matching the embedded one).
func checkVersion(v string) error {
	want := EmbeddedVersion()
	v = strings.TrimPrefix(v, "v")
	if v == "" || v == want || v == version.Version {
		return nil
	}
	return backend.Permanent("UnsupportedVersion", "etcd version %q is not available: the local backend only runs the embedded etcd %s (spec.version %q or empty)", v, version.Version, want)
}

// Sync implements backend.Backend: it starts the first member, resumes a change an earlier
// call left half done, or, once every member is healthy, takes the next step toward the
// spec. After a step it reports the members as they are after it.
func (b *Backend) Sync(ctx context.Context, inst *v1beta1.ETCDInstance) (*backend.Result, error) {
	res, err := b.sync(ctx, inst)
	if pe, refused := backend.IsPermanent(checkVersion(inst.Spec.Version)); refused && res != nil {
		// prepare let an instance that has members go on with them: they run the embedded etcd.
		res.Refuse(pe, fmt.Sprintf("the members keep running the embedded etcd %s", version.Version))
	}
	return res, err
}

// sync is Sync but for the report of a spec.version the backend cannot run.
func (b *Backend) sync(ctx context.Context, inst *v1beta1.ETCDInstance) (*backend.Result, error) {
	dir, st, err := b.prepare(inst)
	if err != nil {
		return nil, err
	}
	// A recovery from quorum loss under way is finished first: a restore staged meanwhile
	// (neither refuses the other when both pass their checks at once) runs after it, on a
	// cluster whose discarded members are gone.
	if st.Recovery != nil {
		res, err := b.finishRecovery(ctx, dir, st, backend.DesiredReplicas(inst))
		return b.withMembers(ctx, dir, st, res), err
	}
	// A restore replaces the cluster: nothing else happens until it is done.
	if res, restoring, err := b.pendingRestoreStep(ctx, dir, st); restoring {
		return b.withMembers(ctx, dir, st, res), err
	}
	if len(st.Members) == 0 || st.Members[0].ID == "" {
		res, err := b.startFirstMember(ctx, dir, st, inst)
		return b.withMembers(ctx, dir, st, res), err
	}
	// Every recorded member that belongs to the cluster runs here.
	if err := b.ensureRunning(ctx, dir, st); err != nil {
		return nil, err
	}
	if res, resumed, err := b.resumeOrRepair(ctx, dir, st, inst); resumed {
		return b.withMembers(ctx, dir, st, res), err
	}
	access, err := accessFor(dir, st, true)
	if err != nil {
		return nil, err
	}
	if err := b.settleReplacement(dir, st, inst); err != nil {
		return nil, err
	}
	observed, members, err := b.observe(ctx, dir, access, st)
	if err != nil {
		return observed, err
	}
	health := b.noteHealth(dir, st, observed)
	if observed.Unhealthy != "" {
		// Every member must be healthy before the next step, but for replacing one.
		if res, stepped, err := b.repairStep(ctx, dir, st, inst, observed, health); stepped {
			return b.withMembers(ctx, dir, st, res), err
		}
		return observed, nil
	}
	if unknown, ok := st.unknownMember(members); ok {
		res, err := b.removeUnknown(ctx, access, unknown)
		return b.withMembers(ctx, dir, st, res), err
	}
	if res, stepped, err := b.stepTowardSpec(ctx, dir, st, inst); stepped {
		return b.withMembers(ctx, dir, st, res), err
	}
	observed.Converged = true
	return observed, nil
}

// prepare checks inst's version and name, and gives its directory and its state, loaded or
// initialized, with its certificates in place when it serves TLS. A version the backend
// cannot run stops only a new instance: one that has members goes on with them (Sync reports
// the version refused).
func (b *Backend) prepare(inst *v1beta1.ETCDInstance) (string, *instanceState, error) {
	dir, err := instanceDir(b.opts.Dir, inst.Namespace, inst.Name)
	if err != nil {
		return "", nil, backend.Permanent("InvalidName", "%v", err)
	}
	if err := checkVersion(inst.Spec.Version); err != nil && !hasMembers(dir, inst) {
		return "", nil, err
	}
	st, err := b.loadOrInit(dir, inst)
	if err != nil {
		return "", nil, err
	}
	if st.TLS {
		newCA, err := ensurePKI(dir, inst.Namespace, inst.Name)
		if newCA && len(st.Members) > 0 {
			// The CA's files were deleted (the fix for a damaged CA) and a new CA issued the
			// certificates again. etcd reads its trusted CA only at start: running members
			// would refuse each other's and the controller's new certificates, so they
			// restart, all at once since no mix of old and new trust can talk, and the
			// ensureRunning that follows starts them again from their data.
			klog.InfoS("A new CA was made for the instance: restarting its members to trust it", "instance", klog.KObj(inst))
			b.stopInstance(dir, st)
		}
		if err != nil {
			return "", nil, err
		}
	}
	return dir, st, nil
}

// hasMembers reports whether the instance inst, whose directory is dir, has started its
// first member.
func hasMembers(dir string, inst *v1beta1.ETCDInstance) bool {
	st, err := loadState(dir)
	return err == nil && st.UID == string(inst.UID) && len(st.Members) > 0 && st.Members[0].ID != ""
}

// resumeOrRepair resumes a change an earlier call left half done (resumed is true then); a
// join that waits for an unhealthy voting member gives way to that member's repair.
func (b *Backend) resumeOrRepair(ctx context.Context, dir string, st *instanceState, inst *v1beta1.ETCDInstance) (res *backend.Result, resumed bool, err error) {
	res, resumed, err = b.resumeChange(ctx, dir, st, inst)
	if !resumed || err != nil || !st.joinWaits(res) {
		return res, resumed, err
	}
	// A join waits for every voting member to be healthy; one that is not may be due for
	// replacement (or, with repair off, never come back), which must not wait for the join
	// in turn.
	if rres, stepped, rerr := b.repairStep(ctx, dir, st, inst, res, b.noteHealth(dir, st, res)); stepped {
		return rres, true, rerr
	}
	return res, true, nil
}

// withMembers adds the members as they are after a step to the step's result, unless the
// step already observed them (a step that waits for unhealthy members does). The result is
// about the step: failing to observe leaves the members out.
func (b *Backend) withMembers(ctx context.Context, dir string, st *instanceState, res *backend.Result) *backend.Result {
	if res == nil || res.Members != nil || len(st.Members) == 0 {
		return res
	}
	access, err := accessFor(dir, st, true)
	if err != nil {
		return res
	}
	if observed, _, err := b.observe(ctx, dir, access, st); err == nil {
		res.Members = observed.Members
	}
	return res
}

// resumeChange finishes a join or a removal an earlier call recorded but did not finish. A
// scale-up's join that spec.replicas no longer asks for is given up: its member is removed
// instead, which is how a person unblocks a member that never joins. It reports whether
// there was a change to finish.
func (b *Backend) resumeChange(ctx context.Context, dir string, st *instanceState, inst *v1beta1.ETCDInstance) (*backend.Result, bool, error) {
	for i := range st.Members {
		m := &st.Members[i]
		switch m.Phase {
		case phaseRemoving:
			res, err := b.finishRemove(ctx, dir, st, m.Name)
			return res, true, err
		case phaseJoining, phaseLearner:
			if st.scaleUpJoin(m) && len(st.Members) > backend.DesiredReplicas(inst) {
				m.Phase = phaseRemoving
				if err := st.save(dir); err != nil {
					return nil, true, err
				}
				res, err := b.finishRemove(ctx, dir, st, m.Name)
				return res, true, err
			}
			res, err := b.finishJoin(ctx, dir, st, inst, m.Name)
			return res, true, err
		}
	}
	return nil, false, nil
}

// scaleUpJoin reports whether the member m joins for a scale-up, not as the successor of a
// replaced member.
func (st *instanceState) scaleUpJoin(m *memberState) bool {
	return st.Replacement == nil || st.Replacement.New != m.Name
}

// joinWaits reports whether res, from resumeChange, is a join waiting for unhealthy voting
// members, with no replacement under way (whose successor would be joining). A join blocked
// on its own learner (MemberNotJoining) waits for no voting member: they are healthy.
func (st *instanceState) joinWaits(res *backend.Result) bool {
	return res != nil && res.StepReason == backend.StepAddingMember && res.Unhealthy != "" && res.Blocked == "" && st.Replacement == nil
}

// unknownMember returns a member of the cluster this backend has no record of (a join
// recorded elsewhere and lost).
func (st *instanceState) unknownMember(members []etcdcluster.Member) (etcdcluster.Member, bool) {
	for _, cm := range members {
		if !slices.ContainsFunc(st.Members, func(m memberState) bool { return m.id() == cm.ID }) {
			return cm, true
		}
	}
	return etcdcluster.Member{}, false
}

// removeUnknown removes a member this backend has no record of, so that it cannot hurt quorum.
func (b *Backend) removeUnknown(ctx context.Context, access *etcdcluster.Access, unknown etcdcluster.Member) (*backend.Result, error) {
	res := &backend.Result{Step: fmt.Sprintf("removing unknown member %s", unknown.IDString()), StepReason: backend.StepRemovingMember}
	cli, err := access.New()
	if err != nil {
		return res, err
	}
	defer func() { _ = cli.Close() }()
	if err := etcdcluster.Remove(ctx, cli, unknown.ID); err != nil {
		return res, err
	}
	res.Record(backend.ReasonMemberRemoved, "Removed member %s, unknown to the controller", unknown.IDString())
	return res, nil
}

// stepTowardSpec records and takes the next step toward spec.replicas on a healthy cluster:
// join a member with the next ordinal, or remove the one with the highest. It reports
// whether there was a step to take.
func (b *Backend) stepTowardSpec(ctx context.Context, dir string, st *instanceState, inst *v1beta1.ETCDInstance) (*backend.Result, bool, error) {
	desired := backend.DesiredReplicas(inst)
	switch {
	case len(st.Members) < desired:
		m := memberState{Name: backend.MemberName(inst.Name, st.NextOrdinal), Ordinal: st.NextOrdinal, Phase: phaseJoining, ClusterState: "existing"}
		var err error
		if m.PeerPort, m.ClientPort, err = b.freePorts(recordedPorts(st.Members)); err != nil {
			return nil, true, err
		}
		st.NextOrdinal++
		st.Members = append(st.Members, m)
		if err := st.save(dir); err != nil {
			return nil, true, err
		}
		res, err := b.finishJoin(ctx, dir, st, inst, m.Name)
		return res, true, err
	case len(st.Members) > desired:
		victim := &st.Members[len(st.Members)-1] // highest ordinal
		victim.Phase = phaseRemoving
		if err := st.save(dir); err != nil {
			return nil, true, err
		}
		res, err := b.finishRemove(ctx, dir, st, victim.Name)
		return res, true, err
	}
	return nil, false, nil
}

// memberLog is the log file of a member.
func memberLog(dir, member string) string {
	return filepath.Join(dir, member+".log")
}

func (b *Backend) loadOrInit(dir string, inst *v1beta1.ETCDInstance) (*instanceState, error) {
	st, err := loadState(dir)
	if err == nil && st.UID == string(inst.UID) {
		return st, nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if err == nil {
		// Left over from an older object with the same name: its members are not ours.
		klog.InfoS("Removing the data of a previous instance with the same name", "dir", dir, "uid", st.UID)
		b.stopInstance(dir, st)
		if err := os.RemoveAll(dir); err != nil {
			return nil, err
		}
	}
	st = &instanceState{
		UID:          string(inst.UID),
		ClusterToken: fmt.Sprintf("%s-%s-%s", inst.Namespace, inst.Name, inst.UID),
		TLS:          inst.Spec.TLSEnabled(),
	}
	return st, st.save(dir)
}

// ensurePKI creates the instance's CA and its server, peer and client certificates, and
// issues a certificate again once two thirds of its lifetime (a year) passed, or when it is
// damaged or no longer fits: the members read their files at each handshake, so a renewed
// certificate is served without a restart, and the client certificate users copy stays
// valid until its own end. It reports whether it made a new CA, which the members, reading
// their trusted CA only at start, do not trust until they restart.
func ensurePKI(dir, namespace, name string) (newCA bool, err error) {
	p := filepath.Join(dir, pkiDir)
	_, statErr := os.Stat(filepath.Join(p, caName+".crt"))
	newCA = errors.Is(statErr, os.ErrNotExist)
	ca, err := pki.LoadOrCreateCA(p, caName, fmt.Sprintf("etcdaas %s/%s CA", namespace, name))
	if err != nil {
		return false, err
	}
	hosts := pki.Request{DNSNames: []string{"localhost"}, IPs: []net.IP{net.ParseIP("127.0.0.1")}}
	server := hosts
	server.CommonName, server.Usage = name+"-server", pki.ServerUsage
	if _, err := ca.LoadOrReissue(p, serverName, server); err != nil {
		return newCA, err
	}
	peer := hosts
	peer.CommonName, peer.Usage = peerCommonName(name), pki.ServerUsage|pki.ClientUsage
	if _, err := ca.LoadOrReissue(p, peerName, peer); err != nil {
		return newCA, err
	}
	_, err = ca.LoadOrReissue(p, clientName, pki.Request{CommonName: "root", Usage: pki.ClientUsage})
	return newCA, err
}

// peerCommonName is the common name of the members' peer certificate of instance name, the
// only one their peer port accepts: the client certificate, signed by the same CA, is given
// to users and must not let them pose as a member.
func peerCommonName(name string) string {
	return name + "-peer"
}

func (b *Backend) stepContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, b.opts.StepTimeout)
}

// startFirstMember bootstraps a one-member cluster, or finishes bootstrapping one whose
// member ID was never recorded. With spec.restoreFrom, the member starts from that backup.
func (b *Backend) startFirstMember(ctx context.Context, dir string, st *instanceState, inst *v1beta1.ETCDInstance) (*backend.Result, error) {
	if len(st.Members) == 0 {
		m := memberState{Name: backend.MemberName(filepath.Base(dir), st.NextOrdinal), Ordinal: st.NextOrdinal, Phase: phaseVoting, ClusterState: "new"}
		var err error
		if m.PeerPort, m.ClientPort, err = b.freePorts(recordedPorts(st.Members)); err != nil {
			return nil, err
		}
		m.InitialCluster = m.Name + "=" + m.peerURL(st.TLS)
		st.NextOrdinal++
		st.Members = append(st.Members, m)
		if err := st.save(dir); err != nil {
			return nil, err
		}
	}
	m := &st.Members[0]
	res := &backend.Result{Step: fmt.Sprintf("starting the first member %s", m.Name), StepReason: backend.StepDeploying}
	key := filepath.Join(dir, m.Name)
	b.mu.Lock()
	e := b.running[key]
	b.mu.Unlock()
	if e == nil {
		if !loopback.PortFree(m.PeerPort) || !loopback.PortFree(m.ClientPort) {
			p, c, err := b.freePorts(recordedPorts(st.Members))
			if err != nil {
				return res, err
			}
			m.PeerPort, m.ClientPort = p, c
			m.InitialCluster = m.Name + "=" + m.peerURL(st.TLS)
			if err := st.save(dir); err != nil {
				return res, err
			}
		}
		if inst.Spec.RestoreFrom != nil {
			res.StepReason = backend.StepRestoring
			res.Step = fmt.Sprintf("starting the first member %s from a backup of %s", m.Name, inst.Spec.RestoreFrom.Instance)
			if err := b.seedFromBackup(ctx, dir, st, m, inst, res); err != nil {
				return res, err
			}
		}
		var err error
		if e, err = b.start(dir, st, m); err != nil {
			return res, err
		}
	}
	sctx, cancel := b.stepContext(ctx)
	defer cancel()
	if err := embedetcd.WaitReady(sctx, e); err != nil {
		return res, fmt.Errorf("member %s did not become ready: %w", m.Name, err)
	}
	m.ID = etcdcluster.FormatID(uint64(e.Server.MemberID()))
	if err := st.save(dir); err != nil {
		return res, err
	}
	res.Record(backend.ReasonMemberAdded, "Started the first member %s (ID %s), a new cluster", m.Name, m.ID)
	return res, nil
}

// ensureRunning starts every recorded member with an ID that is not running in this
// process, from its data. Members restarted together need each other for quorum, so this
// does not wait for them to be ready: observe does. A member whose recorded ports were taken
// meanwhile moves to new ones, and the cluster is told its new peer URL. A member being
// removed starts too: until its removal commits the cluster counts it for quorum (a cluster
// of two cannot remove one member without it), and once removed it stops on its own.
func (b *Backend) ensureRunning(ctx context.Context, dir string, st *instanceState) error {
	for i := range st.Members {
		m := &st.Members[i]
		if m.ID == "" || b.isRunning(dir, m) {
			continue
		}
		if b.takeDied(dir, m) {
			// A crash counts against the member even when it restarts fine.
			b.health.Unhealthy(filepath.Join(dir, m.Name))
		}
		if m.hasData() {
			if err := checkData(filepath.Join(dir, m.Name)); err != nil {
				klog.InfoS("An etcd member cannot start", "member", m.Name, "err", err)
				b.setStartError(dir, m, err)
				continue
			}
		}
		if p, c, moved, err := b.replaceTakenPorts(st, m); err != nil {
			return err
		} else if moved {
			klog.InfoS("Recorded ports of an etcd member are taken, moving it", "member", m.Name, "peerPort", p, "clientPort", c)
			m.move(st.TLS, p, c)
			if err := st.save(dir); err != nil {
				return err
			}
		}
		started := m.Started
		if _, err := b.start(dir, st, m); err != nil {
			if errors.Is(err, errClosed) {
				return err
			}
			// A member that cannot start (its data is lost or corrupt) is reported by observe
			// with this error; the others still start.
			klog.InfoS("An etcd member cannot start", "member", m.Name, "err", err)
			b.setStartError(dir, m, err)
			continue
		}
		b.setStartError(dir, m, nil)
		if !started {
			if err := st.save(dir); err != nil {
				return err
			}
		}
	}
	return b.readvertise(ctx, dir, st)
}

// readvertise updates the peer URL the cluster has for members that moved to new ports. It
// needs quorum; without it, it does nothing and a later call retries.
func (b *Backend) readvertise(ctx context.Context, dir string, st *instanceState) error {
	access, err := accessFor(dir, st, true)
	if err != nil {
		return nil // no member to ask
	}
	cli, err := access.New()
	if err != nil {
		return err
	}
	defer func() { _ = cli.Close() }()
	lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	members, err := etcdcluster.MemberList(lctx, cli)
	if err != nil {
		return nil // no quorum yet: observe reports the members as unhealthy
	}
	return updatePeerURLs(ctx, cli, st, members, func(cm etcdcluster.Member) *memberState {
		for i := range st.Members {
			if m := &st.Members[i]; m.id() == cm.ID && m.Phase != phaseRemoving {
				return m
			}
		}
		return nil
	})
}

// updatePeerURLs tells the cluster cli reaches the peer URL st records for each of its members
// (of the member list members) whose advertised one is another: memberOf says which member
// of st a cluster member is, nil for none.
func updatePeerURLs(ctx context.Context, cli *clientv3.Client, st *instanceState, members []etcdcluster.Member,
	memberOf func(etcdcluster.Member) *memberState) error {
	for _, cm := range members {
		m := memberOf(cm)
		if m == nil || len(cm.PeerURLs) == 0 {
			continue
		}
		if want := m.peerURL(st.TLS); len(cm.PeerURLs) != 1 || cm.PeerURLs[0] != want {
			if err := etcdcluster.UpdatePeerURL(ctx, cli, cm.ID, want); err != nil {
				return err
			}
			klog.InfoS("Told the cluster the new peer URL of a member", "member", m.Name, "peerURL", want)
		}
	}
	return nil
}

// embedded returns the server of m when it runs in this process, nil otherwise.
func (b *Backend) embedded(dir string, m *memberState) *embedetcd.Etcd {
	if !b.isRunning(dir, m) {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.running[filepath.Join(dir, m.Name)]
}

func (b *Backend) isRunning(dir string, m *memberState) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.running[filepath.Join(dir, m.Name)]
	if !ok {
		return false
	}
	select {
	case <-e.Server.StopNotify():
		// Stopped on its own: b.stop removes a member from running before stopping it.
		delete(b.running, filepath.Join(dir, m.Name))
		b.died[filepath.Join(dir, m.Name)] = true
		e.Close()
		return false
	case <-e.Failed():
		// etcd failed in it (a full disk, say): it no longer serves, and its next start says
		// why it cannot run again in this process. Closing it may never return.
		delete(b.running, filepath.Join(dir, m.Name))
		b.died[filepath.Join(dir, m.Name)] = true
		klog.InfoS("An etcd member failed while running", "member", m.Name, "err", e.Failure())
		go e.Close()
		return false
	default:
		return true
	}
}

// start starts the embedded server of m. A member with data restarts from it; the initial
// cluster settings only matter for an empty data directory.
func (b *Backend) start(dir string, st *instanceState, m *memberState) (*embedetcd.Etcd, error) {
	member := b.embeddedMember(dir, st, m)
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, errClosed
	}
	b.mu.Unlock()
	e, err := embedetcd.Start(member)
	if err != nil {
		return nil, fmt.Errorf("starting member %s: %w", m.Name, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		e.Close()
		return nil, errClosed
	}
	b.running[member.Dir] = e
	m.Started = true
	klog.V(2).InfoS("Started etcd member", "member", m.Name, "client", m.clientURL(st.TLS), "peer", m.peerURL(st.TLS))
	return e, nil
}

// embeddedMember is the configuration of the embedded server of m, a member of the instance
// in dir (st its state).
func (b *Backend) embeddedMember(dir string, st *instanceState, m *memberState) embedetcd.Member {
	member := embedetcd.Member{
		Name:                   m.Name,
		Dir:                    filepath.Join(dir, m.Name),
		PeerURL:                m.peerURL(st.TLS),
		ClientURL:              m.clientURL(st.TLS),
		InitialCluster:         m.InitialCluster,
		ClusterState:           m.ClusterState,
		InitialClusterToken:    st.ClusterToken,
		SnapshotCount:          b.opts.SnapshotCount,
		SnapshotCatchUpEntries: b.opts.SnapshotCatchUpEntries,
		QuotaBackendBytes:      b.opts.QuotaBackendBytes,
		// Members compact their history by themselves, else it grows until the database
		// reaches its quota unless every client compacts.
		AutoCompactionMode:      b.opts.AutoCompaction.Mode,
		AutoCompactionRetention: b.opts.AutoCompaction.Retention,
		MaxLearners:             1,
		LogLevel:                b.opts.LogLevel,
		// By default each member logs to a file next to its data rather than into the
		// controller's log.
		LogOutput: memberLog(dir, m.Name),
		// One member's failure (its disk full, say) must not end the process, which runs
		// every other instance's members too.
		ContainFailures: true,
	}
	if b.opts.LogToStderr {
		member.LogOutput = embed.StdErrLogOutput
	}
	if st.TLS {
		p := filepath.Join(dir, pkiDir)
		ca := filepath.Join(p, caName+".crt")
		member.ClientTLS = &transport.TLSInfo{
			CertFile: filepath.Join(p, serverName+".crt"), KeyFile: filepath.Join(p, serverName+".key"),
			TrustedCAFile: ca, ClientCertAuth: true,
		}
		member.PeerTLS = &transport.TLSInfo{
			CertFile: filepath.Join(p, peerName+".crt"), KeyFile: filepath.Join(p, peerName+".key"),
			TrustedCAFile: ca, ClientCertAuth: true,
			AllowedCNs: []string{peerCommonName(filepath.Base(dir))},
		}
	}
	return member
}

// stop stops the member's server if it runs here. A hard stop skips the leadership
// transfer a graceful stop attempts, which only delays stopping a whole cluster.
func (b *Backend) stop(dir string, m *memberState, hard bool) {
	key := filepath.Join(dir, m.Name)
	b.mu.Lock()
	e, ok := b.running[key]
	delete(b.running, key)
	b.mu.Unlock()
	if ok {
		closeEtcd(e, hard)
		klog.V(2).InfoS("Stopped etcd member", "member", m.Name)
	}
}

// closeTimeout bounds how long stopping one member may take. etcd waits for open read
// transactions (a snapshot a stalled client is not reading) before it closes its database;
// past this the member is left to finish on its own rather than blocking every other stop. A
// member that failed while running (embedetcd.Etcd.Failed) never stops and is not waited for.
const closeTimeout = 30 * time.Second

func closeEtcd(e *embedetcd.Etcd, hard bool) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if hard {
			e.HardStop()
		}
		e.Close()
	}()
	select {
	case <-done:
	case <-e.Failed():
		// etcd failed in it (before or during this stop): it never stops, so nothing waits.
		klog.InfoS("An etcd member that failed while running cannot stop; leaving it until the process exits", "member", e.Config().Name, "err", e.Failure())
	case <-time.After(closeTimeout):
		klog.InfoS("An etcd member did not stop in time; leaving it to finish in the background", "member", e.Config().Name, "timeout", closeTimeout)
	}
}

// stopInstance stops every member of an instance at once.
func (b *Backend) stopInstance(dir string, st *instanceState) {
	var wg sync.WaitGroup
	for i := range st.Members {
		m := &st.Members[i]
		wg.Go(func() { b.stop(dir, m, true) })
	}
	wg.Wait()
}

// observe asks every member of st for its health and, when all are healthy, lists the
// cluster's members. Members that cannot be reached make the result Unhealthy, not an error.
// A voting member that serves is noted healthy on the repair clock by every look, whatever
// step it then takes: a join's looks stop before the repair step (for minutes, with a large
// database), and a member seen serving meanwhile is unhealthy from its next failure on, not
// from one before (repair would replace it at once).
func (b *Backend) observe(ctx context.Context, dir string, access *etcdcluster.Access, st *instanceState) (*backend.Result, []etcdcluster.Member, error) {
	res := &backend.Result{}
	endpoints := make([]string, len(st.Members))
	for i := range st.Members {
		endpoints[i] = st.Members[i].clientURL(st.TLS)
	}
	statuses := etcdcluster.StatusAll(ctx, access, endpoints)
	var unhealthy, voting, down []string
	for i := range st.Members {
		m := &st.Members[i]
		s := statuses[i]
		if err := b.startError(dir, m); err != nil && !s.Healthy {
			s.Err = fmt.Errorf("cannot start: %w", err)
		}
		if m.Phase == phaseVoting {
			// A restarted member serves clients only once it reaches quorum: whether it
			// runs here says whether it is up.
			voting = append(voting, m.Name)
			if b.embedded(dir, m) == nil {
				down = append(down, m.Name)
			}
		}
		ms := v1beta1.MemberStatus{
			Name: m.Name, ID: m.ID, PeerURL: m.peerURL(st.TLS), ClientURL: m.clientURL(st.TLS),
			Ready: s.Healthy, Leader: s.IsLeader(), Learner: m.Phase == phaseLearner || m.Phase == phaseJoining,
		}
		ms = backend.WithEndpointStatus(ms, s)
		if s.Healthy {
			ms.Learner = s.IsLearner
			if m.Phase == phaseVoting {
				b.health.Healthy(filepath.Join(dir, m.Name))
			}
		} else {
			unhealthy = append(unhealthy, fmt.Sprintf("%s: %v", m.Name, s.Err))
			if res.MemberProblems == nil {
				res.MemberProblems = map[string]string{}
			}
			res.MemberProblems[m.Name] = fmt.Sprint(s.Err)
		}
		res.Members = append(res.Members, ms)
	}
	if len(unhealthy) > 0 {
		res.Unhealthy = "unhealthy members: " + strings.Join(unhealthy, "; ")
		res.QuorumLost = backend.QuorumLoss(voting, down)
		return res, nil, nil
	}
	cli, err := access.New()
	if err != nil {
		return res, nil, err
	}
	defer func() { _ = cli.Close() }()
	members, err := etcdcluster.MemberList(ctx, cli)
	if err != nil {
		res.Unhealthy = err.Error()
		return res, nil, nil
	}
	return res, members, nil
}

// finishJoin takes the member name from joining (recorded, maybe added) through learner
// (added, started) to voting (promoted). A scale-up's learner that cannot start or be
// promoted for longer than Options.JoinDeadline makes the instance blocked (joinFailed), as
// does one etcd finds behind its leader for that long (promoteFailed).
func (b *Backend) finishJoin(ctx context.Context, dir string, st *instanceState, inst *v1beta1.ETCDInstance, name string) (*backend.Result, error) {
	m := st.member(name)
	res := &backend.Result{Step: fmt.Sprintf("adding member %s", name), StepReason: backend.StepAddingMember}
	sctx, cancel := b.stepContext(ctx)
	defer cancel()
	voting := st.votingMembers(func(o memberState) bool { return o.Phase == phaseVoting })
	access, cli, err := connect(dir, voting)
	if err != nil {
		return res, err
	}
	defer func() { _ = cli.Close() }()
	// Observe the voting members first: a change needs every one of them healthy.
	obs, _, err := b.observe(sctx, dir, access, voting)
	if err != nil {
		return res, err
	}
	// The successor of a replaced member joins while a quorum is healthy: another
	// unhealthy member waits for its own replacement.
	if obs.Unhealthy != "" && (st.Replacement == nil || obs.QuorumLost != "") {
		res.Members, res.Unhealthy, res.MemberProblems, res.QuorumLost = obs.Members, obs.Unhealthy, obs.MemberProblems, obs.QuorumLost
		return res, nil
	}
	// Degraded still names those, whatever becomes of the learner (joinFailed and noteBehind
	// add it after them).
	res.Unhealthy, res.MemberProblems = obs.Unhealthy, maps.Clone(obs.MemberProblems)
	if m.Phase == phaseJoining {
		added, err := b.addLearner(sctx, cli, dir, st, m)
		if err != nil {
			return res, err
		}
		if !added {
			res.Step = fmt.Sprintf("waiting for the cluster to settle before adding member %s", name)
			return res, nil
		}
		res.Record(backend.ReasonMemberAdded, "Added member %s (ID %s) as a learner", name, m.ID)
	}
	if started, err := b.startLearner(dir, st, inst, m, res); !started {
		return res, err
	}
	if err := b.promote(sctx, cli, m.id()); err != nil {
		if ctx.Err() != nil {
			return res, err
		}
		return res, b.promoteFailed(ctx, dir, st, inst, m, access, obs, res, err)
	}
	if err := b.markPromoted(dir, st, m, res); err != nil {
		return res, err
	}
	res.Step = fmt.Sprintf("added member %s", name)
	return res, nil
}

// startLearner starts learner m of finishJoin (res its result) unless it runs already, and
// reports whether it runs; if not, finishJoin ends with the error. One that cannot start is
// recorded as such, and may make the instance blocked (joinFailed: no error).
func (b *Backend) startLearner(dir string, st *instanceState, inst *v1beta1.ETCDInstance, m *memberState, res *backend.Result) (bool, error) {
	if b.isRunning(dir, m) {
		return true, nil
	}
	if _, err := b.start(dir, st, m); err != nil {
		if errors.Is(err, errClosed) {
			return false, err
		}
		b.setStartError(dir, m, err)
		return false, b.joinFailed(dir, st, inst, m, res, fmt.Sprintf("cannot start: %v", err), err)
	}
	b.setStartError(dir, m, nil)
	if err := st.save(dir); err != nil {
		return false, err
	}
	return true, nil
}

// markPromoted records that m, just promoted, is a voting member (the end of the replacement
// whose successor it is), and the Events of finishJoin's result res that say so.
func (b *Backend) markPromoted(dir string, st *instanceState, m *memberState, res *backend.Result) error {
	// Its wait as a learner does not count against the voting member it now is (repair).
	b.forgetLearner(dir, m)
	m.Phase = phaseVoting
	replaced := st.Replacement
	if replaced != nil && replaced.New == m.Name {
		st.Replacement = nil
	}
	if err := st.save(dir); err != nil {
		return err
	}
	res.Record(backend.ReasonMemberPromoted, "Promoted member %s (ID %s) to a voting member", m.Name, m.ID)
	if replaced != nil && replaced.New == m.Name {
		res.Record(backend.ReasonMemberReplaced, "Replaced member %s with %s (ID %s), in sync and voting; %s was %s", replaced.Old, m.Name, m.ID, replaced.Old, replaced.Why)
	}
	return nil
}

// joinFailed handles err, why the learner m could not start or be promoted (problem says it
// for Degraded). The health clock counts how long the learner, a scale-up's or the successor
// of a replaced member, has been failing so; past Options.JoinDeadline the instance is
// reported blocked on it (MemberNotJoining, see noteNotJoining, with res adding the learner
// and why to the unhealthy voting members it names already) instead of failing with err:
// nothing changes until a person fixes it (or, for a scale-up, scales back). Each later look
// still tries to start and promote it. Until then it returns err.
func (b *Backend) joinFailed(dir string, st *instanceState, inst *v1beta1.ETCDInstance, m *memberState, res *backend.Result, problem string, err error) error {
	waited := b.health.Unhealthy(filepath.Join(dir, m.Name))
	if !b.noteNotJoining(st, inst, m, res, waited) {
		return err
	}
	noteUnhealthy(res, m.Name, problem)
	return nil
}

// noteUnhealthy adds member, unhealthy because of problem, to res.Unhealthy after the
// members it names already, and to res.MemberProblems.
func noteUnhealthy(res *backend.Result, member, problem string) {
	const prefix = "unhealthy members: "
	entry := member + ": " + problem
	switch {
	case res.Unhealthy == "":
		res.Unhealthy = prefix + entry
	case strings.HasPrefix(res.Unhealthy, prefix):
		res.Unhealthy += "; " + entry
	default:
		res.Unhealthy += "; " + prefix + entry
	}
	if res.MemberProblems == nil {
		res.MemberProblems = map[string]string{}
	}
	res.MemberProblems[member] = problem
}

// noteNotJoining reports in res, once waited is longer than Options.JoinDeadline, the
// instance blocked on the learner m, which has not served for that long: a scale-up's
// (backend.NoteNotJoining) or the successor of a replaced member
// (backend.NoteSuccessorNotJoining). It reports whether the instance is blocked.
func (b *Backend) noteNotJoining(st *instanceState, inst *v1beta1.ETCDInstance, m *memberState, res *backend.Result, waited time.Duration) bool {
	if !st.scaleUpJoin(m) {
		return backend.NoteSuccessorNotJoining(res, m.Name, "member "+st.Replacement.Old, "it", "its data directory, its disk, its ports", waited, b.opts.JoinDeadline)
	}
	return backend.NoteNotJoining(res, m.Name, backend.DesiredReplicas(inst), len(st.Members)-1, "it", waited, b.opts.JoinDeadline)
}

// promoteBounded promotes the learner id, giving up after etcdcluster.PromoteWait while etcd
// finds it behind its leader, so that a learner catching up a large database does not hold a
// worker for the whole step.
func promoteBounded(ctx context.Context, cli *clientv3.Client, id uint64) error {
	return etcdcluster.PromoteWithin(ctx, cli, id, etcdcluster.PromoteWait)
}

// promoteFailed handles err, why the learner m was not promoted. A refusal other than etcd's
// finding it behind its leader is a join that failed (joinFailed). That refusal is a step
// under way (res.Step says so, no error). A learner that answers its status call then serves:
// its time without serving, should it stop, counts from then. The health clock counts, in a
// record of its own (behindKey), how long the learner has been found behind; past
// Options.JoinDeadline the instance is reported blocked on it (MemberNotJoining, see
// noteNotCatchingUp), with its revision against the leader's (learnerLag; voting observed the
// voting members), unless it does not answer (joinFailed). Each later look still tries to
// promote it.
func (b *Backend) promoteFailed(ctx context.Context, dir string, st *instanceState, inst *v1beta1.ETCDInstance, m *memberState, access *etcdcluster.Access, voting, res *backend.Result, err error) error {
	if !errors.Is(err, etcdcluster.ErrLearnerNotInSync) {
		return b.joinFailed(dir, st, inst, m, res, err.Error(), err)
	}
	// Catching up is under way: a later look tries again (the kubernetes backend's way).
	res.Step = fmt.Sprintf("promoting member %s: waiting for it to catch up with the leader", m.Name)
	res.StepWait = backend.CatchUpInterval
	lag, notServing := learnerLag(ctx, access, st, m, voting)
	if notServing == nil {
		b.health.Healthy(filepath.Join(dir, m.Name))
	}
	behind := b.health.Unhealthy(behindKey(dir, m))
	if behind <= b.opts.JoinDeadline {
		return nil
	}
	if notServing != nil {
		return b.joinFailed(dir, st, inst, m, res, notServing.Error(), err)
	}
	b.noteNotCatchingUp(st, inst, m, res, lag, behind)
	return nil
}

// noteNotCatchingUp reports in res, once behind is longer than Options.JoinDeadline, the
// instance blocked on the learner m, which serves but has been behind its leader (lag) for
// that long: a scale-up's (backend.NoteNotCatchingUp) or the successor of a replaced member
// (backend.NoteSuccessorNotCatchingUp).
func (b *Backend) noteNotCatchingUp(st *instanceState, inst *v1beta1.ETCDInstance, m *memberState, res *backend.Result, lag string, behind time.Duration) {
	if !st.scaleUpJoin(m) {
		backend.NoteSuccessorNotCatchingUp(res, m.Name, "member "+st.Replacement.Old, lag, behind, b.opts.JoinDeadline)
		return
	}
	backend.NoteNotCatchingUp(res, m.Name, backend.DesiredReplicas(inst), len(st.Members)-1, lag, behind, b.opts.JoinDeadline)
}

// learnerLag asks the learner m and its leader, the voting member voting says leads, for
// their status, and says how far m is behind (backend.LearnerLag). It returns why m does
// not serve when it does not answer.
func learnerLag(ctx context.Context, access *etcdcluster.Access, st *instanceState, m *memberState, voting *backend.Result) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, etcdcluster.DefaultTimeout)
	defer cancel()
	learner := etcdcluster.Status(ctx, access, m.clientURL(st.TLS))
	if learner.Err != nil {
		return "", learner.Err
	}
	for _, ms := range voting.Members {
		if ms.Leader {
			return backend.LearnerLag(learner, ms.Name, etcdcluster.Status(ctx, access, ms.ClientURL)), nil
		}
	}
	return "", nil
}

// behindKey identifies in the health clock since when the learner m has been behind its
// leader (promoteFailed), apart from its own record of not starting or serving.
func behindKey(dir string, m *memberState) string { return filepath.Join(dir, m.Name) + "#behind" }

// forgetLearner drops the health clock's records of the learner m, promoted or removed.
func (b *Backend) forgetLearner(dir string, m *memberState) {
	b.health.Forget(filepath.Join(dir, m.Name))
	b.health.Forget(behindKey(dir, m))
}

// addLearner adds the joining member m to the cluster as a learner (unless an earlier attempt
// whose answer was lost did) and records it as a learner with the initial cluster it starts
// with. It reports false, without error, when the cluster is not ready to take a member yet.
func (b *Backend) addLearner(ctx context.Context, cli *clientv3.Client, dir string, st *instanceState, m *memberState) (bool, error) {
	members, err := etcdcluster.MemberList(ctx, cli)
	if err != nil {
		return false, err
	}
	var id uint64
	for _, cm := range members {
		if slices.Contains(cm.PeerURLs, m.peerURL(st.TLS)) {
			id = cm.ID // added by an earlier attempt whose result was lost
		}
	}
	if id == 0 {
		if id, members, err = etcdcluster.AddLearner(ctx, cli, m.peerURL(st.TLS)); err != nil {
			if errors.Is(err, rpctypes.ErrUnhealthy) {
				// etcd accepts a new member only once every voting member has been
				// connected for a while (strict reconfiguration check): try again soon.
				return false, nil
			}
			return false, err
		}
	}
	var initial []string
	for _, cm := range members {
		n := cm.Name
		if cm.ID == id {
			n = m.Name
		}
		if n == "" {
			continue // another member that never started cannot be in the initial cluster
		}
		for _, u := range cm.PeerURLs {
			initial = append(initial, n+"="+u)
		}
	}
	m.ID, m.Phase, m.InitialCluster = etcdcluster.FormatID(id), phaseLearner, strings.Join(initial, ",")
	return true, st.save(dir)
}

// finishRemove removes the member name from the cluster, stops it and deletes its data.
func (b *Backend) finishRemove(ctx context.Context, dir string, st *instanceState, name string) (*backend.Result, error) {
	m := st.member(name)
	res := &backend.Result{Step: fmt.Sprintf("removing member %s", name), StepReason: backend.StepRemovingMember}
	sctx, cancel := b.stepContext(ctx)
	defer cancel()
	if id := m.id(); id != 0 {
		others := st.votingMembers(func(o memberState) bool { return o.Name != name && o.Phase == phaseVoting })
		if len(others.Members) == 0 {
			return res, backend.Permanent("LastMember", "refusing to remove %s, the last voting member", name)
		}
		_, cli, err := connect(dir, others)
		if err != nil {
			return res, err
		}
		defer func() { _ = cli.Close() }()
		// Leadership moves away first, also when resuming a removal.
		// The member being removed still votes until the removal.
		voting := st.votingMembers(func(o memberState) bool { return o.Name == name || o.Phase == phaseVoting })
		all, err := accessFor(dir, voting, false)
		if err != nil {
			return res, err
		}
		members, err := etcdcluster.MemberList(sctx, cli)
		if err != nil {
			return res, err
		}
		// A learner neither leads nor counts for quorum: it goes at once.
		if slices.ContainsFunc(members, func(cm etcdcluster.Member) bool { return cm.ID == id && !cm.IsLearner }) {
			statuses := etcdcluster.StatusAll(sctx, all, all.Endpoints)
			if off, err := b.putOffRemoval(dir, st, m, others, statuses, res); off {
				return res, err
			}
			if err := etcdcluster.MoveLeaderAway(sctx, all, id, members, statuses); err != nil {
				return res, err
			}
		}
		if err := removeWithRetry(sctx, cli, id); err != nil {
			return res, err
		}
	}
	// The member is out of the cluster: nothing to hand over, stop it at once.
	b.stop(dir, m, true)
	b.forgetLearner(dir, m)
	b.setStartError(dir, m, nil)
	if err := os.RemoveAll(filepath.Join(dir, m.Name)); err != nil {
		return res, err
	}
	if err := os.Remove(memberLog(dir, m.Name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return res, err
	}
	st.removeMember(name)
	if err := st.save(dir); err != nil {
		return res, err
	}
	res.Step = fmt.Sprintf("removed member %s", name)
	res.Record(backend.ReasonMemberRemoved, "Removed member %s and deleted its data", name)
	return res, nil
}

// putOffRemoval keeps the member m in the cluster when too few of the members left, others,
// are healthy to form a quorum without it (another member was lost since the removal was
// recorded): etcd would refuse the removal until they are. A member removed to scale down
// votes again, so that the lost member can be replaced; a member being replaced waits. It
// reports whether the removal was put off, with what res reports.
func (b *Backend) putOffRemoval(dir string, st *instanceState, m *memberState, others *instanceState, statuses []etcdcluster.EndpointStatus, res *backend.Result) (bool, error) {
	healthy := 0
	for _, s := range statuses {
		if s.Healthy && slices.ContainsFunc(others.Members, func(o memberState) bool { return o.clientURL(st.TLS) == s.Endpoint }) {
			healthy++
		}
	}
	need := backend.Quorum(len(others.Members))
	if healthy >= need {
		return false, nil
	}
	res.Unhealthy = fmt.Sprintf("not removing member %s: %d of the %d members left are healthy, fewer than the %d a quorum needs", m.Name, healthy, len(others.Members), need)
	if st.Replacement != nil && st.Replacement.Old == m.Name {
		res.Step = "" // no step: the controller looks again with a backoff
		return true, nil
	}
	m.Phase = phaseVoting
	res.Step = fmt.Sprintf("putting off the removal of member %s", m.Name)
	return true, st.save(dir)
}

// connect opens a client to the voting members of st and returns their Access with it.
func connect(dir string, st *instanceState) (*etcdcluster.Access, *clientv3.Client, error) {
	access, err := accessFor(dir, st, false)
	if err != nil {
		return nil, nil, err
	}
	cli, err := access.New()
	if err != nil {
		return nil, nil, err
	}
	return access, cli, nil
}

// removeWithRetry retries MemberRemove while the cluster is briefly unable to take it (such
// as right after a leadership transfer).
func removeWithRetry(ctx context.Context, cli *clientv3.Client, id uint64) error {
	for {
		err := etcdcluster.Remove(ctx, cli, id)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Delete implements backend.Backend: it stops the instance's members and removes its data.
func (b *Backend) Delete(_ context.Context, inst *v1beta1.ETCDInstance) error {
	dir, err := instanceDir(b.opts.Dir, inst.Namespace, inst.Name)
	if err != nil {
		return nil // nothing can have been created for an invalid name
	}
	st, err := loadState(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return err
	case st.UID != "" && st.UID != string(inst.UID):
		return nil // the directory belongs to a newer object with the same name
	default:
		b.stopInstance(dir, st)
	}
	return os.RemoveAll(dir)
}

// Forget implements backend.Forgetter: it drops the health records of the instance's members
// and what is recorded of their servers dying or failing to start.
func (b *Backend) Forget(namespace, name string) {
	dir, err := instanceDir(b.opts.Dir, namespace, name)
	if err != nil {
		return // nothing was ever remembered for an invalid name
	}
	prefix := dir + string(filepath.Separator)
	b.health.ForgetPrefix(prefix)
	b.mu.Lock()
	defer b.mu.Unlock()
	underInstance := func(key string) bool { return strings.HasPrefix(key, prefix) }
	maps.DeleteFunc(b.died, func(key string, _ bool) bool { return underInstance(key) })
	maps.DeleteFunc(b.startErrs, func(key string, _ error) bool { return underInstance(key) })
}

var _ backend.Forgetter = &Backend{}

var _ backend.Quota = &Backend{}

// QuotaBackendBytes implements backend.Quota: Options' QuotaBackendBytes, or etcd's default
// when it is zero, for every instance.
func (b *Backend) QuotaBackendBytes(*v1beta1.ETCDInstance) int64 {
	if b.opts.QuotaBackendBytes == 0 {
		return backend.DefaultQuotaBackendBytes
	}
	return b.opts.QuotaBackendBytes
}

// Close implements backend.Backend: it stops every member running here, keeping the data.
func (b *Backend) Close() error {
	b.mu.Lock()
	b.closed = true
	running := b.running
	b.running = map[string]*embedetcd.Etcd{}
	b.mu.Unlock()
	var wg sync.WaitGroup
	for _, e := range running {
		wg.Go(func() { closeEtcd(e, true) })
	}
	wg.Wait()
	return nil
}

// Running returns the data directories of the members running in this process, for tests
// and diagnostics.
func (b *Backend) Running() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]string, 0, len(b.running))
	for dir := range b.running {
		out = append(out, dir)
	}
	sort.Strings(out)
	return out
}
