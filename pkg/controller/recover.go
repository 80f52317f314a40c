package controller

import (
	"context"
	"errors"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/controller/backend"
)

// recoverAndReport carries out the recovery a person requested through the recover
// subresource (recorded in etcdaas.RecoverRequestedAnnotation, with its ID in
// etcdaas.RecoverRequestIDAnnotation). A recovery that cannot be carried out is reported as a
// RecoveryFailed Event; either way the request is consumed, in the same status write that
// reports the recovery. A transient failure keeps the request, so the next attempt resumes
// the recovery; a request the backend knows by its ID as carried out (the write that should
// have consumed it failed) is consumed without an Event, its Recovered Event told already.
// The request is read from the server, not the informer's cache, so that a request already
// consumed is never carried out twice.
func (c *Controller) recoverAndReport(ctx context.Context, inst *v1beta1.ETCDInstance) error {
	client := c.opts.Client.EtcdaasV1beta1().ETCDInstances(inst.Namespace)
	live, err := client.Get(ctx, inst.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	member, requested := live.Annotations[etcdaas.RecoverRequestedAnnotation]
	if !requested || live.UID != inst.UID {
		return nil // consumed already: the cache was behind
	}
	req := backend.RecoverRequest{ID: live.Annotations[etcdaas.RecoverRequestIDAnnotation], Member: member}
	res, recErr := c.opts.Backend.Recover(ctx, live, req)
	done := errors.Is(recErr, backend.ErrRecoveredAlready)
	refused := errors.Is(recErr, backend.ErrCannotRecover)
	if refused {
		if res == nil {
			res = &backend.Result{}
		}
		res.Record(backend.ReasonRecoveryFailed, "Recovery not carried out: %v", recErr)
	}
	c.recordEvents(live, res)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if recErr != nil && !refused && !done {
		return fmt.Errorf("recovering %s: %w", cache.MetaObjectToName(inst), recErr)
	}
	klog.InfoS("Recovery request handled", "key", cache.MetaObjectToName(inst).String(), "member", member, "request", req.ID, "err", recErr)
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		latest, err := client.Get(ctx, inst.Name, metav1.GetOptions{})
		if err != nil || latest.UID != inst.UID {
			return err
		}
		updated := latest.DeepCopy()
		delete(updated.Annotations, etcdaas.RecoverRequestedAnnotation)
		delete(updated.Annotations, etcdaas.RecoverRequestIDAnnotation)
		if recErr == nil {
			updated.Status = computeStatus(latest, res, nil, c.now())
		}
		_, err = client.UpdateStatus(ctx, updated, metav1.UpdateOptions{})
		return err
	})
}
