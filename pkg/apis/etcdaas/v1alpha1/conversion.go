package v1alpha1

import (
	"encoding/json"
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/conversion"
	"k8s.io/utils/ptr"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
)

// preservedFields is the content of etcdaas.PreservedFieldsAnnotation: what an internal
// object holds that v1alpha1 has no field for, in v1beta1's JSON shape so that a person
// reading the annotation recognises it. Fields that v1alpha1 does express (replicas,
// with_tls_bundle, state, message) are left out or kept only where they carry more than the
// v1alpha1 field does.
type preservedFields struct {
	Spec   *v1beta1.ETCDInstanceSpec   `json:"spec,omitempty"`
	Status *v1beta1.ETCDInstanceStatus `json:"status,omitempty"`
}

// Phases and states are the same idea at two resolutions: every phase maps to one state, and
// a state maps back to the phase a v1alpha1 client most likely meant.
var (
	phaseToStateTable = map[etcdaas.Phase]State{
		"":                      StateNone,
		etcdaas.PhasePending:    StateNone,
		etcdaas.PhaseDeploying:  StateDeploying,
		etcdaas.PhaseScaling:    StateDeploying,
		etcdaas.PhaseRunning:    StateRunning,
		etcdaas.PhaseFailed:     StateFailed,
		etcdaas.PhaseDeleting:   StateNone,
		etcdaas.PhaseRestoring:  StateDeploying,
		etcdaas.PhaseRecovering: StateDeploying,
	}
	stateToPhaseTable = map[State]etcdaas.Phase{
		StateNone:      "",
		StateDeploying: etcdaas.PhaseDeploying,
		StateRunning:   etcdaas.PhaseRunning,
		StateFailed:    etcdaas.PhaseFailed,
	}
)

// phaseToState maps a phase to its v1alpha1 state; a phase this version does not know passes
// through unchanged so that nothing is invented.
func phaseToState(phase etcdaas.Phase) State {
	if state, ok := phaseToStateTable[phase]; ok {
		return state
	}
	return State(phase)
}

// stateToPhase is the inverse of phaseToState for the phase a state most likely means.
func stateToPhase(state State) etcdaas.Phase {
	if phase, ok := stateToPhaseTable[state]; ok {
		return phase
	}
	return etcdaas.Phase(state)
}

// v1alpha1ConditionReason is the reason of an Available condition made from a v1alpha1
// status message when no condition carried it.
const v1alpha1ConditionReason = "ReportedInV1alpha1"

// conditionsFromMessage is the condition list a v1alpha1 status with no preserved conditions
// stands for: none without a message, else an Available condition carrying it.
func conditionsFromMessage(state State, message string, since metav1.Time) []metav1.Condition {
	if message == "" {
		return nil
	}
	status := metav1.ConditionFalse
	if state == StateRunning {
		status = metav1.ConditionTrue
	}
	return []metav1.Condition{{
		Type:               etcdaas.ConditionAvailable,
		Status:             status,
		LastTransitionTime: since,
		Reason:             v1alpha1ConditionReason,
		Message:            message,
	}}
}

// Convert_etcdaas_ETCDInstanceSpec_To_v1alpha1_ETCDInstanceSpec keeps replicas and maps
// tls.enabled to with_tls_bundle; the rest goes to the annotation at the object level.
func Convert_etcdaas_ETCDInstanceSpec_To_v1alpha1_ETCDInstanceSpec(in *etcdaas.ETCDInstanceSpec, out *ETCDInstanceSpec, s conversion.Scope) error {
	out.Replicas = ptr.To(in.Replicas)
	out.WithTLSBundle = in.TLSEnabled()
	return nil
}

// Convert_v1alpha1_ETCDInstanceSpec_To_etcdaas_ETCDInstanceSpec maps replicas and
// with_tls_bundle; the object-level conversion restores the rest from the annotation.
func Convert_v1alpha1_ETCDInstanceSpec_To_etcdaas_ETCDInstanceSpec(in *ETCDInstanceSpec, out *etcdaas.ETCDInstanceSpec, s conversion.Scope) error {
	out.Replicas = ptr.Deref(in.Replicas, 0)
	out.TLS = nil
	if in.WithTLSBundle {
		out.TLS = &etcdaas.TLSSpec{Enabled: true}
	}
	return nil
}

// Convert_etcdaas_ETCDInstanceStatus_To_v1alpha1_ETCDInstanceStatus maps the phase to a state
// and the Available condition's message to message.
func Convert_etcdaas_ETCDInstanceStatus_To_v1alpha1_ETCDInstanceStatus(in *etcdaas.ETCDInstanceStatus, out *ETCDInstanceStatus, s conversion.Scope) error {
	out.State = phaseToState(in.Phase)
	out.Message = ""
	if available := meta.FindStatusCondition(in.Conditions, etcdaas.ConditionAvailable); available != nil {
		out.Message = available.Message
	}
	return nil
}

// Convert_v1alpha1_ETCDInstanceStatus_To_etcdaas_ETCDInstanceStatus maps state to a phase; the
// object-level conversion restores the message into the conditions.
func Convert_v1alpha1_ETCDInstanceStatus_To_etcdaas_ETCDInstanceStatus(in *ETCDInstanceStatus, out *etcdaas.ETCDInstanceStatus, s conversion.Scope) error {
	out.Phase = stateToPhase(in.State)
	return nil
}

// Convert_etcdaas_ETCDInstance_To_v1alpha1_ETCDInstance converts the fields v1alpha1 has and
// writes everything else into etcdaas.PreservedFieldsAnnotation, so nothing is lost.
//
// An internal object that still carries an annotation that does not read (the v1alpha1
// conversion left it for validation, see PreservedFieldsError) keeps it as it is, and no
// other is written: a mutating admission webhook that asked for v1alpha1 gets the request's
// object through here and its patch comes back through the conversion below, and the object
// must then still be refused, not carry a fresh annotation that reads and lack the fields the
// client meant.
func Convert_etcdaas_ETCDInstance_To_v1alpha1_ETCDInstance(in *etcdaas.ETCDInstance, out *ETCDInstance, s conversion.Scope) error {
	if err := autoConvert_etcdaas_ETCDInstance_To_v1alpha1_ETCDInstance(in, out, s); err != nil {
		return err
	}
	if PreservedFieldsError(in.Annotations) != nil {
		out.Annotations = in.Annotations
		return nil
	}
	preserved, err := preserve(in, out, s)
	if err != nil {
		return err
	}
	out.Annotations = etcdaas.WithoutPreservedFields(in.Annotations)
	if preserved == nil {
		return nil
	}
	data, err := json.Marshal(preserved)
	if err != nil {
		return fmt.Errorf("encoding annotation %s: %w", etcdaas.PreservedFieldsAnnotation, err)
	}
	// A new map: the input's annotations must not change under a conversion.
	annotations := make(map[string]string, len(out.Annotations)+1)
	for k, v := range out.Annotations {
		annotations[k] = v
	}
	annotations[etcdaas.PreservedFieldsAnnotation] = string(data)
	out.Annotations = annotations
	return nil
}

// preserve returns what in holds beyond what out (its v1alpha1 form) expresses, or nil.
func preserve(in *etcdaas.ETCDInstance, out *ETCDInstance, s conversion.Scope) (*preservedFields, error) {
	var spec v1beta1.ETCDInstanceSpec
	if err := v1beta1.Convert_etcdaas_ETCDInstanceSpec_To_v1beta1_ETCDInstanceSpec(&in.Spec, &spec, s); err != nil {
		return nil, err
	}
	spec.Replicas = nil // v1alpha1 has replicas
	if tls := in.Spec.TLS; tls == nil || *tls == (etcdaas.TLSSpec{Enabled: true}) {
		spec.TLS = nil // with_tls_bundle says it all
	}

	var status v1beta1.ETCDInstanceStatus
	if err := v1beta1.Convert_etcdaas_ETCDInstanceStatus_To_v1beta1_ETCDInstanceStatus(&in.Status, &status, s); err != nil {
		return nil, err
	}
	if stateToPhase(out.Status.State) == in.Status.Phase {
		status.Phase = "" // state says it all
	}
	derived := conditionsFromMessage(out.Status.State, out.Status.Message, in.CreationTimestamp)
	if conditionsEqual(in.Status.Conditions, derived) {
		status.Conditions = nil // message says it all
	}

	preserved := &preservedFields{}
	if spec != (v1beta1.ETCDInstanceSpec{}) {
		preserved.Spec = &spec
	}
	if !isZeroStatus(&status) {
		preserved.Status = &status
	}
	if preserved.Spec == nil && preserved.Status == nil {
		return nil, nil
	}
	return preserved, nil
}

// Convert_v1alpha1_ETCDInstance_To_etcdaas_ETCDInstance converts the v1alpha1 fields, restores
// the rest from etcdaas.PreservedFieldsAnnotation and drops the annotation. Where a v1alpha1
// field and the annotation disagree, the v1alpha1 field wins: it is what an old client edited.
//
// An annotation that is not the JSON the server writes (PreservedFieldsError) is not an
// error here: it stays on the internal object, with none of its fields taken, for the
// strategy's validation to refuse with a 422 naming it. A conversion error would reach the
// client of a server-side apply as a 500 (the apply machinery wraps it), and of a strategic
// merge patch as whatever it is. Whoever converts outside a request checks it
// (pkg/conversion): the object converted on would carry it, unread, without its fields.
func Convert_v1alpha1_ETCDInstance_To_etcdaas_ETCDInstance(in *ETCDInstance, out *etcdaas.ETCDInstance, s conversion.Scope) error {
	if err := autoConvert_v1alpha1_ETCDInstance_To_etcdaas_ETCDInstance(in, out, s); err != nil {
		return err
	}
	out.Annotations = etcdaas.WithoutPreservedFields(in.Annotations)

	preserved, err := readPreserved(in.Annotations)
	if err != nil {
		out.Annotations = in.Annotations
		preserved = preservedFields{}
	}

	if p := preserved.Spec; p != nil {
		var spec etcdaas.ETCDInstanceSpec
		if err := v1beta1.Convert_v1beta1_ETCDInstanceSpec_To_etcdaas_ETCDInstanceSpec(p, &spec, s); err != nil {
			return err
		}
		out.Spec.Version = spec.Version
		out.Spec.Storage = spec.Storage
		out.Spec.Backup = spec.Backup
		out.Spec.RestoreFrom = spec.RestoreFrom
		out.Spec.Defragmentation = spec.Defragmentation
		out.Spec.Resources = spec.Resources
		if spec.TLS != nil {
			tls := *spec.TLS
			tls.Enabled = in.Spec.WithTLSBundle
			out.Spec.TLS = &tls
		}
	}

	var conditions []metav1.Condition
	if p := preserved.Status; p != nil {
		var status etcdaas.ETCDInstanceStatus
		if err := v1beta1.Convert_v1beta1_ETCDInstanceStatus_To_etcdaas_ETCDInstanceStatus(p, &status, s); err != nil {
			return err
		}
		if status.Phase != "" && phaseToState(status.Phase) == in.Status.State {
			out.Status.Phase = status.Phase
		}
		out.Status.ObservedGeneration = status.ObservedGeneration
		out.Status.Replicas = status.Replicas
		out.Status.ReadyReplicas = status.ReadyReplicas
		out.Status.Selector = status.Selector
		out.Status.Members = status.Members
		out.Status.Backup = status.Backup
		conditions = status.Conditions
	}
	if conditions == nil {
		conditions = conditionsFromMessage(in.Status.State, in.Status.Message, in.CreationTimestamp)
	} else if available := meta.FindStatusCondition(conditions, etcdaas.ConditionAvailable); available != nil {
		available.Message = in.Status.Message
	} else if in.Status.Message != "" {
		conditions = append(conditions, conditionsFromMessage(in.Status.State, in.Status.Message, in.CreationTimestamp)...)
	}
	out.Status.Conditions = conditions
	return nil
}

// readPreserved decodes etcdaas.PreservedFieldsAnnotation from annotations (empty when
// absent), strictly (v1beta1.ReadPreservedFields).
func readPreserved(annotations map[string]string) (preservedFields, error) {
	spec, status, err := v1beta1.ReadPreservedFields(annotations)
	if err != nil {
		return preservedFields{}, err
	}
	preserved := preservedFields{Spec: spec, Status: status}
	// A backup added through the annotation gets the defaults v1beta1 gives it. The rest of
	// the spec's defaults do not apply: replicas is v1alpha1's, and a version left out keeps
	// the stored one (the strategy's rule), not the default.
	if p := preserved.Spec; p != nil && p.Backup != nil {
		v1beta1.SetDefaults_BackupSpec(p.Backup)
	}
	return preserved, nil
}

// PreservedFieldsError says why the etcdaas.PreservedFieldsAnnotation of annotations is not
// the JSON the server writes (nil when it is, or when there is none). On an internal object
// the annotation is left only by a v1alpha1 conversion that could not read it: validation
// refuses such an object with this error on the annotation's path.
func PreservedFieldsError(annotations map[string]string) error {
	_, _, err := v1beta1.ReadPreservedFields(annotations)
	return err
}

func isZeroStatus(status *v1beta1.ETCDInstanceStatus) bool {
	return status.ObservedGeneration == 0 && status.Phase == "" && status.Replicas == 0 &&
		status.ReadyReplicas == 0 && status.Selector == "" && len(status.Members) == 0 &&
		len(status.Conditions) == 0 && status.Backup == nil
}

func conditionsEqual(a, b []metav1.Condition) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Type != b[i].Type || a[i].Status != b[i].Status || a[i].Reason != b[i].Reason ||
			a[i].Message != b[i].Message || a[i].ObservedGeneration != b[i].ObservedGeneration ||
			!a[i].LastTransitionTime.Equal(&b[i].LastTransitionTime) {
			return false
		}
	}
	return true
}
