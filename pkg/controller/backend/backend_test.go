package backend

import "testing"

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
