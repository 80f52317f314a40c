// Package event is the storage of core/v1 Events in the standalone server, which has no
// Kubernetes API of its own: the controller records what it does on an instance there, and
// `kubectl describe` lists them as it does from kube-apiserver. Events expire after an hour,
// as with kube-apiserver's default --event-ttl.
package event

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/api/validation/path"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/registry/generic"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"
	"k8s.io/apiserver/pkg/registry/rest"
	apistorage "k8s.io/apiserver/pkg/storage"
	"k8s.io/apiserver/pkg/storage/names"
)

// TTL is how long an Event is kept after its last update, in seconds.
const TTL = 3600

// ResourcePath is the resource's path under /api/v1.
const ResourcePath = "events"

// internalVersion is the hub the request machinery converts Events to: there is no internal
// Event type here, so core/v1 Event is its own hub and needs no conversion.
var internalVersion = schema.GroupVersion{Group: corev1.GroupName, Version: runtime.APIVersionInternal}

// AddToScheme registers core/v1 Event and EventList, as v1 and as their own hub, and the
// fields field selectors may use on them.
func AddToScheme(s *runtime.Scheme) error {
	for _, gv := range []schema.GroupVersion{corev1.SchemeGroupVersion, internalVersion} {
		s.AddKnownTypes(gv, &corev1.Event{}, &corev1.EventList{})
	}
	return s.AddFieldLabelConversionFunc(corev1.SchemeGroupVersion.WithKind("Event"), func(label, value string) (string, string, error) {
		if _, ok := selectableFields(&corev1.Event{})[label]; !ok {
			return "", "", fmt.Errorf("field label not supported: %s", label)
		}
		return label, value, nil
	})
}

// selectableFields are the fields kube-apiserver lets field selectors use on Events; kubectl
// describe selects on involvedObject's kind, namespace, name and uid. As in kube-apiserver,
// source is source.component, or reportingComponent when an Event has no source.
func selectableFields(e *corev1.Event) fields.Set {
	source := e.Source.Component
	if source == "" {
		source = e.ReportingController
	}
	set := fields.Set{
		"involvedObject.kind":            e.InvolvedObject.Kind,
		"involvedObject.namespace":       e.InvolvedObject.Namespace,
		"involvedObject.name":            e.InvolvedObject.Name,
		"involvedObject.uid":             string(e.InvolvedObject.UID),
		"involvedObject.apiVersion":      e.InvolvedObject.APIVersion,
		"involvedObject.resourceVersion": e.InvolvedObject.ResourceVersion,
		"involvedObject.fieldPath":       e.InvolvedObject.FieldPath,
		"reason":                         e.Reason,
		"reportingComponent":             e.ReportingController,
		"source":                         source,
		"type":                           e.Type,
	}
	return generic.MergeFieldsSets(set, generic.ObjectMetaFieldsSet(&e.ObjectMeta, true))
}

// getAttrs returns the labels and selectable fields of an Event.
func getAttrs(obj runtime.Object) (labels.Set, fields.Set, error) {
	e, ok := obj.(*corev1.Event)
	if !ok {
		return nil, nil, fmt.Errorf("not an Event: %T", obj)
	}
	return e.Labels, selectableFields(e), nil
}

func match(label labels.Selector, field fields.Selector) apistorage.SelectionPredicate {
	return apistorage.SelectionPredicate{Label: label, Field: field, GetAttrs: getAttrs}
}

// REST is the storage of Events, with kube-apiserver's short name for them.
type REST struct {
	*genericregistry.Store
}

var _ rest.ShortNamesProvider = &REST{}

// ShortNames returns "ev", so that `kubectl get ev` works as against kube-apiserver.
func (r *REST) ShortNames() []string { return []string{"ev"} }

// NewREST returns the storage of Events.
func NewREST(scheme *runtime.Scheme, optsGetter generic.RESTOptionsGetter) (*REST, error) {
	s := strategy{ObjectTyper: scheme, NameGenerator: names.SimpleNameGenerator}
	store := &genericregistry.Store{
		NewFunc:                   func() runtime.Object { return &corev1.Event{} },
		NewListFunc:               func() runtime.Object { return &corev1.EventList{} },
		PredicateFunc:             match,
		DefaultQualifiedResource:  corev1.Resource("events"),
		SingularQualifiedResource: corev1.Resource("event"),
		TTLFunc: func(runtime.Object, uint64, bool) (uint64, error) {
			return TTL, nil
		},
		CreateStrategy: s,
		UpdateStrategy: s,
		DeleteStrategy: s,
		TableConvertor: TableConvertor{},
	}
	if err := store.CompleteWithOptions(&generic.StoreOptions{RESTOptions: optsGetter, AttrFunc: getAttrs}); err != nil {
		return nil, err
	}
	return &REST{Store: store}, nil
}

// strategy validates Events as kube-apiserver does in essence: a valid name, and an involved
// object in the Event's own namespace.
type strategy struct {
	runtime.ObjectTyper
	names.NameGenerator
}

func (strategy) NamespaceScoped() bool                                            { return true }
func (strategy) PrepareForCreate(context.Context, runtime.Object)                 {}
func (strategy) PrepareForUpdate(context.Context, runtime.Object, runtime.Object) {}
func (strategy) Canonicalize(runtime.Object)                                      {}
func (strategy) AllowCreateOnUpdate(context.Context) bool                         { return true }
func (strategy) AllowUnconditionalUpdate(context.Context) bool                    { return true }

func (strategy) Validate(_ context.Context, obj runtime.Object) field.ErrorList {
	return validate(obj.(*corev1.Event))
}

func (strategy) ValidateUpdate(_ context.Context, obj, _ runtime.Object) field.ErrorList {
	return validate(obj.(*corev1.Event))
}

func (strategy) WarningsOnCreate(context.Context, runtime.Object) []string { return nil }

func (strategy) WarningsOnUpdate(context.Context, runtime.Object, runtime.Object) []string {
	return nil
}

func validate(e *corev1.Event) field.ErrorList {
	errs := apivalidation.ValidateObjectMeta(&e.ObjectMeta, true, path.ValidatePathSegmentName, field.NewPath("metadata"))
	if ns := e.InvolvedObject.Namespace; ns != "" && ns != e.Namespace {
		errs = append(errs, field.Invalid(field.NewPath("involvedObject", "namespace"), ns, "does not match the namespace of the event"))
	}
	if e.InvolvedObject.Name == "" {
		errs = append(errs, field.Required(field.NewPath("involvedObject", "name"), ""))
	}
	if e.Reason == "" {
		errs = append(errs, field.Required(field.NewPath("reason"), ""))
	}
	return errs
}
