// Package backend defines how the controller runs the members of an etcd cluster. The
// controller decides what status to report; a Backend makes one safe membership step at a
// time toward the spec and reports what it observed.
package backend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/etcdaas/etcdaas/pkg/etcdcluster"

	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
)

// Backend runs the members of etcd clusters.
type Backend interface {
	// Sync inspects the instance's members and, when they are all healthy, makes at most
	// one membership change toward the spec (start the first member, add one learner and
	// promote it, or remove one member). It is idempotent and resumes a change an earlier
	// call (or an earlier controller) left half done. It returns a *PermanentError when
	// retrying cannot help, such as an unsupported version.
	Sync(ctx context.Context, inst *v1beta1.ETCDInstance) (*Result, error)
	// Recover rebuilds a cluster that lost quorum from one surviving voting member
	// (req.Member, or the most advanced one when empty) as a new one-member cluster with every
	// key the survivor has, discarding the others' data; later Syncs add members back as
	// learners up to spec.replicas. It resumes a recovery an earlier call left half done, and
	// records req.ID with the recovery it ends. It returns an error wrapping ErrCannotRecover
	// when the request cannot be carried out, such as when quorum is not lost, and
	// ErrRecoveredAlready when the recovery it last ended was req's.
	Recover(ctx context.Context, inst *v1beta1.ETCDInstance, req RecoverRequest) (*Result, error)
	// Delete stops every member of the instance and removes what the backend created for it.
	// It returns nil only when nothing is left.
	Delete(ctx context.Context, inst *v1beta1.ETCDInstance) error
	// Close releases what the backend runs in this process (such as embedded members)
	// without deleting any data, so that another backend on the same data resumes.
	Close() error

	etcdcluster.Dialer
}

// Forgetter is a Backend that remembers things about instances in memory (such as since when
// their members have been unhealthy): the controller calls Forget once an instance is gone,
// so that nothing of it stays behind, nor applies to a new instance of the same name.
type Forgetter interface {
	// Forget drops what is remembered of the instance namespace/name.
	Forget(namespace, name string)
}

// DefaultQuotaBackendBytes is the database quota of a member run without
// --quota-backend-bytes: etcd's default, 2 GiB.
const DefaultQuotaBackendBytes int64 = 2 << 30

// Quota is a Backend whose members may run with another database quota than etcd's default.
type Quota interface {
	// QuotaBackendBytes is the --quota-backend-bytes the members of inst run with: zero or
	// less for none (etcd's quota turned off).
	QuotaBackendBytes(inst *v1beta1.ETCDInstance) int64
}

// QuotaBackendBytes returns the database quota the members of inst run with on b: b's own
// when it is a Quota, else etcd's default.
func QuotaBackendBytes(b Backend, inst *v1beta1.ETCDInstance) int64 {
	if q, ok := b.(Quota); ok {
		return q.QuotaBackendBytes(inst)
	}
	return DefaultQuotaBackendBytes
}

// RestoreSource opens the backup an instance's spec.restoreFrom names: a new cluster starts
// from it instead of empty.
type RestoreSource interface {
	// OpenRestoreSource opens the backup of spec.restoreFrom (the newest of the source
	// instance's destination when no key is given) and returns it with its provenance, whose
	// SHA256 the backend checks before using it. It returns a *PermanentError when the spec
	// names something that cannot be restored from (no such instance, no destination).
	OpenRestoreSource(ctx context.Context, inst *v1beta1.ETCDInstance) (io.ReadCloser, *BackupProvenance, error)
}

// RemoteRestoreSource is a RestoreSource that also tells where the backup is, for a backend
// whose members read it themselves (the kubernetes backend's member pods).
type RemoteRestoreSource interface {
	RestoreSource
	// LocateRestoreSource finds the backup of spec.restoreFrom without reading it. It returns
	// a *PermanentError when the backup cannot be read by members, such as one in the
	// server's local backup directory.
	LocateRestoreSource(ctx context.Context, inst *v1beta1.ETCDInstance) (*RemoteBackup, error)
}

// RemoteBackup is a backup in an S3-compatible destination.
type RemoteBackup struct {
	// S3 is the destination, with its prefix resolved; its credentialsSecretRef names the
	// Secret, in the instance's namespace, members read it with.
	S3 v1beta1.S3Destination
	// Provenance is the backup's, with its key below S3.Prefix.
	Provenance BackupProvenance
}

// BackupProvenance is what a backup's destination records about it.
type BackupProvenance struct {
	// Key is the backup's key in its destination.
	Key string
	// SHA256 is the hex sha256 of the snapshot file.
	SHA256 string
	// Revision is the etcd revision the snapshot was taken at.
	Revision int64
}

// Result is what a Sync observed.
type Result struct {
	// Members are the members of the cluster, in ordinal order.
	Members []v1beta1.MemberStatus
	// Converged is true when the membership matches spec.replicas, there is no learner and
	// every member is ready.
	Converged bool
	// Step is a human readable description of the change under way or just made, empty
	// when there is none; it becomes the Progressing condition's message.
	Step string
	// StepReason is the reason matching Step; it becomes the Progressing condition's reason.
	StepReason StepReason
	// StepWait, when set, is how long the step under way waits on the members themselves
	// (a learner catching up with its leader): the controller looks again after it rather
	// than at its step interval, so that the wait does not keep a worker busy.
	StepWait time.Duration
	// Unhealthy explains why some member is not ready, empty when all are.
	Unhealthy string
	// MemberProblems says why each member that is not ready is not, by member name.
	MemberProblems map[string]string
	// Events are what this Sync did (a member added, promoted, removed, ...), in order;
	// add them with Record. The controller records each as an Event on the instance.
	Events []Event
	// Stalled explains why the work under way stopped and will not go on by itself, such as
	// a version roll whose restarted member did not become healthy in time, naming the
	// member and why; StalledReason is its CamelCase reason. Empty otherwise.
	Stalled, StalledReason string
	// Blocked explains, while members are unhealthy (Unhealthy says how) and no step is
	// under way, why nothing will change until a person acts and what the person can do,
	// such as a member whose data is lost while member repair is off; BlockedReason is its
	// reason. Progressing turns False with it; Degraded keeps naming the members. Empty
	// otherwise.
	Blocked       string
	BlockedReason EventReason
	// QuorumLost explains that fewer than a majority of the voting members answer, so the
	// cluster cannot serve nor change until a person recovers it; empty otherwise.
	QuorumLost string
	// Refused explains a change the spec asks for that the backend does not make while it
	// goes on running the members as they are, such as a spec.version it has no etcd for
	// (the members keep theirs): Progressing turns False with it once no step is under way,
	// and Degraded says it. RefusedReason is its CamelCase reason. Empty otherwise.
	Refused, RefusedReason string
}

// Refuse records on r that the backend does not make the change pe explains, and what it
// does instead (keeps).
func (r *Result) Refuse(pe *PermanentError, keeps string) {
	r.Refused, r.RefusedReason = pe.Message+"; "+keeps, pe.Reason
}

// ErrCannotRecover wraps why a requested recovery cannot be carried out; asking again with
// the same request cannot help.
var ErrCannotRecover = errors.New("cannot recover")

// ErrRecoveredAlready is returned by Recover for a request whose recovery has ended already:
// the write that consumes the request failed after the recovery, which must not be refused
// then as if quorum had never been lost.
var ErrRecoveredAlready = errors.New("the recovery was carried out already")

// RecoverRequest is a person's request to rebuild an instance that lost quorum.
type RecoverRequest struct {
	// ID identifies the request (etcdaas.RecoverRequestIDAnnotation); empty for a request
	// recorded by a server that gave none, which is then never known as carried out.
	ID string
	// Member is the voting member to rebuild from, empty for the most advanced survivor.
	Member string
}

// Quorum is the number of voting members a cluster of n voting members needs to serve.
func Quorum(n int) int { return n/2 + 1 }

// QuorumLoss explains the loss of quorum of a cluster with the given voting members of which
// down do not answer at all, or returns "" while a majority answers. Members that answer
// without a leader are electing one and still count.
func QuorumLoss(voting, down []string) string {
	if len(voting) == 0 || len(voting)-len(down) >= Quorum(len(voting)) {
		return ""
	}
	return fmt.Sprintf("quorum lost: %d of %d voting members do not answer (%s); %d are needed",
		len(down), len(voting), strings.Join(down, ", "), Quorum(len(voting)))
}

// StepReason names the kind of step a Sync is taking, in CamelCase as a condition reason.
type StepReason string

// The steps a backend takes.
const (
	// StepDeploying starts the first member or waits for it to start.
	StepDeploying StepReason = "Deploying"
	// StepAddingMember adds, starts or promotes a member.
	StepAddingMember StepReason = "AddingMember"
	// StepRemovingMember removes a member from the cluster, stops it or deletes its data.
	StepRemovingMember StepReason = "RemovingMember"
	// StepRestoring stops every member and restores it from a snapshot as a new cluster,
	// which makes the instance Restoring.
	StepRestoring StepReason = "Restoring"
	// StepRecovering rebuilds a cluster that lost quorum from one surviving member.
	StepRecovering StepReason = "Recovering"
	// StepUpgrading restarts one member on the image of another etcd version (a version
	// roll), or waits until the member it restarted is healthy on it.
	StepUpgrading StepReason = "Upgrading"
)

// ChangesMembership reports whether the step adds or removes a member, which makes an
// instance that is already deployed Scaling.
func (r StepReason) ChangesMembership() bool {
	return r == StepAddingMember || r == StepRemovingMember
}

// WithEndpointStatus returns ms with what its member reported about itself: etcd version,
// database sizes, revision and alarms. Members that did not answer keep ms as it is.
func WithEndpointStatus(ms v1beta1.MemberStatus, st etcdcluster.EndpointStatus) v1beta1.MemberStatus {
	if st.MemberID == 0 {
		return ms
	}
	ms.Version, ms.DBSize, ms.DBSizeInUse, ms.Revision = st.Version, st.DBSize, st.DBSizeInUse, st.Revision
	ms.Alarms = st.Alarms
	return ms
}

// Ready counts the ready members.
func (r *Result) Ready() int32 {
	var n int32
	for _, m := range r.Members {
		if m.Ready {
			n++
		}
	}
	return n
}

// ReasonInvalidBackup is the reason of the PermanentError of a spec.restoreFrom backup that
// cannot be restored: it is not an etcd snapshot, or it changed after it was taken.
const ReasonInvalidBackup = "InvalidBackup"

// PermanentError is an error that retrying at once with the same spec cannot fix.
type PermanentError struct {
	// Reason is a CamelCase reason for the Degraded condition.
	Reason string
	// Message explains the problem to the user.
	Message string
	// RetryAfter, when not zero, is how soon to look again though the spec did not change:
	// something other than the instance may remove the cause (an object of someone else's
	// that holds a name the instance needs, deleted by its owner).
	RetryAfter time.Duration
}

// Error implements error.
func (e *PermanentError) Error() string { return e.Message }

// Permanent returns a PermanentError.
func Permanent(reason, format string, args ...any) error {
	return &PermanentError{Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// IsPermanent reports whether err is or wraps a PermanentError, and returns it.
func IsPermanent(err error) (*PermanentError, bool) {
	var pe *PermanentError
	if errors.As(err, &pe) {
		return pe, true
	}
	return nil, false
}

// MemberName is the name of an instance's member with the given ordinal, such as "db-0". Both
// backends name members (and so pods, data directories and volumes) this way.
func MemberName(instance string, ordinal int) string {
	return instance + "-" + strconv.Itoa(ordinal)
}

// DesiredReplicas returns spec.replicas with the v1beta1 default applied.
func DesiredReplicas(inst *v1beta1.ETCDInstance) int {
	if inst.Spec.Replicas == nil {
		return int(v1beta1.DefaultReplicas)
	}
	return int(*inst.Spec.Replicas)
}
