#!/usr/bin/env bash
# The wheels benchmarks/gpu_check.sh installs on the GPU machine, into .whl/ (git-ignored; or the folder given).
#
# That machine has Python 3.12 (x86-64) with torch 2.11, torchaudio 2.11, numpy 2, transformers, huggingface_hub,
# einops, sentencepiece, torchmetrics, scipy, numba, scikit-learn, ... and no network (see the device's package
# list). What the codec path imports and it lacks travels as wheels, at the versions of requirements/latest.lock.txt
# (the torch 2.11 stack), hash-checked against that lock where the lock's file is the one fetched:
#   - pure Python (built here from the sdist when there is no wheel): audiocraft, dora_search, flashy, hydra-core,
#     omegaconf, antlr4-python3-runtime, hydra-colorlog, colorlog, submitit, treetable, retrying, julius,
#     num2words, librosa, audioread, decorator, pooch, platformdirs, pycparser;
#   - compiled, for CPython 3.12 on manylinux x86-64: av (audiocraft reads .wav through it), soundfile and cffi
#     (its binding), soxr (librosa imports it).
# audiocraft 1.3.0 comes from its sdist (sha256 of scripts/setup_env.sh), built into a wheel here; its config/ tree,
# which the wheel lacks, is copied to .whl/audiocraft_config. xformers and spacy do not travel: audiocraft imports
# them but the codec path never calls them (benchmarks/gpu_stubs/README.md). Checks that the working tree that
# travels (tracked and untracked-not-ignored files) plus the wheels stays under 64 MiB.
#
#   bash scripts/fetch_gpu_wheels.sh [OUT_DIR]
# GPU_PYTHON_VERSION=3.11 fetches the compiled wheels for another CPython (to rehearse the check on this machine).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=$(realpath -m "${1:-$root/.whl}")
py=${PYTHON:-python3}
pyver=${GPU_PYTHON_VERSION:-3.12}
lock="$root/requirements/latest.lock.txt"
LIMIT_MB=64
PURE=(dora_search flashy hydra-core omegaconf antlr4-python3-runtime hydra-colorlog colorlog submitit treetable retrying
      julius num2words librosa audioread decorator pooch platformdirs pycparser)
COMPILED_CHECKED=(av soundfile)  # abi3 / py3-none wheels: the lock's file is the one fetched
COMPILED_312=(soxr cffi)         # cp312 builds: the lock's hashes are of the cp311 files
AUDIOCRAFT_VERSION=$(sed -n 's/^AUDIOCRAFT_VERSION=//p' "$root/scripts/setup_env.sh")
AUDIOCRAFT_SHA256=$(sed -n 's/^AUDIOCRAFT_SHA256=//p' "$root/scripts/setup_env.sh")
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64 --platform manylinux1_x86_64)

locked() {  # the lock's lines (name==version --hash=...) of the given names
  for name in "$@"; do
    line=$(grep -i "^${name}==" "$lock") || { echo "fetch_gpu_wheels: $name is not in $lock" >&2; exit 1; }
    echo "$line"
  done
}

rm -rf "$out" && mkdir -p "$out"
tmp=$(mktemp -d) && trap 'rm -rf "$tmp"' EXIT

locked "${PURE[@]}" > "$tmp/pure.txt"
"$py" -m pip wheel --quiet --no-deps --require-hashes -r "$tmp/pure.txt" -w "$out"
locked "${COMPILED_CHECKED[@]}" > "$tmp/compiled.txt"
"$py" -m pip download --quiet --no-deps --only-binary=:all: --python-version "$pyver" --implementation cp \
  "${PLATFORMS[@]}" --require-hashes -r "$tmp/compiled.txt" -d "$out"
for name in "${COMPILED_312[@]}"; do
  spec=$(locked "$name" | cut -d' ' -f1)
  "$py" -m pip download --quiet --no-deps --only-binary=:all: --python-version "$pyver" --implementation cp \
    "${PLATFORMS[@]}" "$spec" -d "$out"
done

# audiocraft from its sdist: the wheel, and the config/ tree the wheel leaves out
"$py" -m pip download --quiet --no-deps --no-binary :all: "audiocraft==$AUDIOCRAFT_VERSION" -d "$tmp/sdist"
echo "$AUDIOCRAFT_SHA256  $tmp/sdist/audiocraft-$AUDIOCRAFT_VERSION.tar.gz" | sha256sum -c --quiet || {
  echo "fetch_gpu_wheels: audiocraft-$AUDIOCRAFT_VERSION.tar.gz does not match the sha256 of scripts/setup_env.sh" >&2
  exit 1; }
tar xzf "$tmp/sdist/audiocraft-$AUDIOCRAFT_VERSION.tar.gz" -C "$tmp"
"$py" -m pip wheel --quiet --no-deps "$tmp/audiocraft-$AUDIOCRAFT_VERSION" -w "$out"
cp -r "$tmp/audiocraft-$AUDIOCRAFT_VERSION/config" "$out/audiocraft_config"

# what travels: the working tree (tracked + untracked-not-ignored files) and the carried wheels
tree=$(cd "$root" && git ls-files -z -co --exclude-standard | xargs -0 -r stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}')
wheels=$(du -sb "$out" | cut -f1)
ls -l "$out" | awk 'NR > 1 {printf "  %8.1f kB  %s\n", $5 / 1024, $9}'
awk -v t="$tree" -v w="$wheels" -v limit="$LIMIT_MB" 'BEGIN {
  total = (t + w) / 1048576
  printf "fetch_gpu_wheels: wheels %.1f MiB + working tree %.1f MiB = %.1f MiB (limit %d MiB)\n", w / 1048576, t / 1048576, total, limit
  exit total < limit ? 0 : 1 }' || { echo "fetch_gpu_wheels: over the limit of what travels" >&2; exit 1; }
