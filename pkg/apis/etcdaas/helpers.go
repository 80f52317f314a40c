package etcdaas

import (
	"k8s.io/apimachinery/pkg/labels"
)

// DefaultVersion is the etcd minor version used when spec.version is empty: the version of
// the etcd the project embeds and tests against.
const DefaultVersion = "3.7"

// Member labels. Every member (pod or embedded server) of an instance carries all three, and
// status.selector selects exactly them.
const (
	LabelName      = "app.kubernetes.io/name"
	LabelInstance  = "app.kubernetes.io/instance"
	LabelManagedBy = "app.kubernetes.io/managed-by"

	// LabelNameValue is the value of LabelName on every member.
	LabelNameValue = "etcd"
	// LabelManagedByValue is the value of LabelManagedBy on every member.
	LabelManagedByValue = "etcdaas"
)

// RecoverRequestedAnnotation records a recovery from quorum loss that a person requested
// through the recover subresource; the controller performs it and removes the annotation.
// Its value names the member to rebuild from, empty for the most advanced survivor. Only the
// recover subresource and the status subresource (the controller) may set or change it.
const RecoverRequestedAnnotation = "etcdaas.dev/recover-requested"

// RecoverRequestIDAnnotation is the ID the recover subresource gives each recovery request,
// set and removed with RecoverRequestedAnnotation. The backend records it with the recovery
// it carries out, so that a request still recorded after its recovery (the write that
// consumes it failed) is known as carried out, not refused for a quorum that is back.
const RecoverRequestIDAnnotation = "etcdaas.dev/recover-request-id"

// DefragRequestedAnnotation records a defragmentation of every member that a person requested
// through the defrag subresource; the controller defragments the members one at a time,
// followers first and the leader last, and removes the annotation once all are done. Its
// value is the time of the request (RFC 3339). Only the defrag subresource and the status
// subresource (the controller) may set or change it.
const DefragRequestedAnnotation = "etcdaas.dev/defrag-requested"

// PreservedFieldsAnnotation holds, on v1alpha1 objects only, the fields that v1alpha1 cannot
// express, so that an old client's read-modify-write loses nothing. It is never stored and
// never shown in v1beta1.
const PreservedFieldsAnnotation = "etcdaas.dev/v1beta1-fields"

// MemberLabels returns the labels every member of the named instance carries.
func MemberLabels(instanceName string) map[string]string {
	return map[string]string{
		LabelName:      LabelNameValue,
		LabelInstance:  instanceName,
		LabelManagedBy: LabelManagedByValue,
	}
}

// MemberSelector returns the selector of the named instance's members in string form, as
// status.selector and the scale subresource report it.
func MemberSelector(instanceName string) string {
	return labels.SelectorFromSet(MemberLabels(instanceName)).String()
}

// TLSEnabled reports whether the spec asks for TLS.
func (s *ETCDInstanceSpec) TLSEnabled() bool {
	return s.TLS != nil && s.TLS.Enabled
}

// WithoutPreservedFields returns a copy of annotations without the PreservedFieldsAnnotation, nil
// when nothing else is left of a map that had it; the input is never modified.
func WithoutPreservedFields(annotations map[string]string) map[string]string {
	if _, ok := annotations[PreservedFieldsAnnotation]; !ok {
		return annotations
	}
	if len(annotations) == 1 {
		return nil
	}
	out := make(map[string]string, len(annotations)-1)
	for k, v := range annotations {
		if k != PreservedFieldsAnnotation {
			out[k] = v
		}
	}
	return out
}
