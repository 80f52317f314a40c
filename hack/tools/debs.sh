#!/usr/bin/env bash
# Fetches the node's Debian packages for the cluster test tier and unpacks
# them into _output/root (relative to the repo root), without installing
# anything system-wide:
#
#   runc                          -> _output/root/usr/sbin/runc
#   containernetworking-plugins   -> _output/root/usr/lib/cni/{bridge,host-local,loopback,...}
#   nftables, libnftables1,       -> _output/root/usr/sbin/nft (run it with
#   libnftnl11                       LD_LIBRARY_PATH=_output/root/usr/lib/x86_64-linux-gnu)
#
# The packages come from the machine's apt sources (`apt-get download`, then
# `dpkg -x`). The stamp _output/root/.debs.<versions hash> records what was
# unpacked, so a second run is a no-op and a new candidate version re-fetches.
# FORCE=1 re-fetches regardless.
#
# Usage: hack/tools/debs.sh
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ROOT_DIR="${REPO_ROOT}/_output/root"
DEB_DIR="${REPO_ROOT}/_output/debs"
PACKAGES=(runc containernetworking-plugins nftables libnftables1 libnftnl11)

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
if [[ -z "${FORCE:-}" && -f "${stamp}" && -x "${ROOT_DIR}/usr/sbin/runc" ]]; then
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
