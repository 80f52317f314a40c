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
