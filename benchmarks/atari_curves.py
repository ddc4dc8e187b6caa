"""
Training curves and scores of zoo runs on an Atari env (from their Monitor files: full games, unclipped), e.g. the
runs of ``benchmarks/atari_side_by_side.sh``::

    python benchmarks/atari_curves.py --logs benchmarks/results/atari/logs --env BreakoutNoFrameskip-v4

Writes ``<out>/<env>.png`` (mean return of the last 100 episodes against agent steps, one line per algorithm) and
``<out>/results.md`` (that score every ``--every`` steps up to the budget every run reached).
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
    parser.add_argument("--exp-id", type=int, default=1, help="the zoo's run number (<env>_<id>)")
    parser.add_argument("--every", type=int, default=100_000, help="steps between the table's rows")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/atari"))
    return parser.parse_args()


def rolling_mean(scores: np.ndarray, window: int) -> np.ndarray:
    """Mean of each episode's return with the ``window - 1`` before it (fewer at the start)."""
    sums = np.cumsum(np.insert(scores, 0, 0.0))
    counts = np.minimum(np.arange(1, len(scores) + 1), window)
    return (sums[1:] - sums[np.arange(1, len(scores) + 1) - counts]) / counts


def main() -> None:
    args = parse_args()
    runs = {
        algo: training_scores(args.logs / algo / f"{args.env}_{args.exp_id}", frames_per_step=FRAME_SKIP)
        for algo in args.algos
    }
    args.out.mkdir(parents=True, exist_ok=True)

    figure, axis = plt.subplots(figsize=(7, 4))
    for algo, (steps, scores) in runs.items():
        axis.scatter(steps, scores, s=2, alpha=0.15)
        axis.plot(steps, rolling_mean(scores, WINDOW), label=f"{algo} (last {WINDOW} episodes)")
    axis.set(xlabel="agent steps (emulator frames / 4), summed over the 8 envs", ylabel="training episode return")
    axis.set_title(f"{args.env}: training scores, seed 0")
    axis.legend()
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(args.out / f"{args.env}.png", dpi=110)

    reached = min(steps[-1] for steps, _ in runs.values())
    budgets = [*range(args.every, int(reached) + 1, args.every), int(reached)]
    lines = [
        f"# {args.env}: mean return of the last {WINDOW} training episodes (full games, unclipped)",
        "",
        "| agent steps | " + " | ".join(args.algos) + " |",
        "|---|" + "---|" * len(args.algos),
    ]
    for budget in budgets:
        cells = [f"{score_at(*runs[algo], budget, WINDOW):.1f}" for algo in args.algos]
        lines.append(f"| {budget:,} | " + " | ".join(cells) + " |")
    first = {algo: f"{scores[:WINDOW].mean():.2f}" for algo, (_, scores) in runs.items()}
    lines += ["", f"First {WINDOW} episodes (the untrained policies): " + ", ".join(f"{a} {s}" for a, s in first.items())]
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
