package etcdinstance

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/apiserver/pkg/registry/rest"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	"github.com/etcdaas/etcdaas/pkg/registry/table"
)

// TableConvertor renders instances as the table `kubectl get` prints: NAME, REPLICAS, READY,
// PHASE, VERSION, AGE, and with -o wide also TLS, MEMBERS and LEADER.
type TableConvertor struct{}

var _ rest.TableConvertor = TableConvertor{}

var swaggerMetadataDescriptions = metav1.ObjectMeta{}.SwaggerDoc()

// columns are the table's column definitions.
var columns = []metav1.TableColumnDefinition{
	{Name: "Name", Type: "string", Format: "name", Description: swaggerMetadataDescriptions["name"]},
	{Name: "Replicas", Type: "integer", Description: "The number of members asked for (spec.replicas)."},
	{Name: "Ready", Type: "string", Description: "Ready members out of existing members (status.readyReplicas/status.replicas)."},
	{Name: "Phase", Type: "string", Description: "The lifecycle phase (status.phase)."},
	{Name: "Version", Type: "string", Description: "The etcd version (spec.version)."},
	{Name: "Age", Type: "string", Description: swaggerMetadataDescriptions["creationTimestamp"]},
	{Name: "TLS", Type: "boolean", Priority: 1, Description: "Whether client and peer TLS are on (spec.tls.enabled)."},
	{Name: "Members", Type: "string", Priority: 1, Description: "The members' names (status.members)."},
	{Name: "Leader", Type: "string", Priority: 1, Description: "The member that is the raft leader."},
}

// ConvertToTable renders one instance or a list of them.
func (TableConvertor) ConvertToTable(ctx context.Context, object runtime.Object, tableOptions runtime.Object) (*metav1.Table, error) {
	var rows []metav1.TableRow
	switch obj := object.(type) {
	case *etcdaas.ETCDInstance:
		rows = []metav1.TableRow{row(obj)}
	case *etcdaas.ETCDInstanceList:
		rows = make([]metav1.TableRow, 0, len(obj.Items))
		for i := range obj.Items {
			rows = append(rows, row(&obj.Items[i]))
		}
	default:
		return nil, fmt.Errorf("cannot render %T as a table of etcdinstances", object)
	}
	return table.New(object, tableOptions, columns, rows), nil
}

// row is the table row of one instance.
func row(instance *etcdaas.ETCDInstance) metav1.TableRow {
	phase := string(instance.Status.Phase)
	if phase == "" {
		phase = string(etcdaas.PhasePending)
	}
	if instance.DeletionTimestamp != nil {
		phase = string(etcdaas.PhaseDeleting)
	}
	memberNames := make([]string, 0, len(instance.Status.Members))
	leader := "<none>"
	for _, m := range instance.Status.Members {
		memberNames = append(memberNames, m.Name)
		if m.Leader {
			leader = m.Name
		}
	}
	if len(memberNames) == 0 {
		memberNames = append(memberNames, "<none>")
	}
	return metav1.TableRow{
		Object: runtime.RawExtension{Object: instance},
		Cells: []interface{}{
			instance.Name,
			int64(instance.Spec.Replicas),
			strconv.Itoa(int(instance.Status.ReadyReplicas)) + "/" + strconv.Itoa(int(instance.Status.Replicas)),
			phase,
			instance.Spec.Version,
			age(instance.CreationTimestamp),
			instance.Spec.TLSEnabled(),
			strings.Join(memberNames, ","),
			leader,
		},
	}
}

// ScaleTableConvertor renders the scale subresource as the table `kubectl get --subresource=scale`
// prints: NAME, DESIRED (spec.replicas), AVAILABLE (status.replicas) and AGE, the columns
// kube-apiserver gives the Scale of its workloads and of custom resources.
type ScaleTableConvertor struct{}

var _ rest.TableConvertor = ScaleTableConvertor{}

// scaleColumns are the scale table's column definitions, described as autoscaling/v1 does.
var scaleColumns = []metav1.TableColumnDefinition{
	{Name: "Name", Type: "string", Format: "name", Description: swaggerMetadataDescriptions["name"]},
	{Name: "Desired", Type: "integer", Description: autoscalingv1.ScaleSpec{}.SwaggerDoc()["replicas"]},
	{Name: "Available", Type: "integer", Description: autoscalingv1.ScaleStatus{}.SwaggerDoc()["replicas"]},
	{Name: "Age", Type: "string", Description: swaggerMetadataDescriptions["creationTimestamp"]},
}

// ConvertToTable renders one Scale.
func (ScaleTableConvertor) ConvertToTable(_ context.Context, object runtime.Object, tableOptions runtime.Object) (*metav1.Table, error) {
	scale, ok := object.(*autoscalingv1.Scale)
	if !ok {
		return nil, fmt.Errorf("cannot render %T as a table of etcdinstances/scale", object)
	}
	row := metav1.TableRow{
		Object: runtime.RawExtension{Object: scale},
		Cells:  []interface{}{scale.Name, int64(scale.Spec.Replicas), int64(scale.Status.Replicas), age(scale.CreationTimestamp)},
	}
	return table.New(object, tableOptions, scaleColumns, []metav1.TableRow{row}), nil
}

// age renders a timestamp the way kubectl does ("5m", "3d"), or "<unknown>".
func age(t metav1.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(time.Since(t.Time))
}

// BackupsTableConvertor renders the backups subresource as the table `kubectl get etcd NAME
// --subresource=backups` prints: KEY, TIME, SIZE, REVISION and ETCD VERSION (the columns of
// `kubectl etcdaas backups`), and with -o wide SHA256 and INSTANCE UID, newest first as listed.
type BackupsTableConvertor struct{}

var _ rest.TableConvertor = BackupsTableConvertor{}

// backupsColumns are the backups table's column definitions.
var backupsColumns = []metav1.TableColumnDefinition{
	{Name: "Key", Type: "string", Format: "name", Description: "The backup's name in its destination."},
	{Name: "Time", Type: "string", Format: "date-time", Description: "When the backup was complete in its destination (UTC)."},
	{Name: "Size", Type: "string", Description: "The size of the snapshot."},
	{Name: "Revision", Type: "integer", Description: "The etcd revision the snapshot was taken at."},
	{Name: "Etcd Version", Type: "string", Description: "The version etcd recorded in the snapshot."},
	{Name: "SHA256", Type: "string", Priority: 1, Description: "The hex SHA-256 of the snapshot."},
	{Name: "Instance UID", Type: "string", Priority: 1, Description: "The UID of the instance the backup was taken of."},
}

// ConvertToTable renders an ETCDInstanceBackupList, one row per backup.
func (BackupsTableConvertor) ConvertToTable(_ context.Context, object runtime.Object, tableOptions runtime.Object) (*metav1.Table, error) {
	list, ok := object.(*etcdaas.ETCDInstanceBackupList)
	if !ok {
		return nil, fmt.Errorf("cannot render %T as a table of etcdinstances/backups", object)
	}
	rows := make([]metav1.TableRow, 0, len(list.Items))
	for _, b := range list.Items {
		// The server reads each row's metadata (kubectl asks for it): a backup has none but its
		// key, as its name, and when it was complete.
		row := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Name: b.Key, CreationTimestamp: b.CompletionTime}}
		rows = append(rows, metav1.TableRow{Object: runtime.RawExtension{Object: row}, Cells: []interface{}{
			b.Key,
			b.CompletionTime.UTC().Format(time.RFC3339),
			resource.NewQuantity(b.SizeBytes, resource.BinarySI).String(),
			b.Revision,
			b.EtcdVersion,
			b.SHA256,
			b.InstanceUID,
		}})
	}
	return table.New(object, tableOptions, backupsColumns, rows), nil
}
