package server

import (
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/admission/initializer"
	"k8s.io/apiserver/pkg/admission/plugin/resourcequota"
	quota "k8s.io/apiserver/pkg/quota/v1"
	"k8s.io/apiserver/pkg/quota/v1/generic"
	genericserver "k8s.io/apiserver/pkg/server"
	genericoptions "k8s.io/apiserver/pkg/server/options"
)

// addResourceQuotaAdmission adds kube-apiserver's ResourceQuota admission plugin to the
// aggregated server's admission, enabled by default and last, after the validating webhooks,
// where kube-apiserver runs it: a ResourceQuota of the cluster with
// count/etcdinstances.etcdaas.dev then caps the ETCDInstances of its namespace as it caps the
// objects of a CRD (kube-controller-manager's resourcequota controller keeps its status.used).
// --disable-admission-plugins=ResourceQuota turns it off.
func addResourceQuotaAdmission(ro *genericoptions.RecommendedOptions) {
	resourcequota.Register(ro.Admission.Plugins)
	ro.Admission.RecommendedPluginOrder = append(ro.Admission.RecommendedPluginOrder, resourcequota.PluginName)
	extra := ro.ExtraAdmissionInitializers
	ro.ExtraAdmissionInitializers = func(c *genericserver.RecommendedConfig) ([]admission.PluginInitializer, error) {
		initializers, err := extra(c)
		if err != nil {
			return nil, err
		}
		// No evaluator registered: the plugin creates an object-count evaluator for each
		// resource it is first asked about (etcdinstances.etcdaas.dev here).
		return append(initializers, quotaConfigurationInitializer{generic.NewConfiguration(nil, nil)}), nil
	}
}

// quotaConfigurationInitializer hands the quota configuration to the plugins that want one
// (ResourceQuota). RecommendedOptions runs it after the generic initializer, which gives the
// plugin the stop channel its evaluator needs first.
type quotaConfigurationInitializer struct {
	config quota.Configuration
}

// Initialize sets the quota configuration of plugin when it wants one.
func (i quotaConfigurationInitializer) Initialize(plugin admission.Interface) {
	if wants, ok := plugin.(initializer.WantsQuotaConfiguration); ok {
		wants.SetQuotaConfiguration(i.config)
	}
}
