#!/usr/bin/env bash
# Side-by-side CPU training throughput: `worker bench` and the PyTorch anchor script,
# alternated round by round (A B A B …) so that drift in the machine's speed hits
# both, with each round's ratio and the median ratio per configuration.
#
#   PYTHON=/path/to/venv/bin/python scripts/bench-cpu-vs-pytorch.sh [ROUNDS] [THREADS]
#
# PYTHON must import torch (a throw-away venv: python3 -m venv /tmp/t && /tmp/t/bin/pip
# install torch numpy). The anchor script is ../shared/bench/pytorch_mlp_bench.py
# unless ANCHOR says otherwise. Builds the worker in release first.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
threads=${2:-2}
python=${PYTHON:-python3}
anchor=${ANCHOR:-../shared/bench/pytorch_mlp_bench.py}
[[ -f $anchor ]] || { echo "no PyTorch anchor script at $anchor (set ANCHOR)" >&2; exit 2; }
cargo build --release -q -p gradsweep-worker
worker=target/release/worker

declare -A torch_args=(
    [relu]="--hidden 512,256 --act relu"
    [bn-dropout]="--hidden 512,256 --act relu --bn --dropout 0.2"
    [deep-sigmoid]="--hidden 256,256,256,256,256 --act sigmoid"
)
echo "threads $threads, $rounds rounds, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
for case in relu bn-dropout deep-sigmoid; do
    ratios=()
    for ((r = 1; r <= rounds; r++)); do
        ours=$("$worker" bench --device cpu --threads "$threads" --cases "$case" --epochs 2 --json \
            | "$python" -c 'import json,sys; print(round(max(json.load(sys.stdin)["results"][0]["samples_per_s"])))')
        # shellcheck disable=SC2086
        theirs=$("$python" "$anchor" --threads "$threads" --epochs 2 ${torch_args[$case]} \
            | sed -n 's/.*samples_per_s=\([0-9]*\).*/\1/p')
        ratio=$("$python" -c "print(f'{$ours / $theirs:.2f}')")
        ratios+=("$ratio")
        printf '%-13s round %d: gradsweep %6d samples/s  pytorch %6d samples/s  ratio %s\n' \
            "$case" "$r" "$ours" "$theirs" "$ratio"
    done
    median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}')
    printf '%-13s median ratio %s (gradsweep / pytorch)\n' "$case" "$median"
done
