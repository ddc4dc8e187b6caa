#!/usr/bin/env bash
# Train one zoo configuration on several seeds, at most two processes at a time, with evaluations
# every 250k steps (10 episodes). Extra zoo arguments (e.g. --storage S --study-name N --trial-id K)
# follow the seeds. Usage: benchmarks/train_seeds.sh ALGO ENV OUT "SEEDS" [zoo args...]
set -euo pipefail
ALGO=$1
ENV_ID=$2
OUT=$3
SEEDS=$4
shift 4
mkdir -p "$OUT"
export OMP_NUM_THREADS=1
running=0
for seed in $SEEDS; do
  python -m rl_zoo3.train --algo "$ALGO" --env "$ENV_ID" --seed "$seed" -f "$OUT/logs" \
    --eval-freq 250000 --eval-episodes 10 --n-eval-envs 1 "$@" > "$OUT/seed$seed.txt" 2>&1 &
  running=$((running + 1))
  if [ "$running" -ge 2 ]; then
    wait -n
    running=$((running - 1))
  fi
done
wait
