#!/usr/bin/env bash
# What running every cell in a child process of its own costs: the wall time of the README's
# main job (the built-in suite on every available backend, default settings), isolated (the
# default) against --in-process, alternated ROUNDS times (default 3) so that both see the same
# phases of a shared host; then the regression gate compares each isolated run with the
# in-process run beside it (`chipbench compare`) and must find no cell regressed.
#
#   scripts/isolation-cost.sh [ROUNDS] [BENCH OPTIONS...]      e.g. scripts/isolation-cost.sh 3 --quick
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
shift || true
cargo build --release --quiet
bin=target/release/chipbench
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
now() { date +%s.%N; }
times="$work/times"
for round in $(seq 1 "$rounds"); do
  for mode in isolated in-process; do
    extra=()
    if [ "$mode" = in-process ]; then extra=(--in-process); fi
    start=$(now)
    "$bin" bench --quiet --no-history "${extra[@]}" --out "$work/$mode-$round" "$@" || true
    echo "$mode $start $(now)" >>"$times"
    awk -v r="$round" '{ m = $1; t = $3 - $2 } END { printf "round %d %-10s %6.1f s\n", r, m, t }' "$times"
  done
done
awk '{ t[$1] += $3 - $2 } END {
  printf "wall time: isolated %.1f s, in-process %.1f s: isolation adds %+.1f %%\n",
    t["isolated"], t["in-process"], (t["isolated"] / t["in-process"] - 1) * 100 }' "$times"
regressed=0
for round in $(seq 1 "$rounds"); do
  verdicts=$("$bin" compare "$work/in-process-$round" "$work/isolated-$round") || regressed=1
  printf 'round %d, the gate (baseline in-process, current isolated): %s\n' "$round" \
    "$(echo "$verdicts" | grep -m1 -E '[0-9]+ regressed')"
done
exit "$regressed"
