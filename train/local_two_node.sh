#!/usr/bin/env bash
# Two "nodes" on this machine: runs train/slurm_multinode.sh itself, with stand-ins for
# SLURM's `srun` (one task per node, SLURM_NODEID 0 and 1) and `scontrol` (127.0.0.1),
# one CPU process per node (gloo), so the script's own launch line and accelerate's
# multi-node rendezvous are exercised without a cluster.
#   bash train/local_two_node.sh RECIPE [rler-eval train flags]
set -euo pipefail
cd "$(dirname "$0")/.."
RECIPE=${1:?usage: local_two_node.sh RECIPE [flags]}
shift || true
shim=$(mktemp -d)
trap 'rm -rf "$shim"' EXIT
cat > "$shim/scontrol" <<'SH'
#!/usr/bin/env bash
echo 127.0.0.1
SH
cat > "$shim/srun" <<'SH'
#!/usr/bin/env bash
# srun stand-in: drop srun's own flags, run the command once per node, fail if any fails
while [[ "${1:-}" == --* ]]; do shift; done
pids=()
for ((node = 0; node < SLURM_NNODES; node++)); do
  SLURM_NODEID=$node "$@" & pids+=($!)
done
rc=0
for pid in "${pids[@]}"; do wait "$pid" || rc=$?; done
exit $rc
SH
chmod +x "$shim/scontrol" "$shim/srun"
export PATH="$shim:$PATH" SLURM_NNODES=2 SLURM_JOB_NODELIST=localhost GPUS_PER_NODE=1
export ACCELERATE_CONFIG=${ACCELERATE_CONFIG:-train/accelerate_cpu.yaml}
export MAIN_PROCESS_PORT=${MAIN_PROCESS_PORT:-29517}
exec bash train/slurm_multinode.sh "$RECIPE" "$@"
