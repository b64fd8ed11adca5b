#!/usr/bin/env bash
# The paired gate (`chipbench ab`) beside the sequential one (`compare` of two separate runs), on
# real jobs of this machine: false-alarm and detection rates, each with its 95 % CI, and the wall
# time of a job of each kind.
#
#   scripts/ab-power.sh [N] [--out DIR]
#
# Records, alternating so that a slow phase of the host falls on every kind:
# - N runs of the suite and N of its twin (bert-tiny with about 5 % more MACs, chipbench-optimize's
#   suite::generate_twin) with the CI recipe's `bench --quick --sessions 5 -b tract --threads 1`,
#   which crates/report/examples/gate_real_power.rs compares in pairs (the sequential gate);
# - N paired A/A jobs, `ab -b tract --threads 1` (the suite against itself), and N paired A/B jobs,
#   `ab -b tract --threads 1 --b-suite TWIN`, which crates/report/examples/ab_power.rs counts,
#   and from whose process pairs it draws many more gate runs.
# Default N = 20: 40 sequential runs (about 5 s each) and 40 paired jobs (about 45 s each), about
# 35 minutes on a 2-vCPU VM. Runs already in DIR (default target/ab-power) are kept and counted.
# The binary: ${CHIPBENCH_BIN:-target/release/chipbench}. Run it on a quiet machine.
set -euo pipefail
cd "$(dirname "$0")/.."
n=20
out=target/ab-power
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
  n="$1"
  shift
fi
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    *) echo "unexpected argument '$1'" >&2; exit 2 ;;
  esac
done
bin="${CHIPBENCH_BIN:-target/release/chipbench}"
target="${CARGO_TARGET_DIR:-target}"
if [ ! -x "$bin" ]; then
  cargo build --release --quiet --bin chipbench
  bin="$target/release/chipbench"
fi
cargo build --release --quiet -p chipbench-optimize --example twin_suite
cargo build --release --quiet -p chipbench-report --example gate_real_power --example ab_power
mkdir -p "$out/base" "$out/twin" "$out/ab-aa" "$out/ab-ab"
"$target/release/examples/twin_suite" "$out/twin-suite" >/dev/null
count() { find "$1" -mindepth 2 -maxdepth 2 \( -name run.json -o -name ab.json \) | wc -l; }
declare -A seconds=([base]=0 [twin]=0 [ab-aa]=0 [ab-ab]=0)
started=$(date +%s)
i=0
while [ "$(count "$out/base")" -lt "$n" ] || [ "$(count "$out/twin")" -lt "$n" ] ||
  [ "$(count "$out/ab-aa")" -lt "$n" ] || [ "$(count "$out/ab-ab")" -lt "$n" ]; do
  i=$((i + 1))
  for kind in base twin ab-aa ab-ab; do
    [ "$(count "$out/$kind")" -lt "$n" ] || continue
    run="$out/$kind/$(date +%Y%m%dT%H%M%S)-$$-$i"
    rm -rf "$run"
    t0=$(date +%s.%N)
    case "$kind" in
      base | twin)
        suite=models
        [ "$kind" = twin ] && suite="$out/twin-suite"
        "$bin" bench --quick --sessions 5 --quiet --no-history -b tract --threads 1 \
          --suite "$suite" --out "$run" ;;
      ab-aa) "$bin" ab -b tract --threads 1 --suite models --json --out "$run" >/dev/null || true ;;
      ab-ab) "$bin" ab -b tract --threads 1 --suite models --b-suite "$out/twin-suite" --json \
        --out "$run" >/dev/null || true ;;
    esac
    seconds[$kind]=$(awk -v sum="${seconds[$kind]}" -v t0="$t0" -v t1="$(date +%s.%N)" \
      'BEGIN { print sum + t1 - t0 }')
  done
  printf '\r%s/%s/%s/%s runs recorded (%ss)' "$(count "$out/base")" "$(count "$out/twin")" \
    "$(count "$out/ab-aa")" "$(count "$out/ab-ab")" "$(( $(date +%s) - started ))" >&2
done
echo >&2
awk -v b="${seconds[base]}" -v t="${seconds[twin]}" -v aa="${seconds[ab-aa]}" -v ab="${seconds[ab-ab]}" \
  -v n="$i" 'BEGIN { printf "Wall time per job recorded now: bench run %.1f s (a sequential gate needs two), paired ab job %.1f s\n", (b + t) / (2 * n), (aa + ab) / (2 * n) }'
echo
echo "Sequential gate (compare of two separate runs):"
"$target/release/examples/gate_real_power" "$out/base" "$out/twin"
echo
echo "Paired gate (chipbench ab):"
"$target/release/examples/ab_power" "$out/ab-aa" "$out/ab-ab"
