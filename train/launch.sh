#!/usr/bin/env bash
# Launch a training recipe on the GPUs of this node with accelerate + DeepSpeed ZeRO-3.
#   bash train/launch.sh train/qwen2_5_vl_7b.yaml [extra rler-eval train flags]
# NUM_PROCESSES, ACCELERATE_CONFIG and the multi-node variables (NUM_MACHINES, MACHINE_RANK,
# MAIN_PROCESS_IP, MAIN_PROCESS_PORT) can be set in the environment; slurm_multinode.sh sets them.
set -euo pipefail
RECIPE=${1:?usage: launch.sh RECIPE [flags]}
shift || true
cd "$(dirname "$0")/.."
exec accelerate launch \
  --config_file "${ACCELERATE_CONFIG:-train/accelerate_zero3.yaml}" \
  --num_processes "${NUM_PROCESSES:-8}" \
  --num_machines "${NUM_MACHINES:-1}" \
  --machine_rank "${MACHINE_RANK:-0}" \
  --main_process_ip "${MAIN_PROCESS_IP:-127.0.0.1}" \
  --main_process_port "${MAIN_PROCESS_PORT:-29500}" \
  -m rler_eval.cli train --recipe "$RECIPE" "$@"
