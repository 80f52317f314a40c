// Package table assembles the metav1.Table a resource's TableConvertor returns for `kubectl
// get`, from the rows the resource renders: what every resource's table shares.
package table

import (
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// New returns the table of rows rendered from object, one item or a list: with columns unless
// tableOptions ask for no headers, and with the resourceVersion of the object and, for a
// list, its continue token and remaining item count, so that `kubectl get` can page and watch
// from it.
func New(object, tableOptions runtime.Object, columns []metav1.TableColumnDefinition, rows []metav1.TableRow) *metav1.Table {
	t := &metav1.Table{Rows: rows}
	if opts, ok := tableOptions.(*metav1.TableOptions); !ok || !opts.NoHeaders {
		t.ColumnDefinitions = columns
	}
	if list, err := meta.ListAccessor(object); err == nil {
		t.ResourceVersion = list.GetResourceVersion()
		t.Continue = list.GetContinue()
		t.RemainingItemCount = list.GetRemainingItemCount()
	} else if m, err := meta.CommonAccessor(object); err == nil {
		t.ResourceVersion = m.GetResourceVersion()
	}
	return t
}
