"""
Training curves and scores of zoo runs on an Atari env (from their Monitor files: full games, unclipped), e.g. the
runs of ``benchmarks/atari_side_by_side.sh``::

    python benchmarks/atari_curves.py --logs benchmarks/results/atari/logs --env BreakoutNoFrameskip-v4 --exp-ids 1 2

Writes ``<out>/<env>.png`` (mean return of the last 100 episodes against agent steps, one line per run: colour the
algorithm, line style the zoo run) and ``<out>/results.md`` (that score every ``--every`` steps, per run, up to
where the longest run of each algorithm got; "-" where a run had stopped).
"""

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from sb3_lecture_ppo.evaluation.monitor_scores import FRAME_SKIP, score_at, training_scores

WINDOW = 100


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logs", type=Path, default=Path("benchmarks/results/atari/logs"), help="the zoo's log folder")
    parser.add_argument("--env", default="BreakoutNoFrameskip-v4")
    parser.add_argument("--algos", nargs="+", default=["lecture_ppo", "ppo"])
    parser.add_argument("--exp-ids", type=int, nargs="+", default=[1], help="the zoo's run numbers (<env>_<id>)")
    parser.add_argument("--every", type=int, default=100_000, help="steps between the table's rows")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/atari"))
    return parser.parse_args()


def rolling_mean(scores: np.ndarray, window: int) -> np.ndarray:
    """Mean of each episode's return with the ``window - 1`` before it (fewer at the start)."""
    sums = np.cumsum(np.insert(scores, 0, 0.0))
    counts = np.minimum(np.arange(1, len(scores) + 1), window)
    return (sums[1:] - sums[np.arange(1, len(scores) + 1) - counts]) / counts


def score_cell(runs: list[tuple[np.ndarray, np.ndarray]], budget: int) -> str:
    """The runs' scores at ``budget`` steps, "-" for a run that stopped before it."""
    return " / ".join(
        f"{score_at(steps, scores, budget, WINDOW):.1f}" if steps[-1] >= budget else "-" for steps, scores in runs
    )


def main() -> None:
    args = parse_args()
    runs = {
        algo: [
            training_scores(args.logs / algo / f"{args.env}_{exp_id}", frames_per_step=FRAME_SKIP) for exp_id in args.exp_ids
        ]
        for algo in args.algos
    }
    args.out.mkdir(parents=True, exist_ok=True)

    figure, axis = plt.subplots(figsize=(7, 4))
    for color, (algo, algo_runs) in zip(plt.rcParams["axes.prop_cycle"].by_key()["color"], runs.items(), strict=False):
        for exp_id, style, (steps, scores) in zip(args.exp_ids, ["-", "--", ":", "-."], algo_runs, strict=False):
            axis.scatter(steps, scores, s=2, alpha=0.1, color=color)
            axis.plot(steps, rolling_mean(scores, WINDOW), style, color=color, label=f"{algo}, run {exp_id}")
    axis.set(xlabel="agent steps (emulator frames / 4), summed over the 8 envs", ylabel="training episode return")
    axis.set_title(f"{args.env}: training scores (lines: mean of the last {WINDOW} episodes)")
    axis.legend()
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(args.out / f"{args.env}.png", dpi=110)

    reached = min(max(steps[-1] for steps, _ in algo_runs) for algo_runs in runs.values())
    budgets = range(args.every, int(reached) + 1, args.every)
    runs_named = " / ".join(f"run {exp_id}" for exp_id in args.exp_ids)
    lines = [
        f"# {args.env}: mean return of the last {WINDOW} training episodes (full games, unclipped), {runs_named}",
        "",
        "| agent steps | " + " | ".join(args.algos) + " |",
        "|---|" + "---|" * len(args.algos),
        *(f"| {budget:,} | " + " | ".join(score_cell(runs[algo], budget) for algo in args.algos) + " |" for budget in budgets),
        "",
        f"First {WINDOW} episodes (the untrained policies): "
        + ", ".join(f"{algo} " + " / ".join(f"{r[:WINDOW].mean():.2f}" for _, r in runs[algo]) for algo in args.algos),
        "Steps reached: " + ", ".join(f"{algo} " + " / ".join(f"{s[-1]:,.0f}" for s, _ in runs[algo]) for algo in args.algos),
    ]
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
