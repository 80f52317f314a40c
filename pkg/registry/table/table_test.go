package table

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func TestNewCarriesHeadersAndListPosition(t *testing.T) {
	columns := []metav1.TableColumnDefinition{{Name: "Name", Type: "string"}}
	rows := []metav1.TableRow{{Cells: []any{"a"}}}
	list := &corev1.EventList{ListMeta: metav1.ListMeta{ResourceVersion: "42", Continue: "next", RemainingItemCount: ptr.To[int64](7)}}

	got := New(list, &metav1.TableOptions{}, columns, rows)
	if len(got.ColumnDefinitions) != 1 || len(got.Rows) != 1 {
		t.Errorf("columns %v rows %v, want one of each", got.ColumnDefinitions, got.Rows)
	}
	if got.ResourceVersion != "42" || got.Continue != "next" || got.RemainingItemCount == nil || *got.RemainingItemCount != 7 {
		t.Errorf("list position %q %q %v, want 42, next, 7", got.ResourceVersion, got.Continue, got.RemainingItemCount)
	}
	if got := New(list, &metav1.TableOptions{NoHeaders: true}, columns, rows); got.ColumnDefinitions != nil {
		t.Errorf("columns %v with NoHeaders, want none", got.ColumnDefinitions)
	}
	if got := New(list, nil, columns, rows); len(got.ColumnDefinitions) != 1 {
		t.Errorf("columns %v without table options, want them", got.ColumnDefinitions)
	}
	item := &corev1.Event{ObjectMeta: metav1.ObjectMeta{ResourceVersion: "9"}}
	if got := New(item, nil, columns, rows); got.ResourceVersion != "9" || got.Continue != "" {
		t.Errorf("one item: resourceVersion %q continue %q, want 9 and none", got.ResourceVersion, got.Continue)
	}
}
