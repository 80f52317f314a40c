package etcdinstance

import (
	"context"
	"fmt"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/managedfields"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/generic"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"
	"k8s.io/apiserver/pkg/registry/rest"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1alpha1"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/validation"
	"github.com/etcdaas/etcdaas/pkg/etcdcluster"
)

// Resource paths of the storage map, as APIGroupInfo.VersionedResourcesStorageMap keys them.
const (
	ResourcePath       = "etcdinstances"
	StatusResourcePath = "etcdinstances/status"
	ScaleResourcePath  = "etcdinstances/scale"
)

// NewStorageMap builds the storage of etcdinstances and its subresources, keyed by resource
// path, for every served version. One store backs them all, so there is one watch cache.
// Adding a subresource is one more entry here. dialer reaches the members of instances for
// the backup subresource; nil makes every backup answer 503. restore configures the restore
// subresource. versions restricts the spec.version creates and updates may set.
func NewStorageMap(scheme *runtime.Scheme, optsGetter generic.RESTOptionsGetter, dialer etcdcluster.Dialer, restore RestoreOptions, versions VersionPolicy) (map[string]rest.Storage, error) {
	main, status, err := NewREST(scheme, optsGetter, versions)
	if err != nil {
		return nil, err
	}
	return map[string]rest.Storage{
		ResourcePath:        main,
		StatusResourcePath:  status,
		ScaleResourcePath:   NewScaleREST(main.Store),
		BackupResourcePath:  NewBackupREST(main.Store, dialer),
		RestoreResourcePath: NewRestoreREST(status.store, restore),
		RecoverResourcePath: NewRecoverREST(status),
		DefragResourcePath:  NewDefragREST(status),
	}, nil
}

// REST is the storage of the main resource.
type REST struct {
	*genericregistry.Store
}

var (
	_ rest.ShortNamesProvider   = &REST{}
	_ rest.CategoriesProvider   = &REST{}
	_ rest.SingularNameProvider = &REST{}
)

// NewREST returns the storage of the main resource and of the status subresource, sharing
// one underlying store; versions restricts the spec.version of the main resource.
func NewREST(scheme *runtime.Scheme, optsGetter generic.RESTOptionsGetter, versions VersionPolicy) (*REST, *StatusREST, error) {
	strategy := NewStrategy(scheme)
	strategy.Versions = versions
	store := &genericregistry.Store{
		NewFunc:                   func() runtime.Object { return &etcdaas.ETCDInstance{} },
		NewListFunc:               func() runtime.Object { return &etcdaas.ETCDInstanceList{} },
		PredicateFunc:             MatchETCDInstance,
		DefaultQualifiedResource:  etcdaas.Resource("etcdinstances"),
		SingularQualifiedResource: etcdaas.Resource("etcdinstance"),

		CreateStrategy:      strategy,
		UpdateStrategy:      strategy,
		DeleteStrategy:      strategy,
		ResetFieldsStrategy: strategy,

		TableConvertor: TableConvertor{},
	}
	options := &generic.StoreOptions{RESTOptions: optsGetter, AttrFunc: GetAttrs}
	if err := store.CompleteWithOptions(options); err != nil {
		return nil, nil, err
	}

	statusStrategy := NewStatusStrategy(scheme)
	statusStore := *store
	statusStore.UpdateStrategy = statusStrategy
	statusStore.ResetFieldsStrategy = statusStrategy
	return &REST{Store: store}, &StatusREST{store: &statusStore}, nil
}

// ShortNames returns "etcd", so that `kubectl get etcd` works.
func (r *REST) ShortNames() []string { return []string{"etcd"} }

// Categories returns "all" and "etcdaas", so that `kubectl get all` lists instances.
func (r *REST) Categories() []string { return []string{"all", "etcdaas"} }

// StatusREST is the storage of the status subresource.
type StatusREST struct {
	store *genericregistry.Store
}

var (
	_ rest.Patcher             = &StatusREST{}
	_ rest.ResetFieldsStrategy = &StatusREST{}
)

// New returns an empty instance.
func (r *StatusREST) New() runtime.Object { return &etcdaas.ETCDInstance{} }

// Destroy does nothing: the store is shared with REST, which destroys it.
func (r *StatusREST) Destroy() {}

// Get returns the whole instance, as status GET does for built-in resources.
func (r *StatusREST) Get(ctx context.Context, name string, options *metav1.GetOptions) (runtime.Object, error) {
	return r.store.Get(ctx, name, options)
}

// Update changes the status of an instance; it never creates one.
func (r *StatusREST) Update(ctx context.Context, name string, objInfo rest.UpdatedObjectInfo, createValidation rest.ValidateObjectFunc, updateValidation rest.ValidateObjectUpdateFunc, forceAllowCreate bool, options *metav1.UpdateOptions) (runtime.Object, bool, error) {
	return r.store.Update(ctx, name, objInfo, createValidation, updateValidation, false, options)
}

// GetResetFields returns the fields the status subresource resets.
func (r *StatusREST) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	return r.store.GetResetFields()
}

// ConvertToTable renders the instance as a table row.
func (r *StatusREST) ConvertToTable(ctx context.Context, object runtime.Object, tableOptions runtime.Object) (*metav1.Table, error) {
	return r.store.ConvertToTable(ctx, object, tableOptions)
}

// replicasPaths maps each served group/version to the path of replicas in an instance, for
// keeping managedFields consistent between the scale subresource and the main resource.
var replicasPaths = managedfields.ResourcePathMappings{
	v1beta1.SchemeGroupVersion.String():  fieldpath.MakePathOrDie("spec", "replicas"),
	v1alpha1.SchemeGroupVersion.String(): fieldpath.MakePathOrDie("spec", "replicas"),
}

// ScaleREST serves autoscaling/v1 Scale for an instance.
type ScaleREST struct {
	store *genericregistry.Store
}

var (
	_ rest.Patcher                  = &ScaleREST{}
	_ rest.GroupVersionKindProvider = &ScaleREST{}
)

// NewScaleREST returns the scale subresource over the main resource's store.
func NewScaleREST(store *genericregistry.Store) *ScaleREST {
	return &ScaleREST{store: store}
}

// GroupVersionKind returns autoscaling/v1 Scale for every served version, which is what
// discovery advertises and what clients send.
func (r *ScaleREST) GroupVersionKind(containingGV schema.GroupVersion) schema.GroupVersionKind {
	return autoscalingv1.SchemeGroupVersion.WithKind("Scale")
}

// New returns an empty Scale.
func (r *ScaleREST) New() runtime.Object { return &autoscalingv1.Scale{} }

// Destroy does nothing: the store is shared with REST, which destroys it.
func (r *ScaleREST) Destroy() {}

// Get returns the Scale of an instance.
func (r *ScaleREST) Get(ctx context.Context, name string, options *metav1.GetOptions) (runtime.Object, error) {
	obj, err := r.store.Get(ctx, name, options)
	if err != nil {
		return nil, err
	}
	instance, ok := obj.(*etcdaas.ETCDInstance)
	if !ok {
		return nil, apierrors.NewInternalError(fmt.Errorf("unexpected object %T", obj))
	}
	return scaleFromInstance(instance), nil
}

// Update sets spec.replicas from a Scale. resourceVersion preconditions are honoured by the
// store (409 on mismatch); the replicas are validated like the main resource's.
func (r *ScaleREST) Update(ctx context.Context, name string, objInfo rest.UpdatedObjectInfo, createValidation rest.ValidateObjectFunc, updateValidation rest.ValidateObjectUpdateFunc, forceAllowCreate bool, options *metav1.UpdateOptions) (runtime.Object, bool, error) {
	obj, _, err := r.store.Update(ctx, name,
		&scaleUpdatedObjectInfo{name: name, reqObjInfo: objInfo},
		toScaleCreateValidation(createValidation),
		toScaleUpdateValidation(updateValidation),
		false, options)
	if err != nil {
		return nil, false, err
	}
	instance, ok := obj.(*etcdaas.ETCDInstance)
	if !ok {
		return nil, false, apierrors.NewInternalError(fmt.Errorf("unexpected object %T", obj))
	}
	return scaleFromInstance(instance), false, nil
}

// ConvertToTable renders the Scale as kube-apiserver renders the scale subresource of its own
// workloads and of custom resources: NAME, DESIRED, AVAILABLE, AGE.
func (r *ScaleREST) ConvertToTable(ctx context.Context, object runtime.Object, tableOptions runtime.Object) (*metav1.Table, error) {
	return ScaleTableConvertor{}.ConvertToTable(ctx, object, tableOptions)
}

// toScaleCreateValidation lets admission see the Scale, not the instance, as for built-ins.
func toScaleCreateValidation(f rest.ValidateObjectFunc) rest.ValidateObjectFunc {
	if f == nil {
		return nil
	}
	return func(ctx context.Context, obj runtime.Object) error {
		instance, ok := obj.(*etcdaas.ETCDInstance)
		if !ok {
			return apierrors.NewInternalError(fmt.Errorf("unexpected object %T", obj))
		}
		return f(ctx, scaleFromInstance(instance))
	}
}

// toScaleUpdateValidation lets admission see Scales, not instances, as for built-ins.
func toScaleUpdateValidation(f rest.ValidateObjectUpdateFunc) rest.ValidateObjectUpdateFunc {
	if f == nil {
		return nil
	}
	return func(ctx context.Context, obj, old runtime.Object) error {
		newInstance, ok1 := obj.(*etcdaas.ETCDInstance)
		oldInstance, ok2 := old.(*etcdaas.ETCDInstance)
		if !ok1 || !ok2 {
			return apierrors.NewInternalError(fmt.Errorf("unexpected objects %T, %T", obj, old))
		}
		return f(ctx, scaleFromInstance(newInstance), scaleFromInstance(oldInstance))
	}
}

// scaleFromInstance returns the Scale view of an instance.
func scaleFromInstance(instance *etcdaas.ETCDInstance) *autoscalingv1.Scale {
	selector := instance.Status.Selector
	if selector == "" {
		selector = etcdaas.MemberSelector(instance.Name)
	}
	return &autoscalingv1.Scale{
		ObjectMeta: metav1.ObjectMeta{
			Name:              instance.Name,
			Namespace:         instance.Namespace,
			UID:               instance.UID,
			ResourceVersion:   instance.ResourceVersion,
			CreationTimestamp: instance.CreationTimestamp,
		},
		Spec: autoscalingv1.ScaleSpec{Replicas: instance.Spec.Replicas},
		Status: autoscalingv1.ScaleStatus{
			Replicas: instance.Status.Replicas,
			Selector: selector,
		},
	}
}

// scaleUpdatedObjectInfo turns the stored instance into its Scale, applies the request to it,
// and moves the new replicas (and managedFields) back into the instance.
type scaleUpdatedObjectInfo struct {
	name       string
	reqObjInfo rest.UpdatedObjectInfo
}

// Preconditions returns the request's preconditions.
func (i *scaleUpdatedObjectInfo) Preconditions() *metav1.Preconditions {
	return i.reqObjInfo.Preconditions()
}

// UpdatedObject returns the instance with the replicas of the updated Scale.
func (i *scaleUpdatedObjectInfo) UpdatedObject(ctx context.Context, oldObj runtime.Object) (runtime.Object, error) {
	stored, ok := oldObj.(*etcdaas.ETCDInstance)
	if !ok {
		return nil, apierrors.NewInternalError(fmt.Errorf("unexpected object %T", oldObj))
	}
	instance := stored.DeepCopy()
	// An empty resourceVersion means the instance does not exist.
	if instance.ResourceVersion == "" {
		return nil, apierrors.NewNotFound(etcdaas.Resource("etcdinstances/scale"), i.name)
	}

	groupVersion := v1beta1.SchemeGroupVersion
	if info, found := genericapirequest.RequestInfoFrom(ctx); found {
		gv := schema.GroupVersion{Group: info.APIGroup, Version: info.APIVersion}
		if _, known := replicasPaths[gv.String()]; known {
			groupVersion = gv
		}
	}
	managedFieldsHandler := managedfields.NewScaleHandler(instance.ManagedFields, groupVersion, replicasPaths)

	oldScale := scaleFromInstance(instance)
	scaleManagedFields, err := managedFieldsHandler.ToSubresource()
	if err != nil {
		return nil, err
	}
	oldScale.ManagedFields = scaleManagedFields

	newObj, err := i.reqObjInfo.UpdatedObject(ctx, oldScale)
	if err != nil {
		return nil, err
	}
	if newObj == nil {
		return nil, apierrors.NewBadRequest("nil update passed to Scale")
	}
	scale, ok := newObj.(*autoscalingv1.Scale)
	if !ok {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("expected input object type to be Scale, but got %T", newObj))
	}

	if errs := validation.ValidateScale(scale); len(errs) > 0 {
		return nil, apierrors.NewInvalid(autoscalingv1.SchemeGroupVersion.WithKind("Scale").GroupKind(), instance.Name, errs)
	}
	if scale.UID != "" && scale.UID != instance.UID {
		return nil, apierrors.NewConflict(etcdaas.Resource("etcdinstances/scale"), instance.Name,
			fmt.Errorf("precondition failed: UID in precondition: %v, UID in object meta: %v", scale.UID, instance.UID))
	}

	instance.Spec.Replicas = scale.Spec.Replicas
	// The store compares this with the stored resourceVersion: a stale one is a 409.
	instance.ResourceVersion = scale.ResourceVersion

	updatedEntries, err := managedFieldsHandler.ToParent(scale.ManagedFields)
	if err != nil {
		return nil, err
	}
	instance.ManagedFields = updatedEntries
	return instance, nil
}
