package v1beta1

import (
	"k8s.io/apimachinery/pkg/conversion"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
)

// Convert_v1beta1_ETCDInstance_To_etcdaas_ETCDInstance converts a v1beta1 object to the hub and
// drops etcdaas.PreservedFieldsAnnotation: v1beta1 expresses every field, so the annotation
// means nothing here and must never reach storage.
func Convert_v1beta1_ETCDInstance_To_etcdaas_ETCDInstance(in *ETCDInstance, out *etcdaas.ETCDInstance, s conversion.Scope) error {
	if err := autoConvert_v1beta1_ETCDInstance_To_etcdaas_ETCDInstance(in, out, s); err != nil {
		return err
	}
	out.Annotations = etcdaas.WithoutPreservedFields(in.Annotations)
	return nil
}
