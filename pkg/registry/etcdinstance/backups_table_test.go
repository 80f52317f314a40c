package etcdinstance

import (
	"context"
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
)

// TestBackupsTable: one row per backup with the plugin's columns (SHA256 and the instance UID
// at priority 1, for -o wide), each row carrying the key as the metadata name the server
// hands kubectl; anything but a backup list is an error.
func TestBackupsTable(t *testing.T) {
	done := metav1.NewTime(time.Date(2026, 11, 29, 3, 5, 12, 0, time.UTC))
	list := &etcdaas.ETCDInstanceBackupList{Items: []etcdaas.BackupInfo{{Key: "20261129T030512.123Z-r4711.db", Revision: 4711,
		SizeBytes: 2*1024*1024 + 32, SHA256: "abc", EtcdVersion: "3.7.0", CompletionTime: done, InstanceUID: "uid-1"}}}
	table, err := BackupsTableConvertor{}.ConvertToTable(context.Background(), list, &metav1.TableOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range table.ColumnDefinitions {
		if c.Priority == 0 {
			names = append(names, c.Name)
		}
	}
	if want := []string{"Key", "Time", "Size", "Revision", "Etcd Version"}; !slices.Equal(names, want) {
		t.Errorf("columns %q, want %q", names, want)
	}
	if len(table.Rows) != 1 {
		t.Fatalf("rows %+v", table.Rows)
	}
	want := []interface{}{"20261129T030512.123Z-r4711.db", "2026-11-29T03:05:12Z", "2097184", int64(4711), "3.7.0", "abc", "uid-1"}
	if got := table.Rows[0].Cells; !slices.Equal(got, want) {
		t.Errorf("cells %v, want %v", got, want)
	}
	if m, ok := table.Rows[0].Object.Object.(*metav1.PartialObjectMetadata); !ok || m.Name != list.Items[0].Key || !m.CreationTimestamp.Equal(&done) {
		t.Errorf("row object %#v, want the key and completion time as metadata", table.Rows[0].Object.Object)
	}
	if _, err := (BackupsTableConvertor{}).ConvertToTable(context.Background(), &etcdaas.ETCDInstance{}, nil); err == nil {
		t.Error("an ETCDInstance rendered as a table of backups")
	}
}
