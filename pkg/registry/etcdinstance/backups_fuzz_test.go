package etcdinstance

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversionscheme "k8s.io/apimachinery/pkg/apis/meta/internalversion/scheme"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	"github.com/etcdaas/etcdaas/pkg/backup"
)

// FuzzBackupsListing lists the backups of an instance with a local destination holding one
// file of arbitrary name, size and provenance sidecar (what anyone with access to the
// destination could leave there), with an arbitrary query string decoded into GetOptions as
// the API server decodes it (a query it cannot decode is its 400 before the handler runs).
// The answer is a list of well-formed keys, newest first, each with the size on disk, or a
// 500 Status naming the damaged backup (its provenance unreadable or not matching it); never a panic or another status.
func FuzzBackupsListing(f *testing.F) {
	key := backup.Key(time.Date(2026, 11, 29, 3, 5, 12, 0, time.UTC), 4711)
	sidecar := `{"Etcdaas-Instance-Uid":"uid-1","Etcdaas-Revision":"4711","Etcdaas-Etcd-Version":"3.7.3",` +
		`"Etcdaas-Sha256":"ab","Etcdaas-Time":"2026-11-29T03:05:12Z","Etcdaas-Size":"64"}`
	f.Add("", key, []byte(sidecar), uint16(64))
	f.Add("resourceVersion=0", key, []byte(sidecar), uint16(65))
	f.Add("resourceVersion=abc&x=%zz", key, []byte(`{"Etcdaas-Sha256":"ab"}`), uint16(0))
	f.Add("", key, []byte(`not json`), uint16(1))
	f.Add("", "20261129T030512.000Z-r-1.db", []byte(sidecar), uint16(64))
	f.Add("", ".tmp", []byte{}, uint16(0))
	f.Fuzz(func(t *testing.T, rawQuery, name string, meta []byte, size uint16) {
		query, err := url.ParseQuery(rawQuery)
		if err != nil {
			return // net/http drops what it cannot parse; nothing reaches the handler
		}
		var opts metav1.GetOptions
		if err := metainternalversionscheme.ParameterCodec.DecodeParameters(query, metav1.SchemeGroupVersion, &opts); err != nil {
			return // the API server's 400
		}
		root := t.TempDir()
		dir, err := backup.LocalDir(root, "ns", "db")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if name == "" || name != filepath.Base(name) || os.WriteFile(filepath.Join(dir, name), make([]byte, size), 0o600) != nil {
			return // not a file name a destination can hold
		}
		_ = os.WriteFile(filepath.Join(dir, name)+".json", meta, 0o600)
		getter := fakeGetter{"db": {
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "db", UID: "uid-1"},
			Spec:       etcdaas.ETCDInstanceSpec{Backup: &etcdaas.BackupSpec{Destination: etcdaas.BackupDestination{Local: &etcdaas.LocalDestination{}}}},
		}}
		obj, err := NewBackupsREST(getter, &backup.Resolver{LocalRoot: root}).Get(context.Background(), "db", &opts)
		if err != nil {
			var status apierrors.APIStatus
			if !errors.As(err, &status) {
				t.Fatalf("an error that is not a Status: %v", err)
			}
			if code := status.Status().Code; code != http.StatusInternalServerError || !strings.Contains(err.Error(), name) {
				t.Fatalf("answered %d, want a 500 naming the damaged backup %q: %v", code, name, err)
			}
			return
		}
		list, ok := obj.(*etcdaas.ETCDInstanceBackupList)
		if !ok {
			t.Fatalf("answered %T", obj)
		}
		for _, item := range list.Items {
			if !backup.IsKey(item.Key) || item.Key != name || item.SizeBytes != int64(size) {
				t.Fatalf("listed %+v for a file %q of %d bytes", item, name, size)
			}
		}
		if backup.IsKey(name) && len(list.Items) != 1 {
			t.Fatalf("the backup %q is not listed and no error was reported: %+v", name, list.Items)
		}
	})
}
