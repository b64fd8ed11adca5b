#!/usr/bin/env bash
# The power of the regression gate at its default settings, simulated on this machine's noise.
#
#   scripts/gate-power.sh [RUN] [--pairs N] [--sessions N] [--session-drift SD] [--run-drift SD]
#                         [--slow-phase P] [--outliers F] [--samples N] [--threshold T] ...
#
# Without RUN it first measures one: `chipbench bench --quick` of the suite on tract, one thread.
# It then simulates whole runs of that run's cells — heavy-tailed samples (a lognormal body with
# each cell's median and robust spread, Pareto outliers with the cell's own share and tail),
# session medians drifting independently, and a run-level drift shared by all cells of a run — and
# compares them as `chipbench compare` does (Holm over the cells included): A/A pairs and pairs
# with every cell 5 % (and 10 %) slower. It prints the detection and false-alarm rates per cell and
# per gate run, each with its 95 % CI (goal: >= 95 % per cell and <= 1 % per gate run). Options go
# to the example (crates/report/examples/gate_power.rs, whose header documents them). For the
# rates on real runs and a real slowdown, see scripts/gate-real-power.sh.
#
# The binary: ${CHIPBENCH_BIN:-target/release/chipbench} (built when absent).
set -euo pipefail
cd "$(dirname "$0")/.."
run=""
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
  run="$1"
  shift
fi
bin="${CHIPBENCH_BIN:-target/release/chipbench}"
target="${CARGO_TARGET_DIR:-target}"
if [ ! -x "$bin" ]; then
  cargo build --release --quiet --bin chipbench
  bin="$target/release/chipbench"
fi
cargo build --release --quiet -p chipbench-report --example gate_power
if [ -z "$run" ]; then
  run=target/gate-power-run
  rm -rf "$run"
  echo "measuring the noise: chipbench bench --quick -b tract --threads 1 (into $run)"
  "$bin" bench --quick --quiet --no-history -b tract --threads 1 --out "$run"
fi
exec "$target/release/examples/gate_power" "$run" "$@"
