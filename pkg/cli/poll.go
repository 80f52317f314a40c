package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
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

// timeoutUsage is the help of a waiting command's --timeout: what it bounds, then what 0 means.
func timeoutUsage(what string) string {
	return what + "; 0 waits forever."
}

// checkTimeout refuses a negative --timeout as a usage error, before the command asks the
// server for anything: restore, recover, defrag and delete act at once and only then wait, so
// a timeout that cannot be met must not let them act and then report a failure.
func checkTimeout(cmd *cobra.Command, timeout time.Duration) error {
	if timeout < 0 {
		return usageErrorf(cmd, "--timeout must not be negative (0 waits forever), got %s", timeout)
	}
	return nil
}

// waitContext is ctx bounded by a --timeout that checkTimeout accepted: 0 waits forever, as
// `delete --timeout=0` and kubectl's `rollout status --timeout=0` do.
func waitContext(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	if timeout == 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, timeout)
}
