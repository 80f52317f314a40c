#!/usr/bin/env bash
# Fetches Debian packages from the machine's apt sources and unpacks them under _output/
# (relative to the repo root), without installing anything system-wide: `apt-get download` at
# the candidate versions, then `dpkg -x`. The stamp <dir>/.debs.<versions hash> records what
# was unpacked, so a second run is a no-op and a new candidate version re-fetches. FORCE=1
# re-fetches regardless.
#
# Without arguments, the cluster test tier's node packages into _output/root:
#
#   runc                          -> _output/root/usr/sbin/runc
#   containernetworking-plugins   -> _output/root/usr/lib/cni/{bridge,host-local,loopback,...}
#   nftables, libnftables1,       -> _output/root/usr/sbin/nft (run it with
#   libnftnl11                       LD_LIBRARY_PATH=_output/root/usr/lib/x86_64-linux-gnu)
#
# With arguments, PACKAGEs into _output/NAME, up to date while _output/NAME/CHECK exists and is
# executable (hack/tools/protoc.sh uses it).
#
# Usage: hack/tools/debs.sh [NAME CHECK PACKAGE...]
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
if [[ $# -eq 0 ]]; then
  set -- root usr/sbin/runc runc containernetworking-plugins nftables libnftables1 libnftnl11
elif [[ $# -lt 3 ]]; then
  echo "usage: $0 [NAME CHECK PACKAGE...]" >&2
  exit 2
fi
NAME="$1" CHECK="$2"
shift 2
PACKAGES=("$@")
ROOT_DIR="${REPO_ROOT}/_output/${NAME}"
DEB_DIR="${REPO_ROOT}/_output/debs/${NAME}"

now_ms() { date +%s%3N; }
start=$(now_ms)

# package=version for every package, as apt would fetch them now (one apt-cache call).
declare -A candidate=()
while read -r pkg version; do
  candidate["${pkg}"]="${version}"
done < <(apt-cache policy "${PACKAGES[@]}" | awk '/^[^ ].*:$/ {pkg = substr($0, 1, length($0) - 1)} /Candidate:/ {print pkg, $2}')
pinned=()
for pkg in "${PACKAGES[@]}"; do
  version="${candidate[${pkg}]:-}"
  if [[ -z "${version}" || "${version}" == "(none)" ]]; then
    echo "debs: no candidate for ${pkg} in the apt sources (run apt-get update?)" >&2
    exit 1
  fi
  pinned+=("${pkg}=${version}")
done
stamp="${ROOT_DIR}/.debs.$(printf '%s\n' "${pinned[@]}" | sha256sum | cut -c1-16)"
if [[ -z "${FORCE:-}" && -f "${stamp}" && -x "${ROOT_DIR}/${CHECK}" ]]; then
  echo "debs: up to date (${pinned[*]})"
  exit 0
fi

rm -rf "${DEB_DIR}" "${ROOT_DIR}"
mkdir -p "${DEB_DIR}" "${ROOT_DIR}"
(cd "${DEB_DIR}" && apt-get -q -o APT::Sandbox::User=root download "${pinned[@]}")
for deb in "${DEB_DIR}"/*.deb; do
  dpkg -x "${deb}" "${ROOT_DIR}"
done
printf '%s\n' "${pinned[@]}" > "${stamp}"
ms=$(( $(now_ms) - start ))
echo "debs: unpacked ${pinned[*]} into ${ROOT_DIR#"${REPO_ROOT}/"} in $((ms / 1000)).$((ms % 1000 / 100))s"
