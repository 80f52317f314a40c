package cli

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
)

// TestBackupsOutput: -o json and -o yaml print the list as kubectl prints objects: JSON
// indented by four spaces in the type's field order, YAML with sorted keys; an empty list has
// items: [].
func TestBackupsOutput(t *testing.T) {
	s := newFakeServer(t)
	s.add(instance("team", "my-etcd", 1))
	s.backups = &v1beta1.ETCDInstanceBackupList{Items: []v1beta1.BackupInfo{{
		Key: "etcd/team/my-etcd/20261129T220000Z.db", Revision: 42, SizeBytes: 20480, SHA256: "ab12",
		EtcdVersion: "3.6.0", CompletionTime: metav1.NewTime(time.Date(2026, 11, 29, 22, 0, 0, 0, time.UTC)), InstanceUID: "uid-1",
	}}}

	r := s.run(t, "backups", "my-etcd", "-o", "json")
	expectCode(t, r, 0)
	const wantJSON = `{
    "kind": "ETCDInstanceBackupList",
    "apiVersion": "etcdaas.dev/v1beta1",
    "metadata": {},
    "items": [
        {
            "key": "etcd/team/my-etcd/20261129T220000Z.db",
            "revision": 42,
            "sizeBytes": 20480,
            "sha256": "ab12",
            "etcdVersion": "3.6.0",
            "completionTime": "2026-11-29T22:00:00Z",
            "instanceUID": "uid-1"
        }
    ]
}
`
	if r.stdout != wantJSON {
		t.Errorf("-o json printed\n%s\nwant\n%s", r.stdout, wantJSON)
	}

	r = s.run(t, "backups", "my-etcd", "-o", "yaml")
	expectCode(t, r, 0)
	const wantYAML = `apiVersion: etcdaas.dev/v1beta1
items:
- completionTime: "2026-11-29T22:00:00Z"
  etcdVersion: 3.6.0
  instanceUID: uid-1
  key: etcd/team/my-etcd/20261129T220000Z.db
  revision: 42
  sha256: ab12
  sizeBytes: 20480
kind: ETCDInstanceBackupList
metadata: {}
`
	if r.stdout != wantYAML {
		t.Errorf("-o yaml printed\n%s\nwant\n%s", r.stdout, wantYAML)
	}

	s.backups = &v1beta1.ETCDInstanceBackupList{}
	r = s.run(t, "backups", "my-etcd", "-o", "json")
	expectCode(t, r, 0)
	const wantEmpty = `{
    "kind": "ETCDInstanceBackupList",
    "apiVersion": "etcdaas.dev/v1beta1",
    "metadata": {},
    "items": []
}
`
	if r.stdout != wantEmpty {
		t.Errorf("-o json of no backups printed\n%s\nwant\n%s", r.stdout, wantEmpty)
	}

	r = s.run(t, "backups", "my-etcd", "-o", "wide")
	if r.code == 0 {
		t.Errorf("-o wide accepted: %q", r.stdout)
	}
}
