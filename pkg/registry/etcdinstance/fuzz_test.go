package etcdinstance

import (
	"testing"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1alpha1"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/validation"
)

// FuzzStrategy decodes two request bodies (an old and a new object, each in v1alpha1 or
// v1beta1 JSON, the way the server decodes them) and sends them through everything a create,
// an update, a status update and a scale do before storage: preparing, validating, warnings,
// the scale view. None of it may panic or modify the old object, whatever the input; a
// create that passes validation also passes it again after a second PrepareForCreate (the
// preparation is stable).
func FuzzStrategy(f *testing.F) {
	scheme := testScheme()
	codecs := serializer.NewCodecFactory(scheme)
	info, _ := runtime.SerializerInfoForMediaType(codecs.SupportedMediaTypes(), runtime.ContentTypeJSON)
	decoder := codecs.DecoderToVersion(info.Serializer, etcdaas.SchemeGroupVersion)
	strategy := NewStrategy(scheme)
	status := NewStatusStrategy(scheme)
	decode := func(data []byte, alpha bool) *etcdaas.ETCDInstance {
		gvk := v1beta1.SchemeGroupVersion.WithKind("ETCDInstance")
		if alpha {
			gvk = v1alpha1.SchemeGroupVersion.WithKind("ETCDInstance")
		}
		obj, _, err := decoder.Decode(data, &gvk, nil)
		if err != nil {
			return nil
		}
		instance, _ := obj.(*etcdaas.ETCDInstance)
		return instance
	}
	f.Fuzz(func(t *testing.T, oldData, newData []byte, oldAlpha, newAlpha bool) {
		old, obj := decode(oldData, oldAlpha), decode(newData, newAlpha)
		if old == nil || obj == nil {
			return // 400 before the strategy runs
		}
		version := "v1beta1"
		if newAlpha {
			version = "v1alpha1"
		}
		ctx := ctxFor(version)

		created := obj.DeepCopy()
		strategy.PrepareForCreate(ctx, created)
		errs := strategy.Validate(ctx, created)
		_ = strategy.WarningsOnCreate(ctx, created)
		if len(errs) == 0 {
			again := created.DeepCopy()
			strategy.PrepareForCreate(ctx, again)
			if errs := strategy.Validate(ctx, again); len(errs) > 0 {
				t.Fatalf("a valid create became invalid after preparing it again: %v", errs)
			}
		}

		oldCopy := old.DeepCopy()
		updated := obj.DeepCopy()
		strategy.PrepareForUpdate(ctx, updated, old)
		_ = strategy.ValidateUpdate(ctx, updated, old)
		_ = strategy.WarningsOnUpdate(ctx, updated, old)

		statusUpdated := obj.DeepCopy()
		status.PrepareForUpdate(ctx, statusUpdated, old)
		_ = status.ValidateUpdate(ctx, statusUpdated, old)
		_ = status.WarningsOnUpdate(ctx, statusUpdated, old)

		scale := scaleFromInstance(old)
		_ = validation.ValidateScale(scale)
		_ = validation.ValidateScale(&autoscalingv1.Scale{ObjectMeta: obj.ObjectMeta, Spec: autoscalingv1.ScaleSpec{Replicas: obj.Spec.Replicas}})
		_, _, _ = GetAttrs(old)
		if !apiequality.Semantic.DeepEqual(oldCopy, old) {
			t.Fatalf("an update modified the old object")
		}
	})
}
