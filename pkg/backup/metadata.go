package backup

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The provenance of a backup, as S3 user metadata (x-amz-meta-<name>) and as the fields of a
// local backup's sidecar file.
const (
	MetaInstanceUID = "Etcdaas-Instance-Uid"
	MetaRevision    = "Etcdaas-Revision"
	MetaEtcdVersion = "Etcdaas-Etcd-Version"
	MetaSHA256      = "Etcdaas-Sha256"
	MetaTime        = "Etcdaas-Time"
	MetaSize        = "Etcdaas-Size"
)

// metadata returns the provenance of info as name/value pairs.
func (info Info) metadata() map[string]string {
	return map[string]string{
		MetaInstanceUID: info.InstanceUID,
		MetaRevision:    strconv.FormatInt(info.Revision, 10),
		MetaEtcdVersion: info.EtcdVersion,
		MetaSHA256:      info.SHA256,
		MetaTime:        info.Time.UTC().Format(time.RFC3339),
		MetaSize:        strconv.FormatInt(info.Size, 10),
	}
}

// infoFromMetadata reads the provenance of the backup under key. Names are matched without
// regard to case: HTTP canonicalises them. size is what the destination reports, which must
// match what the provenance says.
func infoFromMetadata(key string, meta map[string]string, size int64) (Info, error) {
	get := func(name string) string {
		for k, v := range meta {
			if strings.EqualFold(k, name) {
				return v
			}
		}
		return ""
	}
	info := Info{Key: key, InstanceUID: get(MetaInstanceUID), EtcdVersion: get(MetaEtcdVersion), SHA256: get(MetaSHA256), Size: size}
	if info.SHA256 == "" {
		return Info{}, fmt.Errorf("%s: %w", key, ErrNoProvenance)
	}
	var err error
	if info.Revision, err = strconv.ParseInt(get(MetaRevision), 10, 64); err != nil {
		return Info{}, fmt.Errorf("%s: revision: %w", key, err)
	}
	if info.Time, err = time.Parse(time.RFC3339, get(MetaTime)); err != nil {
		return Info{}, fmt.Errorf("%s: time: %w", key, err)
	}
	if recorded := get(MetaSize); recorded != strconv.FormatInt(size, 10) {
		return Info{}, fmt.Errorf("%s holds %d bytes but was written with %s", key, size, recorded)
	}
	return info, nil
}
