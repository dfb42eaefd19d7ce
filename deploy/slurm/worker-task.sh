#!/bin/bash
# One gradsweep worker on this Slurm task's GPU (started by gradsweep.sbatch's srun step
# with --gpus-per-task=1, so the task's GPU is cuda:0). Reads GRADSWEEP_COORDINATOR,
# GRADSWEEP_BIN, GRADSWEEP_SECRETS and GRADSWEEP_THREADS from the job.
set -euo pipefail
: "${GRADSWEEP_COORDINATOR:?set by gradsweep.sbatch: the https:// address of the coordinator}"
: "${GRADSWEEP_BIN:?set by gradsweep.sbatch: the directory of the worker binary}"
: "${GRADSWEEP_SECRETS:?set by gradsweep.sbatch: the directory of worker.token and ca.pem}"

exec "$GRADSWEEP_BIN/worker" serve --device cuda:0 \
    --name "$(hostname -s)-gpu${SLURM_LOCALID:-0}" \
    --token-file "$GRADSWEEP_SECRETS/worker.token" --ca "$GRADSWEEP_SECRETS/ca.pem" \
    --log-format json
