#!/usr/bin/env bash
# The regression gate's false-alarm and detection rates on real runs of this machine.
#
#   scripts/gate-real-power.sh [N] [--sessions K] [--out DIR] [-- OPTIONS OF THE EXAMPLE]
#
# Records N (default 40) runs of the CI recipe's setting, `chipbench bench --quick --sessions 5
# -b tract --threads 1 --no-history` (--sessions K for another count; 15, which the simulation
# favoured, did no better in real runs: README), of the built-in suite and N of its twin: the suite with
# bert-tiny's FFN 560 wide instead of 512, about 5 % more MACs (chipbench-optimize's
# suite::generate_twin, written into DIR/twin-suite). The two kinds alternate, so that a slow phase
# of the host falls on both. Then the example crates/report/examples/gate_real_power.rs compares
# many pairs drawn from them (whole runs, so a run's shared drift stays in): A/A pairs for the
# false-alarm rate per gate run and per cell, base against twin for the detection rate of the
# twin's real ~5 % slowdown, each with its 95 % CI, and prints a table.
#
# One run of the suite takes 8-10 s with 15 sessions on a 2-vCPU VM (4.5 s with 5): N = 40
# records in 11-14 minutes, and up to about N = 180 fits in an hour (the estimation adds a minute
# or two). Runs already in DIR/base and DIR/twin (default DIR: target/gate-real-power) are kept
# and counted: run it again with a larger N to add runs, and use another DIR for another
# --sessions. The binary: ${CHIPBENCH_BIN:-target/release/chipbench}; the examples are built with
# cargo (CARGO_TARGET_DIR is honoured). Run it on a quiet machine: anything else running shows as
# run-level drift.
set -euo pipefail
cd "$(dirname "$0")/.."
n=40
sessions=5
out=target/gate-real-power
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
  n="$1"
  shift
fi
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --sessions) sessions="$2"; shift 2 ;;
    --) shift; break ;;
    *) echo "unexpected argument '$1' (options of the example go after --)" >&2; exit 2 ;;
  esac
done
bin="${CHIPBENCH_BIN:-target/release/chipbench}"
target="${CARGO_TARGET_DIR:-target}"
if [ ! -x "$bin" ]; then
  cargo build --release --quiet --bin chipbench
  bin="$target/release/chipbench"
fi
cargo build --release --quiet -p chipbench-optimize --example twin_suite
cargo build --release --quiet -p chipbench-report --example gate_real_power
mkdir -p "$out/base" "$out/twin"
"$target/release/examples/twin_suite" "$out/twin-suite" >/dev/null
started=$(date +%s)
count() { find "$1" -mindepth 2 -maxdepth 2 -name run.json | wc -l; }
i=0
while [ "$(count "$out/base")" -lt "$n" ] || [ "$(count "$out/twin")" -lt "$n" ]; do
  i=$((i + 1))
  for kind in base twin; do
    [ "$(count "$out/$kind")" -lt "$n" ] || continue
    suite=models
    [ "$kind" = twin ] && suite="$out/twin-suite"
    run="$out/$kind/$(date +%Y%m%dT%H%M%S)-$$-$i"
    rm -rf "$run"
    "$bin" bench --quick --sessions "$sessions" --quiet --no-history -b tract --threads 1 \
      --suite "$suite" --out "$run"
  done
  printf '\r%s base, %s twin runs recorded (%ss)' "$(count "$out/base")" "$(count "$out/twin")" \
    "$(( $(date +%s) - started ))" >&2
done
echo >&2
exec "$target/release/examples/gate_real_power" "$out/base" "$out/twin" "$@"
