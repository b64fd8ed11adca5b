#!/usr/bin/env bash
# The accelerator check: the suite under all four scenarios on a machine with an NVIDIA GPU and no
# network, to which at most 64 MiB can be brought (the device tool's `carry`).
#
#   scripts/device-check.sh pack [DIR]     here: DIR (default target/device-check) gets a stripped
#                                          chipbench and the Vulkan and EGL loaders unpacked from
#                                          Debian packages; fails above 64 MiB
#   scripts/device-check.sh run [DIR] [OUT]
#                                          on the GPU machine: finds what is already there (the
#                                          NVIDIA driver's Vulkan ICD, CUDA runtime libraries of
#                                          installed Python packages, an ONNX Runtime GPU library),
#                                          runs the suite on wgpu (the real GPU, never lavapipe) and
#                                          on ort:cuda / ort:tensorrt where a GPU build of ONNX
#                                          Runtime is present (saying so where not), under
#                                          single-stream, offline, server and multi-stream, and
#                                          writes the run to OUT (default $OUT/device-check, else
#                                          DIR/run). About 5 minutes.
#
# DEVICE_CHECK_ALLOW_SOFTWARE=1 lets `run` go on with a software Vulkan adapter, to try the
# script itself on a machine without a GPU (its figures are then not GPU figures).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; }
action=${1:-}
[ $# -gt 0 ] && shift
dir=${1:-target/device-check}
limit=$((64 << 20))
say() { echo "device-check: $*"; }

pack() {
  cargo build --release --quiet
  rm -rf "$dir"
  mkdir -p "$dir/lib"
  strip -o "$dir/chipbench" target/release/chipbench
  local debs
  debs=$(mktemp -d)
  (cd "$debs" && apt-get download -q libvulkan1 libegl1 libglvnd0 >/dev/null 2>&1) || {
    say "cannot download libvulkan1, libegl1 and libglvnd0 with apt-get download"
    exit 1
  }
  for deb in "$debs"/*.deb; do
    dpkg-deb -x "$deb" "$debs/root"
  done
  # The loaders only: the NVIDIA ICD (libGLX_nvidia) needs libGLdispatch beside libEGL.
  cp -a "$debs"/root/usr/lib/*/lib{vulkan.so.1,EGL.so.1,GLdispatch.so.0}* "$dir/lib/"
  rm -rf "$debs"
  cp scripts/device-check.sh "$dir/"
  local bytes
  bytes=$(du -sb "$dir" | cut -f1)
  say "packed $dir: $(du -sh "$dir/chipbench" | cut -f1) chipbench (stripped), $(du -sh "$dir/lib" | cut -f1) of loaders, $((bytes >> 20)) MiB in all (limit 64 MiB)"
  ls -la "$dir" "$dir/lib"
  if [ "$bytes" -gt "$limit" ]; then
    say "over the 64 MiB that can be brought to the GPU machine"
    exit 1
  fi
}

# Directories of the CUDA runtime libraries that installed Python packages ship
# (nvidia-cuda-runtime-cu12, nvidia-cublas-cu12, nvidia-cudnn-cu12...).
python_cuda_dirs() {
  local py
  for py in python3 python; do
    command -v "$py" >/dev/null || continue
    "$py" - <<'PY' 2>/dev/null || true
import glob, os, site, sys
roots = set(site.getsitepackages() + [site.getusersitepackages()] + sys.path)
for root in sorted(r for r in roots if r and os.path.isdir(r)):
    for lib in sorted(glob.glob(os.path.join(root, "nvidia", "*", "lib"))):
        print(lib)
    for lib in sorted(glob.glob(os.path.join(root, "tensorrt_libs"))):
        print(lib)
PY
    return
  done
}

# An ONNX Runtime library with the CUDA provider beside it (onnxruntime-gpu's capi folder).
ort_gpu_library() {
  local candidates=()
  if command -v python3 >/dev/null; then
    mapfile -t candidates < <(python3 - <<'PY' 2>/dev/null || true
import glob, os, site, sys
roots = set(site.getsitepackages() + [site.getusersitepackages()] + sys.path)
for root in sorted(r for r in roots if r and os.path.isdir(r)):
    for lib in sorted(glob.glob(os.path.join(root, "onnxruntime", "capi", "libonnxruntime.so*"))):
        print(lib)
PY
)
  fi
  candidates+=(/usr/lib/libonnxruntime.so* /usr/local/lib/libonnxruntime.so* /opt/onnxruntime*/lib/libonnxruntime.so*)
  local lib
  for lib in "${candidates[@]}"; do
    if [ -f "$lib" ] && [ -f "$(dirname "$lib")/libonnxruntime_providers_cuda.so" ]; then
      echo "$lib"
      return
    fi
  done
}

# The NVIDIA driver's Vulkan ICD manifest; one is written beside the bundle when the driver's
# library is there but its manifest is not (containers often mount only the libraries).
nvidia_icd() {
  local manifest
  for manifest in /usr/share/vulkan/icd.d/nvidia_icd*.json /etc/vulkan/icd.d/nvidia_icd*.json \
    /usr/local/share/vulkan/icd.d/nvidia_icd*.json; do
    [ -f "$manifest" ] && { echo "$manifest"; return; }
  done
  local lib
  for lib in /usr/lib/x86_64-linux-gnu/libGLX_nvidia.so.0 /usr/lib64/libGLX_nvidia.so.0 \
    /usr/lib/libGLX_nvidia.so.0; do
    if [ -f "$lib" ]; then
      printf '{"file_format_version":"1.0.0","ICD":{"library_path":"%s","api_version":"1.3"}}\n' \
        "$lib" >"$dir/nvidia_icd.json"
      echo "$dir/nvidia_icd.json"
      return
    fi
  done
}

run() {
  local out=${2:-${OUT:+$OUT/device-check}}
  out=${out:-$dir/run}
  local bin="$dir/chipbench"
  [ -x "$bin" ] || { say "$bin is missing: run 'scripts/device-check.sh pack' first"; exit 2; }
  mkdir -p "$out"
  local started
  started=$(date +%s)
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total \
    --format=csv,noheader | sed 's/^/device-check: GPU: /' || say "nvidia-smi: not found"

  local libs="$dir/lib" cuda
  while read -r cuda; do
    [ -n "$cuda" ] && libs="$libs:$cuda"
  done < <(python_cuda_dirs)
  export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  say "libraries: $LD_LIBRARY_PATH"

  local icd
  icd=$(nvidia_icd)
  if [ -n "$icd" ]; then
    export VK_ICD_FILENAMES="$icd"
    say "Vulkan ICD: $icd"
  elif [ "${DEVICE_CHECK_ALLOW_SOFTWARE:-}" = 1 ]; then
    say "no NVIDIA Vulkan ICD: going on with whatever adapter the loader finds (DEVICE_CHECK_ALLOW_SOFTWARE=1)"
  else
    say "no NVIDIA Vulkan ICD here (no nvidia_icd.json and no libGLX_nvidia.so.0: a container started"
    say "without the 'graphics' driver capability has none): wgpu cannot reach the GPU"
  fi

  local backends=() ort_args=()
  local ort
  ort=$(ort_gpu_library)
  if [ -n "$ort" ]; then
    say "ONNX Runtime GPU library: $ort"
    ort_args=(--ort-lib "$ort")
    backends+=(-b ort:cuda -b ort:tensorrt)
  else
    say "no ONNX Runtime GPU build here (no libonnxruntime.so with libonnxruntime_providers_cuda.so"
    say "beside it, e.g. from pip's onnxruntime-gpu): ort:cuda and ort:tensorrt are not measured"
  fi

  "$bin" --version | sed 's/^/device-check: /'
  "$bin" backends "${ort_args[@]}" | tee "$out/backends.txt"
  "$bin" devices "${ort_args[@]}" >"$out/devices.txt" 2>&1 || true

  # The real GPU only: a software adapter's timings are the CPU's.
  local adapter
  adapter=$("$bin" backends --json | python3 -c '
import json, sys
for b in json.load(sys.stdin):
    if b["name"] == "wgpu" and b.get("available"):
        for d in b["devices"]:
            print(d["id"], d["kind"], d["name"], sep="\t")' 2>/dev/null || true)
  local gpu
  gpu=$(echo "$adapter" | awk -F'\t' '$2 == "discrete-gpu" || $2 == "integrated-gpu" || $2 == "virtual-gpu" { print $1; exit }')
  if [ -n "$gpu" ]; then
    backends+=(-b "wgpu:$gpu")
  elif [ "${DEVICE_CHECK_ALLOW_SOFTWARE:-}" = 1 ] && [ -n "$adapter" ]; then
    backends+=(-b "wgpu:$(echo "$adapter" | head -1 | cut -f1)")
    say "wgpu: no hardware adapter; measuring the software one (not GPU figures)"
  else
    say "wgpu: no hardware adapter among: ${adapter:-none}"
  fi
  [ ${#backends[@]} -gt 0 ] || { say "nothing to measure on a GPU here"; exit 1; }

  # Four scenarios, each cell short: the whole run stays well under 10 minutes.
  local status=0
  "$bin" bench --cache-dir "$dir/cache" --no-history --out "$out" "${ort_args[@]}" "${backends[@]}" \
    --quick --sessions 2 \
    --scenario single-stream,offline,server,multi-stream \
    --batch 1,8 --concurrency 1,2 --target-qps 200 --latency-bound p99=10ms \
    || status=$?
  say "run written to $out (exit code $status) in $(( $(date +%s) - started )) s"
  [ -f "$out/report.md" ] && cat "$out/report.md"
  return "$status"
}

case "$action" in
  pack) pack ;;
  run) run "$@" ;;
  -h|--help) usage ;;
  *) usage >&2; exit 2 ;;
esac
