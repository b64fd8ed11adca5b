#!/usr/bin/env bash
# Cross-builds chipbench for 64-bit Arm Linux (aarch64-unknown-linux-gnu: Raspberry Pi OS 64-bit,
# Jetson Linux, Debian/Ubuntu arm64) and, where qemu-user is installed, checks the build: the
# built-in suite on tract under emulation must give the outputs this host gives, within fp32
# tolerance, and `bench` must run its cells there. Timings under emulation mean nothing: none are
# reported.
#
# Usage: scripts/build-arm.sh [--no-check]
#
# The binary to copy to a device lands in $CARGO_TARGET_DIR/aarch64-unknown-linux-gnu/chipbench
# (cargo's release/chipbench without its debug line tables: a sixth of the size), where
# `chipbench remote` looks for it. CARGO_TARGET_DIR defaults to target/cross: a folder of its own,
# so the long build (whole stack, every backend: ~15 min on 2 cores from cold, seconds when only
# chipbench's crates changed) does not hold the build lock of target/ meanwhile.
# The linker is Debian's gcc-aarch64-linux-gnu, set through the environment for this build only.
#
# Environment: CARGO_TARGET_DIR, ARM_TOLERANCE (largest max rel err of the output check, 1e-4).
#
# Exit codes:
#   0  built; checked under qemu, or qemu is absent (said so)
#   1  the build failed, or the outputs under qemu differ from this host's
#   2  usage
#   3  skipped: the Rust standard library for aarch64-unknown-linux-gnu is not installed and
#      `rustup target add` cannot download it here (CI treats this as a skipped step)
#   4  no cross linker: apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross
set -euo pipefail
cd "$(dirname "$0")/.."

target=aarch64-unknown-linux-gnu
cross_prefix=aarch64-linux-gnu
check=1
case "${1:-}" in
  "") ;;
  --no-check) check=0 ;;
  *) echo "usage: scripts/build-arm.sh [--no-check]" >&2; exit 2 ;;
esac
target_dir=${CARGO_TARGET_DIR:-target/cross}
tolerance=${ARM_TOLERANCE:-1e-4}

has_std() {
  local libdir
  libdir=$(rustc --print target-libdir --target "$target" 2>/dev/null) || return 1
  compgen -G "$libdir/libstd-*.rlib" >/dev/null
}
if ! has_std; then
  echo "the Rust standard library for $target is not installed; trying: rustup target add $target"
  if ! command -v rustup >/dev/null || ! rustup target add "$target" || ! has_std; then
    echo "skipped: the Rust standard library for $target cannot be installed here (rustup target add $target failed or rustup is absent)" >&2
    exit 3
  fi
fi
if ! command -v "$cross_prefix-gcc" >/dev/null; then
  echo "no cross linker $cross_prefix-gcc: apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross" >&2
  exit 4
fi

echo "== cross-building chipbench for $target into $target_dir"
start=$(date +%s)
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER="$cross_prefix-gcc"
# C code in the stack (SQLite through rusqlite) is compiled with the cross compiler too.
export CC_aarch64_unknown_linux_gnu="$cross_prefix-gcc" AR_aarch64_unknown_linux_gnu="$cross_prefix-ar"
if ! cargo build --release --target "$target" --target-dir "$target_dir" --bin chipbench; then
  echo "the cross build failed" >&2
  exit 1
fi
binary="$target_dir/$target/chipbench"
"$cross_prefix-strip" --strip-debug -o "$binary" "$target_dir/$target/release/chipbench"
echo "built $binary ($(du -h "$binary" | cut -f1)) in $(( $(date +%s) - start )) s"

if [ "$check" = 0 ]; then
  exit 0
fi
qemu=$(command -v qemu-aarch64-static || command -v qemu-aarch64 || true)
if [ -z "$qemu" ]; then
  echo "no qemu-aarch64 here (apt-get install qemu-user-static): the build is not checked"
  exit 0
fi
sysroot=/usr/$cross_prefix
if [ ! -e "$sysroot/lib/ld-linux-aarch64.so.1" ]; then
  echo "no aarch64 C library under $sysroot for qemu (apt-get install libc6-arm64-cross): the build is not checked"
  exit 0
fi
arm() { "$qemu" -L "$sysroot" "$binary" "$@"; }

echo "== checking the build under $qemu (functional only: timings under emulation are not reported)"
cargo build --release --bin chipbench
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
target/release/chipbench outputs --samples 2 --write "$work/x86_64.json"
echo "-- the suite's outputs on tract, aarch64 under qemu against this host's:"
if ! arm outputs --samples 2 --compare "$work/x86_64.json" --tolerance "$tolerance"; then
  echo "the aarch64 build computes different outputs (beyond max rel err $tolerance)" >&2
  exit 1
fi
echo "-- bench on tract under qemu (cells must run; their timings are discarded):"
# --in-process: under qemu-user the binary's own path (/proc/self/exe) is the emulator's, so a
# cell's child process could not start chipbench again; on a real device cells run isolated.
if ! arm bench --quick --in-process --backend tract --accuracy-samples 2 --no-history --quiet --json --out "$work/run" >"$work/run.json"; then
  echo "bench failed under qemu:" >&2
  python3 -c 'import json,sys; [print(" ", c["model"]["name"], c["status"], c["error"]) for c in json.load(open(sys.argv[1]))["cells"]]' "$work/run.json" >&2 || true
  exit 1
fi
python3 - "$work/run.json" <<'PY'
import json, sys
run = json.load(open(sys.argv[1]))
cells = run["cells"]
ok = [c for c in cells if c["status"] == "ok"]
print(f"  {len(ok)} of {len(cells)} cells ran on {run['host']['arch']} ({', '.join(c['model']['name'] for c in ok)}); "
      "accuracy against the aarch64 fp32 reference: "
      + ", ".join(f"{c['model']['name']} {c['accuracy']['max_abs_err']:.1e}" for c in ok if c.get("accuracy")))
sys.exit(0 if len(ok) == len(cells) else 1)
PY
echo "the aarch64 build passed its functional check"
