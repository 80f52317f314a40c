package cli

import (
	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
)

// getOptions are the flags of `get`.
type getOptions struct {
	output string
}

func newGetCommand(f *Factory) *cobra.Command {
	o := &getOptions{}
	cmd := &cobra.Command{
		Use:   "get NAME [-o yaml|json|wide|name|jsonpath=...]",
		Short: "Show one ETCDInstance",
		Example: `  # A one-line summary
  kubectl etcdaas get my-etcd

  # The whole object, members and conditions included
  kubectl etcdaas get my-etcd -o yaml

  # The client URLs of its members, for etcdctl --endpoints
  kubectl etcdaas get my-etcd -o jsonpath='{range .status.members[*]}{.clientURL},{end}'`,
		Args: exactlyOneName,
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, f, args[0])
		},
	}
	cmd.Flags().StringVarP(&o.output, "output", "o", "", "Output format: wide, yaml, json, name, or a template as kubectl takes it: jsonpath=TEMPLATE, jsonpath-file=FILE, go-template=TEMPLATE, ... (default: the server's table, as kubectl get prints it).")
	return cmd
}

func (o *getOptions) run(cmd *cobra.Command, f *Factory, name string) error {
	if err := validateOutput(o.output); err != nil {
		return err
	}
	ns, client, err := f.NamespacedClient()
	if err != nil {
		return err
	}
	if isTable(o.output) {
		table, err := getTable(cmd.Context(), client, ns, name, "")
		if err != nil {
			return err
		}
		return printTable(f.IOStreams.Out, table, o.output, false)
	}
	instance, err := client.EtcdaasV1beta1().ETCDInstances(ns).Get(cmd.Context(), name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	p := &instancePrinter{format: o.output}
	return p.print(f.IOStreams.Out, []v1beta1.ETCDInstance{*instance}, false)
}
