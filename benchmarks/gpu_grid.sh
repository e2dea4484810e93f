#!/usr/bin/env bash
# The paper's budget on a lent GPU (issue 13, item 5): ResNet-18 on BUSI at 224x224 for
# 200 epochs, several cells at once on the one GPU (one process per cell, each with its
# decoded images cached in memory, bf16 autocast), the finished runs' records (no
# checkpoints) written to $OUT/records.tgz. The device tool's machine is bare and reaches
# nothing: the data and the two pure-Python packages its image lacks travel in .gpu/.
#
# Here, once per checkout (.gpu/ is git-ignored; about 40 MiB):
#   benchmarks/gpu_grid.sh --prepare
# then, with the device tool (each call at most 10 minutes; the machine is bare each time):
#   run(command="EPOCHS=3 benchmarks/gpu_grid.sh", carry=[".gpu"], timeout_s=300)  # throughput
#   run(command="benchmarks/gpu_grid.sh", carry=[".gpu"], timeout_s=600)
# and here, from the files the call brings back:
#   mkdir -p results/busi-resnet18-224-gpu && tar -xzf <files_at>/records.tgz -C results/busi-resnet18-224-gpu
#   qhead report results/busi-resnet18-224-gpu
# Cells already in results/busi-resnet18-224-gpu (committed) are skipped, so a second call
# continues the grid. Within a call, training stops after BUDGET_S seconds so that the
# records of the finished cells are exported before the call's limit; unfinished cells are
# simply run again by the next call.
#
# Settings (environment): EPOCHS (200), HEADS (classical,quantum), SEEDS (3), SPLITS (paper),
# JOBS (cells at once, 6), BUDGET_S (seconds of training, 480), OUT (where records.tgz goes).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
GPU_DIR="$REPO/.gpu"

if [ "${1:-}" = "--prepare" ]; then
    SITE="$("$REPO/.venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    DATA="${DATA:-$REPO/../shared/data/busi}"
    mkdir -p "$GPU_DIR/site"
    rm -rf "$GPU_DIR/busi" && cp -r "$DATA" "$GPU_DIR/busi"
    # omegaconf (vendors its antlr4 runtime) and imagehash are pure Python: they run on the
    # device's Python 3.12 as they are
    for pkg in omegaconf imagehash; do
        rm -rf "$GPU_DIR/site/$pkg" && cp -r "$SITE/$pkg" "$GPU_DIR/site/$pkg"
    done
    find "$GPU_DIR" -name __pycache__ -prune -exec rm -rf {} +
    du -sh "$GPU_DIR"
    exit 0
fi

if [ ! -d "$GPU_DIR/busi" ]; then
    echo "gpu_grid.sh: $GPU_DIR/busi is missing: run 'benchmarks/gpu_grid.sh --prepare' here and" \
         "pass carry=[\".gpu\"] to the device tool" >&2
    exit 2
fi

PY="${PY:-python3}"
EPOCHS="${EPOCHS:-200}"
HEADS="${HEADS:-classical,quantum}"
SEEDS="${SEEDS:-3}"
SPLITS="${SPLITS:-paper}"
JOBS="${JOBS:-6}"
BUDGET_S="${BUDGET_S:-480}"
IMAGE_SIZE="${IMAGE_SIZE:-224}"
OUT="${OUT:-/tmp/gpu-grid-out}"
RUNS="${RUNS:-/tmp/gpu-grid-runs}"
RECORDS="$REPO/results/busi-resnet18-224-gpu"
export PYTHONPATH="$REPO/src:$GPU_DIR/site${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
mkdir -p "$OUT" "$RUNS"

"$PY" -c "import torch, qhead; print('qhead', qhead.__version__, '| torch', torch.__version__, '| cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')" | tee "$OUT/versions.txt"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | tee -a "$OUT/versions.txt" || true
echo "start $(date -u +%FT%TZ) | epochs=$EPOCHS heads=$HEADS seeds=$SEEDS splits=$SPLITS jobs=$JOBS budget=${BUDGET_S}s"

DONE=()
if [ -d "$RECORDS" ]; then DONE=(--done "$RECORDS"); fi
status=0
timeout --signal=INT "$BUDGET_S" "$PY" -m qhead reproduce --datasets busi --backbones resnet18 \
    --heads "$HEADS" --splits "$SPLITS" --seeds "$SEEDS" --epochs "$EPOCHS" \
    --image-size "$IMAGE_SIZE" --data-root "busi=$GPU_DIR/busi" --out "$RUNS" --jobs "$JOBS" \
    "${DONE[@]}" data.cache=true data.num_workers=0 "$@" || status=$?
echo "training stopped with status $status at $(date -u +%FT%TZ) (124: the budget ran out)"

# per-epoch seconds of every run, for the throughput line of the note
find "$RUNS" -name metrics.csv | sort | while read -r f; do
    echo "$f: $(tail -n +2 "$f" | wc -l) epochs, last $(tail -n 1 "$f" | awk -F, '{print $NF}') s/epoch"
done | tee "$OUT/epochs.txt"

"$PY" -m qhead export-records "$RUNS" --out "$OUT/records" || true
if [ -d "$OUT/records" ]; then
    tar -czf "$OUT/records.tgz" -C "$OUT/records" .
    rm -rf "$OUT/records"
else
    echo "no finished run to export"
fi
echo "end $(date -u +%FT%TZ)"
