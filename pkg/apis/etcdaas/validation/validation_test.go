package validation

import (
	"strings"
	"testing"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
)

func validInstance() *etcdaas.ETCDInstance {
	return &etcdaas.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "my-etcd", Namespace: "default", ResourceVersion: "1"},
		Spec:       etcdaas.ETCDInstanceSpec{Replicas: 3, Version: "3.7"},
	}
}

// fields returns "type field" for each error, the part a client acts on.
func fields(errs field.ErrorList) []string {
	var out []string
	for _, err := range errs {
		out = append(out, string(err.Type)+" "+err.Field)
	}
	return out
}

func expect(t *testing.T, errs field.ErrorList, want ...string) {
	t.Helper()
	got := fields(errs)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("errors:\n  got  %q\n  want %q\n(%v)", got, want, errs.ToAggregate())
	}
}

func TestValidateETCDInstance(t *testing.T) {
	checkInstanceCases(t, map[string]instanceCase{
		"valid":                 {func(*etcdaas.ETCDInstance) {}, nil},
		"name of 50 characters": {func(o *etcdaas.ETCDInstance) { o.Name = "a" + strings.Repeat("b", 49) }, nil},
		"name of 51 characters": {func(o *etcdaas.ETCDInstance) { o.Name = "a" + strings.Repeat("b", 50) }, []string{"FieldValueInvalid metadata.name"}},
		// One error says the length, not one for our limit and another for the DNS label's.
		"name of 64 characters": {func(o *etcdaas.ETCDInstance) { o.Name = "a" + strings.Repeat("b", 63) }, []string{"FieldValueInvalid metadata.name"}},
		"name of 64 characters, upper case": {func(o *etcdaas.ETCDInstance) { o.Name = "A" + strings.Repeat("b", 63) },
			[]string{"FieldValueInvalid metadata.name", "FieldValueInvalid metadata.name"}},
		"name with a dot":      {func(o *etcdaas.ETCDInstance) { o.Name = "my.etcd" }, []string{"FieldValueInvalid metadata.name"}},
		"name starting with 0": {func(o *etcdaas.ETCDInstance) { o.Name = "0etcd" }, []string{"FieldValueInvalid metadata.name"}},
		"name with upper case": {func(o *etcdaas.ETCDInstance) { o.Name = "MyEtcd" }, []string{"FieldValueInvalid metadata.name"}},
		"missing namespace":    {func(o *etcdaas.ETCDInstance) { o.Namespace = "" }, []string{"FieldValueRequired metadata.namespace"}},
		"replicas 0":           {func(o *etcdaas.ETCDInstance) { o.Spec.Replicas = 0 }, []string{"FieldValueInvalid spec.replicas"}},
		"replicas 1":           {func(o *etcdaas.ETCDInstance) { o.Spec.Replicas = 1 }, nil},
		"replicas 9":           {func(o *etcdaas.ETCDInstance) { o.Spec.Replicas = 9 }, nil},
		"replicas 10":          {func(o *etcdaas.ETCDInstance) { o.Spec.Replicas = 10 }, []string{"FieldValueInvalid spec.replicas"}},
		"negative replicas":    {func(o *etcdaas.ETCDInstance) { o.Spec.Replicas = -1 }, []string{"FieldValueInvalid spec.replicas"}},
		"missing version":      {func(o *etcdaas.ETCDInstance) { o.Spec.Version = "" }, []string{"FieldValueRequired spec.version"}},
		"version 2.3":          {func(o *etcdaas.ETCDInstance) { o.Spec.Version = "2.3" }, []string{"FieldValueInvalid spec.version"}},
		"release version":      {func(o *etcdaas.ETCDInstance) { o.Spec.Version = "3.7.3" }, nil},
		"four numbers":         {func(o *etcdaas.ETCDInstance) { o.Spec.Version = "3.7.3.1" }, []string{"FieldValueInvalid spec.version"}},
		"leading v":            {func(o *etcdaas.ETCDInstance) { o.Spec.Version = "v3.7.3" }, []string{"FieldValueInvalid spec.version"}},
		"pre-release":          {func(o *etcdaas.ETCDInstance) { o.Spec.Version = "3.7.3-rc.0" }, []string{"FieldValueInvalid spec.version"}},
		"leading zero minor":   {func(o *etcdaas.ETCDInstance) { o.Spec.Version = "3.07" }, []string{"FieldValueInvalid spec.version"}},
		"leading zero patch":   {func(o *etcdaas.ETCDInstance) { o.Spec.Version = "3.7.03" }, []string{"FieldValueInvalid spec.version"}},
		"huge minor":           {func(o *etcdaas.ETCDInstance) { o.Spec.Version = "3.99999999999999999999" }, []string{"FieldValueInvalid spec.version"}},
		"release 3.10.0":       {func(o *etcdaas.ETCDInstance) { o.Spec.Version = "3.10.0" }, nil},
		"zero storage size": {func(o *etcdaas.ETCDInstance) {
			o.Spec.Storage = &etcdaas.StorageSpec{VolumeSize: resource.NewQuantity(0, resource.BinarySI)}
		}, []string{"FieldValueInvalid spec.storage.size"}},
		"bad storage class name": {func(o *etcdaas.ETCDInstance) {
			o.Spec.Storage = &etcdaas.StorageSpec{StorageClassName: ptr.To("Fast SSD")}
		}, []string{"FieldValueInvalid spec.storage.storageClassName"}},
		"good storage": {func(o *etcdaas.ETCDInstance) {
			o.Spec.Storage = &etcdaas.StorageSpec{VolumeSize: ptr.To(resource.MustParse("1Gi")), StorageClassName: ptr.To("standard")}
		}, nil},
	})
}

// TestValidateETCDInstanceBackup validates spec.backup: schedule, keep and destination.
func TestValidateETCDInstanceBackup(t *testing.T) {
	checkInstanceCases(t, map[string]instanceCase{
		"backup to s3": {withBackup(func(*etcdaas.BackupSpec) {}), nil},
		"backup to local": {withBackup(func(b *etcdaas.BackupSpec) {
			b.Destination = etcdaas.BackupDestination{Local: &etcdaas.LocalDestination{}}
		}), nil},
		"backup @daily":             {withBackup(func(b *etcdaas.BackupSpec) { b.Schedule = "@daily" }), nil},
		"backup @every 1h":          {withBackup(func(b *etcdaas.BackupSpec) { b.Schedule = "@every 1h" }), nil},
		"backup @every 10s":         {withBackup(func(b *etcdaas.BackupSpec) { b.Schedule = "@every 10s" }), []string{"FieldValueInvalid spec.backup.schedule"}},
		"backup cron of six fields": {withBackup(func(b *etcdaas.BackupSpec) { b.Schedule = "0 0 * * * *" }), []string{"FieldValueInvalid spec.backup.schedule"}},
		"backup cron minute 60":     {withBackup(func(b *etcdaas.BackupSpec) { b.Schedule = "60 * * * *" }), []string{"FieldValueInvalid spec.backup.schedule"}},
		"backup empty schedule":     {withBackup(func(b *etcdaas.BackupSpec) { b.Schedule = "" }), []string{"FieldValueInvalid spec.backup.schedule"}},
		"backup on February 30":     {withBackup(func(b *etcdaas.BackupSpec) { b.Schedule = "0 0 30 2 *" }), []string{"FieldValueInvalid spec.backup.schedule"}},
		"backup with a time zone":   {withBackup(func(b *etcdaas.BackupSpec) { b.Schedule = "CRON_TZ=Europe/Paris 0 * * * *" }), []string{"FieldValueInvalid spec.backup.schedule"}},
		"backup keep 0":             {withBackup(func(b *etcdaas.BackupSpec) { b.Keep = 0 }), []string{"FieldValueInvalid spec.backup.keep"}},
		"backup keep 1":             {withBackup(func(b *etcdaas.BackupSpec) { b.Keep = 1 }), nil},
		"backup keep 1000":          {withBackup(func(b *etcdaas.BackupSpec) { b.Keep = 1000 }), nil},
		"backup keep 1001":          {withBackup(func(b *etcdaas.BackupSpec) { b.Keep = 1001 }), []string{"FieldValueInvalid spec.backup.keep"}},
		"backup without destination": {withBackup(func(b *etcdaas.BackupSpec) { b.Destination = etcdaas.BackupDestination{} }),
			[]string{"FieldValueRequired spec.backup.destination"}},
		"backup to both destinations": {withBackup(func(b *etcdaas.BackupSpec) { b.Destination.Local = &etcdaas.LocalDestination{} }),
			[]string{"FieldValueForbidden spec.backup.destination.local"}},
		"s3 endpoint not a URL":   {withBackup(func(b *etcdaas.BackupSpec) { b.Destination.S3.Endpoint = "s3.example.com" }), []string{"FieldValueInvalid spec.backup.destination.s3.endpoint"}},
		"s3 endpoint ftp":         {withBackup(func(b *etcdaas.BackupSpec) { b.Destination.S3.Endpoint = "ftp://s3.example.com" }), []string{"FieldValueInvalid spec.backup.destination.s3.endpoint"}},
		"s3 endpoint with a path": {withBackup(func(b *etcdaas.BackupSpec) { b.Destination.S3.Endpoint = "https://s3.example.com/bucket" }), []string{"FieldValueInvalid spec.backup.destination.s3.endpoint"}},
		"s3 endpoint with user":   {withBackup(func(b *etcdaas.BackupSpec) { b.Destination.S3.Endpoint = "https://key:secret@s3.example.com" }), []string{"FieldValueInvalid spec.backup.destination.s3.endpoint"}},
		"s3 endpoint with port":   {withBackup(func(b *etcdaas.BackupSpec) { b.Destination.S3.Endpoint = "http://127.0.0.1:8333/" }), nil},
		"s3 without endpoint":     {withBackup(func(b *etcdaas.BackupSpec) { b.Destination.S3.Endpoint = "" }), []string{"FieldValueRequired spec.backup.destination.s3.endpoint"}},
		"s3 without bucket":       {withBackup(func(b *etcdaas.BackupSpec) { b.Destination.S3.Bucket = "" }), []string{"FieldValueRequired spec.backup.destination.s3.bucket"}},
		"s3 bucket upper case":    {withBackup(func(b *etcdaas.BackupSpec) { b.Destination.S3.Bucket = "Backups" }), []string{"FieldValueInvalid spec.backup.destination.s3.bucket"}},
		"s3 prefix absolute":      {withBackup(func(b *etcdaas.BackupSpec) { b.Destination.S3.Prefix = "/etcd/" }), []string{"FieldValueInvalid spec.backup.destination.s3.prefix"}},
		"s3 prefix climbing":      {withBackup(func(b *etcdaas.BackupSpec) { b.Destination.S3.Prefix = "etcd/../other/" }), []string{"FieldValueInvalid spec.backup.destination.s3.prefix"}},
		"s3 prefix nested":        {withBackup(func(b *etcdaas.BackupSpec) { b.Destination.S3.Prefix = "team-a/etcd/" }), nil},
		"s3 bad secret name":      {withBackup(func(b *etcdaas.BackupSpec) { b.Destination.S3.CredentialsSecretRef.Name = "S3 creds" }), []string{"FieldValueInvalid spec.backup.destination.s3.credentialsSecretRef.name"}},
		"s3 caBundle not PEM":     {withBackup(func(b *etcdaas.BackupSpec) { b.Destination.S3.CABundle = "not a certificate" }), []string{"FieldValueInvalid spec.backup.destination.s3.caBundle"}},
	})
}

// TestValidateETCDInstanceRestoreAndDefrag validates spec.restoreFrom and spec.defragmentation.
func TestValidateETCDInstanceRestoreAndDefrag(t *testing.T) {
	checkInstanceCases(t, map[string]instanceCase{
		"restore from the newest": {func(o *etcdaas.ETCDInstance) { o.Spec.RestoreFrom = &etcdaas.RestoreSource{Instance: "old-etcd"} }, nil},
		"restore from a key": {func(o *etcdaas.ETCDInstance) {
			o.Spec.RestoreFrom = &etcdaas.RestoreSource{Instance: "old-etcd", Key: "20261129T030512.123Z-r4711.db"}
		}, nil},
		"restore from itself without a key": {func(o *etcdaas.ETCDInstance) { o.Spec.RestoreFrom = &etcdaas.RestoreSource{Instance: "my-etcd"} },
			[]string{"FieldValueRequired spec.restoreFrom.key"}},
		"restore from an earlier instance of its name": {func(o *etcdaas.ETCDInstance) {
			o.Spec.RestoreFrom = &etcdaas.RestoreSource{Instance: "my-etcd", Key: "20261129T030512.123Z-r4711.db"}
		}, nil},
		// The key as the backups subresource lists it, never an object's name in the bucket:
		// a key of another form names no backup, and restoreFrom cannot be changed later.
		"restore from an object name": {func(o *etcdaas.ETCDInstance) {
			o.Spec.RestoreFrom = &etcdaas.RestoreSource{Instance: "old-etcd", Key: "default/old-etcd/20261129T030512.123Z-r4711.db"}
		}, []string{"FieldValueInvalid spec.restoreFrom.key"}},
		"restore from a file name": {func(o *etcdaas.ETCDInstance) {
			o.Spec.RestoreFrom = &etcdaas.RestoreSource{Instance: "old-etcd", Key: "snapshot.db"}
		}, []string{"FieldValueInvalid spec.restoreFrom.key"}},
		"restore without instance": {func(o *etcdaas.ETCDInstance) {
			o.Spec.RestoreFrom = &etcdaas.RestoreSource{Key: "20261129T030512.123Z-r4711.db"}
		}, []string{"FieldValueRequired spec.restoreFrom.instance"}},
		"restore from a bad name": {func(o *etcdaas.ETCDInstance) { o.Spec.RestoreFrom = &etcdaas.RestoreSource{Instance: "Old.etcd"} }, []string{"FieldValueInvalid spec.restoreFrom.instance"}},
		"restore from a climbing key": {func(o *etcdaas.ETCDInstance) {
			o.Spec.RestoreFrom = &etcdaas.RestoreSource{Instance: "old-etcd", Key: "../x.db"}
		},
			[]string{"FieldValueInvalid spec.restoreFrom.key"}},
		"defragmentation thresholds": {func(o *etcdaas.ETCDInstance) {
			o.Spec.Defragmentation = &etcdaas.DefragmentationSpec{FreePercent: ptr.To[int32](100), FreeBytes: ptr.To(resource.MustParse("0"))}
		}, nil},
		"defragmentation with defaults": {func(o *etcdaas.ETCDInstance) { o.Spec.Defragmentation = &etcdaas.DefragmentationSpec{} }, nil},
		"defragmentation percent zero": {func(o *etcdaas.ETCDInstance) {
			o.Spec.Defragmentation = &etcdaas.DefragmentationSpec{FreePercent: ptr.To[int32](0)}
		},
			[]string{"FieldValueInvalid spec.defragmentation.freePercent"}},
		"defragmentation percent above 100": {func(o *etcdaas.ETCDInstance) {
			o.Spec.Defragmentation = &etcdaas.DefragmentationSpec{FreePercent: ptr.To[int32](101), FreeBytes: ptr.To(resource.MustParse("-1Mi"))}
		}, []string{"FieldValueInvalid spec.defragmentation.freePercent", "FieldValueInvalid spec.defragmentation.freeBytes"}},
	})
}

// instanceCase is a change to a valid instance and the errors validation finds in it, as
// expect takes them.
type instanceCase struct {
	mutate func(*etcdaas.ETCDInstance)
	want   []string
}

// checkInstanceCases validates each case's instance in a subtest named after the case.
func checkInstanceCases(t *testing.T, cases map[string]instanceCase) {
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			obj := validInstance()
			tc.mutate(obj)
			expect(t, ValidateETCDInstance(obj), tc.want...)
		})
	}
}

// withBackup returns a mutation that gives the instance a valid S3 backup spec changed by f.
func withBackup(f func(*etcdaas.BackupSpec)) func(*etcdaas.ETCDInstance) {
	return func(o *etcdaas.ETCDInstance) {
		o.Spec.Backup = &etcdaas.BackupSpec{Schedule: "0 */6 * * *", Keep: 7, Destination: etcdaas.BackupDestination{S3: &etcdaas.S3Destination{
			Endpoint: "https://s3.example.com", Bucket: "backups", CredentialsSecretRef: &etcdaas.SecretReference{Name: "s3-creds"},
		}}}
		f(o.Spec.Backup)
	}
}

func TestValidateETCDInstanceUpdate(t *testing.T) {
	for name, tc := range map[string]struct {
		old, new func(*etcdaas.ETCDInstance)
		want     []string
	}{
		"replicas change": {func(*etcdaas.ETCDInstance) {}, func(o *etcdaas.ETCDInstance) { o.Spec.Replicas = 5 }, nil},
		"replicas to 10":  {func(*etcdaas.ETCDInstance) {}, func(o *etcdaas.ETCDInstance) { o.Spec.Replicas = 10 }, []string{"FieldValueInvalid spec.replicas"}},
		"turn tls on": {func(*etcdaas.ETCDInstance) {}, func(o *etcdaas.ETCDInstance) { o.Spec.TLS = &etcdaas.TLSSpec{Enabled: true} },
			[]string{"FieldValueInvalid spec.tls.enabled"}},
		"turn tls off": {func(o *etcdaas.ETCDInstance) { o.Spec.TLS = &etcdaas.TLSSpec{Enabled: true} }, func(o *etcdaas.ETCDInstance) { o.Spec.TLS.Enabled = false },
			[]string{"FieldValueInvalid spec.tls.enabled"}},
		"remove tls": {func(o *etcdaas.ETCDInstance) { o.Spec.TLS = &etcdaas.TLSSpec{Enabled: true} }, func(o *etcdaas.ETCDInstance) { o.Spec.TLS = nil },
			[]string{"FieldValueInvalid spec.tls.enabled"}},
		"keep tls":                     {func(o *etcdaas.ETCDInstance) { o.Spec.TLS = &etcdaas.TLSSpec{Enabled: true} }, func(o *etcdaas.ETCDInstance) { o.Spec.Replicas = 1 }, nil},
		"spell out plaintext":          {func(*etcdaas.ETCDInstance) {}, func(o *etcdaas.ETCDInstance) { o.Spec.TLS = &etcdaas.TLSSpec{} }, nil},
		"drop a spelled-out plaintext": {func(o *etcdaas.ETCDInstance) { o.Spec.TLS = &etcdaas.TLSSpec{} }, func(o *etcdaas.ETCDInstance) { o.Spec.TLS = nil }, nil},
		"change storage": {func(o *etcdaas.ETCDInstance) {
			o.Spec.Storage = &etcdaas.StorageSpec{VolumeSize: ptr.To(resource.MustParse("1Gi"))}
		},
			func(o *etcdaas.ETCDInstance) { o.Spec.Storage.VolumeSize = ptr.To(resource.MustParse("2Gi")) }, []string{"FieldValueForbidden spec.storage"}},
		"same storage written differently": {func(o *etcdaas.ETCDInstance) {
			o.Spec.Storage = &etcdaas.StorageSpec{VolumeSize: ptr.To(resource.MustParse("1Gi"))}
		},
			func(o *etcdaas.ETCDInstance) { o.Spec.Storage.VolumeSize = ptr.To(resource.MustParse("1024Mi")) }, nil},
		"rename":                {func(*etcdaas.ETCDInstance) {}, func(o *etcdaas.ETCDInstance) { o.Name = "other" }, []string{"FieldValueInvalid metadata.name"}},
		"add a backup schedule": {func(*etcdaas.ETCDInstance) {}, withBackup(func(*etcdaas.BackupSpec) {}), nil},
		"change the keep":       {withBackup(func(*etcdaas.BackupSpec) {}), func(o *etcdaas.ETCDInstance) { o.Spec.Backup.Keep = 3 }, nil},
		"add restoreFrom": {func(*etcdaas.ETCDInstance) {}, func(o *etcdaas.ETCDInstance) { o.Spec.RestoreFrom = &etcdaas.RestoreSource{Instance: "old-etcd"} },
			[]string{"FieldValueForbidden spec.restoreFrom"}},
		"change restoreFrom": {func(o *etcdaas.ETCDInstance) { o.Spec.RestoreFrom = &etcdaas.RestoreSource{Instance: "old-etcd"} },
			func(o *etcdaas.ETCDInstance) { o.Spec.RestoreFrom.Key = "x.db" }, []string{"FieldValueForbidden spec.restoreFrom"}},
		"remove restoreFrom": {func(o *etcdaas.ETCDInstance) { o.Spec.RestoreFrom = &etcdaas.RestoreSource{Instance: "old-etcd"} },
			func(o *etcdaas.ETCDInstance) { o.Spec.RestoreFrom = nil }, []string{"FieldValueForbidden spec.restoreFrom"}},
		"keep restoreFrom": {func(o *etcdaas.ETCDInstance) { o.Spec.RestoreFrom = &etcdaas.RestoreSource{Instance: "old-etcd"} },
			func(o *etcdaas.ETCDInstance) { o.Spec.Replicas = 5 }, nil},
		// A key stored before creation refused keys that name no backup does not block updates.
		"scale with a stored restoreFrom key that names no backup": {func(o *etcdaas.ETCDInstance) {
			o.Spec.RestoreFrom = &etcdaas.RestoreSource{Instance: "old-etcd", Key: "snapshot.db"}
		}, func(o *etcdaas.ETCDInstance) { o.Spec.Replicas = 5 }, nil},
		// A schedule stored before validation refused it does not block other updates…
		"scale with a stored schedule that never fires": {withBackup(func(b *etcdaas.BackupSpec) { b.Schedule = "0 0 30 2 *" }),
			func(o *etcdaas.ETCDInstance) { o.Spec.Replicas = 5 }, nil},
		"remove a finalizer with a stored schedule that never fires": {func(o *etcdaas.ETCDInstance) {
			withBackup(func(b *etcdaas.BackupSpec) { b.Schedule = "0 0 30 2 *" })(o)
			o.Finalizers = []string{"etcdaas.dev/members"}
		}, func(o *etcdaas.ETCDInstance) { o.Finalizers = nil }, nil},
		// … but a changed one is validated, and so is every other field of spec.backup.
		"change a stored schedule that never fires to another": {withBackup(func(b *etcdaas.BackupSpec) { b.Schedule = "0 0 30 2 *" }),
			func(o *etcdaas.ETCDInstance) { o.Spec.Backup.Schedule = "0 0 31 4 *" }, []string{"FieldValueInvalid spec.backup.schedule"}},
		"add a schedule that never fires": {func(*etcdaas.ETCDInstance) {}, withBackup(func(b *etcdaas.BackupSpec) { b.Schedule = "0 0 30 2 *" }),
			[]string{"FieldValueInvalid spec.backup.schedule"}},
		"a stored schedule that never fires and keep 0": {withBackup(func(b *etcdaas.BackupSpec) { b.Schedule = "0 0 30 2 *" }),
			func(o *etcdaas.ETCDInstance) { o.Spec.Backup.Keep = 0 }, []string{"FieldValueInvalid spec.backup.keep"}},
	} {
		t.Run(name, func(t *testing.T) {
			oldObj := validInstance()
			tc.old(oldObj)
			newObj := oldObj.DeepCopy()
			tc.new(newObj)
			expect(t, ValidateETCDInstanceUpdate(newObj, oldObj), tc.want...)
		})
	}
}

func TestValidateETCDInstanceStatusUpdate(t *testing.T) {
	condition := metav1.Condition{Type: etcdaas.ConditionAvailable, Status: metav1.ConditionTrue, Reason: "MembersReady", LastTransitionTime: metav1.Unix(1700000000, 0)}
	for name, tc := range map[string]struct {
		status etcdaas.ETCDInstanceStatus
		want   []string
	}{
		"valid": {etcdaas.ETCDInstanceStatus{Phase: etcdaas.PhaseRunning, Replicas: 3, ReadyReplicas: 3, Selector: etcdaas.MemberSelector("my-etcd"),
			Members: []etcdaas.MemberStatus{{Name: "my-etcd-0"}, {Name: "my-etcd-1"}}, Conditions: []metav1.Condition{condition}}, nil},
		"negative replicas":          {etcdaas.ETCDInstanceStatus{Replicas: -1}, []string{"FieldValueInvalid status.replicas", "FieldValueInvalid status.readyReplicas"}},
		"ready above replicas":       {etcdaas.ETCDInstanceStatus{Replicas: 1, ReadyReplicas: 2}, []string{"FieldValueInvalid status.readyReplicas"}},
		"negative observed":          {etcdaas.ETCDInstanceStatus{ObservedGeneration: -1}, []string{"FieldValueInvalid status.observedGeneration"}},
		"unknown phase":              {etcdaas.ETCDInstanceStatus{Phase: "Sleeping"}, []string{"FieldValueNotSupported status.phase"}},
		"bad selector":               {etcdaas.ETCDInstanceStatus{Selector: "a in (b"}, []string{"FieldValueInvalid status.selector"}},
		"duplicate member":           {etcdaas.ETCDInstanceStatus{Members: []etcdaas.MemberStatus{{Name: "a"}, {Name: "a"}}}, []string{"FieldValueDuplicate status.members[1].name"}},
		"unnamed member":             {etcdaas.ETCDInstanceStatus{Members: []etcdaas.MemberStatus{{ID: "1"}}}, []string{"FieldValueRequired status.members[0].name"}},
		"condition without a reason": {etcdaas.ETCDInstanceStatus{Conditions: []metav1.Condition{{Type: "Available", Status: "True", LastTransitionTime: metav1.Unix(1, 0)}}}, []string{"FieldValueRequired status.conditions[0].reason"}},
		"restoring":                  {etcdaas.ETCDInstanceStatus{Phase: etcdaas.PhaseRestoring}, nil},
		"recovering":                 {etcdaas.ETCDInstanceStatus{Phase: etcdaas.PhaseRecovering}, nil},
		"member counters": {etcdaas.ETCDInstanceStatus{Members: []etcdaas.MemberStatus{{Name: "a", Version: "3.6.5",
			DBSize: 4096, DBSizeInUse: 2048, Revision: 7, Alarms: []string{"NOSPACE"}}}}, nil},
		"negative member counters": {etcdaas.ETCDInstanceStatus{Members: []etcdaas.MemberStatus{{Name: "a", DBSize: -1, DBSizeInUse: -1, Revision: -1}}},
			[]string{"FieldValueInvalid status.members[0].dbSize", "FieldValueInvalid status.members[0].dbSizeInUse", "FieldValueInvalid status.members[0].revision"}},
		"duplicate alarm": {etcdaas.ETCDInstanceStatus{Members: []etcdaas.MemberStatus{{Name: "a", Alarms: []string{"NOSPACE", "NOSPACE"}}}},
			[]string{"FieldValueDuplicate status.members[0].alarms[1]"}},
		"last backup": {etcdaas.ETCDInstanceStatus{Backup: &etcdaas.BackupStatus{LastBackup: &etcdaas.BackupInfo{
			Key: "k", Revision: 5, SizeBytes: 20480, SHA256: strings.Repeat("ab", 32)}}}, nil},
		"last backup with a bad sha256": {etcdaas.ETCDInstanceStatus{Backup: &etcdaas.BackupStatus{LastBackup: &etcdaas.BackupInfo{Key: "k", SHA256: "XYZ"}}},
			[]string{"FieldValueInvalid status.backup.lastBackup.sha256"}},
		"last backup without key": {etcdaas.ETCDInstanceStatus{Backup: &etcdaas.BackupStatus{LastBackup: &etcdaas.BackupInfo{SizeBytes: -1}}},
			[]string{"FieldValueRequired status.backup.lastBackup.key", "FieldValueInvalid status.backup.lastBackup.sizeBytes"}},
	} {
		t.Run(name, func(t *testing.T) {
			oldObj := validInstance()
			newObj := oldObj.DeepCopy()
			newObj.Status = tc.status
			expect(t, ValidateETCDInstanceStatusUpdate(newObj, oldObj), tc.want...)
		})
	}
}

func TestValidateScale(t *testing.T) {
	scale := func(replicas int32) *autoscalingv1.Scale {
		return &autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Name: "my-etcd", Namespace: "default"}, Spec: autoscalingv1.ScaleSpec{Replicas: replicas}}
	}
	expect(t, ValidateScale(scale(5)))
	expect(t, ValidateScale(scale(10)), "FieldValueInvalid spec.replicas")
	expect(t, ValidateScale(scale(0)), "FieldValueInvalid spec.replicas")
}

func TestForVersionNamesTheFieldTheClientSent(t *testing.T) {
	oldObj := validInstance()
	newObj := oldObj.DeepCopy()
	newObj.Spec.TLS = &etcdaas.TLSSpec{Enabled: true}
	newObj.Spec.Replicas = 10
	errs := ValidateETCDInstanceUpdate(newObj, oldObj)
	expect(t, ForVersion(errs, "v1alpha1"), "FieldValueInvalid spec.replicas", "FieldValueInvalid spec.with_tls_bundle")
	expect(t, ForVersion(errs, "v1beta1"), "FieldValueInvalid spec.replicas", "FieldValueInvalid spec.tls.enabled")
	if errs[1].Field != "spec.tls.enabled" {
		t.Fatalf("ForVersion modified its input: %s", errs[1].Field)
	}
	if errs[1].BadValue != true {
		t.Errorf("the TLS error shows %#v, want the value sent, true", errs[1].BadValue)
	}
}

// TestForVersionStatusState checks that a v1alpha1 client whose status.state is refused is
// told the states it may send, not v1beta1's phases.
func TestForVersionStatusState(t *testing.T) {
	oldObj := validInstance()
	newObj := oldObj.DeepCopy()
	newObj.Status.Phase = "weird"
	errs := ValidateETCDInstanceStatusUpdate(newObj, oldObj)
	expect(t, ForVersion(errs, "v1alpha1"), "FieldValueNotSupported status.state")
	alpha := ForVersion(errs, "v1alpha1")[0].Error()
	if !strings.Contains(alpha, `"running"`) || strings.Contains(alpha, `"Running"`) || !strings.Contains(alpha, `"weird"`) {
		t.Errorf("v1alpha1 error %q, want the v1alpha1 states and the value sent", alpha)
	}
	expect(t, ForVersion(errs, "v1beta1"), "FieldValueNotSupported status.phase")
	if beta := ForVersion(errs, "v1beta1")[0].Error(); !strings.Contains(beta, `"Running"`) {
		t.Errorf("v1beta1 error %q, want the phases", beta)
	}
}

func TestReplicasWarnings(t *testing.T) {
	path := field.NewPath("spec", "replicas")
	for replicas, want := range map[int32]bool{1: false, 2: true, 3: false, 4: true, 9: false} {
		if got := len(ReplicasWarnings(replicas, path)) > 0; got != want {
			t.Errorf("replicas %d: warning %v, want %v", replicas, got, want)
		}
	}
}
