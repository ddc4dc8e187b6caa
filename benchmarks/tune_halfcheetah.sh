#!/usr/bin/env bash
# Zoo tuning of lecture_ppo on HalfCheetah-v5: two worker processes on one Optuna journal file
# (the README's distributed-tuning recipe), the current yml entry enqueued as trial 0 for comparison.
# Usage: benchmarks/tune_halfcheetah.sh [trials per worker] [steps per trial]
set -euo pipefail
TRIALS=${1:-10}
STEPS=${2:-100000}
OUT=runs/tune
STORAGE=$OUT/lecture_ppo_halfcheetah.log
STUDY=lecture_ppo_halfcheetah
mkdir -p $OUT
export OMP_NUM_THREADS=1
python benchmarks/enqueue_entry.py "$STORAGE" "$STUDY"
for worker in 1 2; do
  nohup python -m rl_zoo3.train --algo lecture_ppo --env HalfCheetah-v5 -optimize \
    --n-trials "$TRIALS" --n-jobs 1 --sampler tpe --pruner median --n-startup-trials 5 \
    --n-evaluations 2 --eval-episodes 5 -n "$STEPS" --seed "$worker" \
    --storage "$STORAGE" --study-name "$STUDY" -f $OUT/logs --no-optim-plots \
    > $OUT/worker$worker.txt 2>&1 &
done
wait
