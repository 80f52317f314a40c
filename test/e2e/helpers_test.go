package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/generated/clientset/versioned"
	"github.com/etcdaas/etcdaas/test/e2e/framework"
)

// legacyKubectl is the older kubectl also exercised when present.
const legacyKubectl = "/usr/bin/kubectl"

// namedKubectl is a kubectl binary and the version it reports.
type namedKubectl struct {
	Path    string
	Version string
}

// kubectlBinaries returns the pinned kubectl and, when present and different,
// /usr/bin/kubectl.
func kubectlBinaries(t *testing.T, c *framework.Cluster) []namedKubectl {
	t.Helper()
	pinned := framework.KubectlClient{Path: c.Tools[framework.Kubectl], Kubeconfig: c.AdminKubeconfig}
	v, err := pinned.Version(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	out := []namedKubectl{{Path: pinned.Path, Version: v}}
	if _, err := os.Stat(legacyKubectl); err == nil {
		legacy := framework.KubectlClient{Path: legacyKubectl, Kubeconfig: c.AdminKubeconfig}
		if lv, err := legacy.Version(t.Context()); err != nil {
			t.Logf("ignoring %s: %v", legacyKubectl, err)
		} else if lv != v {
			out = append(out, namedKubectl{Path: legacyKubectl, Version: lv})
		}
	}
	return out
}

// mustRun runs kubectl and fails the test when it fails.
func mustRun(t *testing.T, k framework.KubectlClient, stdin string, args ...string) string {
	t.Helper()
	r := k.Run(t.Context(), stdin, args...)
	if r.Err != nil {
		t.Fatalf("%s", r)
	}
	return r.Stdout
}

// mustFail runs kubectl, expects it to fail, and returns its stderr.
func mustFail(t *testing.T, k framework.KubectlClient, stdin string, args ...string) string {
	t.Helper()
	r := k.Run(t.Context(), stdin, args...)
	if r.Err == nil {
		t.Fatalf("expected failure, got success: %s", r)
	}
	return r.Stderr
}

// pollKubectl reruns kubectl until it succeeds and check accepts its output.
func pollKubectl(t *testing.T, k framework.KubectlClient, timeout time.Duration, check func(stdout string) error, args ...string) string {
	t.Helper()
	var out string
	err := framework.Poll(t.Context(), 500*time.Millisecond, timeout, "kubectl "+strings.Join(args, " "), func(ctx context.Context) (bool, error) {
		r := k.Run(ctx, "", args...)
		if r.Err != nil {
			return false, fmt.Errorf("%s", r)
		}
		if check != nil {
			if err := check(r.Stdout); err != nil {
				return false, err
			}
		}
		out = r.Stdout
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// contains returns a check that every want occurs in the output.
func contains(wants ...string) func(string) error {
	return func(out string) error {
		for _, w := range wants {
			if !strings.Contains(out, w) {
				return fmt.Errorf("output lacks %q:\n%s", w, out)
			}
		}
		return nil
	}
}

// createNamespace creates a namespace that the test deletes at its end (without waiting).
func createNamespace(t *testing.T, c *framework.Cluster, name string) {
	t.Helper()
	_, err := c.Kube.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

// bindClusterRole binds the ClusterRole role to user in namespace.
func bindClusterRole(t *testing.T, c *framework.Cluster, namespace, user, role string) {
	t.Helper()
	_, err := c.Kube.RbacV1().RoleBindings(namespace).Create(t.Context(), &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: user + "-" + role},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

// etcdaasClient returns the generated clientset for the admin, through kube-apiserver.
func etcdaasClient(t *testing.T, c *framework.Cluster) *versioned.Clientset {
	t.Helper()
	cs, err := versioned.NewForConfig(c.AdminConfig)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// waitRunning waits until the controller reports the instance Running with every member
// ready, and returns it.
func waitRunning(t *testing.T, c *framework.Cluster, namespace, name string, timeout time.Duration) *v1beta1.ETCDInstance {
	t.Helper()
	cs := etcdaasClient(t, c)
	var inst *v1beta1.ETCDInstance
	err := framework.Poll(t.Context(), 500*time.Millisecond, timeout, namespace+"/"+name+" Running", func(ctx context.Context) (bool, error) {
		got, err := cs.EtcdaasV1beta1().ETCDInstances(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		inst = got
		s := got.Status
		want := int32(1)
		if got.Spec.Replicas != nil {
			want = *got.Spec.Replicas
		}
		if s.Phase != v1beta1.PhaseRunning || s.ReadyReplicas != want || s.ObservedGeneration != got.Generation {
			return false, fmt.Errorf("status: phase=%q ready=%d/%d observedGeneration=%d generation=%d conditions=%v",
				s.Phase, s.ReadyReplicas, want, s.ObservedGeneration, got.Generation, s.Conditions)
		}
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return inst
}

// waitGone waits until the instance no longer exists.
func waitGone(t *testing.T, c *framework.Cluster, namespace, name string, timeout time.Duration) {
	t.Helper()
	cs := etcdaasClient(t, c)
	err := framework.Poll(t.Context(), 500*time.Millisecond, timeout, namespace+"/"+name+" deleted", func(ctx context.Context) (bool, error) {
		got, err := cs.EtcdaasV1beta1().ETCDInstances(namespace).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		if err != nil {
			return false, err
		}
		return false, fmt.Errorf("still there: deletionTimestamp=%v finalizers=%v phase=%s", got.DeletionTimestamp, got.Finalizers, got.Status.Phase)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// snapshotStatus checks a snapshot file with etcdutl and returns its report.
func snapshotStatus(t *testing.T, c *framework.Cluster, path string) string {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), c.Tools[framework.Etcdutl], "snapshot", "status", path, "-w", "json").CombinedOutput()
	if err != nil {
		t.Fatalf("etcdutl snapshot status %s: %v\n%s", path, err, out)
	}
	return string(out)
}

// writeTemp writes data to a file in the test's temporary directory.
func writeTemp(t *testing.T, name, data string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
