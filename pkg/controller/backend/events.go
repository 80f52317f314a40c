package backend

import "fmt"

// EventReason names something a step did, in CamelCase as an Event's reason. The controller
// records every event a Sync reports as an Event on the instance.
type EventReason string

// The reasons of the Events steps report. Each has a fixed type (Normal or Warning) and action.
const (
	// ReasonMemberAdded: a member was added to the cluster as a learner and started.
	ReasonMemberAdded EventReason = "MemberAdded"
	// ReasonMemberPromoted: a learner became a voting member.
	ReasonMemberPromoted EventReason = "MemberPromoted"
	// ReasonMemberRemoved: a member was removed from the cluster and its data deleted.
	ReasonMemberRemoved EventReason = "MemberRemoved"
	// ReasonMemberReplaced: an unhealthy member was removed so that a new one replaces it.
	ReasonMemberReplaced EventReason = "MemberReplaced"
	// ReasonMemberUnhealthy: a member has been unhealthy for longer than the grace period.
	ReasonMemberUnhealthy EventReason = "MemberUnhealthy"
	// ReasonMemberRepairDisabled: a member will not come back by itself (its data is lost,
	// or it stayed unhealthy for long) and member repair is off, so nothing replaces it.
	ReasonMemberRepairDisabled EventReason = "MemberRepairDisabled"
	// ReasonMemberNotJoining: a member added by a scale-up, or as the successor of a replaced
	// member, has not served for long, or serves but has stayed behind its leader for long so
	// that etcd does not promote it, and nothing changes until a person acts (fixes its pod,
	// disk or network, or, for a scale-up, scales back).
	ReasonMemberNotJoining EventReason = "MemberNotJoining"
	// ReasonReplacementCancelled: a member whose replacement was decided is healthy again
	// before the replacement touched it, so it is kept.
	ReasonReplacementCancelled EventReason = "ReplacementCancelled"
	// ReasonDefragmented: a member's database was defragmented.
	ReasonDefragmented EventReason = "Defragmented"
	// ReasonDefragmentFailed: defragmenting a member failed.
	ReasonDefragmentFailed EventReason = "DefragmentFailed"
	// ReasonMemberUpgraded: a member now runs another etcd version.
	ReasonMemberUpgraded EventReason = "MemberUpgraded"
	// ReasonUpgradeFailed: a version upgrade stopped.
	ReasonUpgradeFailed EventReason = "UpgradeFailed"
	// ReasonBackupSucceeded: a backup was written to its destination.
	ReasonBackupSucceeded EventReason = "BackupSucceeded"
	// ReasonBackupFailed: taking or writing a backup failed.
	ReasonBackupFailed EventReason = "BackupFailed"
	// ReasonRestored: the cluster was restored from a backup.
	ReasonRestored EventReason = "Restored"
	// ReasonRestoreFailed: restoring from a backup failed.
	ReasonRestoreFailed EventReason = "RestoreFailed"
	// ReasonQuorumLost: the cluster lost quorum; only a recovery brings it back.
	ReasonQuorumLost EventReason = "QuorumLost"
	// ReasonRecovered: the cluster was rebuilt from a surviving member after losing quorum.
	ReasonRecovered EventReason = "Recovered"
	// ReasonRecoveryFailed: a recovery from quorum loss failed.
	ReasonRecoveryFailed EventReason = "RecoveryFailed"
	// ReasonCertificatesRenewed: a TLS instance's certificates were issued again, from its
	// CA, before they expire.
	ReasonCertificatesRenewed EventReason = "CertificatesRenewed"
	// ReasonCAChanged: a TLS instance got a new CA, added to the CAs its members and clients
	// trust; its certificates are issued from it from then on.
	ReasonCAChanged EventReason = "CAChanged"
)

// Event types, as core/v1 and events.k8s.io/v1 spell them.
const (
	EventTypeNormal  = "Normal"
	EventTypeWarning = "Warning"
)

// reasonInfo is the type and action (what the controller did, as events.k8s.io/v1 requires)
// of each reason.
var reasonInfo = map[EventReason]struct{ typ, action string }{
	ReasonMemberAdded:          {EventTypeNormal, "AddMember"},
	ReasonMemberPromoted:       {EventTypeNormal, "PromoteMember"},
	ReasonMemberRemoved:        {EventTypeNormal, "RemoveMember"},
	ReasonMemberReplaced:       {EventTypeNormal, "ReplaceMember"},
	ReasonMemberUnhealthy:      {EventTypeWarning, "CheckHealth"},
	ReasonMemberRepairDisabled: {EventTypeWarning, "CheckHealth"},
	ReasonMemberNotJoining:     {EventTypeWarning, "AddMember"},
	ReasonReplacementCancelled: {EventTypeNormal, "ReplaceMember"},
	ReasonDefragmented:         {EventTypeNormal, "Defragment"},
	ReasonDefragmentFailed:     {EventTypeWarning, "Defragment"},
	ReasonMemberUpgraded:       {EventTypeNormal, "Upgrade"},
	ReasonUpgradeFailed:        {EventTypeWarning, "Upgrade"},
	ReasonBackupSucceeded:      {EventTypeNormal, "Backup"},
	ReasonBackupFailed:         {EventTypeWarning, "Backup"},
	ReasonRestored:             {EventTypeNormal, "Restore"},
	ReasonRestoreFailed:        {EventTypeWarning, "Restore"},
	ReasonQuorumLost:           {EventTypeWarning, "CheckHealth"},
	ReasonRecovered:            {EventTypeNormal, "Recover"},
	ReasonRecoveryFailed:       {EventTypeWarning, "Recover"},
	ReasonCertificatesRenewed:  {EventTypeNormal, "RenewCertificates"},
	ReasonCAChanged:            {EventTypeWarning, "RotateCA"},
}

// Type is the Event type of the reason: Warning for failures, Normal otherwise.
func (r EventReason) Type() string {
	if i, ok := reasonInfo[r]; ok {
		return i.typ
	}
	return EventTypeNormal
}

// Action is what the controller did, as the Event's action.
func (r EventReason) Action() string {
	if i, ok := reasonInfo[r]; ok {
		return i.action
	}
	return string(r)
}

// Event is something a step did that the user sees as an Event on the instance.
type Event struct {
	// Reason says what happened.
	Reason EventReason
	// Note is the human readable message, naming the member and the numbers that matter.
	Note string
}

// Type is the event's type, from its reason.
func (e Event) Type() string { return e.Reason.Type() }

// Action is the event's action, from its reason.
func (e Event) Action() string { return e.Reason.Action() }

// Record adds an event to the result; the controller records it on the instance once the
// Sync returns, also when it returns an error. It is safe on a nil result (and does nothing).
func (r *Result) Record(reason EventReason, format string, args ...any) {
	if r == nil {
		return
	}
	r.Events = append(r.Events, Event{Reason: reason, Note: fmt.Sprintf(format, args...)})
}
