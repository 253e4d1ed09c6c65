#!/usr/bin/env bash
# Build (or reuse) the environment of one stack and expose it as .venv/ (.venv-STACK/ for the others).
#
# The heavy part (torch, CUDA libraries, audiocraft) lives in a cache outside the checkout, keyed by the lock
# file's hash, so a second setup only relinks. The checkout's .venv is a thin venv that layers that cached
# environment under an editable install of this checkout, so several checkouts can share one cache.
set -euo pipefail

stack=${1:-pinned}
root=$(cd "$(dirname "$0")/.." && pwd)
lock="$root/requirements/$stack.lock.txt"
[ -f "$lock" ] || { echo "setup: unknown stack '$stack' (no $lock); use pinned or latest" >&2; exit 2; }

AUDIOCRAFT_VERSION=1.3.0
AUDIOCRAFT_SHA256=d82ade3eb4f934ee1adb438ae687a2bf59d33ca4a20039beab072548c038ac80
NEED_GB=${MMD_AUDIOCRAFT_NEED_GB:-7}
PY=${PYTHON:-python3}
cache=${MMD_AUDIOCRAFT_CACHE:-$HOME/.cache/mmd-audiocraft}  # the rule the demo, corpus and dset configs use

"$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || {
  echo "setup: the lock files are for CPython 3.11; '$PY' is $("$PY" -V 2>&1). Set PYTHON=python3.11." >&2; exit 2; }

RECIPE=1  # bump when the way an environment is built changes, so caches rebuild
key=$( (cat "$lock"; echo "$RECIPE $AUDIOCRAFT_SHA256 $("$PY" -V 2>&1)") | sha256sum | cut -c1-16)
env="$cache/envs/$stack-$key"
src="$cache/src/audiocraft-$AUDIOCRAFT_VERSION"
[ "$stack" = pinned ] && venv="$root/.venv" || venv="$root/.venv-$stack"

free_gb() { mkdir -p "$cache"; df -Pk "$cache" | awk 'NR==2 {printf "%d", $4 / 1048576}'; }

fetch_audiocraft() {  # the sdist carries config/, which the wheel lacks
  exec 9>"$cache/src.lock" && flock 9  # two stacks may build at once
  [ -f "$src/.complete" ] && { flock -u 9; return; }
  rm -rf "$src" && mkdir -p "$src" "$cache/dl"
  local dl; dl=$(mktemp -d -p "$cache/dl")
  "$PY" -m pip download --quiet --no-deps --no-binary :all: "audiocraft==$AUDIOCRAFT_VERSION" -d "$dl" 2>/dev/null
  echo "$AUDIOCRAFT_SHA256  $dl/audiocraft-$AUDIOCRAFT_VERSION.tar.gz" | sha256sum -c --quiet || {
    echo "setup: audiocraft-$AUDIOCRAFT_VERSION.tar.gz does not match the recorded sha256" >&2; exit 1; }
  tar xzf "$dl/audiocraft-$AUDIOCRAFT_VERSION.tar.gz" -C "$src" --strip-components=1
  rm -rf "$dl"
  touch "$src/.complete"
  flock -u 9
}

build_env() {
  local have; have=$(free_gb)
  if [ "$have" -lt "$NEED_GB" ]; then
    echo "setup: only ${have} GB free under $cache; the '$stack' stack needs about ${NEED_GB} GB." >&2
    echo "setup: free some space or point MMD_AUDIOCRAFT_CACHE at a larger disk, then rerun." >&2
    exit 1
  fi
  echo "setup: building the '$stack' environment in $env (a few minutes, about ${NEED_GB} GB)"
  rm -rf "$env"
  "$PY" -m venv "$env"
  "$env/bin/python" -m pip install --quiet --upgrade "pip>=24" "setuptools>=69" wheel
  "$env/bin/python" -m pip install --quiet --no-cache-dir --no-deps --require-hashes -r "$lock"
  fetch_audiocraft
  "$env/bin/python" -m pip install --quiet --no-deps --no-build-isolation -e "$src" >"$env/audiocraft-install.log" 2>&1 \
    || { cat "$env/audiocraft-install.log" >&2; exit 1; }
  "$env/bin/python" -c "import audiocraft, torch, torchaudio, xformers, dora, flashy"
  touch "$env/.complete"  # written last: an env without it is rebuilt from scratch
}

system_deps() {  # audiocraft writes audio samples (the generate stage) by piping to ffmpeg
  command -v ffmpeg >/dev/null && return
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing ffmpeg (Debian package; audiocraft writes audio through it)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ffmpeg \
      >/dev/null || { echo "setup: could not install ffmpeg with apt-get; install it, then rerun" >&2; exit 1; }
  else
    echo "setup: ffmpeg is missing (audiocraft needs it to write audio); install it, e.g. apt-get install ffmpeg" >&2
    exit 1
  fi
}

system_deps
[ -f "$env/.complete" ] || build_env

# The thin per-checkout venv: the cached env's site-packages (its .pth files included) + this checkout.
site=$("$env/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
# The marker names the cached env and the hash of pyproject.toml: a changed package layout reinstalls the checkout.
marker="$env $(sha256sum "$root/pyproject.toml" | cut -c1-16)"
if [ ! -f "$venv/.mmd-env" ] || [ "$(cat "$venv/.mmd-env")" != "$marker" ]; then
  rm -rf "$venv"
  "$PY" -m venv --without-pip "$venv"
  vsite=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  echo "import site; site.addsitedir('$site')" > "$vsite/_mmd_audiocraft_stack.pth"
  "$venv/bin/python" -m pip install --quiet --no-deps --no-build-isolation -e "$root" >"$venv/install.log" 2>&1 || {
    cat "$venv/install.log" >&2; exit 1; }
  for tool in dora pytest; do  # console scripts of the cached env, bound to this venv's python
    printf '#!/bin/sh\nexec "$(dirname "$0")/python" -m %s "$@"\n' "$tool" > "$venv/bin/$tool"
    chmod +x "$venv/bin/$tool"
  done
  ln -s "$env/bin/ruff" "$venv/bin/ruff"  # a native binary (its `python -m ruff` would find our shim)
  echo "$marker" > "$venv/.mmd-env"
fi
echo "setup: $(basename "$venv") -> $env ready"
