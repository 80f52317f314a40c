// Package etcdcluster manages the membership of a running etcd cluster through the etcd v3
// API and streams snapshots from its members. It is shared by the controller's backends and
// the API server's backup subresource; it knows nothing about how members are run.
package etcdcluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
)

// The HTTP paths a member's probes use (on its client or metrics URLs).
//
// Ready: the member serves local reads, reports no corrupt data and is a voting member. A
// learner refuses clients' writes and linearizable reads ("rpc not supported for learner"), so
// a Service must not route clients to it before its promotion. NOSPACE does not make a member
// unready: every member reports it once one raises it, and it is cleared by defragmenting and
// disarming, which needs the members reachable. Nor does a lost quorum (linearizable_read is
// excluded): member 0 of a StatefulSet restarting alone must become Ready for its peers to be
// created (OrderedReady).
//
// Live: it serves local reads; a restart never clears an alarm.
const (
	ReadinessPath = "/readyz?exclude=linearizable_read"
	LivenessPath  = "/livez"
)

// DefaultTimeout bounds a single unary etcd call made by this package.
const DefaultTimeout = 5 * time.Second

// ErrNoMembers is returned when an instance has no member that could be reached.
var ErrNoMembers = errors.New("the instance has no members")

// ErrNoHealthyMember is returned when no member of an instance answers health checks.
var ErrNoHealthyMember = errors.New("no member of the instance is healthy")

// Access says how to reach the members of one etcd cluster.
type Access struct {
	// Endpoints are the client URLs of the members, such as "https://127.0.0.1:32379".
	Endpoints []string
	// TLS is the client TLS configuration; nil for plaintext clusters.
	TLS *tls.Config
}

// Dialer gives the Access of a named instance. Backends implement it so that the API
// server's backup subresource can reach members without knowing how they run.
type Dialer interface {
	// Access returns how to reach the members of the instance namespace/name. It returns an
	// error wrapping ErrNoMembers when the instance has no members (yet, or any more).
	Access(ctx context.Context, namespace, name string) (*Access, error)
}

// Config returns a clientv3 configuration for the given endpoints of the cluster.
func (a *Access) Config(endpoints ...string) clientv3.Config {
	if len(endpoints) == 0 {
		endpoints = a.Endpoints
	}
	cfg := clientv3.Config{
		Endpoints:            endpoints,
		DialTimeout:          DefaultTimeout,
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: DefaultTimeout,
		Logger:               zap.NewNop(),
	}
	if a.TLS != nil {
		cfg.TLS = a.TLS.Clone()
	}
	return cfg
}

// New opens a client to the given endpoints (all of the cluster's when none are given).
func (a *Access) New(endpoints ...string) (*clientv3.Client, error) {
	return a.newClient(nil, endpoints...)
}

// newClient is New with dialOptions added to the client's.
func (a *Access) newClient(dialOptions []grpc.DialOption, endpoints ...string) (*clientv3.Client, error) {
	if len(a.Endpoints) == 0 && len(endpoints) == 0 {
		return nil, ErrNoMembers
	}
	cfg := a.Config(endpoints...)
	cfg.DialOptions = append(cfg.DialOptions, dialOptions...)
	return clientv3.New(cfg)
}

// Member is one member of the cluster as MemberList reports it.
type Member struct {
	ID         uint64
	Name       string
	PeerURLs   []string
	ClientURLs []string
	IsLearner  bool
}

// IDString formats the member ID in hexadecimal, as etcdctl prints it.
func (m Member) IDString() string { return FormatID(m.ID) }

// FormatID formats a member ID in hexadecimal, as etcdctl prints it.
func FormatID(id uint64) string { return strconv.FormatUint(id, 16) }

// ParseID parses a member ID printed by FormatID.
func ParseID(s string) (uint64, error) { return strconv.ParseUint(s, 16, 64) }

// MemberList lists the members of the cluster cli is connected to (linearizable).
func MemberList(ctx context.Context, cli *clientv3.Client) ([]Member, error) {
	ctx, cancel := context.WithTimeout(ctx, DefaultTimeout)
	defer cancel()
	resp, err := cli.MemberList(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing members: %w", err)
	}
	return convertMembers(resp.Members), nil
}

func convertMembers[T interface {
	GetID() uint64
	GetName() string
	GetPeerURLs() []string
	GetClientURLs() []string
	GetIsLearner() bool
}](in []T) []Member {
	out := make([]Member, 0, len(in))
	for _, m := range in {
		out = append(out, Member{ID: m.GetID(), Name: m.GetName(), PeerURLs: m.GetPeerURLs(), ClientURLs: m.GetClientURLs(), IsLearner: m.GetIsLearner()})
	}
	return out
}

// AddLearner adds a non-voting learner with the given peer URL. It returns the new member's
// ID and the membership after the change, from which the new member's initial cluster is built.
func AddLearner(ctx context.Context, cli *clientv3.Client, peerURL string) (uint64, []Member, error) {
	ctx, cancel := context.WithTimeout(ctx, DefaultTimeout)
	defer cancel()
	resp, err := cli.MemberAddAsLearner(ctx, []string{peerURL})
	if err != nil {
		return 0, nil, fmt.Errorf("adding learner %s: %w", peerURL, err)
	}
	return resp.Member.ID, convertMembers(resp.Members), nil
}

// PromoteWait bounds how long one look of a controller retries the promotion of a learner
// etcd finds behind its leader (PromoteWithin). A learner receiving a large database, or one
// that cannot keep up with the writes, stays behind for minutes; a look waiting for it would
// hold one of the controller's few workers, and every other instance's steps, repairs and
// backups with it.
const PromoteWait = 3 * time.Second

// PromoteWithin is Promote retrying for at most wait.
func PromoteWithin(ctx context.Context, cli *clientv3.Client, id uint64, wait time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	return Promote(ctx, cli, id)
}

// ErrLearnerNotInSync is returned by Promote when the learner was still behind the leader
// when its context ended: etcd promotes a learner only once it has caught up.
var ErrLearnerNotInSync = errors.New("learner still not in sync")

// Promote promotes a learner to a voting member, retrying while etcd answers that the
// learner is not yet in sync with the leader, until ctx ends. Once the learner was found
// behind, the error wraps ErrLearnerNotInSync, also when ctx ends during an attempt.
func Promote(ctx context.Context, cli *clientv3.Client, id uint64) error {
	notInSync := func() error {
		return fmt.Errorf("promoting member %s: %w: %w", FormatID(id), ErrLearnerNotInSync, ctx.Err())
	}
	behind := false
	for {
		callCtx, cancel := context.WithTimeout(ctx, DefaultTimeout)
		_, err := cli.MemberPromote(callCtx, id)
		cancel()
		switch {
		case err == nil:
			return nil
		case errors.Is(err, rpctypes.ErrMemberNotLearner) || isRPCError(err, rpctypes.ErrGRPCMemberNotLearner):
			return nil // promoted by an earlier attempt whose answer was lost
		case errors.Is(err, rpctypes.ErrMemberLearnerNotReady) || isRPCError(err, rpctypes.ErrGRPCLearnerNotReady):
			behind = true
		case behind && ctx.Err() != nil:
			// The context ended during a later attempt: the learner was behind until then.
			return notInSync()
		default:
			return fmt.Errorf("promoting member %s: %w", FormatID(id), err)
		}
		select {
		case <-ctx.Done():
			return notInSync()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func isRPCError(err, want error) bool {
	return rpctypes.ErrorDesc(err) == rpctypes.ErrorDesc(want)
}

// Remove removes a member; removing a member that is already gone is not an error.
func Remove(ctx context.Context, cli *clientv3.Client, id uint64) error {
	ctx, cancel := context.WithTimeout(ctx, DefaultTimeout)
	defer cancel()
	_, err := cli.MemberRemove(ctx, id)
	if err != nil && !errors.Is(err, rpctypes.ErrMemberNotFound) && !isRPCError(err, rpctypes.ErrGRPCMemberNotFound) {
		return fmt.Errorf("removing member %s: %w", FormatID(id), err)
	}
	return nil
}

// UpdatePeerURL changes the advertised peer URL of a member.
func UpdatePeerURL(ctx context.Context, cli *clientv3.Client, id uint64, peerURL string) error {
	ctx, cancel := context.WithTimeout(ctx, DefaultTimeout)
	defer cancel()
	if _, err := cli.MemberUpdate(ctx, id, []string{peerURL}); err != nil {
		return fmt.Errorf("updating the peer URL of member %s: %w", FormatID(id), err)
	}
	return nil
}

// EndpointStatus is the health and position of one member as its own endpoint reports it.
type EndpointStatus struct {
	Endpoint string
	// Healthy is true when the member answered Status and serves a linearizable read.
	Healthy bool
	// Serving is true when the member answered Status with a leader and, unless it is a
	// learner, served a linearizable read, whatever alarms are raised: a member with a
	// NOSPACE alarm serves reads and deletes but is not Healthy.
	Serving bool
	// Err is why the member is not healthy.
	Err       error
	MemberID  uint64
	Leader    uint64
	Revision  int64
	RaftIndex uint64
	// RaftAppliedIndex is the index the member has applied.
	RaftAppliedIndex uint64
	IsLearner        bool
	// Version is the etcd server version the member runs, such as "3.6.5".
	Version string
	// DBSize is the size of the member's database file in bytes.
	DBSize int64
	// DBSizeInUse is the part of DBSize that holds data; the rest a defragmentation frees.
	DBSizeInUse int64
	// Alarms are the alarms raised on this member (such as "NOSPACE"), sorted.
	Alarms []string
}

// IsLeader reports whether the member is the raft leader.
func (s EndpointStatus) IsLeader() bool {
	return s.Healthy && s.MemberID != 0 && s.MemberID == s.Leader
}

// Status asks one endpoint for its status. A member is healthy when it answers, has a leader
// and reports no errors; voting members must also serve a linearizable read.
func Status(ctx context.Context, access *Access, endpoint string) EndpointStatus {
	st := EndpointStatus{Endpoint: endpoint}
	cli, err := access.New(endpoint)
	if err != nil {
		st.Err = err
		return st
	}
	defer func() { _ = cli.Close() }()
	callCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	resp, err := cli.Status(callCtx, endpoint)
	if err != nil {
		st.Err = fmt.Errorf("not answering: %w", err)
		return st
	}
	st.MemberID = resp.Header.GetMemberId()
	st.Leader = resp.Leader
	st.Revision = resp.Header.GetRevision()
	st.RaftIndex = resp.RaftIndex
	st.RaftAppliedIndex = resp.RaftAppliedIndex
	st.IsLearner = resp.IsLearner
	st.Version = resp.Version
	st.DBSize = resp.DbSize
	st.DBSizeInUse = resp.DbSizeInUse
	if len(resp.Errors) > 0 {
		// Errors hold the cluster's alarms (and "no leader"): the member's own come from AlarmList.
		st.Alarms = memberAlarms(callCtx, cli, st.MemberID)
	}
	var readErr error
	if resp.Leader != 0 && !resp.IsLearner {
		// A linearizable read proves the member can reach quorum.
		if _, err := cli.Get(callCtx, "health", clientv3.WithCountOnly()); err != nil {
			readErr = fmt.Errorf("linearizable read failed: %w", err)
		}
	}
	st.Serving = resp.Leader != 0 && readErr == nil
	switch {
	case len(st.Alarms) > 0:
		st.Err = fmt.Errorf("alarm %s raised", strings.Join(st.Alarms, ", "))
	case len(resp.Errors) > 0:
		st.Err = fmt.Errorf("member reports errors: %v", resp.Errors)
	case resp.Leader == 0:
		st.Err = errors.New("member has no leader")
	case readErr != nil:
		st.Err = readErr
	default:
		st.Healthy = true
	}
	return st
}

// memberAlarms lists the alarms raised on the member id, sorted; nil when there are none or
// the list cannot be read (the member then reports the errors Status returned).
func memberAlarms(ctx context.Context, cli *clientv3.Client, id uint64) []string {
	resp, err := cli.AlarmList(ctx)
	if err != nil {
		return nil
	}
	var out []string
	for _, a := range resp.Alarms {
		if a.MemberID == id && a.Alarm != etcdserverpb.AlarmType_NONE && !slices.Contains(out, a.Alarm.String()) {
			out = append(out, a.Alarm.String())
		}
	}
	sort.Strings(out)
	return out
}

// StatusAll asks every endpoint for its status concurrently, in the order of endpoints.
func StatusAll(ctx context.Context, access *Access, endpoints []string) []EndpointStatus {
	out := make([]EndpointStatus, len(endpoints))
	done := make(chan struct{}, len(endpoints))
	for i, ep := range endpoints {
		go func() {
			out[i] = Status(ctx, access, ep)
			done <- struct{}{}
		}()
	}
	for range endpoints {
		<-done
	}
	return out
}

// MoveLeaderAway transfers leadership from the member with ID from to another voting member
// when from is the leader; it does nothing otherwise. statuses are the current endpoint
// statuses of the cluster (see StatusAll) and members its membership.
func MoveLeaderAway(ctx context.Context, access *Access, from uint64, members []Member, statuses []EndpointStatus) error {
	var leaderEndpoint string
	for _, st := range statuses {
		if st.IsLeader() {
			leaderEndpoint = st.Endpoint
			if st.MemberID != from {
				return nil
			}
		}
	}
	if leaderEndpoint == "" {
		return errors.New("the cluster has no leader to move")
	}
	healthy := map[uint64]bool{}
	for _, st := range statuses {
		if st.Healthy {
			healthy[st.MemberID] = true
		}
	}
	var transferee uint64
	for _, m := range members {
		if m.ID != from && !m.IsLearner && healthy[m.ID] {
			transferee = m.ID
			break
		}
	}
	if transferee == 0 {
		return errors.New("no healthy voting member can take over leadership")
	}
	cli, err := access.New(leaderEndpoint)
	if err != nil {
		return err
	}
	defer func() { _ = cli.Close() }()
	callCtx, cancel := context.WithTimeout(ctx, DefaultTimeout)
	defer cancel()
	if _, err := cli.MoveLeader(callCtx, transferee); err != nil {
		return fmt.Errorf("moving leadership from %s to %s: %w", FormatID(from), FormatID(transferee), err)
	}
	return nil
}

// BestSnapshotSource returns the status of the serving voting member with the highest revision
// (ties broken by the highest applied raft index, then by endpoint order), or an error wrapping
// ErrNoHealthyMember with every member's reason. A member out of space (NOSPACE) serves: it
// refuses writes only, and a backup is wanted most then. A member with any other alarm of its
// own (CORRUPT: its data failed etcd's corruption check) is never a source, though it still
// answers reads.
func BestSnapshotSource(ctx context.Context, access *Access) (EndpointStatus, error) {
	if len(access.Endpoints) == 0 {
		return EndpointStatus{}, ErrNoMembers
	}
	statuses := StatusAll(ctx, access, access.Endpoints)
	var serving []EndpointStatus
	var reasons []error
	for _, st := range statuses {
		switch {
		case st.Serving && st.IsLearner:
			// A learner may lag behind: never back up from one.
			reasons = append(reasons, fmt.Errorf("%s: is a learner", st.Endpoint))
		case st.Serving && !onlyOutOfSpace(st.Alarms):
			reasons = append(reasons, fmt.Errorf("%s: %w", st.Endpoint, st.Err))
		case st.Serving:
			serving = append(serving, st)
		default:
			reasons = append(reasons, fmt.Errorf("%s: %w", st.Endpoint, st.Err))
		}
	}
	if len(serving) == 0 {
		return EndpointStatus{}, fmt.Errorf("%w: %w", ErrNoHealthyMember, errors.Join(reasons...))
	}
	sort.SliceStable(serving, func(i, j int) bool {
		if serving[i].Revision != serving[j].Revision {
			return serving[i].Revision > serving[j].Revision
		}
		return serving[i].RaftAppliedIndex > serving[j].RaftAppliedIndex
	})
	return serving[0], nil
}

// onlyOutOfSpace reports whether alarms, a member's own, are none or NOSPACE alone.
func onlyOutOfSpace(alarms []string) bool {
	for _, a := range alarms {
		if a != etcdserverpb.AlarmType_NOSPACE.String() {
			return false
		}
	}
	return true
}

// Snapshot is an open snapshot stream from one member. Read it to the end and close it; the
// data is never held in memory beyond gRPC's flow-control window.
type Snapshot struct {
	io.Reader
	// Endpoint is the member the snapshot comes from.
	Endpoint string
	// Revision is the store revision the snapshot was taken at, as the stream's header
	// reports it or, for members that leave it out, the revision the member reported just
	// before the snapshot began (the snapshot holds at least that revision).
	Revision int64
	// Version is the etcd storage version the member records in it, such as "3.7.0" (its
	// major and minor, patch 0), as the stream reports it.
	Version string

	closers []func() error
}

// Close ends the stream and closes the client.
func (s *Snapshot) Close() error {
	var errs []error
	for _, c := range s.closers {
		errs = append(errs, c())
	}
	return errors.Join(errs...)
}

// snapshotBufferPool is the buffer pool of snapshot clients: gRPC's default tiers with one
// of 64 KiB added. A member sends its snapshot in messages of a little over 32 KiB, which
// gRPC's proto codec gathers into a buffer of its default pool: the 1 MiB tier, zeroed before
// every message. Clearing those took a fifth of etcdaas-apiserver's CPU during a backup.
var snapshotBufferPool = func() mem.BufferPool {
	pool, err := mem.NewBinaryTieredBufferPool(8, 12, 14, 15, 16, 20)
	if err != nil {
		panic(err) // constant, valid exponents
	}
	return pool
}()

// snapshotCodec is gRPC's proto codec, except that a message arriving in several pieces is
// gathered in a buffer of pool (snapshotBufferPool).
type snapshotCodec struct {
	encoding.CodecV2
	pool mem.BufferPool
}

// Unmarshal gathers data in one buffer of the pool and unmarshals it into v: a snapshotChunk
// decodes it itself, reusing its buffer.
func (c snapshotCodec) Unmarshal(data mem.BufferSlice, v any) error {
	buf := data.MaterializeToBuffer(c.pool)
	defer buf.Free()
	if chunk, ok := v.(*snapshotChunk); ok {
		return chunk.unmarshal(buf.ReadOnlyData())
	}
	return c.CodecV2.Unmarshal(mem.BufferSlice{buf}, v)
}

// snapshotDialOptions make a client read its messages with snapshotCodec.
var snapshotDialOptions = []grpc.DialOption{
	grpc.WithDefaultCallOptions(grpc.ForceCodecV2(snapshotCodec{encoding.GetCodecV2(grpcproto.Name), snapshotBufferPool})),
}

// OpenSnapshot starts streaming a snapshot from endpoint (any of access's when empty).
// Cancelling ctx aborts the stream. Errors from the member surface here, before any byte is
// read.
func OpenSnapshot(ctx context.Context, access *Access, endpoint string) (*Snapshot, error) {
	var endpoints []string
	if endpoint != "" {
		endpoints = []string{endpoint}
	}
	cli, err := access.newClient(snapshotDialOptions, endpoints...)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	r, err := openSnapshotStream(ctx, cli)
	if err != nil {
		cancel()
		_ = cli.Close()
		return nil, fmt.Errorf("starting a snapshot on %s: %w", endpoint, err)
	}
	var rev int64
	if r.chunk.header != nil {
		rev = r.chunk.header.Revision
	}
	return &Snapshot{
		Reader:   r,
		Endpoint: endpoint,
		Revision: rev,
		Version:  r.chunk.version,
		closers:  []func() error{func() error { cancel(); return nil }, cli.Close},
	}, nil
}

// OpenBestSnapshot picks the serving voting member with the highest revision and starts streaming a
// snapshot from it.
func OpenBestSnapshot(ctx context.Context, access *Access) (*Snapshot, error) {
	best, err := BestSnapshotSource(ctx, access)
	if err != nil {
		return nil, err
	}
	snap, err := OpenSnapshot(ctx, access, best.Endpoint)
	if err != nil {
		return nil, err
	}
	if snap.Revision == 0 {
		snap.Revision = best.Revision
	}
	return snap, nil
}

// Defragment defragments the database of the member at endpoint, which returns the space
// compaction freed inside its file to the file system. The member serves nothing while it
// runs, so callers defragment one member at a time. It is bounded by timeout.
func Defragment(ctx context.Context, access *Access, endpoint string, timeout time.Duration) error {
	cli, err := access.New(endpoint)
	if err != nil {
		return err
	}
	defer func() { _ = cli.Close() }()
	callCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if _, err := cli.Defragment(callCtx, endpoint); err != nil {
		return fmt.Errorf("defragmenting %s: %w", endpoint, err)
	}
	return nil
}

// DisarmNoSpace disarms the NOSPACE alarm of the member id, so that the cluster accepts
// writes again. etcd raises it again at the next write that does not fit the quota.
func DisarmNoSpace(ctx context.Context, access *Access, id uint64) error {
	cli, err := access.New()
	if err != nil {
		return err
	}
	defer func() { _ = cli.Close() }()
	callCtx, cancel := context.WithTimeout(ctx, DefaultTimeout)
	defer cancel()
	if _, err := cli.AlarmDisarm(callCtx, &clientv3.AlarmMember{MemberID: id, Alarm: etcdserverpb.AlarmType_NOSPACE}); err != nil {
		return fmt.Errorf("disarming the NOSPACE alarm of member %s: %w", FormatID(id), err)
	}
	return nil
}
