package backend

import (
	"testing"

	"go.etcd.io/etcd/server/v3/storage"

	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
)

func TestStepReasonChangesMembership(t *testing.T) {
	for reason, want := range map[StepReason]bool{
		StepDeploying:      false,
		StepAddingMember:   true,
		StepRemovingMember: true,
		"":                 false,
	} {
		if got := reason.ChangesMembership(); got != want {
			t.Errorf("%q.ChangesMembership() = %v, want %v", reason, got, want)
		}
	}
}

func TestEventReasonsHaveATypeAndAnAction(t *testing.T) {
	for reason, info := range reasonInfo {
		if info.typ != EventTypeNormal && info.typ != EventTypeWarning || info.action == "" {
			t.Errorf("%s: type %q, action %q", reason, info.typ, info.action)
		}
	}
	if ReasonBackupFailed.Type() != EventTypeWarning || ReasonMemberAdded.Type() != EventTypeNormal || ReasonMemberAdded.Action() != "AddMember" {
		t.Error("wrong type or action for a known reason")
	}
	var nilResult *Result
	nilResult.Record(ReasonMemberAdded, "ignored")
	res := &Result{}
	res.Record(ReasonDefragmented, "Defragmented %s: %d bytes freed", "db-0", 42)
	if len(res.Events) != 1 || res.Events[0] != (Event{Reason: ReasonDefragmented, Note: "Defragmented db-0: 42 bytes freed"}) {
		t.Errorf("recorded %+v", res.Events)
	}
}

func TestQuorumLoss(t *testing.T) {
	for _, tc := range []struct {
		voting, down []string
		want         string
	}{
		{nil, nil, ""},
		{[]string{"a"}, nil, ""},
		{[]string{"a", "b", "c"}, []string{"b"}, ""},
		{[]string{"a", "b", "c"}, []string{"b", "c"}, "quorum lost: 2 of 3 voting members do not answer (b, c); 2 are needed"},
		{[]string{"a", "b"}, []string{"a"}, "quorum lost: 1 of 2 voting members do not answer (a); 2 are needed"},
		{[]string{"a"}, []string{"a"}, "quorum lost: 1 of 1 voting members do not answer (a); 1 are needed"},
	} {
		if got := QuorumLoss(tc.voting, tc.down); got != tc.want {
			t.Errorf("QuorumLoss(%v, %v) = %q, want %q", tc.voting, tc.down, got, tc.want)
		}
	}
}

// TestQuotaBackendBytes: a backend that sets no quota runs its members with etcd's default,
// which is what the alert on a database near its quota divides by.
func TestQuotaBackendBytes(t *testing.T) {
	if DefaultQuotaBackendBytes != storage.DefaultQuotaBytes {
		t.Fatalf("DefaultQuotaBackendBytes %d, etcd's default %d", DefaultQuotaBackendBytes, storage.DefaultQuotaBytes)
	}
	if got := QuotaBackendBytes(noQuota{}, &v1beta1.ETCDInstance{}); got != storage.DefaultQuotaBytes {
		t.Fatalf("quota of a backend that sets none %d, want etcd's default %d", got, storage.DefaultQuotaBytes)
	}
}

// noQuota is a Backend that sets no quota.
type noQuota struct{ Backend }
