// Package install registers the etcdaas.dev API group, every served version and its
// conversions and defaults in a scheme.
package install

import (
	"k8s.io/apimachinery/pkg/conversion"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1alpha1"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
)

// Install adds the internal hub, v1beta1 and v1alpha1 to scheme, v1beta1 preferred, and
// conversions between the two served versions through the hub.
func Install(scheme *runtime.Scheme) {
	utilruntime.Must(etcdaas.AddToScheme(scheme))
	utilruntime.Must(v1beta1.AddToScheme(scheme))
	utilruntime.Must(v1alpha1.AddToScheme(scheme))
	utilruntime.Must(scheme.SetVersionPriority(v1beta1.SchemeGroupVersion, v1alpha1.SchemeGroupVersion))
	utilruntime.Must(addDirectConversions(scheme))
}

// addDirectConversions lets the scheme convert an object of one served version straight into
// the other, through the hub as every request does. Requests never need it, but
// k8s.io/apiserver's MutatingAdmissionPolicy plugin does: a policy registered for one version
// (matchPolicy Equivalent) mutates a request of the other in its own version and converts the
// result directly to the request's version, which the generated conversions alone (each
// version to and from the hub) refuse as an unknown conversion.
func addDirectConversions(scheme *runtime.Scheme) error {
	pairs := []struct {
		a, b runtime.Object
		hub  func() runtime.Object
	}{
		{&v1beta1.ETCDInstance{}, &v1alpha1.ETCDInstance{}, func() runtime.Object { return &etcdaas.ETCDInstance{} }},
		{&v1beta1.ETCDInstanceList{}, &v1alpha1.ETCDInstanceList{}, func() runtime.Object { return &etcdaas.ETCDInstanceList{} }},
	}
	for _, p := range pairs {
		if err := scheme.AddConversionFunc(p.a, p.b, throughHub(scheme, p.hub)); err != nil {
			return err
		}
		if err := scheme.AddConversionFunc(p.b, p.a, throughHub(scheme, p.hub)); err != nil {
			return err
		}
	}
	return nil
}

// throughHub converts in to a new hub object and that into out.
func throughHub(scheme *runtime.Scheme, newHub func() runtime.Object) conversion.ConversionFunc {
	return func(in, out any, _ conversion.Scope) error {
		hub := newHub()
		if err := scheme.Convert(in, hub, nil); err != nil {
			return err
		}
		return scheme.Convert(hub, out, nil)
	}
}
