package kubernetes

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
)

// The requests of a member's etcd container for a resource spec.resources does not name.
const (
	DefaultCPURequest    = "100m"
	DefaultMemoryRequest = "128Mi"
)

// annotationPodResources on the member pod template records the etcd container's resources
// as this controller set them (resourcesRecord). A pod carries its template's annotations
// unchanged, so comparing a pod's record with the instance's tells whether the pod was made
// with the resources spec.resources asks for. The pod's own container resources cannot tell:
// a LimitRange adds limits and requests to pods that the template does not have.
const annotationPodResources = "etcdaas.dev/resources"

// memberResources are the etcd container's resources for inst: spec.resources, a request
// equal to its limit for a resource with a limit only (what the API server would give the
// pod, written out so that the template says what pods get), and the default request for
// cpu and memory where spec.resources names neither a request nor a limit.
func memberResources(inst *v1beta1.ETCDInstance) corev1.ResourceRequirements {
	out := corev1.ResourceRequirements{Requests: corev1.ResourceList{}}
	var spec v1beta1.MemberResources
	if inst.Spec.Resources != nil {
		spec = *inst.Spec.Resources
	}
	for name, q := range spec.Limits {
		if out.Limits == nil {
			out.Limits = corev1.ResourceList{}
		}
		out.Limits[corev1.ResourceName(name)] = q.DeepCopy()
		out.Requests[corev1.ResourceName(name)] = q.DeepCopy()
	}
	for name, q := range spec.Requests {
		out.Requests[corev1.ResourceName(name)] = q.DeepCopy()
	}
	for name, q := range map[corev1.ResourceName]string{corev1.ResourceCPU: DefaultCPURequest, corev1.ResourceMemory: DefaultMemoryRequest} {
		if _, ok := out.Requests[name]; !ok {
			out.Requests[name] = resource.MustParse(q)
		}
	}
	return out
}

// resourcesRecord is the canonical form of a container's resources: JSON with sorted keys
// and canonical quantities, so that "1000m" and "1" record alike.
func resourcesRecord(r corev1.ResourceRequirements) string {
	canonical := corev1.ResourceRequirements{Requests: canonicalList(r.Requests), Limits: canonicalList(r.Limits)}
	data, err := json.Marshal(canonical)
	if err != nil {
		// A ResourceRequirements of quantities always encodes.
		panic(fmt.Sprintf("encoding resources: %v", err))
	}
	return string(data)
}

func canonicalList(list corev1.ResourceList) corev1.ResourceList {
	if len(list) == 0 {
		return nil
	}
	out := make(corev1.ResourceList, len(list))
	for name, q := range list {
		out[name] = resource.MustParse(q.String())
	}
	return out
}

// defaultResourcesRecord is the record of the resources of an instance without
// spec.resources: what every member pod ran with before the field existed.
var defaultResourcesRecord = resourcesRecord(memberResources(&v1beta1.ETCDInstance{}))

// podResourcesRecord is the record of the resources a member pod was made with; a pod
// without one was made before the controller recorded them, with the default resources.
func podResourcesRecord(pod *corev1.Pod) string {
	if record, ok := pod.Annotations[annotationPodResources]; ok {
		return record
	}
	return defaultResourcesRecord
}

// describeResources says a container's resources for people: "requests cpu=100m
// memory=128Mi, limits memory=1Gi".
func describeResources(r corev1.ResourceRequirements) string {
	parts := []string{"requests " + describeList(r.Requests)}
	if len(r.Limits) > 0 {
		parts = append(parts, "limits "+describeList(r.Limits))
	}
	return strings.Join(parts, ", ")
}

func describeList(list corev1.ResourceList) string {
	if len(list) == 0 {
		return "none"
	}
	var out []string
	for name, q := range list {
		out = append(out, fmt.Sprintf("%s=%s", name, q.String()))
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

// describeRecord says the resources of a record for people, or the record itself when it is
// not one (an annotation edited by hand).
func describeRecord(record string) string {
	var r corev1.ResourceRequirements
	if err := json.Unmarshal([]byte(record), &r); err != nil {
		return record
	}
	return describeResources(r)
}
