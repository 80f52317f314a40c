package cli

import (
	"fmt"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
)

// scaleOptions are the flags of `scale`.
type scaleOptions struct {
	replicas        int32
	currentReplicas int32
	resourceVersion string
}

func newScaleCommand(f *Factory) *cobra.Command {
	o := &scaleOptions{}
	cmd := &cobra.Command{
		Use:   "scale NAME --replicas N",
		Short: "Change the number of members of an ETCDInstance",
		Long: `Change the number of members of an ETCDInstance through its scale subresource. The
controller then adds or removes members one at a time.`,
		Example: `  # Grow to five members
  kubectl etcdaas scale my-etcd --replicas 5

  # Only if it has three members now
  kubectl etcdaas scale my-etcd --current-replicas 3 --replicas 5`,
		Args: exactlyOneName,
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, f, args[0])
		},
	}
	cmd.Flags().Int32Var(&o.replicas, "replicas", -1, "The new number of members (required).")
	cmd.Flags().Int32Var(&o.currentReplicas, "current-replicas", -1, "Precondition: the current number of members must be this (-1: no precondition).")
	cmd.Flags().StringVar(&o.resourceVersion, "resource-version", "", "Precondition: the instance's resourceVersion must be this.")
	return cmd
}

func (o *scaleOptions) run(cmd *cobra.Command, f *Factory, name string) error {
	if o.replicas < 0 {
		return usageErrorf(cmd, "The --replicas=COUNT flag is required, and COUNT must be greater than or equal to 0")
	}
	if o.currentReplicas < -1 {
		return usageErrorf(cmd, "The --current-replicas must specify an integer of -1 or greater")
	}
	ns, client, err := f.NamespacedClient()
	if err != nil {
		return err
	}
	instances := client.EtcdaasV1beta1().ETCDInstances(ns)
	ctx := cmd.Context()
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		scale, err := instances.GetScale(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if o.currentReplicas >= 0 && scale.Spec.Replicas != o.currentReplicas {
			return fmt.Errorf("expected replicas to be %d, was %d", o.currentReplicas, scale.Spec.Replicas)
		}
		if o.resourceVersion != "" {
			if scale.ResourceVersion != o.resourceVersion {
				return fmt.Errorf("expected resourceVersion to be %s, was %s", o.resourceVersion, scale.ResourceVersion)
			}
		}
		scale.Spec.Replicas = o.replicas
		// The scale keeps the resourceVersion it was read at: a concurrent change makes the
		// server answer 409 Conflict, and the loop reads again (unless a precondition was
		// given, which then has to hold on the fresh read too).
		_, err = instances.UpdateScale(ctx, name, scale, metav1.UpdateOptions{FieldManager: "kubectl-etcdaas"})
		return err
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(f.IOStreams.Out, "%s/%s scaled\n", qualifiedResource, name)
	return nil
}
