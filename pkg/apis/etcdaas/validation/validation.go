// Package validation checks etcdaas.dev objects. It works on the internal types; errors carry
// the internal field paths, which ForVersion rewrites into the paths of the version a client
// sent.
package validation

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"path"
	"regexp"
	"strings"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	"github.com/etcdaas/etcdaas/pkg/backup/backupkey"
	"github.com/etcdaas/etcdaas/pkg/backup/schedule"
)

// Limits on an instance.
const (
	// MaxNameLength is the longest instance name: members and Services derive their names
	// from it and must stay DNS labels.
	MaxNameLength = 50
	// MinReplicas and MaxReplicas bound spec.replicas.
	MinReplicas = 1
	MaxReplicas = 9
	// MinBackupKeep and MaxBackupKeep bound spec.backup.keep.
	MinBackupKeep = 1
	MaxBackupKeep = 1000
	// MaxBackupKeyLength bounds spec.restoreFrom.key and the S3 prefix: S3 keys are at most
	// 1024 bytes.
	MaxBackupKeyLength = 1024
)

var (
	// versionPattern is an etcd 3 minor or release: numbers without leading zeros (they name
	// image tags) and of at most three digits (they are compared as numbers).
	versionPattern = regexp.MustCompile(`^3\.(0|[1-9][0-9]{0,2})(\.(0|[1-9][0-9]{0,2}))?$`)

	knownPhases = sets.New(etcdaas.PhasePending, etcdaas.PhaseDeploying, etcdaas.PhaseScaling,
		etcdaas.PhaseRunning, etcdaas.PhaseFailed, etcdaas.PhaseDeleting, etcdaas.PhaseRestoring,
		etcdaas.PhaseRecovering)

	// bucketPattern is the S3 bucket naming rule: 3 to 63 lower-case letters, digits, dots and
	// hyphens, starting and ending with a letter or digit.
	bucketPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)
	sha256Pattern = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// ValidateName checks an instance name: a DNS-1035 label of at most MaxNameLength characters.
// A name too long for a DNS label gets the one length error, ours.
func ValidateName(name string, prefix bool) []string {
	if len(name) <= MaxNameLength {
		return apimachineryvalidation.NameIsDNS1035Label(name, prefix)
	}
	errs := []string{validation.MaxLenError(MaxNameLength)}
	labelLength := validation.MaxLenError(validation.DNS1035LabelMaxLength)
	for _, e := range apimachineryvalidation.NameIsDNS1035Label(name, prefix) {
		if e != labelLength {
			errs = append(errs, e)
		}
	}
	return errs
}

// ValidateETCDInstance checks a new instance.
func ValidateETCDInstance(obj *etcdaas.ETCDInstance) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMeta(&obj.ObjectMeta, true, ValidateName, field.NewPath("metadata"))
	allErrs = append(allErrs, validateSpec(&obj.Spec, field.NewPath("spec"))...)
	if from := obj.Spec.RestoreFrom; from != nil && from.Instance == obj.Name && from.Key == "" {
		// The newest backup the instance took itself: a new instance has taken none, so it
		// would wait for one forever. A key names a backup of an earlier instance of the name.
		allErrs = append(allErrs, field.Required(field.NewPath("spec", "restoreFrom", "key"),
			"an instance restoring from its own destination must name the backup: it has taken none yet"))
	}
	if from := obj.Spec.RestoreFrom; from != nil && from.Key != "" && !backupkey.Valid(from.Key) && keyProblem(from.Key) == "" {
		// Checked at creation only: restoreFrom cannot change afterwards, and an instance
		// stored with such a key before this check must stay updatable.
		allErrs = append(allErrs, field.Invalid(field.NewPath("spec", "restoreFrom", "key"), from.Key,
			fmt.Sprintf("must be the key of a backup as the backups subresource of the source instance lists it, such as %q, without the destination's prefix: no other key names a backup",
				backupkey.Example)))
	}
	return allErrs
}

// ValidateETCDInstanceUpdate checks an update of an instance's metadata and spec.
func ValidateETCDInstanceUpdate(newObj, oldObj *etcdaas.ETCDInstance) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMetaUpdate(&newObj.ObjectMeta, &oldObj.ObjectMeta, field.NewPath("metadata"))
	specPath := field.NewPath("spec")
	allErrs = append(allErrs, withoutUnchangedSchedule(validateSpec(&newObj.Spec, specPath), newObj, oldObj, specPath)...)
	allErrs = append(allErrs, validateVersionChange(newObj, oldObj, specPath.Child("version"))...)
	// Absent and `enabled: false` both mean plaintext: a manifest that spells out or drops
	// `tls: {enabled: false}` changes nothing.
	if newObj.Spec.TLSEnabled() != oldObj.Spec.TLSEnabled() {
		allErrs = append(allErrs, field.Invalid(specPath.Child("tls", "enabled"), newObj.Spec.TLSEnabled(), "field is immutable: TLS cannot be turned on or off after creation"))
	}
	if !apiequality.Semantic.DeepEqual(newObj.Spec.Storage, oldObj.Spec.Storage) {
		allErrs = append(allErrs, field.Forbidden(specPath.Child("storage"), "field is immutable after creation"))
	}
	if !apiequality.Semantic.DeepEqual(newObj.Spec.RestoreFrom, oldObj.Spec.RestoreFrom) {
		allErrs = append(allErrs, field.Forbidden(specPath.Child("restoreFrom"), "field is immutable: a cluster starts from a backup at creation only"))
	}
	return allErrs
}

// withoutUnchangedSchedule drops errs' error on spec.backup.schedule when the update keeps
// the schedule as stored: one stored before validation refused it (such as a schedule no date
// matches) must not block every other update of the instance, such as a scale or the
// controller removing its finalizer. The controller reports it as InvalidSchedule, and a
// changed schedule is validated in full.
func withoutUnchangedSchedule(errs field.ErrorList, newObj, oldObj *etcdaas.ETCDInstance, specPath *field.Path) field.ErrorList {
	if newObj.Spec.Backup == nil || oldObj.Spec.Backup == nil || newObj.Spec.Backup.Schedule != oldObj.Spec.Backup.Schedule {
		return errs
	}
	schedulePath := specPath.Child("backup", "schedule").String()
	return errs.Filter(func(err error) bool {
		var fieldErr *field.Error
		return errors.As(err, &fieldErr) && fieldErr.Field == schedulePath
	})
}

// ValidateETCDInstanceStatusUpdate checks an update through the status subresource.
func ValidateETCDInstanceStatusUpdate(newObj, oldObj *etcdaas.ETCDInstance) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMetaUpdate(&newObj.ObjectMeta, &oldObj.ObjectMeta, field.NewPath("metadata"))
	return append(allErrs, validateStatus(&newObj.Status, field.NewPath("status"))...)
}

// ValidateScale checks a Scale sent to the scale subresource like spec.replicas is checked.
func ValidateScale(scale *autoscalingv1.Scale) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMeta(&scale.ObjectMeta, true, apimachineryvalidation.NameIsDNSSubdomain, field.NewPath("metadata"))
	return append(allErrs, validateReplicas(scale.Spec.Replicas, field.NewPath("spec", "replicas"))...)
}

// ReplicasWarnings returns the admission warnings for a replica count: an even number of
// members tolerates no more failures than one member fewer.
func ReplicasWarnings(replicas int32, path *field.Path) []string {
	if replicas > 0 && replicas%2 == 0 {
		return []string{fmt.Sprintf("%s: %d members tolerate no more failures than %d; prefer an odd number", path, replicas, replicas-1)}
	}
	return nil
}

func validateSpec(spec *etcdaas.ETCDInstanceSpec, path *field.Path) field.ErrorList {
	allErrs := validateReplicas(spec.Replicas, path.Child("replicas"))
	if spec.Version == "" {
		allErrs = append(allErrs, field.Required(path.Child("version"), "the etcd version, such as \"3.7\" or \"3.7.3\""))
	} else if !versionPattern.MatchString(spec.Version) {
		allErrs = append(allErrs, field.Invalid(path.Child("version"), spec.Version, "must be an etcd 3 minor version such as \"3.7\", or a release such as \"3.7.3\""))
	}
	if storage := spec.Storage; storage != nil {
		storagePath := path.Child("storage")
		if storage.VolumeSize != nil && storage.VolumeSize.Sign() <= 0 {
			allErrs = append(allErrs, field.Invalid(storagePath.Child("size"), storage.VolumeSize.String(), "must be greater than zero"))
		}
		if name := storage.StorageClassName; name != nil {
			for _, msg := range validation.IsDNS1123Subdomain(*name) {
				allErrs = append(allErrs, field.Invalid(storagePath.Child("storageClassName"), *name, msg))
			}
		}
	}
	if spec.Backup != nil {
		allErrs = append(allErrs, validateBackup(spec.Backup, path.Child("backup"))...)
	}
	if spec.RestoreFrom != nil {
		allErrs = append(allErrs, validateRestoreFrom(spec.RestoreFrom, path.Child("restoreFrom"))...)
	}
	if spec.Defragmentation != nil {
		allErrs = append(allErrs, validateDefragmentation(spec.Defragmentation, path.Child("defragmentation"))...)
	}
	if spec.Resources != nil {
		allErrs = append(allErrs, validateResources(spec.Resources, path.Child("resources"))...)
	}
	return allErrs
}

// validateDefragmentation checks the thresholds of automatic defragmentation.
func validateDefragmentation(d *etcdaas.DefragmentationSpec, path *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	if p := d.FreePercent; p != nil && (*p < 1 || *p > 100) {
		allErrs = append(allErrs, field.Invalid(path.Child("freePercent"), *p, "must be between 1 and 100"))
	}
	if b := d.FreeBytes; b != nil && b.Sign() < 0 {
		allErrs = append(allErrs, field.Invalid(path.Child("freeBytes"), b.String(), "must be zero or more"))
	}
	return allErrs
}

func validateBackup(backup *etcdaas.BackupSpec, path *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	if _, err := schedule.Parse(backup.Schedule); err != nil {
		allErrs = append(allErrs, field.Invalid(path.Child("schedule"), backup.Schedule, err.Error()))
	}
	if backup.Keep < MinBackupKeep || backup.Keep > MaxBackupKeep {
		allErrs = append(allErrs, field.Invalid(path.Child("keep"), backup.Keep, fmt.Sprintf("must be between %d and %d", MinBackupKeep, MaxBackupKeep)))
	}
	destPath := path.Child("destination")
	dest := &backup.Destination
	switch {
	case dest.S3 == nil && dest.Local == nil:
		allErrs = append(allErrs, field.Required(destPath, "exactly one of s3 or local"))
	case dest.S3 != nil && dest.Local != nil:
		allErrs = append(allErrs, field.Forbidden(destPath.Child("local"), "exactly one of s3 or local may be set"))
	case dest.S3 != nil:
		allErrs = append(allErrs, validateS3(dest.S3, destPath.Child("s3"))...)
	}
	return allErrs
}

func validateS3(s3 *etcdaas.S3Destination, path *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	if s3.Endpoint == "" {
		allErrs = append(allErrs, field.Required(path.Child("endpoint"), "the URL of the object store, such as https://s3.example.com"))
	} else if msg := endpointProblem(s3.Endpoint); msg != "" {
		allErrs = append(allErrs, field.Invalid(path.Child("endpoint"), s3.Endpoint, msg))
	}
	if s3.Bucket == "" {
		allErrs = append(allErrs, field.Required(path.Child("bucket"), ""))
	} else if !bucketPattern.MatchString(s3.Bucket) || strings.Contains(s3.Bucket, "..") {
		allErrs = append(allErrs, field.Invalid(path.Child("bucket"), s3.Bucket, "must be an S3 bucket name: 3 to 63 lower-case letters, digits, dots and hyphens, starting and ending with a letter or digit"))
	}
	if s3.Prefix != "" {
		if msg := keyProblem(s3.Prefix); msg != "" {
			allErrs = append(allErrs, field.Invalid(path.Child("prefix"), s3.Prefix, msg))
		}
	}
	if ref := s3.CredentialsSecretRef; ref != nil {
		for _, msg := range validation.IsDNS1123Subdomain(ref.Name) {
			allErrs = append(allErrs, field.Invalid(path.Child("credentialsSecretRef", "name"), ref.Name, msg))
		}
	}
	if s3.CABundle != "" && !x509.NewCertPool().AppendCertsFromPEM([]byte(s3.CABundle)) {
		allErrs = append(allErrs, field.Invalid(path.Child("caBundle"), "<PEM>", "must hold at least one PEM-encoded certificate"))
	}
	return allErrs
}

// endpointProblem says what is wrong with an S3 endpoint, or "" when it is an http or https
// URL with a host and nothing beyond it.
func endpointProblem(endpoint string) string {
	u, err := url.Parse(endpoint)
	if err != nil {
		return "must be a URL such as https://s3.example.com: " + err.Error()
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "must be an http or https URL such as https://s3.example.com"
	case u.Host == "" || u.Hostname() == "":
		return "must name a host, such as https://s3.example.com"
	case u.User != nil:
		return "must not carry credentials; use credentialsSecretRef"
	case u.Path != "" && u.Path != "/", u.RawQuery != "", u.Fragment != "":
		return "must be only scheme, host and port: put the bucket in bucket and the key prefix in prefix"
	}
	return ""
}

// keyProblem says what is wrong with an object key or key prefix, or "" when it is fine: it
// must be relative and may not climb out of its directory, because the local destination
// maps keys to files.
func keyProblem(key string) string {
	switch {
	case len(key) > MaxBackupKeyLength:
		return fmt.Sprintf("must be no more than %d characters", MaxBackupKeyLength)
	case strings.HasPrefix(key, "/"):
		return "must not start with /"
	case strings.ContainsAny(key, "\x00\\"):
		return "must not contain NUL or backslash characters"
	}
	for _, part := range strings.Split(key, "/") {
		if part == ".." || part == "." {
			return "must not contain . or .. path segments"
		}
	}
	if path.Clean("/"+key) == "/" {
		return "must name something below the destination"
	}
	return ""
}

func validateRestoreFrom(from *etcdaas.RestoreSource, path *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	if from.Instance == "" {
		allErrs = append(allErrs, field.Required(path.Child("instance"), "the name of an ETCDInstance in the same namespace"))
	} else {
		for _, msg := range ValidateName(from.Instance, false) {
			allErrs = append(allErrs, field.Invalid(path.Child("instance"), from.Instance, msg))
		}
	}
	if from.Key != "" {
		if msg := keyProblem(from.Key); msg != "" {
			allErrs = append(allErrs, field.Invalid(path.Child("key"), from.Key, msg))
		}
	}
	return allErrs
}

func validateReplicas(replicas int32, path *field.Path) field.ErrorList {
	if replicas < MinReplicas || replicas > MaxReplicas {
		return field.ErrorList{field.Invalid(path, replicas, fmt.Sprintf("must be between %d and %d", MinReplicas, MaxReplicas))}
	}
	return nil
}

func validateStatus(status *etcdaas.ETCDInstanceStatus, path *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	allErrs = append(allErrs, apimachineryvalidation.ValidateNonnegativeField(status.ObservedGeneration, path.Child("observedGeneration"))...)
	allErrs = append(allErrs, apimachineryvalidation.ValidateNonnegativeField(int64(status.Replicas), path.Child("replicas"))...)
	allErrs = append(allErrs, apimachineryvalidation.ValidateNonnegativeField(int64(status.ReadyReplicas), path.Child("readyReplicas"))...)
	if status.ReadyReplicas > status.Replicas {
		allErrs = append(allErrs, field.Invalid(path.Child("readyReplicas"), status.ReadyReplicas, "cannot be greater than status.replicas"))
	}
	if status.Phase != "" && !knownPhases.Has(status.Phase) {
		allErrs = append(allErrs, field.NotSupported(path.Child("phase"), status.Phase, sets.List(knownPhases)))
	}
	if status.Selector != "" {
		if _, err := labels.Parse(status.Selector); err != nil {
			allErrs = append(allErrs, field.Invalid(path.Child("selector"), status.Selector, err.Error()))
		}
	}
	names := sets.New[string]()
	for i, member := range status.Members {
		memberPath := path.Child("members").Index(i)
		if member.Name == "" {
			allErrs = append(allErrs, field.Required(memberPath.Child("name"), ""))
		} else if names.Has(member.Name) {
			allErrs = append(allErrs, field.Duplicate(memberPath.Child("name"), member.Name))
		}
		names.Insert(member.Name)
		allErrs = append(allErrs, validateMemberCounters(&member, memberPath)...)
	}
	allErrs = append(allErrs, metav1validation.ValidateConditions(status.Conditions, path.Child("conditions"))...)
	if backup := status.Backup; backup != nil && backup.LastBackup != nil {
		allErrs = append(allErrs, validateBackupInfo(backup.LastBackup, path.Child("backup", "lastBackup"))...)
	}
	return allErrs
}

// validateMemberCounters checks what the controller read from a member: sizes and revision
// are never negative and every alarm appears once.
func validateMemberCounters(member *etcdaas.MemberStatus, path *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	allErrs = append(allErrs, apimachineryvalidation.ValidateNonnegativeField(member.DBSize, path.Child("dbSize"))...)
	allErrs = append(allErrs, apimachineryvalidation.ValidateNonnegativeField(member.DBSizeInUse, path.Child("dbSizeInUse"))...)
	allErrs = append(allErrs, apimachineryvalidation.ValidateNonnegativeField(member.Revision, path.Child("revision"))...)
	alarms := sets.New[string]()
	for i, alarm := range member.Alarms {
		if alarms.Has(alarm) {
			allErrs = append(allErrs, field.Duplicate(path.Child("alarms").Index(i), alarm))
		}
		alarms.Insert(alarm)
	}
	return allErrs
}

func validateBackupInfo(info *etcdaas.BackupInfo, path *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	if info.Key == "" {
		allErrs = append(allErrs, field.Required(path.Child("key"), ""))
	}
	allErrs = append(allErrs, apimachineryvalidation.ValidateNonnegativeField(info.Revision, path.Child("revision"))...)
	allErrs = append(allErrs, apimachineryvalidation.ValidateNonnegativeField(info.SizeBytes, path.Child("sizeBytes"))...)
	if info.SHA256 != "" && !sha256Pattern.MatchString(info.SHA256) {
		allErrs = append(allErrs, field.Invalid(path.Child("sha256"), info.SHA256, "must be 64 lower-case hexadecimal digits"))
	}
	return allErrs
}

// v1alpha1Paths maps internal field paths to the v1alpha1 paths a client of that version
// recognises. Paths v1alpha1 has no field for stay as they are: they come from the
// preserved-fields annotation.
var v1alpha1Paths = map[string]string{
	"spec.tls":         "spec.with_tls_bundle",
	"spec.tls.enabled": "spec.with_tls_bundle",
	"status.phase":     "status.state",
}

// v1alpha1States are the values of v1alpha1's status.state, which a refused status.phase
// names to a v1alpha1 client instead of v1beta1's phases.
var v1alpha1States = []string{"", "deploying", "failed", "running"}

// ForVersion rewrites the field paths of errs into those of the given API version ("v1alpha1"
// or "v1beta1"), so that an error names the field the client actually sent (and, for
// status.state, the values it may send).
func ForVersion(errs field.ErrorList, version string) field.ErrorList {
	if version != "v1alpha1" {
		return errs
	}
	out := make(field.ErrorList, 0, len(errs))
	for _, err := range errs {
		rewritten := *err
		if path, ok := v1alpha1Paths[err.Field]; ok {
			rewritten.Field = path
		}
		if err.Type == field.ErrorTypeNotSupported && err.Field == "status.phase" {
			rewritten = *field.NotSupported(field.NewPath("status", "state"), err.BadValue, v1alpha1States)
		}
		out = append(out, &rewritten)
	}
	return out
}
