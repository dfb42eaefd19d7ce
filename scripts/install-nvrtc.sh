#!/usr/bin/env bash
# Installs NVRTC (CUDA 13, the `nvidia-cuda-nvrtc` wheel from PyPI) into a Python
# virtual environment under DIR, for the NVRTC compile test (kernels/tests/nvrtc.rs),
# which needs no GPU or driver. Prints, on stdout and alone, the folder to put on
# LD_LIBRARY_PATH; progress goes to stderr. Running it again reuses the environment.
#
#   export LD_LIBRARY_PATH="$(scripts/install-nvrtc.sh /tmp/nvrtc):${LD_LIBRARY_PATH:-}"
#   GRADSWEEP_REQUIRE_NVRTC=1 cargo test -p gradsweep-kernels --test nvrtc
#
# Needs python3 with the venv module (Debian: python3-venv) and access to PyPI.
set -euo pipefail

if [[ $# -ne 1 || $1 == -h || $1 == --help ]]; then
    echo "usage: $0 DIR   (DIR: where to create the virtual environment)" >&2
    exit 2
fi
dir=$1

find_lib() {
    [[ -d $dir ]] || return 0
    { find "$dir" -name 'libnvrtc.so.13*' -path '*/nvidia/*' -print 2>/dev/null || true; } | sort | head -n 1
}

lib=$(find_lib)
if [[ -z $lib ]]; then
    echo "install-nvrtc: creating $dir and installing nvidia-cuda-nvrtc 13.x" >&2
    python3 -m venv "$dir" >&2
    "$dir/bin/pip" install --quiet --disable-pip-version-check 'nvidia-cuda-nvrtc==13.*' >&2
    lib=$(find_lib)
fi
if [[ -z $lib ]]; then
    echo "install-nvrtc: no libnvrtc.so.13 under $dir after installing nvidia-cuda-nvrtc" >&2
    exit 1
fi
libdir=$(dirname "$lib")
# NVRTC loads its builtins library from its own folder at compile time.
if ! compgen -G "$libdir/libnvrtc-builtins.so.13*" >/dev/null; then
    echo "install-nvrtc: $libdir has no libnvrtc-builtins.so.13*; compiles will fail" >&2
    exit 1
fi
# cudarc looks for libnvrtc.so.13 among other names; the wheel ships exactly that one.
if [[ ! -e $libdir/libnvrtc.so.13 ]]; then
    echo "install-nvrtc: $libdir has no file named libnvrtc.so.13" >&2
    exit 1
fi
echo "install-nvrtc: $(basename "$lib") and its builtins in $libdir" >&2
echo "$libdir"
