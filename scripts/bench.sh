#!/usr/bin/env bash
# The README's main command: the built-in suite on every backend available here.
#
#   scripts/bench.sh [BENCH OPTIONS]     e.g. scripts/bench.sh --quick
#
# A newcomer's first run should compare engines, not measure tract alone: when no ONNX Runtime
# library is at hand (no --ort-lib, no ORT_DYLIB_PATH, no .ort/ install), this first installs the
# CPU build from PyPI with scripts/setup-ort.sh. Where that is impossible (no python3 or no
# network), it says so and the run goes on without the ort backend, which `bench` then lists as
# unavailable with the reason. Then it builds (release) and runs `chipbench bench`.
set -euo pipefail
cd "$(dirname "$0")/.."

wants_own_lib=false
for arg in "$@"; do
  case "$arg" in --ort-lib|--ort-lib=*) wants_own_lib=true ;; esac
done
if ! $wants_own_lib && [ -z "${ORT_DYLIB_PATH:-}" ] && ! ls .ort/*/libonnxruntime.so.* >/dev/null 2>&1; then
  echo "bench.sh: no ONNX Runtime library yet: installing the CPU build (scripts/setup-ort.sh)" >&2
  if ! scripts/setup-ort.sh >&2; then
    echo "bench.sh: could not install ONNX Runtime (reason above); measuring without the ort backend" >&2
  fi
fi
# CHIPBENCH_BIN runs a chipbench binary already built instead (the tests use the one they built).
if [ -n "${CHIPBENCH_BIN:-}" ]; then
  exec "$CHIPBENCH_BIN" bench "$@"
fi
exec cargo run --release --quiet -- bench "$@"
