#!/usr/bin/env bash
# Multi-node GRPO with SLURM: one accelerate launcher per node, 8 GPUs each.
#   sbatch --nodes=2 train/slurm_multinode.sh train/qwen2_5_vl_7b.yaml
# Each node's launcher joins one torchrun rendezvous on the first node (accelerate's
# `deepspeed_multinode_launcher: standard`, set in train/accelerate_zero3.yaml).
# GPUS_PER_NODE and ACCELERATE_CONFIG may be overridden; train/local_two_node.sh runs this
# very script on one machine (two "nodes" on 127.0.0.1, CPU, gloo) to check the rendezvous.
# The log goes to the submission folder (SLURM opens it before the script runs, so a
# logs/ folder would have to exist beforehand).
#SBATCH --job-name=rler-grpo
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=64
#SBATCH --time=48:00:00
#SBATCH --output=%x-%j.out
set -euo pipefail
RECIPE=${1:-train/qwen2_5_vl_7b.yaml}
shift || true
export MAIN_PROCESS_IP=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
export MAIN_PROCESS_PORT=${MAIN_PROCESS_PORT:-29500}
export NUM_MACHINES=$SLURM_NNODES
export NUM_PROCESSES=$((SLURM_NNODES * ${GPUS_PER_NODE:-8}))
# each node's launcher learns its rank from SLURM_NODEID
srun --kill-on-bad-exit=1 bash -c 'MACHINE_RANK=$SLURM_NODEID exec bash train/launch.sh "$@"' _ "$RECIPE" "$@"
