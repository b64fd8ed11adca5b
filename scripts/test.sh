#!/usr/bin/env bash
# The test command of the README: every crate's unit tests and the end-to-end tests of the
# binary, in the release profile (the one profile the project builds, so that tests and the
# main job share one build). The crash-test feature adds a backend that aborts, segfaults and
# hangs on purpose, for the tests of cell isolation; `cargo run`/`cargo build` never enable it.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo test --workspace --release --features chipbench/crash-test "$@"
