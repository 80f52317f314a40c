package cli

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/generated/clientset/versioned"
)

// pollInstance reads the instance every interval until done reports true or an error, ctx
// ends, or the instance is deleted (an error saying it was deleted during what the command
// waits for). Other read errors are retried: the server may be busy, and ctx bounds the wait.
// It returns the last instance read.
func pollInstance(ctx context.Context, client versioned.Interface, ns, name, during string, interval time.Duration,
	done func(*v1beta1.ETCDInstance) (bool, error)) (*v1beta1.ETCDInstance, error) {
	var last *v1beta1.ETCDInstance
	err := wait.PollUntilContextCancel(ctx, interval, true, func(ctx context.Context) (bool, error) {
		inst, err := client.EtcdaasV1beta1().ETCDInstances(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, fmt.Errorf("%s/%s was deleted during the %s", ns, name, during)
		}
		if err != nil {
			return false, nil
		}
		last = inst
		return done(inst)
	})
	return last, err
}
