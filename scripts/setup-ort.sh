#!/usr/bin/env bash
# Installs the ONNX Runtime shared library that chipbench's `ort` backend loads at run time, into
# the project-local, git-ignored folder .ort/ (discovery step 2 of `chipbench backends`).
#
#   scripts/setup-ort.sh          CPU build: PyPI onnxruntime==1.32.0      -> .ort/cpu/
#   scripts/setup-ort.sh --gpu    CUDA 13 + TensorRT: onnxruntime-gpu==1.31.1 -> .ort/gpu/
#
# No root needed: `pip download` fetches the wheel (a zip) and the library and its provider
# plugins are unzipped from onnxruntime/capi/. Idempotent: a complete install is left as it is.
# The wheel's libonnxruntime.so has RUNPATH $ORIGIN, so the provider plugins must stay beside it.
set -euo pipefail
cd "$(dirname "$0")/.."

flavour=cpu package=onnxruntime version=1.32.0
case "${1:-}" in
  "") ;;
  --gpu) flavour=gpu package=onnxruntime-gpu version=1.31.1 ;;
  -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "setup-ort.sh: unknown option '$1' (expected --gpu or nothing)" >&2; exit 2 ;;
esac

dest=".ort/$flavour"
lib="$dest/libonnxruntime.so.$version"
if [ -f "$lib" ] && [ -f "$dest/VERSION" ] && [ "$(cat "$dest/VERSION")" = "$package==$version" ]; then
  echo "$lib already installed ($package==$version)"
  exit 0
fi

python=$(command -v python3 || true)
[ -n "$python" ] || { echo "setup-ort.sh: python3 with pip is needed to download the wheel" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "downloading $package==$version (wheel for this platform, no dependencies)"
"$python" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
  --dest "$work" "$package==$version"
wheel=$(ls "$work"/*.whl)

# Unzip with Python's zipfile: no dependency on an unzip binary.
"$python" - "$wheel" "$work/out" <<'PY'
import sys, zipfile
wheel, out = sys.argv[1:3]
with zipfile.ZipFile(wheel) as z:
    wanted = [n for n in z.namelist()
              if n.startswith("onnxruntime/capi/") and (".so" in n.rsplit("/", 1)[-1])
              and ("libonnxruntime" in n)]
    if not wanted:
        sys.exit(f"{wheel}: no onnxruntime/capi/libonnxruntime*.so in the wheel")
    for name in wanted:
        z.extract(name, out)
PY

mkdir -p "$(dirname "$dest")"
tmp="$dest.partial"
rm -rf "$tmp"
mkdir -p "$tmp"
cp "$work"/out/onnxruntime/capi/libonnxruntime* "$tmp/"
[ -f "$tmp/libonnxruntime.so.$version" ] || {
  echo "setup-ort.sh: the wheel has no libonnxruntime.so.$version" >&2; exit 1; }
# The soname chipbench and the provider plugins look for.
ln -sf "libonnxruntime.so.$version" "$tmp/libonnxruntime.so.1"
ln -sf "libonnxruntime.so.$version" "$tmp/libonnxruntime.so"
echo "$package==$version" > "$tmp/VERSION"
rm -rf "$dest"
mv "$tmp" "$dest"
echo "installed $dest/:"
ls -1 "$dest"
echo "chipbench finds it without further setup; or point ORT_DYLIB_PATH at $PWD/$lib"
