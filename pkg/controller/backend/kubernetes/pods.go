package kubernetes

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/controller/backend"
)

// containerStuck are the waiting reasons of a container that will not start by itself.
var containerStuck = map[string]bool{
	"CrashLoopBackOff": true, "ImagePullBackOff": true, "ErrImagePull": true, "ErrImageNeverPull": true,
	"InvalidImageName": true, "CreateContainerConfigError": true, "CreateContainerError": true, "RunContainerError": true,
}

// memberPodProblem says why member ordinal's pod is not running, from what the cluster
// reports: its volume claim not bound, the pod not schedulable, its container stuck. It
// returns "" when nothing explains it (yet): the pod may simply be starting.
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
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return podProblem(pod), nil
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
