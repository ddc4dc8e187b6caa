#!/usr/bin/env bash
# Zoo tuning of one of our algorithms: WORKERS processes on one Optuna journal file (the README's
# distributed-tuning recipe). For lecture_ppo on HalfCheetah the pre-tuning entry is enqueued as trial 0.
# Usage: benchmarks/tune.sh ALGO ENV TRIALS_PER_WORKER STEPS_PER_TRIAL [WORKERS] [EVALUATIONS]
set -euo pipefail
ALGO=$1
ENV_ID=$2
TRIALS=$3
STEPS=$4
WORKERS=${5:-2}
EVALUATIONS=${6:-2}
STUDY=${STUDY:-${ALGO}_${ENV_ID}}  # the study name; the output folder is always ALGO_ENV
OUT=runs/tune/${ALGO}_${ENV_ID}
STORAGE=$OUT/study.log
mkdir -p "$OUT"
export OMP_NUM_THREADS=1
if [ "$ALGO" = lecture_ppo ] && [[ "$ENV_ID" = HalfCheetah* ]]; then
  python benchmarks/enqueue_entry.py "$STORAGE" "$STUDY"
fi
for worker in $(seq 1 "$WORKERS"); do
  python -m rl_zoo3.train --algo "$ALGO" --env "$ENV_ID" -optimize \
    --n-trials "$TRIALS" --n-jobs 1 --sampler tpe --pruner median --n-startup-trials 5 \
    --n-evaluations "$EVALUATIONS" --eval-episodes 5 -n "$STEPS" --seed "$worker" \
    --storage "$STORAGE" --study-name "$STUDY" -f "$OUT/logs" --no-optim-plots \
    > "$OUT/worker$worker.txt" 2>&1 &
done
wait
