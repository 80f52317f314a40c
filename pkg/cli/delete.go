package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/etcdaas/etcdaas/pkg/generated/clientset/versioned"
)

// deleteOptions are the flags of `delete`.
type deleteOptions struct {
	wait           bool
	timeout        time.Duration
	ignoreNotFound bool
	pollInterval   time.Duration
}

func newDeleteCommand(f *Factory) *cobra.Command {
	o := &deleteOptions{pollInterval: 500 * time.Millisecond}
	cmd := &cobra.Command{
		Use:   "delete NAME [NAME...]",
		Short: "Delete ETCDInstances and, with them, their members and data",
		Long: `Delete ETCDInstances. The controller stops their members and removes their data before
the object goes away; by default the command waits until it has (--wait=false returns at once).`,
		Example: `  # Delete and wait until the members are gone
  kubectl etcdaas delete my-etcd

  # Ask for deletion and return immediately
  kubectl etcdaas delete my-etcd --wait=false`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageErrorf(cmd, "at least one NAME is required")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, f, args)
		},
	}
	cmd.Flags().BoolVar(&o.wait, "wait", true, "Wait until the instances are gone (the controller has removed their members).")
	cmd.Flags().DurationVar(&o.timeout, "timeout", 5*time.Minute, timeoutUsage("How long to wait with --wait"))
	cmd.Flags().BoolVar(&o.ignoreNotFound, "ignore-not-found", false, "Treat an instance that does not exist as deleted.")
	return cmd
}

func (o *deleteOptions) run(cmd *cobra.Command, f *Factory, names []string) error {
	if err := checkTimeout(cmd, o.timeout); err != nil {
		return err
	}
	ns, client, err := f.NamespacedClient()
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	deleted := make(map[string]types.UID, len(names))
	var firstErr error
	for _, name := range names {
		// Read the UID first so that waiting does not mistake a new instance of the same
		// name for the old one still being deleted.
		current, err := client.EtcdaasV1beta1().ETCDInstances(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			err = client.EtcdaasV1beta1().ETCDInstances(ns).Delete(ctx, name, metav1.DeleteOptions{
				Preconditions: &metav1.Preconditions{UID: &current.UID},
			})
		}
		if err != nil {
			if apierrors.IsNotFound(err) && o.ignoreNotFound {
				continue
			}
			if firstErr == nil {
				firstErr = err
			} else {
				fmt.Fprintln(f.IOStreams.ErrOut, errorMessage(err))
			}
			continue
		}
		deleted[name] = current.UID
		fmt.Fprintf(f.IOStreams.Out, "%s %q deleted\n", qualifiedResource, name)
	}
	if o.wait {
		for _, name := range names {
			uid, ok := deleted[name]
			if !ok {
				continue
			}
			if err := o.waitGone(ctx, client, ns, name, uid); err != nil && firstErr == nil {
				firstErr = err
			}
		}
	}
	return firstErr
}

// waitGone polls until the instance with this UID no longer exists.
func (o *deleteOptions) waitGone(ctx context.Context, client versioned.Interface, ns, name string, uid types.UID) error {
	// The command's context, which an interrupt cancels, unlike the timeout below.
	interrupted := ctx.Err
	ctx, cancel := waitContext(ctx, o.timeout)
	defer cancel()
	err := wait.PollUntilContextCancel(ctx, o.pollInterval, true, func(ctx context.Context) (bool, error) {
		current, err := client.EtcdaasV1beta1().ETCDInstances(ns).Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			return true, nil
		case apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err):
			return false, err
		case err != nil:
			// Transient (a timeout, the client's rate limiter near the deadline, a
			// restarting server): keep waiting until the timeout.
			return false, nil
		default:
			return current.UID != uid, nil
		}
	})
	if err != nil && ctx.Err() != nil && interrupted() == nil {
		return fmt.Errorf("timed out waiting for %s %q to be deleted (its members may still be stopping)", qualifiedResource, name)
	}
	return err
}
