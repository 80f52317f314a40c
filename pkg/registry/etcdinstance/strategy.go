// Package etcdinstance is the registry of etcdinstances: the strategies that decide what a
// create, an update, a status update and a scale may change, and the REST storage built on
// them.
package etcdinstance

import (
	"context"
	"fmt"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/generic"
	"k8s.io/apiserver/pkg/registry/rest"
	apistorage "k8s.io/apiserver/pkg/storage"
	"k8s.io/apiserver/pkg/storage/names"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1alpha1"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/validation"
)

// servedVersions are the API versions reset fields are declared for, in the
// fieldpath.APIVersion form ("group/version").
var servedVersions = []fieldpath.APIVersion{
	fieldpath.APIVersion(v1beta1.SchemeGroupVersion.String()),
	fieldpath.APIVersion(v1alpha1.SchemeGroupVersion.String()),
}

// Strategy is the logic of creates and updates of the main resource.
type Strategy struct {
	runtime.ObjectTyper
	names.NameGenerator
	// Versions restricts the spec.version a create, or an update that changes it, may set.
	Versions VersionPolicy
}

// NewStrategy returns the main-resource strategy for a scheme holding the etcdaas types.
func NewStrategy(typer runtime.ObjectTyper) Strategy {
	return Strategy{ObjectTyper: typer, NameGenerator: nameGenerator{}}
}

// generatedSuffixLength is the length of the random suffix names.SimpleNameGenerator adds.
const generatedSuffixLength = 5

// nameGenerator generates names from metadata.generateName as kube-apiserver does, with the
// prefix cut so that the name fits validation.MaxNameLength (kube-apiserver cuts it to fit
// 63 characters, which an instance name may not reach).
type nameGenerator struct{}

// GenerateName returns base, cut to fit, followed by a random suffix.
func (nameGenerator) GenerateName(base string) string {
	if limit := validation.MaxNameLength - generatedSuffixLength; len(base) > limit {
		base = base[:limit]
	}
	return names.SimpleNameGenerator.GenerateName(base)
}

var (
	_ rest.RESTCreateStrategy  = Strategy{}
	_ rest.RESTUpdateStrategy  = Strategy{}
	_ rest.RESTDeleteStrategy  = Strategy{}
	_ rest.ResetFieldsStrategy = Strategy{}
)

// NamespaceScoped is true: instances live in namespaces.
func (Strategy) NamespaceScoped() bool { return true }

// GetResetFields declares, in every served version, what the main resource ignores: status
// and the request annotations only the recover and defrag subresources set (keepRequests), so
// that a client sending them is not recorded in managedFields as owning what was not stored.
func (Strategy) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	out := make(map[fieldpath.APIVersion]*fieldpath.Set, len(servedVersions))
	for _, v := range servedVersions {
		set := fieldpath.NewSet(fieldpath.MakePathOrDie("status"))
		for _, key := range requestAnnotations {
			set.Insert(fieldpath.MakePathOrDie("metadata", "annotations", key))
		}
		out[v] = set
	}
	return out
}

// PrepareForCreate clears status, starts the generation at 1, fills spec.version with the
// default when the client did not (or, in v1alpha1, could not) send it and drops ownership
// of the v1alpha1 preserved-fields annotation from managedFields.
func (Strategy) PrepareForCreate(ctx context.Context, obj runtime.Object) {
	instance, ok := obj.(*etcdaas.ETCDInstance)
	if !ok {
		return
	}
	instance.Status = etcdaas.ETCDInstanceStatus{}
	instance.Generation = 1
	keepRequests(instance, nil)
	dropPreservedFieldsOwnership(instance)
	if instance.Spec.Version == "" {
		instance.Spec.Version = etcdaas.DefaultVersion
	}
}

// PrepareForUpdate keeps the stored status and bumps the generation when the spec changes.
// A v1alpha1 client that dropped the preserved-fields annotation cannot express version,
// storage and restoreFrom; they are kept from the stored object rather than wiped (storage
// and restoreFrom are immutable: wiping them would fail the update over fields the client
// cannot see). Ownership of the preserved-fields annotation is dropped from managedFields.
func (Strategy) PrepareForUpdate(ctx context.Context, obj, old runtime.Object) {
	newObj, ok1 := obj.(*etcdaas.ETCDInstance)
	oldObj, ok2 := old.(*etcdaas.ETCDInstance)
	if !ok1 || !ok2 {
		return
	}
	newObj.Status = oldObj.Status
	keepRequests(newObj, oldObj)
	dropPreservedFieldsOwnership(newObj)
	if requestVersion(ctx) == v1alpha1.SchemeGroupVersion.Version {
		keepInexpressible(&newObj.Spec, &oldObj.Spec)
	}
	if newObj.Spec.Version == "" {
		newObj.Spec.Version = oldObj.Spec.Version
	}
	if !apiequality.Semantic.DeepEqual(newObj.Spec, oldObj.Spec) {
		newObj.Generation = oldObj.Generation + 1
	}
}

// keepInexpressible gives spec the immutable fields of old that v1alpha1 cannot express,
// where spec (from a v1alpha1 client without the preserved-fields annotation) has none.
func keepInexpressible(spec, old *etcdaas.ETCDInstanceSpec) {
	if spec.Storage == nil {
		spec.Storage = old.Storage.DeepCopy()
	}
	if spec.RestoreFrom == nil {
		spec.RestoreFrom = old.RestoreFrom.DeepCopy()
	}
}

// requestAnnotations record requests only a subresource of their own may make: recover
// (admin) and defrag (edit).
var requestAnnotations = []string{etcdaas.RecoverRequestedAnnotation, etcdaas.RecoverRequestIDAnnotation, etcdaas.DefragRequestedAnnotation}

// keepRequests gives obj the recover and defrag requests of old (none when old is nil):
// through the main resource nobody requests (or cancels) them, which needs their subresources.
func keepRequests(obj, old *etcdaas.ETCDInstance) {
	for _, key := range requestAnnotations {
		value, requested := "", false
		if old != nil {
			value, requested = old.Annotations[key]
		}
		if requested {
			if obj.Annotations == nil {
				obj.Annotations = map[string]string{}
			}
			obj.Annotations[key] = value
		} else if _, ok := obj.Annotations[key]; ok {
			delete(obj.Annotations, key)
			if len(obj.Annotations) == 0 {
				obj.Annotations = nil
			}
		}
	}
}

// Validate checks a new instance, reporting field paths of the version the client sent.
func (s Strategy) Validate(ctx context.Context, obj runtime.Object) field.ErrorList {
	instance, ok := obj.(*etcdaas.ETCDInstance)
	if !ok {
		return field.ErrorList{field.InternalError(nil, fmt.Errorf("unexpected object %T", obj))}
	}
	if errs := unreadPreservedFields(instance); len(errs) > 0 {
		return errs
	}
	errs := s.Versions.restrictVersion(validation.ValidateETCDInstance(instance), instance.Spec.Version)
	return validation.ForVersion(errs, requestVersion(ctx))
}

// unreadPreservedFields refuses an instance that still carries the preserved-fields
// annotation: the conversions leave it only when they could not read it (see
// v1alpha1.PreservedFieldsError), so none of the fields it stands for were taken. It is the
// only error reported then, as the others would come from those missing fields.
func unreadPreservedFields(instance *etcdaas.ETCDInstance) field.ErrorList {
	err := v1alpha1.PreservedFieldsError(instance.Annotations)
	if err == nil {
		return nil // none: both conversions to the internal type take off one that reads
	}
	path := field.NewPath("metadata", "annotations").Key(etcdaas.PreservedFieldsAnnotation)
	return field.ErrorList{field.Invalid(path, field.OmitValueType{}, err.Error())}
}

// ValidateUpdate checks an update, reporting field paths of the version the client sent. The
// version policy applies only when the update changes spec.version, so that an instance
// stored before the policy can still be edited and deleted.
func (s Strategy) ValidateUpdate(ctx context.Context, obj, old runtime.Object) field.ErrorList {
	newObj, ok1 := obj.(*etcdaas.ETCDInstance)
	oldObj, ok2 := old.(*etcdaas.ETCDInstance)
	if !ok1 || !ok2 {
		return field.ErrorList{field.InternalError(nil, fmt.Errorf("unexpected objects %T, %T", obj, old))}
	}
	if errs := unreadPreservedFields(newObj); len(errs) > 0 {
		return errs
	}
	errs := validation.ValidateETCDInstanceUpdate(newObj, oldObj)
	if newObj.Spec.Version != oldObj.Spec.Version {
		errs = s.Versions.restrictVersion(errs, newObj.Spec.Version)
	}
	return validation.ForVersion(errs, requestVersion(ctx))
}

// WarningsOnCreate warns about an even number of replicas, about fractional bytes in
// spec.resources, about spec.resources on a server whose members run in-process, and about
// finalizer names without a domain or a path, as for a custom resource.
func (s Strategy) WarningsOnCreate(ctx context.Context, obj runtime.Object) []string {
	instance, ok := obj.(*etcdaas.ETCDInstance)
	if !ok {
		return nil
	}
	warnings := validation.FinalizerWarnings(instance.Finalizers, nil)
	warnings = append(warnings, validation.ReplicasWarnings(instance.Spec.Replicas, field.NewPath("spec", "replicas"))...)
	warnings = append(warnings, validation.ResourcesWarnings(instance.Spec.Resources, field.NewPath("spec", "resources"))...)
	return append(warnings, s.Versions.resourcesWarnings(instance.Spec.Resources, nil)...)
}

// WarningsOnUpdate warns about the finalizers the update adds whose names have no domain or
// no path, about an even number of replicas when the update changes replicas, and, when it
// changes spec.resources, about fractional bytes in them and about them on a server whose
// members run in-process.
func (s Strategy) WarningsOnUpdate(ctx context.Context, obj, old runtime.Object) []string {
	newObj, ok1 := obj.(*etcdaas.ETCDInstance)
	oldObj, ok2 := old.(*etcdaas.ETCDInstance)
	if !ok1 || !ok2 {
		return nil
	}
	warnings := validation.FinalizerWarnings(newObj.Finalizers, oldObj.Finalizers)
	if newObj.Spec.Replicas != oldObj.Spec.Replicas {
		warnings = append(warnings, validation.ReplicasWarnings(newObj.Spec.Replicas, field.NewPath("spec", "replicas"))...)
	}
	if !apiequality.Semantic.DeepEqual(newObj.Spec.Resources, oldObj.Spec.Resources) {
		warnings = append(warnings, validation.ResourcesWarnings(newObj.Spec.Resources, field.NewPath("spec", "resources"))...)
	}
	return append(warnings, s.Versions.resourcesWarnings(newObj.Spec.Resources, oldObj.Spec.Resources)...)
}

// Canonicalize does nothing: the internal form is canonical.
func (Strategy) Canonicalize(obj runtime.Object) {}

// AllowCreateOnUpdate is false: a PUT of a missing instance is a 404.
func (Strategy) AllowCreateOnUpdate(ctx context.Context) bool { return false }

// AllowUnconditionalUpdate is true: a PUT without resourceVersion overwrites, as for built-in
// resources.
func (Strategy) AllowUnconditionalUpdate(ctx context.Context) bool { return true }

// StatusStrategy is the logic of updates through the status subresource: only status (and
// the metadata a controller may legitimately touch) changes.
type StatusStrategy struct {
	Strategy
}

// NewStatusStrategy returns the status strategy for a scheme holding the etcdaas types.
func NewStatusStrategy(typer runtime.ObjectTyper) StatusStrategy {
	return StatusStrategy{Strategy: NewStrategy(typer)}
}

// GetResetFields declares that the status subresource ignores spec and the metadata it does
// not let through, in every served version.
func (StatusStrategy) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	out := make(map[fieldpath.APIVersion]*fieldpath.Set, len(servedVersions))
	for _, v := range servedVersions {
		out[v] = fieldpath.NewSet(
			fieldpath.MakePathOrDie("spec"),
			fieldpath.MakePathOrDie("metadata", "finalizers"),
			fieldpath.MakePathOrDie("metadata", "ownerReferences"),
		)
	}
	return out
}

// PrepareForUpdate keeps the stored spec and every metadata field except labels and
// annotations (and the managedFields and resourceVersion the request machinery maintains);
// the generation does not move. Ownership of the preserved-fields annotation is dropped from
// managedFields.
func (StatusStrategy) PrepareForUpdate(ctx context.Context, obj, old runtime.Object) {
	newObj, ok1 := obj.(*etcdaas.ETCDInstance)
	oldObj, ok2 := old.(*etcdaas.ETCDInstance)
	if !ok1 || !ok2 {
		return
	}
	newObj.Spec = oldObj.Spec
	meta := *oldObj.ObjectMeta.DeepCopy()
	meta.Labels = newObj.Labels
	meta.Annotations = newObj.Annotations
	meta.ManagedFields = newObj.ManagedFields
	meta.ResourceVersion = newObj.ResourceVersion
	newObj.ObjectMeta = meta
	dropPreservedFieldsOwnership(newObj)
}

// ValidateUpdate checks a status update, reporting field paths of the version the client sent.
func (StatusStrategy) ValidateUpdate(ctx context.Context, obj, old runtime.Object) field.ErrorList {
	newObj, ok1 := obj.(*etcdaas.ETCDInstance)
	oldObj, ok2 := old.(*etcdaas.ETCDInstance)
	if !ok1 || !ok2 {
		return field.ErrorList{field.InternalError(nil, fmt.Errorf("unexpected objects %T, %T", obj, old))}
	}
	if errs := unreadPreservedFields(newObj); len(errs) > 0 {
		return errs
	}
	return validation.ForVersion(validation.ValidateETCDInstanceStatusUpdate(newObj, oldObj), requestVersion(ctx))
}

// WarningsOnUpdate returns nothing: a status writer cannot act on spec warnings.
func (StatusStrategy) WarningsOnUpdate(ctx context.Context, obj, old runtime.Object) []string {
	return nil
}

// requestVersion is the API version of the request in ctx ("v1alpha1", "v1beta1"), or "".
func requestVersion(ctx context.Context) string {
	if info, ok := genericapirequest.RequestInfoFrom(ctx); ok {
		return info.APIVersion
	}
	return ""
}

// SelectableFields returns the fields field selectors can use: metadata.name and
// metadata.namespace.
func SelectableFields(obj *etcdaas.ETCDInstance) fields.Set {
	return generic.ObjectMetaFieldsSet(&obj.ObjectMeta, true)
}

// GetAttrs returns the labels and selectable fields of an instance.
func GetAttrs(obj runtime.Object) (labels.Set, fields.Set, error) {
	instance, ok := obj.(*etcdaas.ETCDInstance)
	if !ok {
		return nil, nil, fmt.Errorf("not an ETCDInstance: %T", obj)
	}
	return instance.Labels, SelectableFields(instance), nil
}

// MatchETCDInstance is the filter for list and watch with label and field selectors.
func MatchETCDInstance(label labels.Selector, field fields.Selector) apistorage.SelectionPredicate {
	return apistorage.SelectionPredicate{
		Label:    label,
		Field:    field,
		GetAttrs: GetAttrs,
	}
}
