"""
Steps to first reach 475 on CartPole-v1 for SB3's PPO and LecturePPO variants, on many seeds at
once (the benchmark's runner, one process per run): checks whether a first-reach lead measured
on five seeds holds on others, and screens entries for one.

Each run trains with the schedules of the benchmark's full budget (``--timesteps``, 100k) and stops
at its first evaluation of 475 or more (``Cell.stop_at_return``), so it measures the benchmark's
steps to first reach at a fraction of a full run's cost; its ``final`` is that evaluation's mean.

    python benchmarks/screen_cartpole.py --seeds 20 21 22 23 --jobs 2 --json seeds_20-23.json
    python benchmarks/screen_cartpole.py --from-json seeds_20-23.json --plot first_reach.png
"""

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from sb3_lecture_ppo.evaluation.cells import Cell
from sb3_lecture_ppo.evaluation.report import falls_after_reach, plot_final_returns, steps_to_threshold
from sb3_lecture_ppo.evaluation.runner import StaleRunsError, load_run, refuse_stale_runs, run_cells, run_path

THRESHOLD = 475.0
FALL_LEVEL = 400.0  # an evaluation below it after the first reach of 475 is a fall a user watching would see
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "ppo": ("ppo", {}),  # SB3 PPO, the zoo's entry
    "lead": ("lecture_ppo:lecture", {}),  # the zoo's PPO settings and network, the lecture's semantics
    "lead_lr_2e-3": ("lecture_ppo:lecture", {"learning_rate": "lin_0.002"}),
    "lead_batch_128": ("lecture_ppo:lecture", {"batch_size": 128}),
    "lead_clip_0.3": ("lecture_ppo:lecture", {"clip_range": "lin_0.3"}),
    "lead_steps_16": ("lecture_ppo:lecture", {"n_steps": 16, "batch_size": 128}),  # twice the updates per env step
    "lead_envs_4": ("lecture_ppo:lecture", {"n_envs": 4, "batch_size": 128}),  # the same, each env twice as far
    "lead_gamma_0.99": ("lecture_ppo:lecture", {"gamma": 0.99}),
    "lead_lambda_0.95": ("lecture_ppo:lecture", {"gae_lambda": 0.95}),
    "shipped": ("lecture_ppo", {}),  # our zoo entry as it is today
    "lead_envs_4_steps_16": ("lecture_ppo:lecture", {"n_envs": 4, "n_steps": 16, "batch_size": 64}),
    "lead_envs_4_lr_2e-3": ("lecture_ppo:lecture", {"n_envs": 4, "batch_size": 128, "learning_rate": "lin_0.002"}),
    "lead_steps_16_lr_2e-3": ("lecture_ppo:lecture", {"n_steps": 16, "batch_size": 128, "learning_rate": "lin_0.002"}),
    # lead_envs_4 on the lecture's network (LecturePPO's default MlpPolicy: 2 x 128 ELU encoder, 128 ELU heads)
    "lead_envs_4_lecture_net": ("lecture_ppo:lecture", {"n_envs": 4, "batch_size": 128, "policy": "MlpPolicy"}),
    # one change at a time from the shipped entry (lead_envs_4_lr_2e-3)
    "shipped_envs_2": ("lecture_ppo", {"n_envs": 2, "batch_size": 64}),
    "shipped_envs_1": ("lecture_ppo", {"n_envs": 1, "batch_size": 32}),
    "shipped_lr_3e-3": ("lecture_ppo", {"learning_rate": "lin_0.003"}),
    "shipped_epochs_30": ("lecture_ppo", {"n_epochs": 30}),
    "shipped_clip_0.3": ("lecture_ppo", {"clip_range": "lin_0.3"}),
    "shipped_batch_64": ("lecture_ppo", {"batch_size": 64}),
    "shipped_seq_32": ("lecture_ppo", {"seq_length": 32}),  # one segment per env and rollout: GAE cut less often
    "shipped_rollout_scope": ("lecture_ppo", {"advantage_scope": "rollout"}),  # GAE over each env's whole rollout
    # a gentler tail for the same fast start: SB3's early stop of the epochs on the minibatch KL, or fewer epochs
    "shipped_target_kl_0.02": ("lecture_ppo", {"target_kl": 0.02}),
    "shipped_target_kl_0.05": ("lecture_ppo", {"target_kl": 0.05}),
    "shipped_epochs_10": ("lecture_ppo", {"n_epochs": 10}),
    # the joint gradient norm (median 2.1, nearly all of it the critic's) exceeds max_grad_norm 0.5 on 97% of the
    # shipped entry's gradient steps (benchmarks/grad_norm_shares.py, seed 0, 12k steps): clipping rescales nearly every step
    "shipped_max_grad_norm_5": ("lecture_ppo", {"max_grad_norm": 5.0}),
}


def screen_cell(name: str, seed: int, timesteps: int, full: bool = False) -> Cell:
    """The run of ``name`` on ``seed``; stopped at its first evaluation of 475 unless ``full``."""
    contestant, overrides = VARIANTS[name]
    return Cell.make(
        contestant=contestant,
        env_id="CartPole-v1",
        seed=seed,
        timesteps=timesteps,
        eval_freq=2000,  # the benchmark's CartPole evaluations
        eval_episodes=10,
        final_eval_episodes=100 if full else 10,
        overrides=overrides,
        stop_at_return=None if full else THRESHOLD,
    )


def first_reach(evaluations: dict[str, list[float]], threshold: float = THRESHOLD) -> int | None:
    """Env steps of the first evaluation at or above ``threshold``; None if none is (the benchmark's measure)."""
    return steps_to_threshold(evaluations["timesteps"], evaluations["mean"], threshold)[0]


def print_final_table(rows: list[dict[str, Any]], budget: int) -> None:
    """Each variant's whole-budget runs: does the return stay at 500 once reached?"""
    print(
        "\n| variant | final evaluation (100 episodes, each seed) | median | seeds ending below 475 "
        f"| steps from which it stays >= 475 (median) | seeds falling below {FALL_LEVEL:g} after the first reach |"
    )
    print("|---|---|---|---|---|---|")
    by_variant: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_variant.setdefault(row["variant"], []).append(row)
    for name, group in by_variant.items():
        finals = [row["final"] for row in group]
        each = " / ".join(f"{value:.1f}" for value in finals)
        below = sum(value < THRESHOLD for value in finals)
        stays = statistics.median(budget if row.get("stays") is None else row["stays"] for row in group)
        falls = sum(bool(row.get("falls")) for row in group)
        print(
            f"| `{name}` | {each} | {statistics.median(finals):.1f} | {below} of {len(finals)} | {stays:,.0f} "
            f"| {falls} of {len(group)} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[5, 6, 7, 8])
    parser.add_argument("--timesteps", type=int, default=100_000, help="the budget whose schedules the runs follow")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("cartpole_screen"))
    parser.add_argument("--report-only", action="store_true", help="train nothing: the table of the finished runs")
    parser.add_argument("--json", type=Path, default=None, help="write the rows as JSON")
    parser.add_argument("--from-json", type=Path, nargs="+", default=None, help="rows written by --json: train nothing")
    parser.add_argument("--plot", type=Path, default=None, help="PNG of every seed's steps to first reach 475")
    parser.add_argument(
        "--full", action="store_true", help="train the whole budget (no stop at 475): the table adds each final evaluation"
    )
    args = parser.parse_args()
    if args.from_json is not None:
        rows = [row for path in args.from_json for row in json.loads(path.read_text())]
    else:
        cells = {
            (name, seed): screen_cell(name, seed, args.timesteps, args.full) for seed in args.seeds for name in args.variants
        }
        try:  # a finished run of an entry retuned since would be read (or kept) as today's
            refuse_stale_runs(cells.values(), args.out)
        except StaleRunsError as error:
            parser.error(f"--out: {error}")
        if not args.report_only:
            run_cells(list(cells.values()), args.out, jobs=args.jobs)
        rows = []
        for (name, seed), cell in cells.items():
            if (run := load_run(run_path(args.out, cell))) is not None:
                evaluations = run["evaluations"]
                final = run["final_evaluation"]["mean"]
                _, stays = steps_to_threshold(evaluations["timesteps"], evaluations["mean"], THRESHOLD)
                falls = falls_after_reach(evaluations["mean"], THRESHOLD, FALL_LEVEL)
                rows.append(
                    {
                        "variant": name,
                        "seed": seed,
                        "first_reach": first_reach(evaluations),
                        "final": final,
                        "stays": stays,
                        "falls": falls,
                    }
                )
    budget = max([args.timesteps, *(row["first_reach"] or 0 for row in rows)])
    steps: dict[str, list[float]] = {}
    for row in rows:
        steps.setdefault(row["variant"], []).append(budget if row["first_reach"] is None else row["first_reach"])
    print("| variant | seeds | steps to first reach 475 (each seed; - = not within the budget) | median |")
    print("|---|---|---|---|")
    for name, values in steps.items():
        reached = [row["first_reach"] for row in rows if row["variant"] == name]
        each = " / ".join("-" if step is None else f"{step:,}" for step in reached)
        print(f"| `{name}` | {len(values)} | {each} | {statistics.median(values):,.0f} |")
    if args.full:
        print_final_table(rows, budget)
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=1))
    if args.plot is not None:
        xlabel = f"env steps to first reach {THRESHOLD:g}"
        if any(row["first_reach"] is None for row in rows):
            xlabel += f"\n(not reached: at the budget, {budget:,})"
        plot_final_returns({"CartPole-v1": steps}, args.plot, xlabel)


if __name__ == "__main__":
    main()
