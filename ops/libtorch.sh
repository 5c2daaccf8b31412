#!/usr/bin/env bash
# Provides libtorch 2.11.0 (the version tch 0.24 is built against) for the
# neural-network family, cached outside the clone, and prints the exports
# that build and run it:
#
#   eval "$(ops/libtorch.sh)"        # CUDA where a GPU driver answers, else CPU
#   eval "$(ops/libtorch.sh cpu)"    # CPU only, even on a GPU host
#   eval "$(ops/libtorch.sh cuda)"   # link libtorch_cuda (needs the CUDA wheels)
#   cargo test -p tracseq-learn --features torch
#
# Prints LIBTORCH, LD_LIBRARY_PATH, TRACSEQ_TORCH_SITE (the site-packages
# holding torch, for PyTorch comparisons) and TRACSEQ_TORCH_MODE; progress
# goes to stderr. Needs only python3 with pip (no venv module, no root).
#
# Where libtorch comes from:
# - a python3 that already imports torch 2.11.0 (the GPU hosts' image), used
#   in place;
# - else the PyPI wheel, installed once with `pip --target` into
#   $TRACSEQ_CACHE/libtorch-2.11.0 (default ~/.cache/tracseq-ml). The Linux
#   wheel is a CUDA 13 build; for CPU use it is installed without its ~3 GB
#   of CUDA dependencies except the two libtorch_cpu.so itself loads
#   (libcudart.so.13, libcupti.so.13, at the versions cuda-toolkit 13.0.2
#   pins). Set TRACSEQ_TORCH_WHEEL to a downloaded torch wheel to skip its
#   530 MB download.
#
# The LIBTORCH directory this prints is a small tree of links: in CPU mode
# its lib/ lacks libtorch_cuda.so, because torch-sys links libtorch_cuda
# whenever that file is present, and that library needs cuBLAS, cuDNN and the
# rest at load time.
set -euo pipefail

VERSION=2.11.0
CUDART=13.0.96 # nvidia-cuda-runtime, as cuda-toolkit[cudart]==13.0.2 pins it
CUPTI=13.0.85  # nvidia-cuda-cupti, as cuda-toolkit[cupti]==13.0.2 pins it
CACHE="${TRACSEQ_CACHE:-$HOME/.cache/tracseq-ml}"
ROOT="$CACHE/libtorch-$VERSION"
PYTHON="${PYTHON:-python3}"

log() { echo "libtorch.sh: $*" >&2; }

# The site-packages of an installed torch $VERSION, if python3 has one.
system_site() {
  "$PYTHON" - "$VERSION" 2>/dev/null <<'EOF' || true
import pathlib, sys
import torch
if torch.__version__.split("+")[0] == sys.argv[1]:
    print(pathlib.Path(torch.__file__).resolve().parent.parent)
EOF
}

pip_target() {
  local target=$1
  shift
  "$PYTHON" -m pip install --disable-pip-version-check --no-warn-script-location \
    --target "$target" "$@" >&2
}

# Installs into $ROOT/<mode>/site-packages once; a marker records success so a
# half-finished install (interrupted download) is redone, not trusted.
install_wheels() {
  local mode=$1 dir="$ROOT/$1"
  if [ -f "$dir/.complete" ]; then
    echo "$dir/site-packages"
    return
  fi
  rm -rf "$dir"
  mkdir -p "$dir"
  local torch="torch==$VERSION"
  if [ -n "${TRACSEQ_TORCH_WHEEL:-}" ]; then
    torch="$TRACSEQ_TORCH_WHEEL"
  fi
  if [ "$mode" = cpu ]; then
    log "installing torch $VERSION (CPU use) into $dir (once; 530 MB)"
    # One pip call: --target skips a top-level folder (nvidia/) that already
    # exists, so the two nvidia wheels must land together.
    pip_target "$dir/site-packages" --no-deps "$torch" \
      "nvidia-cuda-runtime==$CUDART" "nvidia-cuda-cupti==$CUPTI"
  else
    log "installing torch $VERSION with its CUDA 13 libraries into $dir (once; about 3 GB)"
    pip_target "$dir/site-packages" "$torch"
  fi
  touch "$dir/.complete"
  echo "$dir/site-packages"
}

# lib dirs of the nvidia-* wheels next to torch (cu13 wheels keep theirs in
# nvidia/cu13/lib, older ones in nvidia/<name>/lib).
nvidia_libs() {
  local site=$1
  { find "$site/nvidia" -mindepth 1 -maxdepth 3 -type d -name lib 2>/dev/null || true; } | sort | paste -sd: -
}

mode=${1:-auto}
case "$mode" in
  auto)
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
      mode=cuda
    else
      mode=cpu
    fi
    ;;
  cpu | cuda) ;;
  *)
    echo "usage: $0 [auto|cpu|cuda]" >&2
    exit 2
    ;;
esac

site=$(system_site)
if [ -n "$site" ]; then
  log "using the torch $VERSION that $PYTHON imports, in $site"
else
  site=$(install_wheels "$mode")
fi
torch_dir="$site/torch"
for f in libtorch_cpu.so libc10.so libtorch.so libgomp.so.1 libshm.so; do
  if [ ! -e "$torch_dir/lib/$f" ]; then
    log "$torch_dir/lib/$f is missing; remove $ROOT to reinstall"
    exit 1
  fi
done
if [ "$mode" = cuda ] && [ ! -e "$torch_dir/lib/libtorch_cuda.so" ]; then
  log "the torch in $site has no libtorch_cuda.so (a CPU-only build); use: $0 cpu"
  exit 1
fi

# The link tree is rebuilt each time (cheap) so it always matches $site.
libtorch="$ROOT/link-$mode"
rm -rf "$libtorch.tmp"
mkdir -p "$libtorch.tmp/lib"
ln -s "$torch_dir/include" "$libtorch.tmp/include"
libs=(libtorch_cpu.so libc10.so libtorch.so libgomp.so.1 libshm.so)
if [ "$mode" = cuda ]; then
  libs+=(libtorch_cuda.so libc10_cuda.so)
fi
for f in "${libs[@]}"; do
  ln -s "$torch_dir/lib/$f" "$libtorch.tmp/lib/$f"
done
rm -rf "$libtorch"
mv "$libtorch.tmp" "$libtorch"

path="$torch_dir/lib"
extra=$(nvidia_libs "$site")
if [ -n "$extra" ]; then
  path="$path:$extra"
fi
echo "export LIBTORCH=$libtorch"
echo "export LD_LIBRARY_PATH=$path\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
echo "export TRACSEQ_TORCH_SITE=$site"
echo "export TRACSEQ_TORCH_MODE=$mode"
