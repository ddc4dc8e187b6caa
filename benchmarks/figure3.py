"""
The PPO paper's comparison figure on its seven MuJoCo tasks, from runs already made: LecturePPO with clipping at 0.2
in the paper setting (the Table 1 runs) against this package's Monte-Carlo policy gradient (``lecture_mc_pg``, the
paper's "vanilla PG") and GAE actor-critic (``lecture_gae_ac``, A2C-like), and, where they were run, the 1-step
actor-critic and SB3's A2C. Score: the mean return of the last 100 training episodes at 1M steps (Table 1's), median
and min-max over seeds; curves of the same, median and min-max band. Writes the figure and its table (``.md`` beside
it) and prints the table::

    python benchmarks/figure3.py                                    # 7 tasks, seeds 0-2
    python benchmarks/figure3.py --envs HalfCheetah-v5 --seeds 10 --algos lecture_ppo:paper lecture_gae_ac \\
      lecture_ac lecture_mc_pg a2c --out benchmarks/results/figure3/halfcheetah.png

No training: each run's JSON is read from its folder under ``--results``: ``table1`` (LecturePPO), ``figure3`` (the
precursors on the six tasks other than HalfCheetah), ``precursors-10-seeds`` (the precursors on HalfCheetah) and
``precursors`` (SB3's A2C on HalfCheetah). The precursors' runs come from::

    python -m sb3_lecture_ppo.benchmark --algos lecture_gae_ac lecture_mc_pg --envs Hopper-v5 \\
      InvertedDoublePendulum-v5 InvertedPendulum-v5 Reacher-v5 Swimmer-v5 Walker2d-v5 --seeds 3 --timesteps 1e6 \\
      --eval-freq 100000 --eval-episodes 5 --final-eval-episodes 10 --jobs 2 --out benchmarks/results/figure3
"""

import argparse
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sb3_lecture_ppo.evaluation.report import plot_curves
from sb3_lecture_ppo.evaluation.runner import RUNS_FOLDER, load_run

RESULTS = Path(__file__).parent / "results"
TASKS = (
    "HalfCheetah-v5",
    "Hopper-v5",
    "InvertedDoublePendulum-v5",
    "InvertedPendulum-v5",
    "Reacher-v5",
    "Swimmer-v5",
    "Walker2d-v5",
)
LABELS = {
    "lecture_ppo:paper": "LecturePPO, clip 0.2 (paper setting)",
    "lecture_gae_ac": "GAE actor-critic (lecture_gae_ac)",
    "lecture_mc_pg": "Monte-Carlo PG (lecture_mc_pg)",
    "lecture_ac": "1-step actor-critic (lecture_ac)",
    "a2c": "SB3 A2C (zoo entry)",
}
SOURCES = {
    "table1": ("lecture_ppo:paper",),
    "figure3": ("lecture_gae_ac", "lecture_mc_pg"),
    "precursors-10-seeds": ("lecture_gae_ac", "lecture_ac", "lecture_mc_pg"),
    "precursors": ("a2c",),
}
"""Run folders under ``--results`` and the contestants each contributes (the first folder with a cell wins)."""


PAPER_FIGURE = ("lecture_ppo:paper", "lecture_gae_ac", "lecture_mc_pg")
"""The contestants of the paper's figure that this package has: PPO, A2C-like and vanilla PG."""


def _is_clip_02(run: dict[str, Any]) -> bool:
    hyperparams = run["hyperparams"]
    return hyperparams.get("objective") == "clip" and float(hyperparams.get("clip_range", 0)) == 0.2


def load_runs(results: Path, env_ids: Sequence[str], seeds: int, algos: Sequence[str] = PAPER_FIGURE) -> list[dict[str, Any]]:
    """Every finished run of the figure: seeds ``0 .. seeds - 1`` of each of ``algos`` on each of ``env_ids``."""
    runs: dict[tuple[str, str, int], dict[str, Any]] = {}
    for folder, contestants in SOURCES.items():
        for path in sorted((results / folder / RUNS_FOLDER).glob("*.json")):
            run = load_run(path)
            if run is None or run["cell"]["contestant"] not in contestants or run["cell"]["contestant"] not in algos:
                continue
            cell = run["cell"]
            if cell["env_id"] not in env_ids or cell["seed"] >= seeds:
                continue
            if cell["contestant"] == "lecture_ppo:paper" and not _is_clip_02(run):
                continue
            runs.setdefault((cell["contestant"], cell["env_id"], cell["seed"]), run)
    return list(runs.values())


def seed_scores(runs: Sequence[dict[str, Any]], env_id: str) -> dict[str, dict[int, float]]:
    """Each contestant's last-100-episode score on ``env_id``, seed by seed (seeds in order)."""
    scores: dict[str, dict[int, float]] = {}
    for run in sorted(runs, key=lambda run: run["cell"]["seed"]):
        if run["cell"]["env_id"] == env_id:
            scores.setdefault(run["cell"]["contestant"], {})[run["cell"]["seed"]] = run["last_100_training_episodes"]
    return scores


def medians(runs: Sequence[dict[str, Any]], env_id: str) -> dict[str, float]:
    """Each contestant's median last-100-episode score on ``env_id``."""
    return {contestant: statistics.median(by_seed.values()) for contestant, by_seed in seed_scores(runs, env_id).items()}


def summary(runs: Sequence[dict[str, Any]], env_ids: Sequence[str]) -> str:
    """On how many tasks each contestant has the highest median, among the tasks where every contestant has runs."""
    contestants = sorted({run["cell"]["contestant"] for run in runs}, key=list(LABELS).index)
    per_task = {env_id: medians(runs, env_id) for env_id in env_ids}
    complete = [env_id for env_id, scores in per_task.items() if len(scores) == len(contestants)]
    if not complete:
        return "No task has runs of every contestant yet."
    wins = {contestant: 0 for contestant in contestants}
    ties = []
    for env_id in complete:
        scores = per_task[env_id]
        best = [contestant for contestant, score in scores.items() if score == max(scores.values())]
        if len(best) > 1:
            ties.append(env_id)
        else:
            wins[best[0]] += 1
    counted = "; ".join(f"{LABELS[contestant]} {count}" for contestant, count in wins.items())
    tied = f"; tied for the highest on {', '.join(ties)}" if ties else ""
    return f"Highest median, on the {len(complete)} of {len(env_ids)} tasks where every contestant has runs: {counted}{tied}."


def table(runs: Sequence[dict[str, Any]], env_ids: Sequence[str]) -> str:
    """Markdown: per task and contestant, the seeds run and the last-100-episode score's median (min-max) and values."""
    lines = [
        "| task | algorithm | seeds | last 100 training episodes at 1M: median (min-max) | per seed |",
        "|---|---|---|---|---|",
    ]
    for env_id in env_ids:
        per_contestant = seed_scores(runs, env_id)
        for contestant, label in LABELS.items():
            if contestant not in per_contestant:
                continue
            values = list(per_contestant[contestant].values())
            per_seed = " / ".join(f"{value:,.0f}" for value in values)
            seed_list = ", ".join(str(seed) for seed in per_contestant[contestant])
            lines.append(
                f"| {env_id} | {label} | {seed_list} | {statistics.median(values):,.0f} "
                f"({min(values):,.0f} to {max(values):,.0f}) | {per_seed} |"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--envs", nargs="+", default=list(TASKS), help="tasks, one panel each")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0 .. N-1 of every contestant")
    parser.add_argument(
        "--algos", nargs="+", default=list(PAPER_FIGURE), choices=list(LABELS), help="contestants (default: the paper's)"
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="the folder holding the run folders")
    parser.add_argument("--out", type=Path, default=RESULTS / "figure3" / "figure3.png")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error("--seeds must be positive")
    runs = load_runs(args.results, args.envs, args.seeds, args.algos)
    missing = [env_id for env_id in args.envs if not any(run["cell"]["env_id"] == env_id for run in runs)]
    if missing:
        parser.error(f"--envs: no finished run on {', '.join(missing)} under {args.results}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    plot_curves(
        runs,
        args.out,
        curve="training_curve",
        value_key="episode_return_mean",
        ylabel="mean return, last 100 training episodes",
        label=lambda run: LABELS[run["cell"]["contestant"]],
        env_ids=args.envs,
        columns=4,
    )
    markdown = table(runs, args.envs) + "\n\n" + summary(runs, args.envs)
    args.out.with_suffix(".md").write_text(markdown + "\n")
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
