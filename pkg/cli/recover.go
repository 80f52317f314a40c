package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/generated/clientset/versioned"
)

// recoverOptions are the flags of `recover`.
type recoverOptions struct {
	member  string
	wait    bool
	timeout time.Duration
}

// recoverPollInterval is how often `recover` reads the instance while it waits.
var recoverPollInterval = time.Second

func newRecoverCommand(f *Factory) *cobra.Command {
	o := &recoverOptions{wait: true, timeout: 10 * time.Minute}
	cmd := &cobra.Command{
		Use:   "recover NAME [--member MEMBER]",
		Short: "Rebuild an ETCDInstance that lost quorum from a surviving member",
		Long: `Ask the controller to rebuild an ETCDInstance that lost quorum (its Degraded condition's
reason is QuorumLost) from one surviving member: the most advanced one, or --member. A new
one-member cluster starts with every key that member has (standalone: the member itself, rebuilt
from its data; on Kubernetes: member 0, rebuilt from the survivor's data), its revision raised
and the older revisions marked compacted, so that watchers start over; the data of every
other member is discarded, and new members are added back as learners up to spec.replicas.
Writes only the lost members had are gone. The server refuses the request (409) while quorum
holds. Needs the etcdinstances/recover permission (the admin role).

The command waits until the instance runs again (phase Running) unless --wait=false.`,
		Example: `  # Rebuild my-etcd from its most advanced surviving member
  kubectl etcdaas recover my-etcd

  # Rebuild it from my-etcd-2 and return at once
  kubectl etcdaas recover my-etcd --member my-etcd-2 --wait=false`,
		Args: exactlyOneName,
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, f, args[0])
		},
	}
	cmd.Flags().StringVar(&o.member, "member", "", "The surviving member to rebuild from (default: the one with the highest revision).")
	cmd.Flags().BoolVar(&o.wait, "wait", o.wait, "Wait until the instance runs again.")
	cmd.Flags().DurationVar(&o.timeout, "timeout", o.timeout, timeoutUsage("How long to wait for the instance to run again (with --wait)"))
	return cmd
}

func (o *recoverOptions) run(cmd *cobra.Command, f *Factory, name string) error {
	if err := checkTimeout(cmd, o.timeout); err != nil {
		return err
	}
	ns, client, err := f.NamespacedClient()
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	req := client.EtcdaasV1beta1().RESTClient().Post().Namespace(ns).Resource("etcdinstances").Name(name).SubResource("recover")
	if o.member != "" {
		req = req.Param("member", o.member)
	}
	status := &metav1.Status{}
	if err := req.Do(ctx).Into(status); err != nil {
		return err
	}
	fmt.Fprintf(f.IOStreams.Out, "%s/%s recovery requested: %s\n", qualifiedResource, name, status.Message)
	if !o.wait {
		return nil
	}
	wctx, cancel := waitContext(ctx, o.timeout)
	defer cancel()
	done, err := o.waitRecovered(wctx, client, ns, name)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("%s/%s did not run again within %s: the recovery goes on, see 'kubectl describe etcd %s'", ns, name, o.timeout, name)
		}
		return err
	}
	fmt.Fprintf(f.IOStreams.Out, "%s/%s recovered: %d/%d members ready\n", qualifiedResource, name, done.Status.ReadyReplicas, done.Status.Replicas)
	return nil
}

// waitRecovered reads the instance until the controller has handled the request (it removes
// the request's annotation) and the instance runs again. A request the controller could not
// carry out leaves the instance Failed, which ends the wait with the Degraded condition's
// message, and so does its deletion; other read errors are retried until ctx ends.
func (o *recoverOptions) waitRecovered(ctx context.Context, client versioned.Interface, ns, name string) (*v1beta1.ETCDInstance, error) {
	return pollInstance(ctx, client, ns, name, "recovery", recoverPollInterval, func(inst *v1beta1.ETCDInstance) (bool, error) {
		if _, pending := inst.Annotations[etcdaas.RecoverRequestedAnnotation]; pending {
			return false, nil
		}
		switch inst.Status.Phase {
		case v1beta1.PhaseRunning:
			return true, nil
		case v1beta1.PhaseFailed:
			msg := "the recovery was not carried out"
			if c := meta.FindStatusCondition(inst.Status.Conditions, etcdaas.ConditionDegraded); c != nil {
				msg = c.Message
			}
			return false, fmt.Errorf("%s/%s is still failed: %s; 'kubectl describe etcd %s' shows the RecoveryFailed event", ns, name, msg, name)
		}
		return false, nil
	})
}
