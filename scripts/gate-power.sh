#!/usr/bin/env bash
# The power of the regression gate at its default settings, on this machine's noise.
#
#   scripts/gate-power.sh [RUN] [--pairs N] [--samples N] [--run-offset SD] [--threshold T] ...
#
# Without RUN it first measures one: `chipbench bench --quick` of the suite on tract, one thread.
# For each measured cell it draws lognormal samples with the cell's count, median and robust
# spread, and prints the detection rate of a 5 % (and 10 %) slowdown and the false-alarm rate
# over A/A pairs (goal: >= 95 % and <= 1 %). Options go to the example
# (crates/report/examples/gate_power.rs); --run-offset adds run-to-run drift.
set -euo pipefail
cd "$(dirname "$0")/.."
run=""
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
  run="$1"
  shift
fi
cargo build --release --quiet --bin chipbench
cargo build --release --quiet -p chipbench-report --example gate_power
if [ -z "$run" ]; then
  run=target/gate-power-run
  rm -rf "$run"
  echo "measuring the noise: chipbench bench --quick -b tract --threads 1 (into $run)"
  target/release/chipbench bench --quick --quiet --no-history -b tract --threads 1 --out "$run"
fi
exec target/release/examples/gate_power "$run" "$@"
