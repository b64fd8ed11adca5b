#!/usr/bin/env bash
# Measures a baseline for the regression gate and stores it in bench-results/baselines/NAME.json
# (commit it). Run it on the machine that will run the gate: compare refuses a baseline from a
# host with another fingerprint unless told --allow-different-hosts.
#
#   scripts/update-baseline.sh NAME [bench options...]     e.g. scripts/update-baseline.sh ci --quick
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ] || [ "${1#-}" != "$1" ]; then
  echo "usage: $0 NAME [chipbench bench options...]" >&2
  exit 2
fi
name="$1"
shift
cargo build --release --quiet --bin chipbench
out="target/baseline-$name"
rm -rf "$out"
target/release/chipbench bench --quiet --no-history --out "$out" "$@"
mkdir -p bench-results/baselines
cp "$out/run.json" "bench-results/baselines/$name.json"
echo "wrote bench-results/baselines/$name.json"
