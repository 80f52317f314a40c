package event

import (
	"context"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestTableColumnsAndCells(t *testing.T) {
	// A fixed clock: the ages below cannot shift by a second however slow the run.
	now := time.Date(2026, time.November, 29, 12, 0, 0, 0, time.UTC)
	convertor := TableConvertor{now: func() time.Time { return now }}
	list := &corev1.EventList{
		ListMeta: metav1.ListMeta{ResourceVersion: "42"},
		Items: []corev1.Event{{
			ObjectMeta:     metav1.ObjectMeta{Name: "db.1", Namespace: "ns"},
			InvolvedObject: corev1.ObjectReference{Kind: "ETCDInstance", Name: "db"},
			Reason:         "MemberAdded", Type: "Normal", Message: "Added member db-1 as a learner\n",
			Source:         corev1.EventSource{Component: "etcdaas-controller"},
			FirstTimestamp: metav1.NewTime(now.Add(-5 * time.Minute)), LastTimestamp: metav1.NewTime(now.Add(-2 * time.Minute)), Count: 3,
		}, {
			// An events.k8s.io/v1 singleton: no timestamps but eventTime, no count.
			ObjectMeta:     metav1.ObjectMeta{Name: "db.2", Namespace: "ns"},
			InvolvedObject: corev1.ObjectReference{Kind: "ETCDInstance", Name: "db", FieldPath: "status.members"},
			Reason:         "Defragmented", Type: "Normal",
			EventTime:           metav1.NewMicroTime(now.Add(-30 * time.Second)),
			ReportingController: "etcdaas-controller", ReportingInstance: "node-1",
		}},
	}
	table, err := convertor.ConvertToTable(context.Background(), list, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range table.ColumnDefinitions {
		if c.Priority == 0 {
			names = append(names, c.Name)
		}
	}
	if got, want := names, []string{"Last Seen", "Type", "Reason", "Object", "Message"}; !slices.Equal(got, want) {
		t.Errorf("default columns %q, want %q", got, want)
	}
	if table.ResourceVersion != "42" || len(table.Rows) != 2 {
		t.Fatalf("table %+v", table)
	}
	for i, want := range [][]any{
		{"2m", "Normal", "MemberAdded", "etcdinstance/db", "", "etcdaas-controller", "Added member db-1 as a learner", "5m", int64(3), "db.1"},
		{"30s", "Normal", "Defragmented", "etcdinstance/db", "status.members", "etcdaas-controller, node-1", "", "30s", int64(1), "db.2"},
	} {
		cells := table.Rows[i].Cells
		if len(cells) != len(table.ColumnDefinitions) {
			t.Fatalf("row %d has %d cells for %d columns", i, len(cells), len(table.ColumnDefinitions))
		}
		for j := range want {
			if cells[j] != want[j] {
				t.Errorf("row %d, column %s: %#v, want %#v", i, table.ColumnDefinitions[j].Name, cells[j], want[j])
			}
		}
	}

	noHeaders, err := convertor.ConvertToTable(context.Background(), &list.Items[0], &metav1.TableOptions{NoHeaders: true})
	if err != nil || len(noHeaders.ColumnDefinitions) != 0 || len(noHeaders.Rows) != 1 {
		t.Errorf("one event without headers: %+v (%v)", noHeaders, err)
	}
	if _, err := convertor.ConvertToTable(context.Background(), &corev1.Pod{}, nil); err == nil {
		t.Error("a Pod rendered as an event")
	}

	// The zero value, as the registry uses it, measures against the wall clock; three hours
	// ago prints "3h" until 3h1m.
	wall, err := TableConvertor{}.ConvertToTable(context.Background(), &corev1.Event{
		LastTimestamp: metav1.NewTime(time.Now().Add(-3 * time.Hour)),
	}, nil)
	if err != nil || len(wall.Rows) != 1 || wall.Rows[0].Cells[0] != "3h" {
		t.Errorf("an event three hours old against the wall clock: %+v (%v)", wall, err)
	}
}
