#!/usr/bin/env bash
# Pretraining across machines with torchrun. Run it on every node with the same arguments, setting
# NODE_RANK to 0 on the first node and to 1 .. NNODES-1 on the others:
#
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 scripts/pretrain-torchrun.sh --examples enwiki --name bert-mini
#   NNODES=2 NODE_RANK=1 MASTER_ADDR=10.0.0.1 scripts/pretrain-torchrun.sh --examples enwiki --name bert-mini
#
# Every process runs `bertplat pretrain` with strategy ddp; Lightning reads the ranks from torchrun's
# environment. The micro batch is per process, so the global batch is
# micro_batch_size x NPROC_PER_NODE x NNODES x accumulate_grad_batches. Rank 0 writes the checkpoints, the
# report and the export. The other ranks print one line and exit 0. Every node must see the same
# BERTPLAT_DATA_DIR (a shared file system), and MASTER_PORT must be free on the first node.
# NCCL on GPUs, gloo on CPUs (for trying it out: NNODES=2 on one machine, MASTER_ADDR=127.0.0.1).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
: "${NNODES:=1}" "${NODE_RANK:=0}" "${MASTER_ADDR:=127.0.0.1}" "${MASTER_PORT:=29500}"
if [ -z "${NPROC_PER_NODE:-}" ]; then   # one process per GPU, or one on a CPU-only node
    n=0
    if command -v nvidia-smi >/dev/null; then n=$(nvidia-smi -L 2>/dev/null | wc -l || true); fi
    if [ "$n" -gt 0 ]; then NPROC_PER_NODE=$n; else NPROC_PER_NODE=1; fi
fi
exec "${BERTPLAT_VENV:-$here/.venv}/bin/torchrun" --nnodes "$NNODES" --nproc-per-node "$NPROC_PER_NODE" \
    --node-rank "$NODE_RANK" --master-addr "$MASTER_ADDR" --master-port "$MASTER_PORT" \
    -m bertplat.cli pretrain --strategy ddp --num-nodes "$NNODES" --devices "$NPROC_PER_NODE" "$@"
