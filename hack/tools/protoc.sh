#!/usr/bin/env bash
# Fetches protoc, the protobuf compiler go-to-protobuf runs (hack/update-codegen.sh), from the
# machine's apt sources and unpacks it into _output/protoc (relative to the repo root) without
# installing anything system-wide:
#
#   protobuf-compiler, libprotoc32,  -> _output/protoc/usr/bin/protoc (run it with
#   libprotobuf32                       LD_LIBRARY_PATH=_output/protoc/usr/lib/x86_64-linux-gnu)
#
# Like hack/tools/debs.sh: `apt-get download`, then `dpkg -x`; the stamp
# _output/protoc/.debs.<versions hash> records what was unpacked, so a second run is a no-op
# and a new candidate version re-fetches. FORCE=1 re-fetches regardless.
#
# Usage: hack/tools/protoc.sh   (prints the directory holding protoc on its last line)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ROOT_DIR="${REPO_ROOT}/_output/protoc"
DEB_DIR="${REPO_ROOT}/_output/protoc-debs"
PACKAGES=(protobuf-compiler libprotoc32 libprotobuf32)

declare -A candidate=()
while read -r pkg version; do
  candidate["${pkg}"]="${version}"
done < <(apt-cache policy "${PACKAGES[@]}" | awk '/^[^ ].*:$/ {pkg = substr($0, 1, length($0) - 1)} /Candidate:/ {print pkg, $2}')
pinned=()
for pkg in "${PACKAGES[@]}"; do
  version="${candidate[${pkg}]:-}"
  if [[ -z "${version}" || "${version}" == "(none)" ]]; then
    echo "protoc: no candidate for ${pkg} in the apt sources (run apt-get update?)" >&2
    exit 1
  fi
  pinned+=("${pkg}=${version}")
done
stamp="${ROOT_DIR}/.debs.$(printf '%s\n' "${pinned[@]}" | sha256sum | cut -c1-16)"
if [[ -n "${FORCE:-}" || ! -f "${stamp}" || ! -x "${ROOT_DIR}/usr/bin/protoc" ]]; then
  rm -rf "${DEB_DIR}" "${ROOT_DIR}"
  mkdir -p "${DEB_DIR}" "${ROOT_DIR}"
  (cd "${DEB_DIR}" && apt-get -qq -o APT::Sandbox::User=root download "${pinned[@]}") >&2
  for deb in "${DEB_DIR}"/*.deb; do
    dpkg -x "${deb}" "${ROOT_DIR}"
  done
  printf '%s\n' "${pinned[@]}" > "${stamp}"
  echo "protoc: unpacked ${pinned[*]} into ${ROOT_DIR#"${REPO_ROOT}/"}" >&2
fi
echo "${ROOT_DIR}/usr/bin"
