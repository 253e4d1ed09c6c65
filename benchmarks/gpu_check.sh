#!/usr/bin/env bash
# The GPU check in one command (benchmarks/gpu_check.py): the estimator against the GEMM floor, the paper's codec
# (stock, live, macro-32) and the autocast equality; prints one JSON, also written to $OUT/gpu_check.json when OUT
# is set. Sized to take a few minutes on one GPU, wheel install included (not yet timed on a GPU).
#
#   bash benchmarks/gpu_check.sh [--wheels DIR] [--force-stubs] [--device cuda|cpu]
#
# --wheels DIR  install DIR/*.whl (scripts/fetch_gpu_wheels.sh writes them to .whl/) with pip --no-index --no-deps
#               into $GPU_CHECK_SITE (default /tmp/gpu_check_site), put it on PYTHONPATH, and use DIR/audiocraft_config
#               (audiocraft's config/ tree, which its wheel lacks) as AUDIOCRAFT_CONFIG_DIR and beside the
#               installed audiocraft package, where audiocraft.train looks for it.
# stubs         xformers, spacy and librosa are imported by audiocraft but never called on the codec path: an import
#               stub (benchmarks/gpu_stubs) goes on the path for each one that fails to import (xformers and spacy
#               do not travel; librosa does, the stub only guards against a broken import); --force-stubs puts all
#               in front of installed ones (the CPU test does, to show the codec path does not need them).
# PYTHON        the interpreter (default python3, the device's).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-python3}
wheels=""
force_stubs=0
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --wheels) wheels=${2:?--wheels needs a folder}; shift 2 ;;
    --force-stubs) force_stubs=1; shift ;;
    *) args+=("$1"); shift ;;
  esac
done

paths=("$root/benchmarks" "$root")
if [ -n "$wheels" ]; then
  compgen -G "$wheels/*.whl" >/dev/null || { echo "gpu_check: no wheels in $wheels (run scripts/fetch_gpu_wheels.sh)" >&2; exit 2; }
  [ -f "$wheels/audiocraft_config/config.yaml" ] || {
    echo "gpu_check: $wheels/audiocraft_config/config.yaml is missing (scripts/fetch_gpu_wheels.sh copies it)" >&2; exit 2; }
  site=${GPU_CHECK_SITE:-/tmp/gpu_check_site}
  rm -rf "$site"
  "$py" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --target "$site" "$wheels"/*.whl >&2
  cp -r "$wheels/audiocraft_config" "$site/config"  # audiocraft/train.py composes '../config' beside the package
  export AUDIOCRAFT_CONFIG_DIR="$site/config"
  paths+=("$site")
fi

stub_dir=$(mktemp -d)
trap 'rm -rf "$stub_dir"' EXIT
stubbed=()
for stub in "$root"/benchmarks/gpu_stubs/*/; do
  name=$(basename "$stub")
  if [ "$force_stubs" = 1 ] || ! PYTHONPATH="$(IFS=:; echo "${paths[*]}")${PYTHONPATH:+:$PYTHONPATH}" \
      "$py" -c "import $name" >/dev/null 2>&1; then
    cp -r "$stub" "$stub_dir/$name"
    stubbed+=("$name")
  fi
done
[ ${#stubbed[@]} -gt 0 ] && echo "gpu_check: import stubs for ${stubbed[*]} (benchmarks/gpu_stubs)" >&2

export PYTHONPATH="$stub_dir:$(IFS=:; echo "${paths[*]}")${PYTHONPATH:+:$PYTHONPATH}"
export MMD_AUDIOCRAFT_CONFIG_DIR="$root/config"  # our configs without an install (the tree on PYTHONPATH)
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
"$py" "$root/benchmarks/gpu_check.py" --stubs "$(IFS=,; echo "${stubbed[*]}")" "${args[@]}"
