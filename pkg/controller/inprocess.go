package controller

import (
	"context"
	"fmt"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"github.com/etcdaas/etcdaas/pkg/backup"
	"github.com/etcdaas/etcdaas/pkg/controller/backend/local"
	"github.com/etcdaas/etcdaas/pkg/generated/clientset/versioned"
)

// StartLocal starts a controller with the local backend in this process, as the standalone
// server's post-start hook does: members run as embedded etcd servers with data under
// opts.Dir. Scheduled backups go to backupDir (local destinations) or to S3 with the
// credentials of the process's environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY): a
// standalone server has no Secrets; spec.restoreFrom reads the source instance's backups
// from the same places. It returns once the controller is started; the controller runs
// until ctx ends, then stops the members (keeping their data). The returned channel is
// closed when everything has stopped. Its requests carry the user agent Component, as
// etcdaas-controller's do: managedFields and audit name the controller, not the server.
func StartLocal(ctx context.Context, config *rest.Config, opts local.Options, backupDir string) (<-chan struct{}, error) {
	config = rest.CopyConfig(config)
	config.UserAgent = Component
	client, err := versioned.NewForConfig(config)
	if err != nil {
		return nil, fmt.Errorf("building the controller's client: %w", err)
	}
	resolver := backup.Resolver{LocalRoot: backupDir, Credentials: backup.EnvCredentials{}}
	if opts.RestoreSource == nil {
		opts.RestoreSource = BackupRestoreSource{Client: client, Resolver: resolver}
	}
	b, err := local.New(opts)
	if err != nil {
		return nil, err
	}
	kube, err := kubernetes.NewForConfig(config)
	if err != nil {
		_ = b.Close()
		return nil, fmt.Errorf("building the controller's events client: %w", err)
	}
	recorder, stopEvents := NewEventRecorder(ctx, kube)
	c, err := New(Options{Client: client, Backend: b, Events: recorder, Backups: BackupOptions{
		Dialer:   local.Dialer{Dir: opts.Dir},
		Resolver: resolver,
	}})
	if err != nil {
		stopEvents()
		_ = b.Close()
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer stopEvents()
		if err := c.Run(ctx); err != nil {
			klog.ErrorS(err, "In-process controller stopped")
		}
		if err := b.Close(); err != nil {
			klog.ErrorS(err, "Stopping the local members")
		}
	}()
	return done, nil
}
