package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	apipath "k8s.io/apimachinery/pkg/api/validation/path"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/generated/clientset/versioned"
)

// restoreOptions are the flags of `restore`.
type restoreOptions struct {
	file    string
	wait    bool
	timeout time.Duration
}

func newRestoreCommand(f *Factory) *cobra.Command {
	o := &restoreOptions{wait: true, timeout: 10 * time.Minute}
	cmd := &cobra.Command{
		Use:   "restore NAME -f FILE",
		Short: "Replace the data of an ETCDInstance with an etcd snapshot",
		Long: `Upload an etcd snapshot (from 'kubectl etcdaas backup', 'etcdctl snapshot save' or the
etcd snapshot API) to the restore subresource of an ETCDInstance. The server checks it
first (its sha256, the database's integrity, an etcd version no newer than the instance
runs) and refuses it with nothing changed if any check fails. Then every member is stopped
and restored from it as a new cluster of the same size: all data written since the
snapshot is lost. Needs the etcdinstances/restore permission (the admin role).

With -f -, the snapshot is read from standard input and streamed as it comes (the server
spools it to disk and checks it before anything changes, as for a file).

On a terminal, a progress bar shows the upload. The command then waits until the instance
runs again (phase Running) unless --wait=false.`,
		Example: `  # Roll my-etcd back to a backup
  kubectl etcdaas restore my-etcd -f my-etcd.db

  # Start the restore and return at once
  kubectl etcdaas restore my-etcd -f my-etcd.db --wait=false

  # Restore a snapshot read from standard input
  gunzip -c my-etcd.db.gz | kubectl etcdaas restore my-etcd -f -`,
		Args: exactlyOneName,
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, f, args[0])
		},
	}
	cmd.Flags().StringVarP(&o.file, "filename", "f", "", "The snapshot file to restore, or - for standard input (required).")
	cmd.Flags().BoolVar(&o.wait, "wait", o.wait, "Wait until the instance runs again from the restored data.")
	cmd.Flags().DurationVar(&o.timeout, "timeout", o.timeout, timeoutUsage("How long to wait for the instance to run again (with --wait)"))
	return cmd
}

func (o *restoreOptions) run(cmd *cobra.Command, f *Factory, name string) error {
	if o.file == "" {
		return usageErrorf(cmd, "--filename (-f) FILE is required")
	}
	if err := checkTimeout(cmd, o.timeout); err != nil {
		return err
	}
	input, size, err := o.open(f)
	if err != nil {
		return err
	}
	defer func() { _ = input.Close() }()
	ns, err := f.Namespace()
	if err != nil {
		return err
	}
	config, err := f.RESTConfig()
	if err != nil {
		return err
	}
	client, err := versioned.NewForConfig(config)
	if err != nil {
		return err
	}
	ctx := cmd.Context()

	var body io.Reader = input
	var bar *progressBar
	if f.isTerminal != nil && f.isTerminal(f.IOStreams.ErrOut) {
		bar = newProgressBar(f.IOStreams.ErrOut, fmt.Sprintf("%s/%s", ns, name))
		bar.verb, bar.total = "restore", max(size, 0)
		body = io.TeeReader(input, bar)
	}
	accepted, err := postRestore(ctx, config, client, ns, name, body, size)
	if bar != nil {
		bar.finish(err == nil)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(f.IOStreams.Out, "%s/%s: %s\n", qualifiedResource, name, acceptedMessage(accepted))
	if !o.wait {
		return nil
	}
	wctx, cancel := waitContext(ctx, o.timeout)
	defer cancel()
	done, err := waitRestored(wctx, client, accepted)
	if err != nil {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		// watchtools.Until ends on the timeout with its own "timed out waiting for the
		// condition" or ErrWatchClosed, not with the context's error.
		if wctx.Err() != nil || errors.Is(err, watchtools.ErrWatchClosed) {
			return fmt.Errorf("%s/%s did not run again within %s: the restore goes on, see 'kubectl etcdaas get %s'", ns, name, o.timeout, name)
		}
		return err
	}
	fmt.Fprintf(f.IOStreams.Out, "%s/%s restored: %d/%d members ready\n", qualifiedResource, name, done.Status.ReadyReplicas, done.Status.Replicas)
	return nil
}

// open opens the snapshot to upload and returns its size: a regular file, or standard input
// for "-", whose size is not known (-1: the upload is chunked, and the server enforces its
// limit as the bytes arrive).
func (o *restoreOptions) open(f *Factory) (io.ReadCloser, int64, error) {
	if o.file == "-" {
		return io.NopCloser(f.IOStreams.In), -1, nil
	}
	file, err := os.Open(o.file)
	if err != nil {
		return nil, 0, err
	}
	st, err := file.Stat()
	if err == nil && !st.Mode().IsRegular() {
		err = fmt.Errorf("%s is not a regular file (use -f - to read the snapshot from standard input)", o.file)
	}
	if err != nil {
		_ = file.Close()
		return nil, 0, err
	}
	return file, st.Size(), nil
}

// postRestore uploads the snapshot with its length (when known, size >= 0), so that the server can refuse one above
// its size limit before it is sent, and returns the instance as the server answered.
func postRestore(ctx context.Context, config *rest.Config, client versioned.Interface, ns, name string, body io.Reader, size int64) (*v1beta1.ETCDInstance, error) {
	// URL() drops the errors Namespace() and Name() record: check them as client-go's requests
	// do, so that a name such as ../x never becomes another path.
	for _, segment := range []struct{ what, value string }{{"namespace", ns}, {"resource name", name}} {
		if msgs := apipath.IsValidPathSegmentName(segment.value); len(msgs) != 0 {
			return nil, fmt.Errorf("invalid %s %q: %v", segment.what, segment.value, msgs)
		}
	}
	url := client.EtcdaasV1beta1().RESTClient().Post().Namespace(ns).Resource("etcdinstances").Name(name).SubResource("restore").URL()
	httpClient, err := rest.HTTPClientFor(config)
	if err != nil {
		return nil, err
	}
	sent := &endReader{r: contextReader{ctx: ctx, r: body}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url.String(), sent)
	if err != nil {
		return nil, err
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("Accept", "application/json")
	resp, err := httpClient.Do(req)
	if err != nil && ctx.Err() != nil {
		return nil, stoppedError(ns, name, sent.ended.Load(), context.Cause(ctx))
	}
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusAccepted {
		return nil, responseError(resp.StatusCode, answer)
	}
	inst := &v1beta1.ETCDInstance{}
	if err := json.Unmarshal(answer, inst); err != nil {
		return nil, fmt.Errorf("reading the server's answer: %w", err)
	}
	return inst, nil
}

// endReader reads r and records whether it reached its end (atomically: the transport reads
// the body in a goroutine of its own, which may still run when the request has failed).
type endReader struct {
	r     io.Reader
	ended atomic.Bool
}

// Read implements io.Reader.
func (e *endReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err == io.EOF {
		e.ended.Store(true)
	}
	return n, err
}

// stoppedError says that a restore was stopped (by a signal: cause) before the server
// answered, and what became of it: a snapshot not sent in full is never restored, one sent in
// full may have been accepted. Without it, client-go's "Unable to connect to the server"
// would read as if the server could not be reached.
func stoppedError(ns, name string, sentInFull bool, cause error) error {
	if !sentInFull {
		return fmt.Errorf("restore of %s/%s stopped while sending the snapshot, so nothing is restored: %w", ns, name, cause)
	}
	return fmt.Errorf("restore of %s/%s stopped before the server answered, so it may have been accepted (see 'kubectl etcdaas get %s'): %w", ns, name, name, cause)
}

// responseError turns an error answer into the API error it carries.
func responseError(code int, body []byte) error {
	status := metav1.Status{}
	if err := json.Unmarshal(body, &status); err == nil && status.Kind == "Status" {
		return &apierrors.StatusError{ErrStatus: status}
	}
	return apierrors.NewGenericServerResponse(code, http.MethodPost, etcdaas.Resource("etcdinstances/restore"), "", string(body), 0, true)
}

// acceptedMessage says what the server made of an accepted restore: the Progressing
// condition's message ("restore ID accepted: snapshot of revision …"), or the phase.
func acceptedMessage(inst *v1beta1.ETCDInstance) string {
	if c := meta.FindStatusCondition(inst.Status.Conditions, etcdaas.ConditionProgressing); c != nil && c.Message != "" {
		return c.Message
	}
	return "restore accepted, phase " + string(inst.Status.Phase)
}

// waitRestored watches the instance from the accepted restore on until the controller has
// restored it (its Progressing condition said Restoring) and it runs again. A Failed phase
// ends the wait with the Degraded condition's message.
func waitRestored(ctx context.Context, client versioned.Interface, accepted *v1beta1.ETCDInstance) (*v1beta1.ETCDInstance, error) {
	instances := client.EtcdaasV1beta1().ETCDInstances(accepted.Namespace)
	selector := fields.OneTermEqualSelector("metadata.name", accepted.Name).String()
	lw := &cache.ListWatch{WatchFunc: func(opts metav1.ListOptions) (watch.Interface, error) {
		opts.FieldSelector = selector
		return instances.Watch(ctx, opts)
	}}
	restoring := false
	var last *v1beta1.ETCDInstance
	_, err := watchtools.Until(ctx, accepted.ResourceVersion, lw, func(ev watch.Event) (bool, error) {
		inst, ok := ev.Object.(*v1beta1.ETCDInstance)
		if !ok {
			return false, nil
		}
		if ev.Type == watch.Deleted {
			return false, fmt.Errorf("%s/%s was deleted during the restore", inst.Namespace, inst.Name)
		}
		if inst.UID != accepted.UID {
			return false, nil
		}
		last = inst
		if c := meta.FindStatusCondition(inst.Status.Conditions, etcdaas.ConditionProgressing); c != nil && c.Reason == "Restoring" {
			restoring = true
		}
		switch {
		case inst.Status.Phase == v1beta1.PhaseFailed:
			msg := "the restore failed"
			if c := meta.FindStatusCondition(inst.Status.Conditions, etcdaas.ConditionDegraded); c != nil {
				msg = c.Message
			}
			return false, fmt.Errorf("%s/%s failed: %s", inst.Namespace, inst.Name, msg)
		case restoring && inst.Status.Phase == v1beta1.PhaseRunning:
			return true, nil
		}
		return false, nil
	})
	return last, err
}
