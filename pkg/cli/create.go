package cli

import (
	"fmt"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
)

// createOptions are the flags of `create`.
type createOptions struct {
	replicas int32
	tls      bool
	version  string
	dryRun   string
	output   string
}

func newCreateCommand(f *Factory) *cobra.Command {
	o := &createOptions{}
	cmd := &cobra.Command{
		Use:   "create NAME [--replicas N] [--tls] [--version V]",
		Short: "Create an ETCDInstance",
		Long: `Create an ETCDInstance: the controller then starts an etcd cluster of --replicas members.

Without --replicas the server's default applies (3 members); without --version, the
server's default (` + etcdaas.DefaultVersion + `).`,
		Example: `  # A three-member cluster with client and peer TLS
  kubectl etcdaas create my-etcd --replicas 3 --tls

  # A single member in namespace dev
  kubectl etcdaas create scratch -n dev --replicas 1

  # Write a manifest instead of creating anything
  kubectl etcdaas create my-etcd --replicas 5 --dry-run=client -o yaml > my-etcd.yaml`,
		Args: exactlyOneName,
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, f, args[0])
		},
	}
	cmd.Flags().Int32Var(&o.replicas, "replicas", 0, "Number of etcd members, 1 to 9 (default: the server's, 3).")
	cmd.Flags().BoolVar(&o.tls, "tls", false, "Enable client and peer TLS with a CA generated for the instance.")
	cmd.Flags().StringVar(&o.version, "version", "", "etcd version to run: a minor version such as 3.7 or a release such as 3.7.3 (default: the server's, "+etcdaas.DefaultVersion+").")
	cmd.Flags().StringVar(&o.dryRun, "dry-run", "none", `Must be "none", "server", or "client". With "client", only print the object; with "server", have the server validate and default it without persisting it.`)
	cmd.Flags().Lookup("dry-run").NoOptDefVal = "server"
	cmd.Flags().StringVarP(&o.output, "output", "o", "", "Print the created object as yaml, json or name instead of a message.")
	return cmd
}

func (o *createOptions) run(cmd *cobra.Command, f *Factory, name string) error {
	switch o.dryRun {
	case "none", "server", "client":
	default:
		return usageErrorf(cmd, `Invalid dry-run value (%s). Must be "none", "server", or "client".`, o.dryRun)
	}
	switch o.output {
	case outputTable, outputYAML, outputJSON, outputName:
	default:
		return fmt.Errorf("unable to match a printer suitable for the output format %q, allowed formats are: json,name,yaml", o.output)
	}
	instance := &v1beta1.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if cmd.Flags().Changed("replicas") {
		replicas := o.replicas
		instance.Spec.Replicas = &replicas
	}
	if o.tls {
		instance.Spec.TLS = &v1beta1.TLSSpec{Enabled: true}
	}
	instance.Spec.Version = o.version

	ns, err := f.Namespace()
	if err != nil {
		return err
	}
	created := instance
	suffix := "created"
	if o.dryRun == "client" {
		created.Namespace = ns
		suffix = "created (dry run)"
	} else {
		client, err := f.Clientset()
		if err != nil {
			return err
		}
		opts := metav1.CreateOptions{FieldManager: "kubectl-etcdaas"}
		if o.dryRun == "server" {
			opts.DryRun = []string{metav1.DryRunAll}
			suffix = "created (server dry run)"
		}
		created, err = client.EtcdaasV1beta1().ETCDInstances(ns).Create(cmd.Context(), instance, opts)
		if err != nil {
			return err
		}
	}
	if o.output != "" {
		p := &instancePrinter{format: o.output}
		return p.print(f.IOStreams.Out, []v1beta1.ETCDInstance{*created}, false)
	}
	fmt.Fprintf(f.IOStreams.Out, "%s/%s %s\n", qualifiedResource, created.Name, suffix)
	return nil
}
