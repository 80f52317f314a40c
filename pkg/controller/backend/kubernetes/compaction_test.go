package kubernetes

import (
	"context"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/etcdaas/etcdaas/pkg/controller/backend"
)

// TestMembersCompactTheirHistory: etcd compacts nothing unless told to, so without
// auto-compaction an instance's history grows until its database reaches its quota (NOSPACE,
// writes refused) unless every client compacts by itself. Member pods run with etcd's
// periodic auto-compaction keeping an hour of history by default, or what the controller's
// flags say; settings etcd would refuse are refused when the backend is made.
func TestMembersCompactTheirHistory(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		opts       backend.AutoCompaction
		mode, keep string
	}{
		{backend.AutoCompaction{}, "periodic", "1h"},
		{backend.AutoCompaction{Mode: "revision", Retention: "10000"}, "revision", "10000"},
		{backend.AutoCompaction{Retention: "0"}, "periodic", "0"},
	} {
		client := fake.NewClientset()
		b, err := New(Options{Client: client, AutoCompaction: tc.opts})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.Sync(ctx, testInstance()); err != nil {
			t.Fatal(err)
		}
		sts, err := client.AppsV1().StatefulSets("ns").Get(ctx, "db", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		c := sts.Spec.Template.Spec.Containers[0]
		if mode, keep := env(t, c, "ETCD_AUTO_COMPACTION_MODE"), env(t, c, "ETCD_AUTO_COMPACTION_RETENTION"); mode != tc.mode || keep != tc.keep {
			t.Errorf("%+v: members run with auto-compaction %q %q, want %q %q", tc.opts, mode, keep, tc.mode, tc.keep)
		}
	}
	if _, err := New(Options{Client: fake.NewClientset(), AutoCompaction: backend.AutoCompaction{Mode: "revision", Retention: "1h"}}); err == nil ||
		!strings.Contains(err.Error(), "--auto-compaction-retention") {
		t.Errorf("revision mode with a duration: %v", err)
	}
}

// Member pods made before auto-compaction (or with other settings) keep theirs until they
// restart: a change of the settings restarts no member.
func TestAutoCompactionStartsNoRoll(t *testing.T) {
	f := newRollFixture(t)
	f.inst.Spec.Version = "3.7.2" // what the pods run
	sts := f.sts(t)
	template := *sts.Spec.Template.DeepCopy()
	c := &template.Spec.Containers[0]
	c.Image = oldImage
	c.Env = slices.DeleteFunc(c.Env, func(e corev1.EnvVar) bool { return strings.HasPrefix(e.Name, "ETCD_AUTO_COMPACTION_") })
	for i := range 3 {
		if err := f.client.CoreV1().Pods("ns").Delete(context.Background(), podName(i), metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		f.createPodFrom(t, i, template, true)
	}
	for range 3 {
		if res := f.sync(t); res.StepReason == backend.StepUpgrading {
			t.Fatalf("a roll started: %q", res.Step)
		}
	}
	if len(f.deleted) != 0 {
		t.Errorf("pods restarted: %v", f.deleted)
	}
}
