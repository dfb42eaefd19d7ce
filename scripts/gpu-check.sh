#!/usr/bin/env bash
# The GPU check: runs, on a machine with an NVIDIA GPU, the test executables that
# scripts/build-gpu-bundle.sh built elsewhere (this machine needs no Rust toolchain and
# no network). Every CUDA test must really run: GRADSWEEP_REQUIRE_CUDA=1 and
# GRADSWEEP_REQUIRE_NVRTC=1 turn a "skipped" into a failure.
#
#   scripts/gpu-check.sh [BUNDLE]     # BUNDLE: the folder of executables, default .gpu
#
# It finds NVRTC and cuBLAS (CUDA 13) in a CUDA toolkit or in the nvidia-* wheels that
# PyTorch installs, and puts their folders on LD_LIBRARY_PATH. With $OUT set, the whole
# output is also written to $OUT/log. Exits non-zero when any step failed. Budget: well
# under 8 minutes (each executable is limited to 4).
set -uo pipefail

bundle=${1:-.gpu}
step_timeout=240

failures=()
note() { printf '\n== %s\n' "$*"; }

# Folders holding a file that matches $1 (a glob), best first: already-set paths, the
# loader cache, CUDA toolkits, then Python's site-packages (PyTorch's nvidia-* wheels).
lib_dirs_for() {
    local pattern=$1 d
    {
        tr ':' '\n' <<<"${LD_LIBRARY_PATH:-}"
        ldconfig -p 2>/dev/null | awk -v p="${pattern%%\**}" 'index($1, p) == 1 { print $NF }' | xargs -r -n1 dirname
        for d in /usr/local/cuda/lib64 /usr/local/cuda-13*/lib64 /usr/local/cuda*/targets/*/lib /usr/lib/x86_64-linux-gnu; do
            echo "$d"
        done
        python3 - 2>/dev/null <<'PY'
import site, sys
dirs = list(getattr(site, "getsitepackages", lambda: [])()) + [site.getusersitepackages()] + sys.path
print("\n".join(d for d in dirs if d))
PY
    } | while read -r d; do
        [[ -d $d ]] || continue
        find "$d" -maxdepth 4 -name "$pattern" -printf '%h\n' 2>/dev/null
    done | awk '!seen[$0]++'
}

# Puts the first folder holding $1 on LD_LIBRARY_PATH; says which file it found.
use_lib() {
    local pattern=$1 what=$2 dir
    dir=$(lib_dirs_for "$pattern" | head -n 1)
    if [[ -z $dir ]]; then
        echo "$what: no $pattern found (toolkit, loader cache, Python wheels)"
        return 1
    fi
    echo "$what: $(cd "$dir" && ls $pattern | tr '\n' ' ')in $dir"
    case ":${LD_LIBRARY_PATH:-}:" in
        *":$dir:"*) ;;
        *) export LD_LIBRARY_PATH="$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ;;
    esac
}

main() {
    note "gpu-check on $(hostname) at $(date -u +%Y-%m-%dT%H:%M:%SZ), bundle $bundle"
    if [[ -f $bundle/MANIFEST ]]; then cat "$bundle/MANIFEST"; fi
    echo "glibc here: $(ldd --version 2>/dev/null | head -n 1)"

    note "GPU"
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=index,name,driver_version,memory.total,compute_cap --format=csv,noheader \
            || failures+=("nvidia-smi")
        nvidia-smi -L || true
    else
        echo "nvidia-smi: not found"
        failures+=("nvidia-smi")
    fi

    note "CUDA libraries"
    use_lib 'libnvrtc.so.13*' NVRTC \
        || use_lib 'libnvrtc.so.12*' "NVRTC (CUDA 12: not what the kernels are tested with)" \
        || failures+=("NVRTC library")
    use_lib 'libnvrtc-builtins.so.13*' "NVRTC builtins" || true
    use_lib 'libcublas.so.13*' cuBLAS \
        || use_lib 'libcublas.so.12*' "cuBLAS (CUDA 12)" \
        || failures+=("cuBLAS library")
    echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
    timeout 60 python3 -c 'import torch; print("PyTorch", torch.__version__, "CUDA", torch.version.cuda, "GPU available:", torch.cuda.is_available())' 2>/dev/null \
        || echo "PyTorch: not importable (only informative)"

    note "tests"
    # Run copies, so that a bundle that lost its execute bits (or sits on a read-only
    # or noexec mount) still runs.
    local run_dir exe name found=0
    run_dir=$(mktemp -d)
    for exe in "$bundle"/*; do
        name=$(basename "$exe")
        [[ -f $exe && $name != *.sh && $name != *.py && $name != *.toml && $name != MANIFEST ]] || continue
        cp "$exe" "$run_dir/$name" && chmod +x "$run_dir/$name"
    done
    for exe in "$run_dir"/*; do
        [[ -f $exe && $(basename "$exe") != worker ]] || continue
        found=1
        name=$(basename "$exe")
        note "test $name"
        if ldd "$exe" 2>&1 | grep -q 'not found'; then
            ldd "$exe"
        fi
        GRADSWEEP_REQUIRE_CUDA=1 GRADSWEEP_REQUIRE_NVRTC=1 RUST_BACKTRACE=1 \
            timeout "$step_timeout" "$exe" --show-output
        local rc=$?
        if [[ $rc -ne 0 ]]; then
            echo "FAILED: $name (exit $rc$([[ $rc -eq 124 ]] && echo ', timed out'))"
            failures+=("$name")
        fi
    done
    if [[ $found -eq 0 ]]; then
        echo "no test executables in $bundle: run scripts/build-gpu-bundle.sh first"
        failures+=("no tests")
    fi

    note "end to end: a coordinator and workers training on the GPU (GRADSWEEP_E2E_DEVICE=cuda:0)"
    if [[ -d $bundle/e2e ]]; then
        local e2e
        e2e=$(mktemp -d)
        cp -r "$bundle/e2e/." "$e2e/" && chmod +x "$e2e/coordinator" "$e2e/worker" "$e2e/deps/sweep"
        GRADSWEEP_E2E_DEVICE=cuda:0 RUST_BACKTRACE=1 timeout "$step_timeout" "$e2e/deps/sweep" \
            || failures+=("end-to-end on the GPU")
        rm -rf "$e2e"
    else
        echo "skipped: no $bundle/e2e"
    fi

    note "a trial on the GPU: worker train deep-sigmoid-bn.toml --device cuda"
    if [[ -f $run_dir/worker ]]; then
        timeout "$step_timeout" "$run_dir/worker" train "$bundle/deep-sigmoid-bn.toml" --device cuda \
            || failures+=("worker train --device cuda")
    fi

    # GPU benchmark: our training throughput and PyTorch's on the same GPU, same shapes
    # (3072-512-256-10 ReLU; + batch norm + dropout 0.2; 3072-(256x5)-10 sigmoid),
    # batch 128, SGD momentum 0.9, 45,000 samples, best of 3 epochs each.
    note "benchmark: worker bench --device cuda"
    if [[ -f $run_dir/worker ]]; then
        timeout "$step_timeout" "$run_dir/worker" bench --device cuda --epochs 3 \
            || failures+=("worker bench")
        note "benchmark: PyTorch on the same GPU"
        local args
        for args in "--hidden 512,256 --act relu" "--hidden 512,256 --act relu --bn --dropout 0.2" \
            "--hidden 256,256,256,256,256 --act sigmoid"; do
            echo "pytorch_gpu_bench.py $args"
            # shellcheck disable=SC2086
            timeout 120 python3 "$bundle/pytorch_gpu_bench.py" --epochs 3 $args \
                || echo "PyTorch benchmark failed (only informative)"
        done
    else
        echo "skipped: no $bundle/worker"
    fi

    rm -rf "$run_dir"

    note "summary"
    if [[ ${#failures[@]} -eq 0 ]]; then
        echo "gpu-check: all passed"
        return 0
    fi
    echo "gpu-check: FAILED: ${failures[*]}"
    return 1
}

if [[ -n ${OUT:-} ]]; then
    mkdir -p "$OUT"
    main 2>&1 | tee "$OUT/log"
else
    main 2>&1
fi
