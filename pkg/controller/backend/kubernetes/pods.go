package kubernetes

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/controller/backend"
)

// containerStuck are the waiting reasons of a container that will not start by itself.
var containerStuck = map[string]bool{
	"CrashLoopBackOff": true, "ImagePullBackOff": true, "ErrImagePull": true, "ErrImageNeverPull": true,
	"InvalidImageName": true, "CreateContainerConfigError": true, "CreateContainerError": true, "RunContainerError": true,
}

// memberPodProblem says why member ordinal's pod is not running, from what the cluster
// reports: its volume claim not bound, the pod or its claim refused at creation, the pod not
// schedulable, its container stuck. It returns "" when nothing explains it (yet): the pod
// may simply be starting.
func (b *Backend) memberPodProblem(ctx context.Context, inst *v1beta1.ETCDInstance, ordinal int) (string, error) {
	name := backend.MemberName(inst.Name, ordinal)
	core := b.opts.Client.CoreV1()
	claim := dataVolume + "-" + name
	pvc, err := core.PersistentVolumeClaims(inst.Namespace).Get(ctx, claim, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return "", err
	case pvc.Status.Phase == corev1.ClaimPending:
		class := "none: only PersistentVolumes without a class match"
		if pvc.Spec.StorageClassName != nil {
			class = *pvc.Spec.StorageClassName
		}
		return fmt.Sprintf("member %s: its volume claim %s is Pending (storage class %s): no PersistentVolume is bound to it", name, claim, class), nil
	}
	pod, err := core.Pods(inst.Namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return b.podCreationRefused(ctx, inst, name), nil
	}
	if err != nil {
		return "", err
	}
	return podProblem(pod), nil
}

// failedCreateWindow is how recent the StatefulSet controller's last refusal to create a
// member's pod must be to explain its absence: it retries with a back-off of at most about
// 17 minutes, so an older one was about an earlier attempt.
const failedCreateWindow = 20 * time.Minute

// podCreationRefused says why the StatefulSet controller could not create pod name: the
// error of its latest recent FailedCreate Event on the instance's StatefulSet about the pod
// or its claim, such as a LimitRange or a ResourceQuota refusing spec.resources or
// spec.storage. "" when there is none, or when Events cannot be read: it only explains.
func (b *Backend) podCreationRefused(ctx context.Context, inst *v1beta1.ETCDInstance, name string) string {
	events, err := b.opts.Client.CoreV1().Events(inst.Namespace).List(ctx, metav1.ListOptions{
		FieldSelector: fields.Set{"involvedObject.kind": "StatefulSet", "involvedObject.name": statefulSetName(inst), "reason": "FailedCreate"}.String(),
	})
	if err != nil {
		return ""
	}
	var latest time.Time
	var why string
	for _, e := range events.Items {
		seen := eventLastSeen(&e)
		if e.InvolvedObject.Kind != "StatefulSet" || e.InvolvedObject.Name != statefulSetName(inst) || e.Reason != "FailedCreate" ||
			b.now().Sub(seen) > failedCreateWindow || !seen.After(latest) {
			continue
		}
		// "create Pod NAME in StatefulSet STS failed error: ERR", or for its claim
		// "create Claim CLAIM for Pod NAME in StatefulSet STS failed error: ERR".
		marker := fmt.Sprintf(" Pod %s in StatefulSet %s failed error: ", name, statefulSetName(inst))
		if i := strings.Index(e.Message, marker); i >= 0 {
			latest, why = seen, e.Message[i+len(marker):]
		}
	}
	if why == "" {
		return ""
	}
	return fmt.Sprintf("member %s: its pod cannot be created: %s", name, why)
}

// eventLastSeen is when e last happened, whichever API recorded it.
func eventLastSeen(e *corev1.Event) time.Time {
	switch {
	case e.Series != nil && !e.Series.LastObservedTime.IsZero():
		return e.Series.LastObservedTime.Time
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	}
	return e.EventTime.Time
}

// podProblem describes a pod that cannot be scheduled or whose container is stuck, or "".
func podProblem(pod *corev1.Pod) string {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
			return fmt.Sprintf("member %s cannot be scheduled: %s", pod.Name, c.Message)
		}
	}
	// An init container (the seed step of a restore) runs first.
	statuses := append(append([]corev1.ContainerStatus{}, pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...)
	for _, cs := range statuses {
		w := cs.State.Waiting
		if w == nil || !containerStuck[w.Reason] {
			continue
		}
		msg := fmt.Sprintf("member %s: container %s %s", pod.Name, cs.Name, w.Reason)
		if w.Message != "" {
			msg += ": " + w.Message
		}
		if t := cs.LastTerminationState.Terminated; t != nil {
			msg += fmt.Sprintf(" (last exit code %d", t.ExitCode)
			if t.Message != "" {
				msg += ": " + lastLine(t.Message)
			}
			msg += ")"
		}
		return msg
	}
	return ""
}

// explainUnready appends to res.Unhealthy (and to the step under way) why the pods of the
// members that are not ready do not run, when the cluster says: a claim without a volume,
// an unschedulable pod or a stuck container is what a user must act on.
func (b *Backend) explainUnready(ctx context.Context, inst *v1beta1.ETCDInstance, res *backend.Result, ordinals []int) error {
	var problems []string
	for _, o := range ordinals {
		p, err := b.memberPodProblem(ctx, inst, o)
		if err != nil {
			return err
		}
		if p != "" {
			problems = append(problems, p)
		}
	}
	if len(problems) == 0 {
		return nil
	}
	why := strings.Join(problems, "; ")
	if res.Unhealthy == "" {
		res.Unhealthy = why
	} else {
		res.Unhealthy += "; " + why
	}
	if res.Step != "" {
		res.Step += ": " + why
	}
	return nil
}

// unreadyOrdinals are the ordinals of the members res reports not ready.
func unreadyOrdinals(inst *v1beta1.ETCDInstance, res *backend.Result) []int {
	var out []int
	for i, m := range res.Members {
		if !m.Ready && m.Name == backend.MemberName(inst.Name, i) {
			out = append(out, i)
		}
	}
	return out
}

// lastLine is the last non-empty line of a termination message (the tail of the log with
// FallbackToLogsOnError), at most 300 bytes.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	l := strings.TrimSpace(lines[len(lines)-1])
	if len(l) > 300 {
		l = "..." + l[len(l)-300:]
	}
	return l
}
