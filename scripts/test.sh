#!/usr/bin/env bash
# The test command of the README: every crate's unit tests and the end-to-end tests of the
# binary, in the release profile (the one profile the project builds, so that tests and the
# main job share one build). The crash-test feature adds a backend that aborts, segfaults and
# hangs on purpose, for the tests of cell isolation; `cargo run`/`cargo build` never enable it.
set -euo pipefail
cd "$(dirname "$0")/.."
# Cargo links target/release/chipbench (the binary the tests run) only when it compiles it: after a
# plain `cargo build --release`, a test build whose crash-test binary is already up to date would
# leave the plain one there. Touching the root crate makes cargo link it again.
bin=target/release/chipbench
if [ -x "$bin" ] && ! CHIPBENCH_CRASH_BACKEND=1 "$bin" backends --json 2>/dev/null | grep -q '"crash"'; then
  touch src/main.rs
fi
exec cargo test --workspace --release --features chipbench/crash-test "$@"
