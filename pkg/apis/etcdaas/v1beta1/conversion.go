package v1beta1

import (
	"errors"
	"fmt"

	"k8s.io/apimachinery/pkg/conversion"
	sigsjson "sigs.k8s.io/json"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
)

// Convert_v1beta1_ETCDInstance_To_etcdaas_ETCDInstance converts a v1beta1 object to the hub and
// drops etcdaas.PreservedFieldsAnnotation: v1beta1 expresses every field, so the annotation
// means nothing here and must never reach storage. One that does not read
// (ReadPreservedFields) is kept for validation to refuse, as the v1alpha1 conversion keeps
// it: a mutating admission webhook's patch of a v1alpha1 write comes back through v1beta1.
func Convert_v1beta1_ETCDInstance_To_etcdaas_ETCDInstance(in *ETCDInstance, out *etcdaas.ETCDInstance, s conversion.Scope) error {
	if err := autoConvert_v1beta1_ETCDInstance_To_etcdaas_ETCDInstance(in, out, s); err != nil {
		return err
	}
	out.Annotations = etcdaas.WithoutPreservedFields(in.Annotations)
	if _, _, err := ReadPreservedFields(in.Annotations); err != nil {
		out.Annotations = in.Annotations
	}
	return nil
}

// ReadPreservedFields decodes the etcdaas.PreservedFieldsAnnotation of a v1alpha1 object from
// annotations: the v1beta1 spec and status fields v1alpha1 has no place for (nil when
// absent). It is strict, as the server writes it: a field it does not know, in another case
// or given twice is an error, since taking the rest would silently drop what the client
// meant by it (a misspelled "backup" would remove the backup schedule).
func ReadPreservedFields(annotations map[string]string) (*ETCDInstanceSpec, *ETCDInstanceStatus, error) {
	data, ok := annotations[etcdaas.PreservedFieldsAnnotation]
	if !ok {
		return nil, nil, nil
	}
	var preserved struct {
		Spec   *ETCDInstanceSpec   `json:"spec,omitempty"`
		Status *ETCDInstanceStatus `json:"status,omitempty"`
	}
	strict, err := sigsjson.UnmarshalStrict([]byte(data), &preserved, sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
	if err == nil && len(strict) > 0 {
		err = errors.Join(strict...)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("not the JSON this server wrote, leave it as read or remove it: %w", err)
	}
	return preserved.Spec, preserved.Status, nil
}
