"""
The HalfCheetah-v5 panel of the PPO paper's comparison figure from runs already made: LecturePPO with clipping at
0.2 in the paper setting (the Table 1 runs, seeds 0-2) against this package's precursors on their shipped zoo
entries (GAE actor-critic, 1-step actor-critic, Monte-Carlo PG, seeds 0-9) and SB3's A2C on the RL Zoo's entry
(seeds 0-9). Score: the mean return of the last 100 training episodes at 1M steps (Table 1's), median and min-max
over seeds; curves of the same, median and min-max band. Writes the figure and prints the table:

    python benchmarks/figure3_halfcheetah.py --out benchmarks/results/figure3/halfcheetah.png

No training: each run's JSON is read from its folder (``benchmarks/results/table1``,
``benchmarks/results/precursors-10-seeds``, and ``benchmarks/results/precursors`` for A2C).
"""

import argparse
import statistics
from pathlib import Path
from typing import Any

from sb3_lecture_ppo.evaluation.report import plot_curves
from sb3_lecture_ppo.evaluation.runner import RUNS_FOLDER, load_run

RESULTS = Path(__file__).parent / "results"
ENV_ID = "HalfCheetah-v5"
LABELS = {
    "lecture_ppo:paper": "LecturePPO, clip 0.2 (paper setting)",
    "lecture_gae_ac": "GAE actor-critic (lecture_gae_ac)",
    "lecture_ac": "1-step actor-critic (lecture_ac)",
    "lecture_mc_pg": "Monte-Carlo PG (lecture_mc_pg)",
    "a2c": "SB3 A2C (zoo entry)",
}
SOURCES = {
    "table1": ("lecture_ppo:paper",),
    "precursors-10-seeds": ("lecture_gae_ac", "lecture_ac", "lecture_mc_pg"),
    "precursors": ("a2c",),
}


def _is_clip_02(run: dict[str, Any]) -> bool:
    hyperparams = run["hyperparams"]
    return hyperparams.get("objective") == "clip" and float(hyperparams.get("clip_range", 0)) == 0.2


def load_runs() -> list[dict[str, Any]]:
    """Every run of the panel: the Table 1 clip 0.2 runs on HalfCheetah-v5 and the other algorithms' runs there."""
    runs = []
    for folder, contestants in SOURCES.items():
        for path in sorted((RESULTS / folder / RUNS_FOLDER).glob("*.json")):
            run = load_run(path)
            if run is None or run["cell"]["env_id"] != ENV_ID or run["cell"]["contestant"] not in contestants:
                continue
            if run["cell"]["contestant"] == "lecture_ppo:paper" and not _is_clip_02(run):
                continue
            runs.append(run)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS / "figure3" / "halfcheetah.png")
    args = parser.parse_args()
    runs = load_runs()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    plot_curves(
        runs,
        args.out,
        curve="training_curve",
        value_key="episode_return_mean",
        ylabel="mean return, last 100 training episodes",
        label=lambda run: LABELS[run["cell"]["contestant"]],
    )
    print("| algorithm | seeds | last 100 training episodes at 1M: median (min-max) | per seed |")
    print("|---|---|---|---|")
    for contestant, label in LABELS.items():
        mine = [run for run in runs if run["cell"]["contestant"] == contestant]
        scores = {run["cell"]["seed"]: run["last_100_training_episodes"] for run in mine}
        values = [scores[seed] for seed in sorted(scores)]
        per_seed = " / ".join(f"{value:,.0f}" for value in values)
        print(
            f"| {label} | {min(scores)}-{max(scores)} | {statistics.median(values):,.0f} "
            f"({min(values):,.0f} to {max(values):,.0f}) | {per_seed} |"
        )


if __name__ == "__main__":
    main()
