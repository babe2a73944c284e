#!/usr/bin/env bash
# CI smoke run of the asv suites: `asv check`, then one quick sample of a small subset
# (n = 10^5, d = 10: one small parameter set per benchmark), failing on any benchmark error
# (asv 0.6 `run` exits 2 when a benchmark fails; it has no --strict). Takes ~1-2 min.
# Usage: bash benchmarks/ci_quick.sh   (from anywhere; uses the `python` on PATH)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
if ! "$PY" -c "import asv" 2>/dev/null; then
    echo "asv is not installed: pip install -e '.[bench]' (asv>=0.6)" >&2
    exit 1
fi
start=$(date +%s)
"$PY" -m asv machine --yes >/dev/null
"$PY" -m asv check --python=same
# One small setting per benchmark. Parameters are matched as "name(n, d, ...)".
small='\(100000, 10(, 3)?(, .numpy-float64.|, .torch-float32.|, 1|, .float64.|, .eigh.|, .randomized.)?\)'
# algorithm suites: k = 3 power method, the n = 10^5, d = 10, k = 3 EM step, the tensor_em fit,
# and tensor_em (linear) against the plain implementation at issue 13's table setting
algs='\((3, .power.|100000, 10, 3|.tensor_em.|.100000,10,3., .tensor_em., .linear.)\)'
log=$(mktemp)
set +e
MOEBENCH_BENCH_THREADS=${MOEBENCH_BENCH_THREADS:-1} "$PY" -m asv run --python=same --quick \
    --show-stderr --bench "bench_moments\..*${small}" \
    --bench "bench_algorithms\..*${algs}" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
# belt and braces: asv prints "failed" for a benchmark that raised
if [ "$rc" -ne 0 ] || grep -Eq '^\[.*\] ··· .*failed$' "$log"; then
    echo "asv quick run: benchmark failure (exit code $rc)" >&2
    rm -f "$log"
    exit 1
fi
rm -f "$log"
echo "asv smoke run passed in $(( $(date +%s) - start )) s"
