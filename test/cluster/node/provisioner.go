package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Provisioner gives every pending PersistentVolumeClaim without a storage class a hostPath
// PersistentVolume under its directory, bound to the claim ahead (claimRef), the way a
// dynamic provisioner does; kube-controller-manager's binder completes the binding. Volumes
// are retained: a claim deleted with its member leaves its PV Released, never reused.
type Provisioner struct {
	// Dir holds one directory per volume.
	Dir string
	// Kube is the admin clientset.
	Kube kubernetes.Interface

	cancel context.CancelFunc
	done   chan struct{}
}

// provisionedBy marks the PVs the provisioner created.
const provisionedBy = "etcdaas.dev/test-provisioner"

// Start runs the provisioner until Stop.
func (p *Provisioner) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel, p.done = cancel, make(chan struct{})
	go func() {
		defer close(p.done)
		for ctx.Err() == nil {
			_ = p.provisionPending(ctx)
			select {
			case <-ctx.Done():
			case <-time.After(300 * time.Millisecond):
			}
		}
	}()
}

// Stop ends the provisioner.
func (p *Provisioner) Stop() {
	if p.cancel != nil {
		p.cancel()
		<-p.done
	}
}

func (p *Provisioner) provisionPending(ctx context.Context) error {
	claims, err := p.Kube.CoreV1().PersistentVolumeClaims("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for i := range claims.Items {
		pvc := &claims.Items[i]
		if pvc.Status.Phase != corev1.ClaimPending || pvc.Spec.VolumeName != "" || pvc.DeletionTimestamp != nil {
			continue
		}
		if pvc.Spec.StorageClassName != nil && *pvc.Spec.StorageClassName != "" {
			continue
		}
		if err := p.provision(ctx, pvc); err != nil {
			return err
		}
	}
	return nil
}

// provision creates the PV of one claim; a PV of that name existing already is success.
func (p *Provisioner) provision(ctx context.Context, pvc *corev1.PersistentVolumeClaim) error {
	name := "pv-" + string(pvc.UID)
	dir := filepath.Join(p.Dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// Members run as an unprivileged user and hostPath volumes get no fsGroup ownership.
	if err := os.Chmod(dir, 0o777); err != nil {
		return err
	}
	size := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
	if size.IsZero() {
		size = resource.MustParse("1Gi")
	}
	hostPathType := corev1.HostPathDirectory
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{provisionedBy: "true"}},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: size},
			AccessModes:                   pvc.Spec.AccessModes,
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			PersistentVolumeSource: corev1.PersistentVolumeSource{
				HostPath: &corev1.HostPathVolumeSource{Path: dir, Type: &hostPathType},
			},
			ClaimRef: &corev1.ObjectReference{
				Kind: "PersistentVolumeClaim", APIVersion: "v1",
				Namespace: pvc.Namespace, Name: pvc.Name, UID: pvc.UID,
			},
		},
	}
	if _, err := p.Kube.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating %s for %s/%s: %w", name, pvc.Namespace, pvc.Name, err)
	}
	return nil
}

// startProvisioner runs the provisioner for the cluster until cleanup.
func (c *Cluster) startProvisioner() error {
	dir := c.path("volumes")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	c.provisioner = &Provisioner{Dir: dir, Kube: c.Kube}
	c.provisioner.Start()
	return nil
}
