package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
)

// defragOptions are the flags of `defrag`.
type defragOptions struct {
	wait    bool
	timeout time.Duration
}

// defragPollInterval is how often `defrag` reads the instance while it waits.
var defragPollInterval = time.Second

func newDefragCommand(f *Factory) *cobra.Command {
	o := &defragOptions{wait: true, timeout: 10 * time.Minute}
	cmd := &cobra.Command{
		Use:   "defrag NAME",
		Short: "Defragment every member of an ETCDInstance now",
		Long: `Ask the controller to defragment the database of every member of an ETCDInstance, whatever
its defragmentation thresholds: one member at a time, the followers first and the leader
last, once leadership moved to another member (a defragmented leader would hold up every
write; an instance of one member waits for it), each once every member is healthy. Defragmenting returns to the file system the space
that compaction freed inside a member's database file; a member serves nothing while it is
defragmented. Each member gets a Defragmented Event with its sizes before and after
('kubectl describe etcd NAME'). Needs the etcdinstances/defrag permission (the edit role).

The command waits until every member was defragmented unless --wait=false.`,
		Example: `  # Defragment every member of my-etcd
  kubectl etcdaas defrag my-etcd

  # Ask for it and return at once
  kubectl etcdaas defrag my-etcd --wait=false`,
		Args: exactlyOneName,
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, f, args[0])
		},
	}
	cmd.Flags().BoolVar(&o.wait, "wait", o.wait, "Wait until every member was defragmented.")
	cmd.Flags().DurationVar(&o.timeout, "timeout", o.timeout, timeoutUsage("How long to wait (with --wait)"))
	return cmd
}

func (o *defragOptions) run(cmd *cobra.Command, f *Factory, name string) error {
	if err := checkTimeout(cmd, o.timeout); err != nil {
		return err
	}
	ns, client, err := f.NamespacedClient()
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	status := &metav1.Status{}
	if err := client.EtcdaasV1beta1().RESTClient().Post().Namespace(ns).Resource("etcdinstances").Name(name).SubResource("defrag").Do(ctx).Into(status); err != nil {
		return err
	}
	fmt.Fprintf(f.IOStreams.Out, "%s/%s defragmentation requested: %s\n", qualifiedResource, name, status.Message)
	if !o.wait {
		return nil
	}
	wctx, cancel := waitContext(ctx, o.timeout)
	defer cancel()
	// The controller removes the request once every member was defragmented.
	_, err = pollInstance(wctx, client, ns, name, "defragmentation", defragPollInterval, func(inst *v1beta1.ETCDInstance) (bool, error) {
		_, pending := inst.Annotations[etcdaas.DefragRequestedAnnotation]
		return !pending, nil
	})
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("%s/%s was not defragmented within %s: it goes on once every member is healthy, see 'kubectl describe etcd %s'", ns, name, o.timeout, name)
		}
		return err
	}
	fmt.Fprintf(f.IOStreams.Out, "%s/%s defragmented: every member, see its Defragmented Events\n", qualifiedResource, name)
	return nil
}
