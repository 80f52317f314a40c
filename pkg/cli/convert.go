package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/resource"
	"sigs.k8s.io/yaml"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	"github.com/etcdaas/etcdaas/pkg/conversion"
)

// convertOptions are the flags of `convert`.
type convertOptions struct {
	filenames     []string
	recursive     bool
	outputVersion string
	output        string
}

func newConvertCommand(f *Factory) *cobra.Command {
	o := &convertOptions{}
	cmd := &cobra.Command{
		Use:   "convert -f FILENAME [-R] [--output-version V] [-o yaml|json]",
		Short: "Convert ETCDInstance manifests between v1alpha1 and v1beta1, offline",
		Long: `Convert ETCDInstance manifests between the served API versions, v1alpha1 and v1beta1,
without contacting a server, with the same defaulting and conversion the server applies.

-f reads files as kubectl convert does: a file (YAML, several documents separated by ---,
or JSON values in a row), a directory (its .json, .yaml and .yml files; those of its
subdirectories too with -R), or - for standard input; repeat -f for several. Lists (v1 List,
ETCDInstanceList) are read item by item. As kubectl convert prints it, the output is the
converted object when the input is a single file (a directory with one such file counts as
one) holding one object, and otherwise a v1 List of every converted object, in YAML (the
default) or JSON.

What v1alpha1 cannot express (version, storage, members, conditions, ...) is kept in the
annotation etcdaas.dev/v1beta1-fields and restored when converting back to v1beta1.`,
		Example: `  # Upgrade an old manifest to v1beta1
  kubectl etcdaas convert -f old.yaml --output-version v1beta1

  # Every manifest below a directory, as one List
  kubectl etcdaas convert -f manifests/ -R --output-version v1beta1

  # Produce v1alpha1 JSON for an old client, from stdin
  cat my-etcd.yaml | kubectl etcdaas convert -f - --output-version etcdaas.dev/v1alpha1 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd, f)
		},
	}
	fileFlags := genericclioptions.FileNameFlags{
		Usage:     "File or directory of ETCDInstance manifests to convert (.json, .yaml, .yml); - reads stdin. Repeat for several.",
		Filenames: &o.filenames,
		Recursive: &o.recursive,
	}
	fileFlags.AddFlags(cmd.Flags())
	cmd.Flags().StringVar(&o.outputVersion, "output-version", "", "Version to convert to: v1beta1 or v1alpha1, with or without the etcdaas.dev/ group (default: v1beta1, the preferred version).")
	cmd.Flags().StringVarP(&o.output, "output", "o", "yaml", "Output format: yaml or json.")
	return cmd
}

func (o *convertOptions) run(cmd *cobra.Command, f *Factory) error {
	if len(o.filenames) == 0 {
		return usageErrorf(cmd, "at least one file is required: -f FILE (or -f - for stdin)")
	}
	if o.output != "yaml" && o.output != "json" {
		return fmt.Errorf("unable to match a printer suitable for the output format %q, allowed formats are: json,yaml", o.output)
	}
	version := o.outputVersion
	if version == "" {
		version = conversion.ServedVersions[0].String()
	}
	gv, err := conversion.ParseVersion(version)
	if err != nil {
		return err
	}
	// Read and convert everything before writing anything: a bad file or object fails the
	// whole command with nothing printed, and every one is reported, not just the first.
	infos, single, readErr := readManifests(o.filenames, o.recursive, f.IOStreams.In)
	docs, convertErr := convertInfos(conversion.New(), infos, gv)
	if err := utilerrors.NewAggregate([]error{readErr, convertErr}); err != nil {
		return err
	}
	if len(docs) == 0 {
		return errors.New("no objects passed to convert")
	}
	return writeConverted(f.IOStreams.Out, docs, !single, o.output == "json")
}

// stdinSource names standard input in messages, as kubectl does.
const stdinSource = "STDIN"

// readManifests reads the objects of the files, directories and standard input ("-") that
// filenames name with kubectl's resource builder, offline: a directory gives its .json, .yaml
// and .yml files (with recursive, those of its subdirectories too), a file its YAML documents
// or JSON values, and lists are flattened into their items. single reports whether the
// input names one file and nothing else (no directory, no stdin), the case where kubectl
// convert prints a lone object rather than a List. The objects of the files that could be
// read are returned with the errors of the others.
func readManifests(filenames []string, recursive bool, stdin io.Reader) (infos []*resource.Info, single bool, err error) {
	b := resource.NewLocalBuilder().Unstructured().ContinueOnError().Flatten()
	for _, name := range filenames {
		if name != "-" {
			b.FilenameParam(false, &resource.FilenameOptions{Filenames: []string{name}, Recursive: recursive})
			continue
		}
		if stdin == nil {
			return nil, false, errors.New("no standard input to read")
		}
		b.StdinInUse().Stream(stdin, stdinSource)
	}
	r := b.Do()
	if err := r.Err(); err != nil {
		return nil, false, err
	}
	infos, err = r.IntoSingleItemImplied(&single).Infos()
	return infos, single, err
}

// convertInfos converts every object read to gv and returns each as JSON. It reports the
// objects that cannot be converted all at once, each with the file it comes from.
func convertInfos(c *conversion.Converter, infos []*resource.Info, gv schema.GroupVersion) ([][]byte, error) {
	docs := make([][]byte, 0, len(infos))
	var errs []error
	for _, info := range infos {
		converted, err := convertInfo(c, info, gv)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		docs = append(docs, converted)
	}
	return docs, utilerrors.NewAggregate(errs)
}

// convertInfo converts the object of one info to gv, naming it and its source on error.
func convertInfo(c *conversion.Converter, info *resource.Info, gv schema.GroupVersion) ([]byte, error) {
	doc, err := json.Marshal(info.Object)
	if err == nil {
		var converted []byte
		if converted, err = convertObject(c, doc, gv); err == nil {
			return converted, nil
		}
	}
	apiVersion, kind := info.Object.GetObjectKind().GroupVersionKind().ToAPIVersionAndKind()
	object := apiVersion + " " + kind
	if info.Name != "" {
		object += fmt.Sprintf(" %q", info.Name)
	}
	return nil, fmt.Errorf("%s: %s: %w", info.Source, object, err)
}

// convertObject converts one ETCDInstance document to JSON in gv, first rejecting, in words a user understands, what is not an etcdaas.dev object.
func convertObject(c *conversion.Converter, doc []byte, gv schema.GroupVersion) ([]byte, error) {
	var meta metav1.TypeMeta
	if err := json.Unmarshal(doc, &meta); err != nil {
		return nil, errors.New("not a YAML or JSON object")
	}
	if meta.APIVersion == "" || meta.Kind == "" {
		return nil, errors.New("apiVersion and kind are required")
	}
	from, err := schema.ParseGroupVersion(meta.APIVersion)
	if err != nil {
		return nil, err
	}
	if from.Group != etcdaas.GroupName {
		return nil, fmt.Errorf("not an %s object: convert handles ETCDInstance", etcdaas.GroupName)
	}
	return c.ConvertDocument(doc, gv, true)
}

// list returns a v1 List holding items, its fields in the order kubectl prints them.
func list(items []json.RawMessage) any {
	return struct {
		Kind       string            `json:"kind"`
		APIVersion string            `json:"apiVersion"`
		Metadata   struct{}          `json:"metadata"`
		Items      []json.RawMessage `json:"items"`
	}{Kind: "List", APIVersion: "v1", Items: items}
}

// writeConverted writes the converted objects as YAML or indented JSON: the one object, or
// a v1 List of them all when there are several or asList is set.
func writeConverted(w io.Writer, docs [][]byte, asList, asJSON bool) error {
	data := docs[0]
	if asList || len(docs) > 1 {
		items := make([]json.RawMessage, len(docs))
		for i := range docs {
			items[i] = docs[i]
		}
		var err error
		if data, err = json.Marshal(list(items)); err != nil {
			return err
		}
	}
	if !asJSON {
		out, err := yaml.JSONToYAML(data)
		if err != nil {
			return err
		}
		_, err = w.Write(out)
		return err
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, data, "", "    "); err != nil {
		return err
	}
	buf.WriteByte('\n')
	_, err := buf.WriteTo(w)
	return err
}
