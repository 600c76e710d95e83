#!/usr/bin/env bash
# The full league table on one GPU: all training images, 5 seeds, a WRN-16-4 teacher, every
# registry method into resnet8 and the 800-800 MLP, within a wall-clock budget (default 470 s,
# under 8 minutes on one H200-class GPU).
#
# Expects: the repository root as the working folder; `python` (or $PYTHON) with torch built
# for CUDA and kdistill importable (pip install -e . or PYTHONPATH=src); the Fashion-MNIST IDX
# files in $KDISTILL_DATA/fashion-mnist or /usr/share/datasets/fashion-mnist (no network needed);
# 16 CPU cores (JOBS processes share the GPU). Steps: (1) the teacher and the cached teacher
# logits, (2) JOBS shards of the cells as background processes into one --out folder, each
# resumable, (3) the assemble step, which always runs and lists the cells not finished within
# the budget in the report. Rerunning resumes every cell where it stopped.
# Writes: docs/results/league/fashion-mnist.{json,md,png}, logs under $OUT/logs.
# Knobs (environment): OUT, JOBS, BUDGET_S, EPOCHS, BATCH, LR, TEACHER_EPOCHS, SEEDS,
# VIEW_CACHE_GB.
set -uo pipefail

PY=${PYTHON:-python}
OUT=${OUT:-runs/league-gpu/fashion-mnist}
JOBS=${JOBS:-16}
BUDGET_S=${BUDGET_S:-470}
EPOCHS=${EPOCHS:-15}
BATCH=${BATCH:-256}
LR=${LR:-0.1}            # 0.05 at batch 128, scaled linearly with the batch
TEACHER_EPOCHS=${TEACHER_EPOCHS:-30}
SEEDS=${SEEDS:-5}

"$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null \
  || { echo "league.sh: CUDA is not available (this script needs one GPU)" >&2; exit 1; }

start=$(date +%s)
left() { echo $(( BUDGET_S - ($(date +%s) - start) )); }
mkdir -p "$OUT/logs"
common=(reproduce league --dataset fashion-mnist --out "$OUT" --full --seeds "$SEEDS"
        --teacher-width 4 --student-width 16 --teacher-epochs "$TEACHER_EPOCHS" --epochs "$EPOCHS"
        --batch-size "$BATCH" --lr "$LR" --teacher-lr 0.1 --no-progress
        --view-cache-gb "${VIEW_CACHE_GB:-0}")
# Feature methods run the teacher online here (VIEW_CACHE_GB=0): on a GPU its forward pass is
# cheap, while the CPU tier's view caches would write GBs (AT over 55,000 images of WRN-16-4:
# about 18 GiB) inside the teacher step's budget; this path is not timed on a GPU yet.

# 1. The teacher (and the logits every logit-only cell reads), alone: shards refuse to start
# without it. 40% of the budget at most.
timeout $(( BUDGET_S * 2 / 5 )) "$PY" -m kdistill "${common[@]}" --cells teacher \
  > "$OUT/logs/teacher.log" 2>&1 || { echo "league.sh: the teacher did not finish; see $OUT/logs/teacher.log" >&2; exit 1; }
echo "teacher done after $(( $(date +%s) - start )) s"

# 2. The cells, JOBS shards in parallel; stopped 25 s before the budget ends so the assemble
# step fits (unfinished cells keep their last epoch's checkpoint and resume on a rerun).
pids=()
for i in $(seq 0 $(( JOBS - 1 ))); do
  timeout $(( $(left) - 25 )) "$PY" -m kdistill "${common[@]}" --cells "$i/$JOBS" \
    > "$OUT/logs/shard-$i.log" 2>&1 &
  pids+=($!)
done
failed=0
for p in "${pids[@]}"; do wait "$p" || failed=$(( failed + 1 )); done
echo "cells done after $(( $(date +%s) - start )) s ($failed shard(s) stopped or failed)"

# 3. The report from every finished cell.
"$PY" -m kdistill "${common[@]}" --assemble-only --report-dir docs/results/league \
  | tee "$OUT/logs/assemble.log"
echo "league.sh: wall $(( $(date +%s) - start )) s"
