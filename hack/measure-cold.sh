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

results=()
step() {
  local name="$1" times
  shift
  echo "== ${name}: $*"
  times="${WORK}/${name}.time"
  /usr/bin/time -o "${times}" -f '%e %U %S' "$@" > "${WORK}/${name}.log" 2>&1 || {
    echo "step ${name} failed; its output: ${WORK}/${name}.log" >&2
    tail -n 30 "${WORK}/${name}.log" >&2
    exit 1
  }
  read -r wall user sys < "${times}"
  results+=("${name} ${wall} ${user} ${sys}")
  awk -v w="${wall}" -v u="${user}" -v s="${sys}" -v l="$(cut -d' ' -f1 /proc/loadavg)" \
    'BEGIN { printf "   %8.0f s wall %8.0f s CPU (load now %s)\n", w, u + s, l }'
}

# Exactly what CI runs: `make test` (its module prefetch, verify, tools, tools-node, the tests),
# timed as one step; the tools' build times and the test packages' times come from its log.
step make-test make test

echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%s\n' "${results[@]}" | awk '
  BEGIN { printf "%-16s %10s %10s\n", "step", "wall (s)", "CPU (s)" }
  { printf "%-16s %10.0f %10.0f\n", $1, $2, $3 + $4; w += $2; c += $3 + $4 }
  END { printf "%-16s %10.0f %10.0f   (%.1f min wall)\n", "total", w, c, w / 60 }'
echo "tools built (from ${WORK}/make-test.log):"
grep -E '^built ' "${WORK}/make-test.log" || true
echo "module prefetch (from ${WORK}/src/_output/prefetch.log):"
cat "${WORK}/src/_output/prefetch.log" 2>/dev/null || true
echo "slowest test packages:"
grep -E '^(ok|FAIL)' "${WORK}/make-test.log" | sort -t$'\t' -k3 -rn | head -n 8 || true
grep -E '^--- (PASS|FAIL): TestCluster ' "${WORK}/make-test.log" || true
