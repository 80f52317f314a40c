package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/printers"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/generated/clientset/versioned"
)

// qualifiedResource is how kubectl names the resource in messages: "etcdinstance.etcdaas.dev".
const qualifiedResource = "etcdinstance." + etcdaas.GroupName

// Output formats accepted by -o on list and get.
const (
	outputTable = ""
	outputWide  = "wide"
	outputYAML  = "yaml"
	outputJSON  = "json"
	outputName  = "name"
)

// templateFormats are the -o formats that take a template, as kubectl's -o
// jsonpath='{.status.phase}': cli-runtime's printers for them.
var templateFormats = []string{"go-template", "go-template-file", "jsonpath", "jsonpath-as-json", "jsonpath-file", "template", "templatefile"}

// validateOutput rejects an -o value no printer handles, with kubectl's message.
func validateOutput(format string) error {
	switch format {
	case outputTable, outputWide, outputYAML, outputJSON, outputName:
		return nil
	}
	if name, _, ok := strings.Cut(format, "="); ok && slices.Contains(templateFormats, name) {
		_, err := templatePrinter(format) // the template's own error, such as a jsonpath's syntax
		return err
	}
	return fmt.Errorf("unable to match a printer suitable for the output format %q, allowed formats are: %s", format,
		strings.Join(slices.Sorted(slices.Values(append([]string{outputJSON, outputName, outputWide, outputYAML}, templateFormats...))), ","))
}

// templatePrinter is the printer of a template format (jsonpath=TEMPLATE, go-template=...,
// jsonpath-file=FILE, ...), with kubectl's defaults: missing keys print nothing.
func templatePrinter(format string) (printers.ResourcePrinter, error) {
	name, template, ok := strings.Cut(format, "=")
	if !ok || !slices.Contains(templateFormats, name) {
		return nil, fmt.Errorf("output format %q takes no template", format)
	}
	allowMissing := true
	if strings.HasPrefix(name, "jsonpath") {
		return (&genericclioptions.JSONPathPrintFlags{TemplateArgument: &template, AllowMissingKeys: &allowMissing}).ToPrinter(name)
	}
	return (&genericclioptions.GoTemplatePrintFlags{TemplateArgument: &template, AllowMissingKeys: &allowMissing}).ToPrinter(name)
}

// isTable reports whether the output format is the server's table (the default and wide).
func isTable(format string) bool { return format == outputTable || format == outputWide }

// instancePrinter writes ETCDInstances as objects: yaml, json, name or a template. Tables come from the
// server (getTable, printTable).
type instancePrinter struct {
	format string
}

// print writes the instances to w. With printList, yaml, json and templates write one list
// object (as `kubectl get` does for a list) rather than a single object.
func (p *instancePrinter) print(w io.Writer, items []v1beta1.ETCDInstance, printList bool) error {
	switch p.format {
	case outputName:
		for i := range items {
			if _, err := fmt.Fprintf(w, "%s/%s\n", qualifiedResource, items[i].Name); err != nil {
				return err
			}
		}
		return nil
	case outputTable, outputWide:
		return fmt.Errorf("output format %q is a table, which the server renders", p.format)
	}
	printer, err := p.objectPrinter()
	if err != nil {
		return err
	}
	if printList {
		return printer.PrintObj(instanceList(items), w)
	}
	for i := range items {
		if err := printer.PrintObj(forOutput(&items[i]), w); err != nil {
			return err
		}
	}
	return nil
}

// objectPrinter is cli-runtime's printer of the format: yaml, json or a template.
func (p *instancePrinter) objectPrinter() (printers.ResourcePrinter, error) {
	switch p.format {
	case outputYAML:
		return &printers.YAMLPrinter{}, nil
	case outputJSON:
		return &printers.JSONPrinter{}, nil
	}
	return templatePrinter(p.format)
}

// instanceList is items as the ETCDInstanceList a list prints, each item as forOutput makes it.
func instanceList(items []v1beta1.ETCDInstance) *v1beta1.ETCDInstanceList {
	list := &v1beta1.ETCDInstanceList{Items: make([]v1beta1.ETCDInstance, len(items))}
	list.SetGroupVersionKind(v1beta1.SchemeGroupVersion.WithKind("ETCDInstanceList"))
	for i := range items {
		list.Items[i] = *forOutput(&items[i])
	}
	return list
}

// forOutput returns a copy of in with apiVersion and kind set and managedFields dropped, as
// kubectl shows objects unless --show-managed-fields is given.
func forOutput(in *v1beta1.ETCDInstance) *v1beta1.ETCDInstance {
	out := in.DeepCopy()
	out.SetGroupVersionKind(v1beta1.SchemeGroupVersion.WithKind("ETCDInstance"))
	out.ManagedFields = nil
	return out
}

// tableAccept asks for the table the server renders for `kubectl get` (meta.k8s.io/v1 Table,
// rows carrying their object's metadata), falling back to JSON as kubectl does.
const tableAccept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"

// getTable asks the server for the table of the instance name in namespace, or of every
// instance there matching selector when name is empty; an empty namespace means all.
func getTable(ctx context.Context, client versioned.Interface, namespace, name, selector string) (*metav1.Table, error) {
	req := client.EtcdaasV1beta1().RESTClient().Get().
		NamespaceIfScoped(namespace, namespace != "").
		Resource("etcdinstances").
		SetHeader("Accept", tableAccept)
	if name != "" {
		req = req.Name(name)
	}
	if selector != "" {
		req = req.Param("labelSelector", selector)
	}
	res := req.Do(ctx)
	if err := res.Error(); err != nil {
		return nil, err // the server's Status, as kubectl prints it
	}
	data, err := res.Raw()
	if err != nil {
		return nil, err
	}
	table := &metav1.Table{}
	if err := json.Unmarshal(data, table); err != nil {
		return nil, fmt.Errorf("decoding the server's table: %w", err)
	}
	if table.Kind != "Table" {
		return nil, fmt.Errorf("the server answered with %q instead of a Table", table.Kind)
	}
	// The printer reads each row's namespace from its object's metadata.
	for i := range table.Rows {
		if raw := table.Rows[i].Object.Raw; len(raw) > 0 {
			m := &metav1.PartialObjectMetadata{}
			if err := json.Unmarshal(raw, m); err != nil {
				return nil, fmt.Errorf("decoding row %d of the server's table: %w", i, err)
			}
			table.Rows[i].Object.Object = m
		}
	}
	return table, nil
}

// printTable writes the server's table as kubectl get does: the priority-0 columns, and every
// column with -o wide; with allNamespaces, NAMESPACE first.
func printTable(w io.Writer, table *metav1.Table, format string, allNamespaces bool) error {
	p := printers.NewTablePrinter(printers.PrintOptions{Wide: format == outputWide, WithNamespace: allNamespaces})
	return p.PrintObj(table, w)
}
