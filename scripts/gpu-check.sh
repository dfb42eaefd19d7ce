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
# under 8 minutes for the checks before the packed-trials section (each executable is
# limited to 4), then about 4 more for it (packed trials: parity runs with the tests
# above, kernels-packed and worker-cuda_packed; then throughput for G = 1, 4, 16, 64
# packed vs the same trials on G slots, the memory of a packed trial, the largest G
# that fits, and PyTorch's sequential vs vmap grid, each step under its own timeout).
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

# Issue #15, packed trials on one GPU (the parity tests ran above: kernels-packed holds
# every packed kernel to its single twin, worker-cuda_packed a whole group's per-epoch
# losses to 6 significant digits of each trial alone).
packed_trials() {
    local run_dir=$1 g
    if [[ ! -f $run_dir/worker ]]; then
        note "packed trials: skipped, no $bundle/worker"
        return
    fi
    # Aggregate training samples/s: G trials of 3072-512-256-10 ReLU (seeds 0..G-1)
    # packed in lockstep, against the same G trials alone on G slots (a stream and a
    # cuBLAS handle each); batch 128, 20,000 samples, best of 2 epochs. The packed run
    # also prints the device memory the group held, per trial, and how many such
    # trials the free memory had room for.
    for g in 1 4 16; do
        note "packed trials: worker bench --pack $g --slots $g --cases relu"
        timeout 120 "$run_dir/worker" bench --device cuda --cases relu --n 20000 --epochs 2 \
            --pack "$g" --slots "$g" || failures+=("worker bench --pack $g")
    done
    note "packed trials: worker bench --pack 64 --slots 64 --cases relu (JSON)"
    local fits=0
    if timeout 150 "$run_dir/worker" bench --device cuda --cases relu --n 20000 --epochs 2 \
        --pack 64 --slots 64 --json >"$run_dir/pack-64.json"; then
        fits=$(python3 - "$run_dir/pack-64.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
r = doc["results"][0]
best = lambda x: max(x["samples_per_s"])
mib = lambda b: "?" if b is None else f"{b / 2**20:.1f} MiB"
print(f"relu packed G=64: {best(r['packed']):.0f} samples/s; {r['alone']['how']}: "
      f"{best(r['alone']):.0f} samples/s; packed/alone {best(r['packed']) / best(r['alone']):.2f}x",
      file=sys.stderr)
print(f"GPU memory held by the group: {mib(r['memory_bytes'])}, per packed trial "
      f"{mib(r['memory_per_trial_bytes'])} (estimated {mib(r['estimated_per_trial_bytes'])}); "
      f"room for about {r['trials_that_fit']} such trials", file=sys.stderr)
print(r["trials_that_fit"] or 0)
PY
        )
    else
        failures+=("worker bench --pack 64")
    fi
    note "packed trials: the same with batch norm + dropout, G = 16"
    timeout 120 "$run_dir/worker" bench --device cuda --cases bn-dropout --n 20000 --epochs 2 \
        --pack 16 --slots 16 || failures+=("worker bench --pack 16 bn-dropout")
    # The largest group that fits: the estimate above (free memory / memory per trial,
    # measured with 20,000 samples on the device) is verified by training a group of 90%
    # of it for one epoch of 2,000 samples (its own data is smaller, so it fits if the
    # estimate holds); if that fails, half of it is tried.
    note "packed trials: the largest G that fits (estimate: $fits)"
    local g largest=0
    for g in $((fits * 9 / 10)) $((fits * 9 / 20)); do
        [[ $g -ge 1 ]] || continue
        if timeout 150 "$run_dir/worker" bench --device cuda --cases relu --n 2000 --epochs 1 \
            --pack "$g" --slots 0 >"$run_dir/pack-big.log" 2>&1; then
            largest=$g
            sed "s/^/G=$g: /" "$run_dir/pack-big.log"
            break
        fi
        echo "G=$g: did not fit or did not finish in 150 s:"
        tail -n 3 "$run_dir/pack-big.log"
    done
    echo "largest packed group trained: G=$largest (3072-512-256-10 ReLU, SGD momentum)"
    [[ $largest -gt 0 ]] || failures+=("packed: the largest-G check")
    # PyTorch on the same grid, for comparison (informative only): 96 trials, one epoch
    # of 20,000 samples each way (sequential, vmap over same-architecture stacks); the
    # script's default, 40 epochs of 45,000, is far too long for this check.
    note "packed trials: PyTorch's 96-trial grid, sequential vs vmap (1 epoch, informative)"
    timeout 200 python3 "$bundle/pytorch_vmap_grid.py" --device cuda --epochs 1 --n 20000 \
        || echo "PyTorch grid script failed or timed out (only informative)"
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

    packed_trials "$run_dir"

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
