package controller

import (
	"context"
	"strings"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/tools/record"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/controller/backend"
)

// Component is the controller's name as the reporting controller of its Events.
const Component = "etcdaas-controller"

// eventScheme resolves the involved object of an Event: the ETCDInstance and the built-in
// kinds.
var eventScheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(v1beta1.AddToScheme(s))
	return s
}()

// NewEventRecorder returns a recorder of Events on ETCDInstances and a function that stops
// it. It records events.k8s.io/v1 Events when the server serves that API (a Kubernetes
// cluster), and core/v1 Events otherwise: the standalone server serves only those, which is
// what `kubectl describe` lists in both cases.
func NewEventRecorder(ctx context.Context, client kubernetes.Interface) (events.EventRecorder, func()) {
	if _, err := client.Discovery().ServerResourcesForGroupVersion(eventsv1.SchemeGroupVersion.String()); err == nil {
		b := events.NewBroadcaster(&events.EventSinkImpl{Interface: client.EventsV1()})
		if err := b.StartRecordingToSinkWithContext(ctx); err == nil {
			return b.NewRecorder(eventScheme, Component), b.Shutdown
		}
		b.Shutdown()
	}
	b := record.NewBroadcaster(record.WithContext(ctx), record.WithCorrelatorOptions(record.CorrelatorOptions{SpamKeyFunc: spamKey}))
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	legacy := b.NewRecorder(eventScheme, corev1.EventSource{Component: Component})
	return record.NewEventRecorderAdapter(legacy), b.Shutdown
}

// spamKey is the bucket of client-go's spam filter for core/v1 Events: one per reason and
// message of an instance, so that only the same Event repeated is throttled (25, then one
// every 5 minutes). client-go's default bucket is the whole instance, which after 25 Events
// dropped every later step of a few scales for minutes; events.k8s.io/v1 has no such limit.
func spamKey(e *corev1.Event) string {
	o := e.InvolvedObject
	return strings.Join([]string{e.Source.Component, e.Source.Host, o.APIVersion, o.Kind, o.Namespace, o.Name, string(o.UID), e.Type, e.Reason, e.Message}, "\x00")
}

// recordEvents records what a Sync reported it did as Events on the instance.
func (c *Controller) recordEvents(inst *v1beta1.ETCDInstance, res *backend.Result) {
	if c.opts.Events == nil || res == nil {
		return
	}
	for _, e := range res.Events {
		c.opts.Events.Eventf(inst, nil, e.Type(), string(e.Reason), e.Action(), "%s", e.Note)
	}
}

// noteQuorumLoss records a QuorumLost Warning Event when the instance has just lost quorum:
// the Degraded condition of inst, the status the write replaced, did not say so yet. Later
// syncs of the same loss record nothing more.
func (c *Controller) noteQuorumLoss(inst *v1beta1.ETCDInstance, res *backend.Result) {
	if res == nil || res.QuorumLost == "" || c.opts.Events == nil {
		return
	}
	if cond := meta.FindStatusCondition(inst.Status.Conditions, etcdaas.ConditionDegraded); cond != nil && cond.Reason == ReasonQuorumLost {
		return
	}
	r := backend.ReasonQuorumLost
	c.opts.Events.Eventf(inst, nil, r.Type(), string(r), r.Action(), "%s", res.QuorumLost)
}

// noteBlocked records a Warning Event, named by the block's reason, when the instance has
// just become blocked (res.Blocked: nothing changes until a person acts) and the Progressing
// condition of inst, the status the write replaced, did not say so yet. Later syncs of the
// same block record nothing more.
func (c *Controller) noteBlocked(inst *v1beta1.ETCDInstance, res *backend.Result) {
	if res == nil || res.Blocked == "" || c.opts.Events == nil {
		return
	}
	if cond := meta.FindStatusCondition(inst.Status.Conditions, etcdaas.ConditionProgressing); cond != nil &&
		cond.Status == metav1.ConditionFalse && cond.Reason == string(res.BlockedReason) {
		return
	}
	r := res.BlockedReason
	c.opts.Events.Eventf(inst, nil, r.Type(), string(r), r.Action(), "%s", res.Blocked)
}

// notePermanentFailure records a Warning Event, named by the failure's reason, when a Sync
// failed in a way only a change of the spec can fix (spec.restoreFrom's backup is missing or
// invalid, ...) and the status of inst, the instance as the status write found it, did not
// say so yet: the phase turns Failed, and `kubectl describe` and `kubectl events` show why.
// Later syncs of the same failure record nothing.
func (c *Controller) notePermanentFailure(inst *v1beta1.ETCDInstance, syncErr error) {
	pe, ok := backend.IsPermanent(syncErr)
	if !ok || c.opts.Events == nil {
		return
	}
	reason := permanentReason(pe)
	if c := meta.FindStatusCondition(inst.Status.Conditions, etcdaas.ConditionDegraded); c != nil && c.Reason == reason && c.Message == pe.Message {
		return
	}
	c.opts.Events.Eventf(inst, nil, backend.EventTypeWarning, reason, "Reconcile", "%s", pe.Message)
}

// noteRefused records a Warning Event, named by the refusal's reason, when the backend has
// just refused a change of the spec it cannot make while it runs the members as they are
// (res.Refused: a spec.version without an etcd to run) and neither the Progressing nor the
// Degraded condition of inst, the status the write replaced, said so yet. Later syncs of the
// same refusal record nothing more, also while a scale or a repair has Progressing say what it
// does.
func (c *Controller) noteRefused(inst *v1beta1.ETCDInstance, res *backend.Result) {
	if res == nil || res.Refused == "" || c.opts.Events == nil {
		return
	}
	for _, typ := range []string{etcdaas.ConditionProgressing, etcdaas.ConditionDegraded} {
		if cond := meta.FindStatusCondition(inst.Status.Conditions, typ); cond != nil && cond.Reason == res.RefusedReason && strings.HasPrefix(cond.Message, res.Refused) {
			return
		}
	}
	c.opts.Events.Eventf(inst, nil, backend.EventTypeWarning, res.RefusedReason, "Upgrade", "%s", res.Refused)
}
