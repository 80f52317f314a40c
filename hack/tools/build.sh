#!/usr/bin/env bash
# Builds the pinned control plane into _output/bin (relative to the repo root):
#
#   kube-apiserver, kube-controller-manager, kubectl   (k8s.io/kubernetes)
#   etcd, etcdutl                                      (go.etcd.io/etcd)
#
# Versions come from hack/tools/go.mod; sources come from the Go module proxy.
# Each binary is rebuilt only when its stamp file _output/bin/.<name>.<version>
# (or the binary itself) is missing, so bumping go.mod rebuilds and a second
# run is a no-op. FORCE=1 rebuilds regardless.
#
# Usage: hack/tools/build.sh [name...]      (default: all five)
set -euo pipefail

TOOLS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "${TOOLS_DIR}/../.." && pwd)"
BIN_DIR="${REPO_ROOT}/_output/bin"

ALL=(kube-apiserver kube-controller-manager kubectl etcd etcdutl)

# hack/tools is its own module; never let a go.work elsewhere pull it in.
export GOWORK=off
# Static binaries, as the upstream release builds do.
export CGO_ENABLED=0

cd "${TOOLS_DIR}"

modversion() { go list -m -f '{{.Version}}' "$1"; }
now_ms() { date +%s%3N; }
elapsed() { local ms=$(( $(now_ms) - $1 )); printf '%d.%01ds' $((ms / 1000)) $((ms % 1000 / 100)); }

# name -> module, main package
module_of() {
  case "$1" in
    kube-apiserver | kube-controller-manager | kubectl) echo k8s.io/kubernetes ;;
    etcd) echo go.etcd.io/etcd/server/v3 ;;
    etcdutl) echo go.etcd.io/etcd/etcdutl/v3 ;;
    *) return 1 ;;
  esac
}
package_of() {
  case "$1" in
    kube-apiserver | kube-controller-manager | kubectl) echo "k8s.io/kubernetes/cmd/$1" ;;
    etcd) echo go.etcd.io/etcd/server/v3 ;;
    etcdutl) echo go.etcd.io/etcd/etcdutl/v3 ;;
  esac
}

# What hack/lib/version.sh in k8s.io/kubernetes stamps into release builds.
# Without gitVersion the binaries report "v0.0.0-master+$Format:%H$", which
# clients and the compatibility-version machinery cannot parse.
kube_ldflags() {
  local version="$1" major minor date
  major="${version#v}"; major="${major%%.*}"
  minor="${version#v*.}"; minor="${minor%%.*}"
  # The tag's commit time, as SOURCE_DATE_EPOCH would give upstream.
  date="$(go list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' k8s.io/kubernetes)"
  local pkg out=()
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    out+=("-X ${pkg}.gitVersion=${version}"
          "-X ${pkg}.gitMajor=${major}"
          "-X ${pkg}.gitMinor=${minor}"
          "-X ${pkg}.gitTreeState=clean"
          "-X ${pkg}.buildDate=${date}")
  done
  echo "${out[*]}"
}

names=("$@")
[[ ${#names[@]} -gt 0 ]] || names=("${ALL[@]}")
for name in "${names[@]}"; do
  module_of "${name}" >/dev/null || { echo "unknown binary '${name}' (known: ${ALL[*]})" >&2; exit 2; }
done

mkdir -p "${BIN_DIR}"
total_start=$(now_ms)
built=0
for name in "${names[@]}"; do
  module="$(module_of "${name}")"
  version="$(modversion "${module}")"
  stamp="${BIN_DIR}/.${name}.${version}"
  if [[ -z "${FORCE:-}" && -f "${stamp}" && -x "${BIN_DIR}/${name}" ]]; then
    echo "${name} ${version}: up to date"
    continue
  fi

  # Flags mirror the upstream release builds (non-debug): -trimpath, stripped,
  # static; kube adds its build tags and version ldflags.
  tags=""
  ldflags="-s -w"
  case "${module}" in
    k8s.io/kubernetes)
      tags="selinux,notest,grpcnotrace"
      ldflags="${ldflags} $(kube_ldflags "${version}")"
      ;;
  esac

  echo "building ${name} ${version} ($(package_of "${name}"))..."
  start=$(now_ms)
  tmp="${BIN_DIR}/.${name}.tmp"
  go build -trimpath -tags "${tags}" -ldflags "${ldflags}" -o "${tmp}" "$(package_of "${name}")"
  rm -f "${BIN_DIR}/.${name}".v*
  mv -f "${tmp}" "${BIN_DIR}/${name}"
  echo "${module} ${version} $(go env GOVERSION)" > "${stamp}"
  echo "built ${name} ${version} in $(elapsed "${start}")"
  built=$((built + 1))
done
echo "done: ${built} built in $(elapsed "${total_start}") -> ${BIN_DIR#"${REPO_ROOT}/"}"
