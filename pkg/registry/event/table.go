package event

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/apiserver/pkg/registry/rest"

	"github.com/etcdaas/etcdaas/pkg/registry/table"
)

// TableConvertor renders Events as kube-apiserver's printer does for `kubectl get events`:
// LAST SEEN, TYPE, REASON, OBJECT, MESSAGE, and with -o wide also SUBOBJECT, SOURCE,
// FIRST SEEN, COUNT and NAME. The zero value measures ages against the wall clock.
type TableConvertor struct {
	// now is the clock ages are measured against; nil means time.Now.
	now func() time.Time
}

var _ rest.TableConvertor = TableConvertor{}

var (
	eventDescriptions = corev1.Event{}.SwaggerDoc()
	columns           = []metav1.TableColumnDefinition{
		{Name: "Last Seen", Type: "string", Description: eventDescriptions["lastTimestamp"]},
		{Name: "Type", Type: "string", Description: eventDescriptions["type"]},
		{Name: "Reason", Type: "string", Description: eventDescriptions["reason"]},
		{Name: "Object", Type: "string", Description: eventDescriptions["involvedObject"]},
		{Name: "Subobject", Type: "string", Priority: 1, Description: corev1.ObjectReference{}.SwaggerDoc()["fieldPath"]},
		{Name: "Source", Type: "string", Priority: 1, Description: eventDescriptions["source"]},
		{Name: "Message", Type: "string", Description: eventDescriptions["message"]},
		{Name: "First Seen", Type: "string", Priority: 1, Description: eventDescriptions["firstTimestamp"]},
		{Name: "Count", Type: "string", Priority: 1, Description: eventDescriptions["count"]},
		{Name: "Name", Type: "string", Priority: 1, Format: "name", Description: metav1.ObjectMeta{}.SwaggerDoc()["name"]},
	}
)

// ConvertToTable renders one Event or a list of them.
func (c TableConvertor) ConvertToTable(_ context.Context, object runtime.Object, tableOptions runtime.Object) (*metav1.Table, error) {
	now := time.Now()
	if c.now != nil {
		now = c.now()
	}
	var rows []metav1.TableRow
	switch obj := object.(type) {
	case *corev1.Event:
		rows = []metav1.TableRow{row(obj, now)}
	case *corev1.EventList:
		rows = make([]metav1.TableRow, 0, len(obj.Items))
		for i := range obj.Items {
			rows = append(rows, row(&obj.Items[i], now))
		}
	default:
		return nil, fmt.Errorf("cannot render %T as a table of events", object)
	}
	return table.New(object, tableOptions, columns, rows), nil
}

// row is the table row of one Event, its cells in the order of columns.
func row(e *corev1.Event, now time.Time) metav1.TableRow {
	first := since(e.FirstTimestamp.Time, now)
	if e.FirstTimestamp.IsZero() {
		first = since(e.EventTime.Time, now)
	}
	last := first
	if !e.LastTimestamp.IsZero() {
		last = since(e.LastTimestamp.Time, now)
	}
	count := e.Count
	if e.Series != nil {
		last = since(e.Series.LastObservedTime.Time, now)
		count = e.Series.Count
	} else if count == 0 {
		count = 1 // an events.k8s.io/v1 singleton has no count
	}
	object := strings.ToLower(e.InvolvedObject.Kind)
	if e.InvolvedObject.Name != "" {
		object += "/" + e.InvolvedObject.Name
	}
	return metav1.TableRow{
		Object: runtime.RawExtension{Object: e},
		Cells: []any{last, e.Type, e.Reason, object, e.InvolvedObject.FieldPath, source(e),
			strings.TrimSpace(e.Message), first, int64(count), e.Name},
	}
}

// source is the component that reported the Event and, when known, its instance or host.
func source(e *corev1.Event) string {
	component := firstNonEmpty(e.Source.Component, e.ReportingController)
	if component == "" {
		return ""
	}
	if instance := firstNonEmpty(e.Source.Host, e.ReportingInstance); instance != "" {
		return component + ", " + instance
	}
	return component
}

// firstNonEmpty returns the first of a and b that is not empty.
func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// since is how long ago t was, as kubectl prints ages; <unknown> when t is not set.
func since(t, now time.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(now.Sub(t))
}
