#!/usr/bin/env bash
# Builds, here, what scripts/gpu-check.sh runs on a GPU machine that has no Rust
# toolchain: the release test executables of the kernels and worker crates and the
# `worker` binary, copied with stable
# names into the git-ignored folder .gpu/ (or the folder given), stripped of debug
# info to travel light, with a MANIFEST saying what they were built from.
#
#   scripts/build-gpu-bundle.sh            # -> .gpu/kernels-lib, kernels-nvrtc, ...
#   scripts/build-gpu-bundle.sh /tmp/bundle
#
# The executables link only glibc dynamically (CUDA libraries are opened at run time),
# so the GPU machine's glibc must be at least the newest version the MANIFEST lists.
set -euo pipefail

cd "$(dirname "$0")/.."
out=${1:-.gpu}
packages=(-p gradsweep-kernels -p gradsweep-worker -p gradsweep-tests)

echo "build-gpu-bundle: cargo test --release --no-run ${packages[*]}" >&2
json=$(mktemp)
trap 'rm -f "$json"' EXIT
cargo test --release --no-run --message-format=json "${packages[@]}" >"$json"

rm -rf "$out"
mkdir -p "$out"
# One line per test executable: its path, then its stable name <package>-<target>
# ("kernels-lib" for a library's unit tests, "kernels-parity" for tests/parity.rs).
python3 - "$json" >"$out/.list" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    try:
        msg = json.loads(line)
    except ValueError:
        continue
    if msg.get("reason") != "compiler-artifact" or not msg.get("executable"):
        continue
    if not msg.get("profile", {}).get("test"):
        continue
    target = msg["target"]
    # package_id: "path+file:///.../kernels#gradsweep-kernels@0.1.0" (cargo >= 1.77)
    # or "gradsweep-kernels 0.1.0 (path+file:///.../kernels)" (older).
    pid = msg["package_id"]
    pkg = pid.split("#")[-1].split("@")[0] if "#" in pid else pid.split()[0]
    pkg = pkg.removeprefix("gradsweep-")
    kind = target["kind"][0]
    name = "lib" if kind == "lib" else target["name"]
    print(msg["executable"], f"{pkg}-{name}")
PY
if [[ ! -s $out/.list ]]; then
    echo "build-gpu-bundle: cargo reported no test executable" >&2
    exit 1
fi
# The executables that exercise the GPU (the CPU-only ones run in CI; some of them read
# files at build-time paths that do not exist on the GPU machine).
wanted=" kernels-lib kernels-nvrtc kernels-parity kernels-packed worker-lib worker-cuda_trial worker-cuda_packed "
mkdir -p "$out/e2e/deps"
while read -r exe name; do
    if [[ $name == tests-sweep ]]; then
        # The end-to-end tests find `coordinator` and `worker` one folder above
        # themselves, as in target/release/deps.
        cp "$exe" "$out/e2e/deps/sweep" && strip --strip-debug "$out/e2e/deps/sweep"
        continue
    fi
    [[ $wanted == *" $name "* ]] || continue
    cp "$exe" "$out/$name"
    strip --strip-debug "$out/$name" 2>/dev/null || true
    echo "build-gpu-bundle: $out/$name ($(du -h "$out/$name" | cut -f1))" >&2
done <"$out/.list"
rm -f "$out/.list"

# The worker binary, for the GPU benchmarks (single trials, packed groups) and a trial
# on the GPU, and the PyTorch scripts they are compared with.
cargo build --release -p gradsweep-worker --bin worker -p gradsweep-coordinator --bin coordinator >&2
cp target/release/worker "$out/worker" && strip --strip-debug "$out/worker"
cp "$out/worker" "$out/e2e/worker"
cp target/release/coordinator "$out/e2e/coordinator" && strip --strip-debug "$out/e2e/coordinator"
cp scripts/pytorch_gpu_bench.py "$out/pytorch_gpu_bench.py"
cp scripts/pytorch_vmap_grid.py "$out/pytorch_vmap_grid.py"
cp examples/deep-sigmoid-bn.toml "$out/deep-sigmoid-bn.toml"

cp scripts/gpu-check.sh "$out/gpu-check.sh"
{
    echo "commit:  $(git rev-parse HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (uncommitted changes)')"
    echo "built:   $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -srm)"
    echo "rustc:   $(rustc --version)"
    echo "glibc:   needs $(for f in "$out"/*; do [[ -x $f && $f != *.sh ]] && objdump -T "$f" 2>/dev/null; done \
        | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -n 1)"
} >"$out/MANIFEST"
cat "$out/MANIFEST" >&2
echo "build-gpu-bundle: $(du -sh "$out" | cut -f1) in $out" >&2
