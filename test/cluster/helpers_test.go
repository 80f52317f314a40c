package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/test/e2e/framework"
)

// mustRun runs kubectl and fails the test when it fails.
func mustRun(t *testing.T, k framework.KubectlClient, stdin string, args ...string) string {
	t.Helper()
	r := k.Run(t.Context(), stdin, args...)
	if r.Err != nil {
		t.Fatalf("%s", r)
	}
	return r.Stdout
}

// mustRunWaiting runs a kubectl etcdaas command that waits up to wait for what it asked
// (its --timeout) and fails the test when it fails; kubectl itself is given a minute more,
// so that the command's own timeout, with its message, comes first.
func mustRunWaiting(t *testing.T, k framework.KubectlClient, wait time.Duration, args ...string) string {
	t.Helper()
	k.Timeout = wait + time.Minute
	return mustRun(t, k, "", append(args, "--timeout="+wait.String())...)
}

// getInstance reads an ETCDInstance through the aggregator with kubectl.
func (e *etcdaasInstall) getInstance(ctx context.Context, ns, name string) (*v1beta1.ETCDInstance, error) {
	r := e.kubectl(e.c.Tools[framework.Kubectl]).Run(ctx, "", "get", "etcdinstances.etcdaas.dev", name, "-n", ns, "-o", "json")
	if r.Err != nil {
		return nil, fmt.Errorf("%s", r)
	}
	inst := &v1beta1.ETCDInstance{}
	if err := json.Unmarshal([]byte(r.Stdout), inst); err != nil {
		return nil, fmt.Errorf("decoding %s/%s: %w", ns, name, err)
	}
	return inst, nil
}

// describe is a one-line summary of an instance's status for failure messages.
func describe(inst *v1beta1.ETCDInstance) string {
	var ms []string
	for _, m := range inst.Status.Members {
		s := m.Name
		if m.Learner {
			s += "(learner)"
		}
		if !m.Ready {
			s += "(not ready)"
		}
		ms = append(ms, s)
	}
	var conds []string
	for _, c := range inst.Status.Conditions {
		conds = append(conds, fmt.Sprintf("%s=%s %s: %s", c.Type, c.Status, c.Reason, c.Message))
	}
	return fmt.Sprintf("phase %s, %d/%d ready, members [%s], conditions [%s]", inst.Status.Phase,
		inst.Status.ReadyReplicas, inst.Status.Replicas, strings.Join(ms, " "), strings.Join(conds, "; "))
}

// settled reports whether an instance runs exactly n ready voting members and has observed
// its latest spec.
func settled(inst *v1beta1.ETCDInstance, n int) bool {
	if inst.Status.Phase != v1beta1.PhaseRunning || inst.Status.ObservedGeneration < inst.Generation || len(inst.Status.Members) != n {
		return false
	}
	for _, m := range inst.Status.Members {
		if m.Learner || !m.Ready {
			return false
		}
	}
	return int(inst.Status.ReadyReplicas) == n
}

// waitSettled waits until the instance runs n ready voting members; observe is called with
// every status read (for checks of the way there).
func (e *etcdaasInstall) waitSettled(ctx context.Context, ns, name string, n int, timeout time.Duration, observe func(*v1beta1.ETCDInstance)) (*v1beta1.ETCDInstance, error) {
	var last *v1beta1.ETCDInstance
	err := framework.Poll(ctx, 250*time.Millisecond, timeout, fmt.Sprintf("%s/%s running %d members", ns, name, n), func(ctx context.Context) (bool, error) {
		inst, err := e.getInstance(ctx, ns, name)
		if err != nil {
			return false, err
		}
		last = inst
		if observe != nil {
			observe(inst)
		}
		if settled(inst, n) {
			return true, nil
		}
		return false, fmt.Errorf("%s", describe(inst))
	})
	return last, err
}

// createNamespace creates a namespace that is deleted when the test ends.
func (e *etcdaasInstall) createNamespace(t *testing.T, ns string) {
	t.Helper()
	if _, err := e.c.Kube.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// clientPod runs etcdctl with args in a pod of ns (the etcd image, the pod network, the
// cluster's DNS) and returns its output and whether it succeeded. Volumes, when given, are
// mounted at /certs (the instance's TLS Secret).
func (e *etcdaasInstall) clientPod(ctx context.Context, ns, name, tlsSecret string, args ...string) (string, bool, error) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever,
			AutomountServiceAccountToken:  ptr.To(false),
			TerminationGracePeriodSeconds: ptr.To[int64](0),
			Containers: []corev1.Container{{
				Name: "etcdctl", Image: e.c.Images.Etcd, ImagePullPolicy: corev1.PullNever,
				Command: append([]string{"etcdctl", "--dial-timeout=5s", "--command-timeout=10s"}, args...),
			}},
		},
	}
	if tlsSecret != "" {
		pod.Spec.Volumes = []corev1.Volume{{Name: "certs", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: tlsSecret}}}}
		pod.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "certs", MountPath: "/certs", ReadOnly: true}}
	}
	pods := e.c.Kube.CoreV1().Pods(ns)
	if _, err := pods.Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return "", false, err
	}
	defer func() {
		_ = pods.Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
		_ = framework.Poll(context.Background(), 250*time.Millisecond, 30*time.Second, "client pod gone", func(ctx context.Context) (bool, error) {
			_, err := pods.Get(ctx, name, metav1.GetOptions{})
			return apierrors.IsNotFound(err), nil
		})
	}()
	var phase corev1.PodPhase
	err := framework.Poll(ctx, 250*time.Millisecond, 90*time.Second, "client pod "+name+" done", func(ctx context.Context) (bool, error) {
		p, err := pods.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		phase = p.Status.Phase
		if phase == corev1.PodSucceeded || phase == corev1.PodFailed {
			return true, nil
		}
		return false, fmt.Errorf("phase %s", phase)
	})
	if err != nil {
		return "", false, err
	}
	logs, err := pods.GetLogs(name, &corev1.PodLogOptions{}).DoRaw(ctx)
	if err != nil {
		return "", false, err
	}
	return strings.TrimSpace(string(logs)), phase == corev1.PodSucceeded, nil
}

// mustClient is clientPod that fails the test unless etcdctl succeeds.
func (e *etcdaasInstall) mustClient(t *testing.T, ns, name, tlsSecret string, args ...string) string {
	t.Helper()
	out, ok, err := e.clientPod(t.Context(), ns, name, tlsSecret, args...)
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		t.Fatalf("etcdctl %s failed:\n%s", strings.Join(args, " "), out)
	}
	return out
}
