#!/usr/bin/env bash
# Measures a COLD `make test`: a fresh clone of HEAD, an empty Go build cache and an empty
# module cache, nothing built. It runs `make test` as CI does and prints its wall time and CPU
# seconds, each tool's build time, the module prefetch's times, the slowest test packages, and
# the load average before and after, since on a shared machine wall time depends on it.
#
# Usage: hack/measure-cold.sh [workdir]   (default: a new directory under ${TMPDIR:-/tmp})
# The clone and both caches stay in workdir for inspection; remove it afterwards (the module
# cache is read-only: `chmod -R u+w workdir && rm -rf workdir`). The cluster tier needs root,
# like `make test-cluster`.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${1:-$(mktemp -d "${TMPDIR:-/tmp}/etcdaas-cold.XXXXXX")}"
mkdir -p "${WORK}"
WORK="$(cd "${WORK}" && pwd)"
if [[ -e "${WORK}/src" ]]; then
  echo "${WORK}/src exists: give an empty or new directory" >&2
  exit 2
fi

git clone --quiet --no-local "${REPO_ROOT}" "${WORK}/src"
git -C "${WORK}/src" checkout --quiet "$(git -C "${REPO_ROOT}" rev-parse HEAD)"
mkdir -p "${WORK}/gocache" "${WORK}/gomodcache"
export GOCACHE="${WORK}/gocache" GOMODCACHE="${WORK}/gomodcache"
# Nothing from the caller's tools: the clone builds its own into its _output/bin.
unset KUBECTL ETCDAAS_TOOLS_BIN

cd "${WORK}/src"
echo "cold make test of $(git rev-parse --short HEAD) in ${WORK} ($(nproc) CPUs, $(go version | cut -d' ' -f3))"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

# Exactly what CI runs: `make test` (its module prefetch, verify, tools, tools-node, the tests);
# the tools' build times and the test packages' times come from its log.
log="${WORK}/make-test.log"
echo "== make test (log: ${log})"
if ! /usr/bin/time -o "${WORK}/make-test.time" -f '%e %U %S' make test > "${log}" 2>&1; then
  echo "make test failed; its output: ${log}" >&2
  tail -n 30 "${log}" >&2
  exit 1
fi
read -r wall user sys < "${WORK}/make-test.time"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
awk -v w="${wall}" -v u="${user}" -v s="${sys}" \
  'BEGIN { printf "make test: %.0f s wall (%.1f min), %.0f s CPU\n", w, w / 60, u + s }'
echo "tools built:"
grep -E '^built ' "${log}" || true
echo "module prefetch (from ${WORK}/src/_output/prefetch.log):"
cat "${WORK}/src/_output/prefetch.log" 2>/dev/null || true
echo "slowest test packages:"
grep -E '^(ok|FAIL)' "${log}" | sort -t$'\t' -k3 -rn | head -n 8 || true
grep -E '^--- (PASS|FAIL): TestCluster ' "${log}" || true
