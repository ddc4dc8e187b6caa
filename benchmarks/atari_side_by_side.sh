#!/usr/bin/env bash
# LecturePPO (our `atari` entry: the PPO paper's table) and SB3 PPO (the RL Zoo's own `atari` entry) on one Atari
# env, side by side through the zoo, for at most SECONDS of wall time each (they run at the same time).
# Both train with `-n BUDGET` (so both anneal their learning rate and clip range over the same budget); a run cut
# by the time limit keeps its per-episode training scores (the zoo's Monitor files, full games, unclipped).
#
#   benchmarks/atari_side_by_side.sh OUT_DIR [ENV] [BUDGET] [SECONDS] [SEED]
#
# Writes OUT_DIR/monitors.tar.gz (logs/<algo>/<env>_1/*.monitor.csv, read with
# `python benchmarks/atari_curves.py`), OUT_DIR/<algo>.log and, where a run finished or saved a checkpoint,
# OUT_DIR/lecture_ppo.zip.
set -uo pipefail
out=${1:?usage: atari_side_by_side.sh OUT_DIR [ENV] [BUDGET] [SECONDS] [SEED]}
env_id=${2:-BreakoutNoFrameskip-v4}
budget=${3:-1000000}
seconds=${4:-450}
seed=${5:-0}
work=$(mktemp -d)
mkdir -p "$out"
export PYTHONUNBUFFERED=1

for algo in lecture_ppo ppo; do
    timeout --signal=INT --kill-after=20 "$seconds" "${PYTHON:-python}" -m sb3_lecture_ppo.zoo train --algo "$algo" --env "$env_id" \
        -n "$budget" --seed "$seed" --eval-freq -1 --vec-env subproc --save-freq 100000 -f "$work/logs" \
        >"$out/$algo.log" 2>&1 &
done
wait

(cd "$work" && tar czf "$out/monitors.tar.gz" logs/*/*/*.monitor.csv)
run="$work/logs/lecture_ppo/${env_id}_1"
model=$(ls -t "$run/$env_id.zip" "$run"/rl_model_*_steps.zip 2>/dev/null | head -1)
[ -n "$model" ] && cp "$model" "$out/lecture_ppo.zip"
for algo in lecture_ppo ppo; do
    echo "$algo: $(cat "$work/logs/$algo/${env_id}_1"/*.monitor.csv | grep -c -v '^[#r]') episodes"
done
