#!/usr/bin/env bash
# Fetches the ONNX Runtime shared library from PyPI into the project cache, where steer-runtime finds it.
#
#   scripts/fetch-onnxruntime.sh          CPU build  -> .cache/onnxruntime/libonnxruntime.so
#   scripts/fetch-onnxruntime.sh --gpu    GPU build  -> .cache/onnxruntime-gpu/libonnxruntime.so (+ CUDA/TensorRT providers)
#
# The cache folder is $STEER_CACHE_DIR when set, else <repo>/.cache. Nothing is installed: the wheel is downloaded
# with `pip download`, checked, and the libraries are extracted from it (a wheel is a zip). Running it again when the
# library is already there is a fast no-op.
set -euo pipefail

readonly ORT_VERSION="1.31.1"
readonly PLATFORM="manylinux_2_28_x86_64"
readonly PYTHON_VERSION="3.11"
# sha256 of onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl, checked on a downloaded copy.
readonly CPU_WHEEL_SHA256="5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f"
# sha256 that PyPI lists for onnxruntime_gpu-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl (255 MB, not yet checked on
# a downloaded copy, so a mismatch only warns).
readonly GPU_WHEEL_SHA256="e26c475fe361b2015f45b4b824bd13f0bb20204e59b62814e6f0acd5f3d491a6"

usage() {
    sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
}

die() {
    echo "fetch-onnxruntime: error: $*" >&2
    exit 1
}

gpu=0
for arg in "$@"; do
    case "$arg" in
        --gpu) gpu=1 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument '$arg'" ;;
    esac
done

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache_root="${STEER_CACHE_DIR:-$repo_root/.cache}"
lib="libonnxruntime.so.$ORT_VERSION"
members=("$lib" "libonnxruntime_providers_shared.so")
if [[ $gpu == 1 ]]; then
    package="onnxruntime-gpu"
    dest="$cache_root/onnxruntime-gpu"
    members+=("libonnxruntime_providers_cuda.so" "libonnxruntime_providers_tensorrt.so")
else
    package="onnxruntime"
    dest="$cache_root/onnxruntime"
fi

present=1
for member in "${members[@]}"; do
    [[ -f "$dest/$member" ]] || present=0
done
if [[ $present == 1 && -L "$dest/libonnxruntime.so" && -e "$dest/libonnxruntime.so" ]]; then
    echo "fetch-onnxruntime: $package $ORT_VERSION already present: $dest/libonnxruntime.so"
    exit 0
fi

command -v python3 >/dev/null || die "python3 is required (it runs 'pip download' and extracts the wheel)"
python3 -m pip --version >/dev/null 2>&1 || die "python3 has no pip; install it (e.g. apt-get install python3-pip)"

if [[ $gpu == 0 ]]; then sha="$CPU_WHEEL_SHA256"; check=(); else sha="$GPU_WHEEL_SHA256"; check=(--warn-only); fi
python3 "$repo_root/scripts/pypi_wheel.py" --prog fetch-onnxruntime --requirement "$package==$ORT_VERSION" \
    --sha256 "$sha" "${check[@]}" --platform "$PLATFORM" --python-version "$PYTHON_VERSION" \
    --prefix onnxruntime/capi/ --executable --dest "$dest" "${members[@]}" \
    || die "could not fetch $package==$ORT_VERSION (see above)"
ln -sfn "$lib" "$dest/libonnxruntime.so"
echo "fetch-onnxruntime: ONNX Runtime $ORT_VERSION ready: $dest/libonnxruntime.so"
if [[ $gpu == 1 ]]; then
    echo "fetch-onnxruntime: the CUDA/TensorRT providers also need CUDA 13, cuDNN 9 and TensorRT 10 libraries on the loader path"
fi
