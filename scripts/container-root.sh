#!/usr/bin/env bash
# The steps of the container image (Dockerfile), kept here so that CI runs them too and the
# recipe cannot rot: lays out the runtime image's files under ROOT from a built chipbench, then
# checks them by running that chipbench from an empty folder with an empty home.
#
#   scripts/container-root.sh [--gpu] BINARY ROOT
#
#   ROOT/usr/local/bin/chipbench              BINARY without its debug line tables
#   ROOT/opt/onnxruntime/                     libonnxruntime from the PyPI wheel (scripts/setup-ort.sh;
#                                             --gpu: onnxruntime-gpu with the CUDA provider)
#   ROOT/opt/cuda/lib/ + ld.so.conf.d entry   --gpu: CUDA runtime, cuBLAS, cuFFT, cuRAND, NVRTC and
#                                             cuDNN from NVIDIA's PyPI wheels (the host gives the driver)
#   ROOT/var/cache/chipbench/suite/           the built-in suite, generated and sha256-checked
#                                             (CHIPBENCH_CACHE_DIR in the image)
#   ROOT/usr/share/{bash-completion,zsh,fish,man}/...   completions and manual pages
#
# Needs python3 with pip (for the wheels) unless .ort/ already holds the library.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; }
gpu=false
case "${1:-}" in
  --gpu) gpu=true; shift ;;
  -h|--help) usage; exit 0 ;;
esac
[ $# -eq 2 ] || { usage >&2; exit 2; }
binary=$1 root=$2
[ -x "$binary" ] || { echo "container-root.sh: $binary is not an executable (build it first: cargo build --release)" >&2; exit 2; }

step() { echo "container-root.sh: $*"; }
rm -rf "$root"
mkdir -p "$root/usr/local/bin" "$root/opt" "$root/var/cache/chipbench"
# Absolute: the check below runs the image's chipbench from another folder.
root=$(cd "$root" && pwd)

step "the binary, without its debug line tables"
if command -v objcopy >/dev/null; then
  objcopy --strip-debug "$binary" "$root/usr/local/bin/chipbench"
else
  echo "container-root.sh: no objcopy (binutils): copying $binary with its debug line tables" >&2
  cp "$binary" "$root/usr/local/bin/chipbench"
fi
chipbench="$root/usr/local/bin/chipbench"

flavour=cpu
$gpu && flavour=gpu
step "ONNX Runtime ($flavour) from its PyPI wheel"
if $gpu; then scripts/setup-ort.sh --gpu; else scripts/setup-ort.sh; fi
cp -a ".ort/$flavour" "$root/opt/onnxruntime"

if $gpu; then
  step "CUDA libraries from NVIDIA's PyPI wheels (onnxruntime-gpu's cuda and cudnn extras)"
  version=$(sed 's/.*==//' .ort/gpu/VERSION)
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  python3 -m pip download -q --disable-pip-version-check --only-binary=:all: \
    --dest "$work" "onnxruntime-gpu[cuda,cudnn]==$version"
  mkdir -p "$root/opt/cuda/lib" "$root/etc/ld.so.conf.d"
  python3 - "$root/opt/cuda/lib" "$work"/nvidia_*.whl <<'PY'
import os, sys, zipfile
out, wheels = sys.argv[1], sys.argv[2:]
count = 0
for wheel in wheels:
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            base = name.rsplit("/", 1)[-1]
            if name.startswith("nvidia/") and "/lib/" in name and ".so" in base:
                with z.open(name) as src, open(os.path.join(out, base), "wb") as dst:
                    dst.write(src.read())
                count += 1
if count == 0:
    sys.exit("no nvidia/*/lib/*.so* in " + " ".join(wheels))
print(f"{count} libraries from {len(wheels)} wheels")
PY
  echo /opt/cuda/lib > "$root/etc/ld.so.conf.d/chipbench-cuda.conf"
fi

# Runs the image's chipbench as the image would: from an empty folder (no models/ there), with an
# empty home and the image's environment.
check=$(mktemp -d)
trap 'rm -rf "$check" ${work:+"$work"}' EXIT
mkdir -p "$check/home" "$check/work"
in_image() {
  (cd "$check/work" && env -u XDG_CACHE_HOME HOME="$check/home" \
    CHIPBENCH_CACHE_DIR="$root/var/cache/chipbench" \
    ORT_DYLIB_PATH="$root/opt/onnxruntime/libonnxruntime.so.1" \
    LD_LIBRARY_PATH="$root/opt/cuda/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
    "$chipbench" "$@")
}

step "the built-in suite, generated into the image's cache and checked against its hashes"
in_image models >/dev/null
[ -f "$root/var/cache/chipbench/suite/suite.toml" ] || {
  echo "container-root.sh: no suite in $root/var/cache/chipbench/suite" >&2; exit 1; }

step "shell completions and manual pages"
mkdir -p "$root/usr/share/bash-completion/completions" "$root/usr/share/zsh/vendor-completions" \
  "$root/usr/share/fish/vendor_completions.d" "$root/usr/share/man/man1"
"$chipbench" completions bash > "$root/usr/share/bash-completion/completions/chipbench"
"$chipbench" completions zsh > "$root/usr/share/zsh/vendor-completions/_chipbench"
"$chipbench" completions fish > "$root/usr/share/fish/vendor_completions.d/chipbench.fish"
"$chipbench" man --out "$root/usr/share/man/man1" >/dev/null

step "check: the image's chipbench loads its ONNX Runtime and measures a model on tract and ort"
in_image --version
in_image backends --json | python3 -c '
import json, sys
ort = next(b for b in json.load(sys.stdin) if b["name"] == "ort")
if not ort["available"]:
    sys.exit("container-root.sh: the image cannot load its ONNX Runtime library: " + ort["reason"])
print("ort", ort["version"], "devices:", ", ".join(d["id"] for d in ort["devices"]))
'
in_image bench --quick -m mlp -b tract -b ort --sessions 1 --quiet --no-history --out "$check/run" \
  2> >(tee "$check/bench.stderr" >&2)
[ -f "$check/run/run.json" ] || { echo "container-root.sh: the check run wrote no run.json" >&2; exit 1; }
if grep -q "regenerated\|generated the built-in suite" "$check/bench.stderr"; then
  echo "container-root.sh: bench did not find the suite the image carries (message above)" >&2; exit 1
fi
step "done: $(du -sh "$root" | cut -f1) in $root"
