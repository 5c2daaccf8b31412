#!/usr/bin/env bash
# Provides what the LightGBM and XGBoost families need to build their bundled
# C++ sources, and prints the exports that use it:
#
#   eval "$(ops/native-deps.sh)"
#   cargo build
#
# - cmake >= 3.28 and ninja: LightGBM 4.6's CMakeLists needs cmake 3.28
#   (Debian 12 ships 3.25) and xgboost's `local_build` generates for Ninja.
#   Both come from PyPI (the `cmake` and `ninja` packages), installed once
#   with `pip --target` into $TRACSEQ_CACHE/native-tools (default
#   ~/.cache/tracseq-ml), outside the clone.
# - libclang (bindgen generates both C API bindings) and a C++ compiler with
#   OpenMP: Debian's libclang-dev and g++, installed with apt-get when absent.
#
# Prints CMAKE (read by the `cmake` crate), PATH (ninja), LIBCLANG_PATH and
# XGBOOST_LIB_DIR; progress goes to stderr.
#
# XGBOOST_LIB_DIR: the `xgb` crate always enables xgboost_lib-sys's default
# `use_prebuilt_xgb` feature (its dependency does not turn default features
# off), whose build script downloads libxgboost.so from GitHub unless
# XGBOOST_LIB_DIR is set, and offline that fails the build. We build XGBoost
# from source (`local_build`), so it points at an empty directory: the
# download is skipped and the library built from source is the only one the
# linker finds. (Not in .cargo/config.toml: cargo fingerprints `[env]`
# values, and a path relative to the clone would rebuild every crate in
# each new clone.)
set -euo pipefail

CMAKE_VERSION=3.31.6
NINJA_VERSION=1.11.1.4
CACHE="${TRACSEQ_CACHE:-$HOME/.cache/tracseq-ml}"
ROOT="$CACHE/native-tools"
PYTHON="${PYTHON:-python3}"

log() { echo "native-deps.sh: $*" >&2; }

apt_install() {
  if ! command -v apt-get >/dev/null 2>&1; then
    log "cannot install $*: no apt-get; install them with your package manager"
    exit 1
  fi
  log "installing $* with apt-get"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

libclang_dir() {
  # The newest libclang.so the system has (bindgen loads it at build time).
  local lib
  lib=$(ls -1 /usr/lib/llvm-*/lib/libclang.so 2>/dev/null | sort -V | tail -n 1 || true)
  [ -n "$lib" ] && dirname "$lib"
}

missing=()
command -v g++ >/dev/null 2>&1 || missing+=(g++)
[ -n "$(libclang_dir)" ] || missing+=(libclang-dev)
"$PYTHON" -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"

marker="$ROOT/.installed-cmake-$CMAKE_VERSION-ninja-$NINJA_VERSION"
if [ ! -f "$marker" ]; then
  log "installing cmake $CMAKE_VERSION and ninja $NINJA_VERSION from PyPI into $ROOT"
  rm -rf "$ROOT"
  mkdir -p "$ROOT"
  "$PYTHON" -m pip install --disable-pip-version-check --no-warn-script-location \
    --break-system-packages --target "$ROOT" \
    "cmake==$CMAKE_VERSION" "ninja==$NINJA_VERSION" >&2 2>/dev/null ||
    "$PYTHON" -m pip install --disable-pip-version-check --no-warn-script-location \
      --target "$ROOT" "cmake==$CMAKE_VERSION" "ninja==$NINJA_VERSION" >&2
  touch "$marker"
fi

# cmake's console script needs the package on PYTHONPATH; its real binary
# (beside ctest and cpack) does not. ninja's wheel installs the binary itself.
cmake_dir="$ROOT/cmake/data/bin"
[ -x "$cmake_dir/cmake" ] || { log "cmake binary missing in $cmake_dir"; exit 1; }
[ -x "$ROOT/bin/ninja" ] || { log "ninja binary missing in $ROOT/bin"; exit 1; }
mkdir -p "$ROOT/tools"
ln -sf "$ROOT/bin/ninja" "$ROOT/tools/ninja"
log "$("$cmake_dir/cmake" --version | head -n 1), ninja $("$ROOT/tools/ninja" --version)"

echo "export CMAKE='$cmake_dir/cmake'"
echo "export PATH='$cmake_dir:$ROOT/tools':\"\$PATH\""
echo "export LIBCLANG_PATH='$(libclang_dir)'"
mkdir -p "$ROOT/no-prebuilt-xgboost"
echo "export XGBOOST_LIB_DIR='$ROOT/no-prebuilt-xgboost'"
