package etcdinstance

import (
	"bytes"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
)

// preservedFieldsPath is where the field manager records ownership of
// etcdaas.PreservedFieldsAnnotation when a v1alpha1 client sends it.
var preservedFieldsPath = fieldpath.MakePathOrDie("metadata", "annotations", etcdaas.PreservedFieldsAnnotation)

// dropPreservedFieldsOwnership removes etcdaas.PreservedFieldsAnnotation from the managedFields
// of instance, and the entries left empty by that. The annotation exists only in v1alpha1
// views and is never stored, so an owner of it is an owner of nothing, shown to v1beta1
// clients; the fields it carries are converted into the object itself.
func dropPreservedFieldsOwnership(instance *etcdaas.ETCDInstance) {
	var kept []metav1.ManagedFieldsEntry
	changed := false
	for _, entry := range instance.ManagedFields {
		raw, empty, dropped := withoutPreservedFields(entry.FieldsV1)
		if !dropped {
			kept = append(kept, entry)
			continue
		}
		changed = true
		if !empty {
			entry.FieldsV1 = raw
			kept = append(kept, entry)
		}
	}
	if changed {
		instance.ManagedFields = kept
	}
}

// withoutPreservedFields returns fields without the annotation's path, whether nothing is
// left, and whether the path was there at all (fields is left as it is otherwise, including
// when it does not parse: the field manager reports that).
func withoutPreservedFields(fields *metav1.FieldsV1) (out *metav1.FieldsV1, empty, dropped bool) {
	if fields == nil || !bytes.Contains(fields.Raw, []byte(etcdaas.PreservedFieldsAnnotation)) {
		return fields, false, false
	}
	set := &fieldpath.Set{}
	if err := set.FromJSON(bytes.NewReader(fields.Raw)); err != nil || !set.Has(preservedFieldsPath) {
		return fields, false, false
	}
	set = set.Difference(fieldpath.NewSet(preservedFieldsPath))
	if set.Empty() {
		return nil, true, true
	}
	raw, err := set.ToJSON()
	if err != nil {
		return fields, false, false
	}
	return &metav1.FieldsV1{Raw: raw}, false, true
}
