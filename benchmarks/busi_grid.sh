#!/usr/bin/env bash
# The real BUSI grid behind docs/results.md: ResNet-18 on the shared BUSI copy at the
# paper's 224x224 (512x7x7 map, 15 qubits), Adam 1e-3, batch 32, 50 epochs (the paper: 200),
# the paper's classical and quantum models and two controls (flatten-linear, twin), 3 seeds.
# Re-running it skips finished cells (here, and those already recorded in $RECORDS, the
# committed results/busi-resnet18-224) and resumes interrupted ones; at the end it exports
# the finished runs' records into $RECORDS (no checkpoints) and rebuilds the report and the
# shot study. Commit $RECORDS after it; the next session continues from there.
#
#   benchmarks/busi_grid.sh                                   # paper split, all arms
#   SPLITS=grouped HEADS=classical,quantum benchmarks/busi_grid.sh   # leakage-free split
#   EPOCHS=10 IMAGE_SIZE=64 RECORDS= OUT=/work/runs-busi benchmarks/busi_grid.sh  # appendix grid
#   benchmarks/busi_grid.sh --dry-run            # extra arguments go to qhead reproduce
#
# Run dirs, logs and checkpoints go to $OUT, outside the repository.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
QHEAD="${QHEAD:-$REPO/.venv/bin/qhead}"
OUT="${OUT:-/work/runs-busi224}"
DATA="${DATA:-$REPO/../shared/data/busi}"
EPOCHS="${EPOCHS:-50}"
IMAGE_SIZE="${IMAGE_SIZE:-224}"
SPLITS="${SPLITS:-paper}"
RECORDS="${RECORDS-$REPO/results/busi-resnet18-224}"   # empty: no --done, no export
SEEDS="${SEEDS:-3}"
JOBS="${JOBS:-1}"
HEADS="${HEADS:-classical,quantum,flatten-linear,twin}"
# decode each image once (not every epoch) and keep the 2 cores for training, not workers
EXTRA="${EXTRA:-data.cache=true data.num_workers=0}"

PY="$(dirname "$QHEAD")/python"
mkdir -p "$OUT"

# Train from a snapshot of the committed code (CODE_REF, default HEAD), so that edits to
# the working tree while the grid runs cannot change it half-way; SNAPSHOT=0 disables.
SHA="$(git -C "$REPO" rev-parse --short "${CODE_REF:-HEAD}")"
TREE_PYTHONPATH="${PYTHONPATH:-}"
if [ "${SNAPSHOT:-1}" = 1 ]; then
    CODE="$OUT/code-$SHA"
    if [ ! -d "$CODE/src/qhead" ]; then
        mkdir -p "$CODE"
        git -C "$REPO" archive "$SHA" src | tar -x -C "$CODE"
    fi
    export PYTHONPATH="$CODE/src${PYTHONPATH:+:$PYTHONPATH}"
fi
"$PY" -c "import qhead; print('code:', qhead.__file__)"
"$PY" -c "import platform, torch, qhead; print('qhead', qhead.__version__, '| torch', torch.__version__, '| python', platform.python_version(), '|', platform.machine())" | tee -a "$OUT/VERSIONS.txt"
echo "git $SHA | $(nproc) cores" | tee -a "$OUT/VERSIONS.txt"
echo "start $(date -u +%FT%TZ) | epochs=$EPOCHS image_size=$IMAGE_SIZE seeds=$SEEDS jobs=$JOBS"

DONE=()
if [ -n "$RECORDS" ] && [ -d "$RECORDS" ]; then DONE=(--done "$RECORDS"); fi
"$QHEAD" reproduce --datasets busi --backbones resnet18 --heads "$HEADS" --splits "$SPLITS" \
    --seeds "$SEEDS" --epochs "$EPOCHS" --image-size "$IMAGE_SIZE" \
    --data-root "busi=$DATA" --out "$OUT" --jobs "$JOBS" "${DONE[@]}" $EXTRA "$@"

case " $* " in *" --dry-run "*) exit 0 ;; esac
# Training used the snapshot; the records, the report and the shot study use this tree's
# code, so that the report committed beside the records is the one this tree rebuilds.
export PYTHONPATH="$TREE_PYTHONPATH"
if [ -n "$RECORDS" ]; then
    "$QHEAD" export-records "$OUT" --out "$RECORDS"
    # From the repository root with a relative path, so that report/runs.csv names the
    # run dirs as every clone has them.
    case "$RECORDS" in "$REPO"/*) SHOWN="${RECORDS#"$REPO"/}" ;; *) SHOWN="$RECORDS" ;; esac
    (cd "$REPO" && "$QHEAD" report "$SHOWN" --out "$SHOWN/report")
else
    "$QHEAD" report "$OUT" --out "$OUT/report"
fi
# shot-noise study of the trained quantum models (SHOTS=0 skips it)
if [ "${SHOTS:-1}" != 0 ]; then
    "$QHEAD" shots "$OUT/busi/resnet18/quantum" --shots 10,100,1000,10000,exact \
        --sampling-seeds 3 --out "$OUT/shots"
fi
echo "end $(date -u +%FT%TZ)"
