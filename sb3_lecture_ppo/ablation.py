"""
The PPO paper's objective ablation (its Table 1, on the lecture's Results slide), rerun at any scale::

    python -m sb3_lecture_ppo.ablation --envs HalfCheetah-v5 Hopper-v5 Walker2d-v5 --seeds 3 --timesteps 1e6
    python -m sb3_lecture_ppo.ablation --quick --jobs 2            # CartPole-v1 and Pendulum-v1, minutes

The 11 variants are LecturePPO with only the objective changed: no clipping or penalty; clipping
with epsilon 0.1 / 0.2 / 0.3; the adaptive KL penalty with d_targ 0.003 / 0.01 / 0.03; the fixed
KL penalty with beta 0.3 / 1 / 3 / 10. ``--setting paper`` trains them in the paper's MuJoCo
setting, ``--setting shipped`` with our yml entry. A run's score is the mean return of its last
100 training episodes; per task a random policy scores 0 and the best variant 1 (the paper's
normalization), and rliable gives the IQM with stratified-bootstrap 95% intervals and the
probability that clipping with epsilon 0.2 improves on each other variant.

Scale-out: every worker started with the same ``--storage URL --study-name NAME`` takes cells from
one Optuna study (a journal file on one machine, PostgreSQL across machines); each cell runs once,
and a dead worker's cell is rerun by another. Every finished run is saved on its own: an
interrupted sweep resumes, a rerun skips what is done.
"""

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sb3_lecture_ppo.benchmark import (
    UsageError,
    add_backend_arguments,
    apply_quick,
    _check_envs,
    _per_env,
    _positive_float,
    _positive_int,
    check_output_folder,
    check_stale_runs,
)
from sb3_lecture_ppo.evaluation.cells import Cell
from sb3_lecture_ppo.evaluation.contestants import CONTESTANTS, get_contestant

VARIANTS: dict[str, dict[str, Any]] = {
    "none": dict(objective="none"),
    "clip-0.1": dict(objective="clip", clip_range=0.1),
    "clip-0.2": dict(objective="clip", clip_range=0.2),
    "clip-0.3": dict(objective="clip", clip_range=0.3),
    "kl_adaptive-0.003": dict(objective="kl_adaptive", kl_target=0.003),
    "kl_adaptive-0.01": dict(objective="kl_adaptive", kl_target=0.01),
    "kl_adaptive-0.03": dict(objective="kl_adaptive", kl_target=0.03),
    "kl_fixed-0.3": dict(objective="kl_fixed", kl_coef=0.3),
    "kl_fixed-1": dict(objective="kl_fixed", kl_coef=1.0),
    "kl_fixed-3": dict(objective="kl_fixed", kl_coef=3.0),
    "kl_fixed-10": dict(objective="kl_fixed", kl_coef=10.0),
}
PAPER_TABLE = {
    "none": ("No clipping or penalty", -0.39),
    "clip-0.1": ("Clipping, epsilon = 0.1", 0.76),
    "clip-0.2": ("Clipping, epsilon = 0.2", 0.82),
    "clip-0.3": ("Clipping, epsilon = 0.3", 0.70),
    "kl_adaptive-0.003": ("Adaptive KL, d_targ = 0.003", 0.68),
    "kl_adaptive-0.01": ("Adaptive KL, d_targ = 0.01", 0.74),
    "kl_adaptive-0.03": ("Adaptive KL, d_targ = 0.03", 0.71),
    "kl_fixed-0.3": ("Fixed KL, beta = 0.3", 0.62),
    "kl_fixed-1": ("Fixed KL, beta = 1", 0.71),
    "kl_fixed-3": ("Fixed KL, beta = 3", 0.72),
    "kl_fixed-10": ("Fixed KL, beta = 10", 0.69),
}
"""Our name -> the paper's row and its average normalized score (7 MuJoCo tasks x 3 seeds x 1M steps)."""

BEST = "clip-0.2"
SETTINGS = {"paper": "lecture_ppo:paper", "shipped": "lecture_ppo"}
COMPARISONS = ("ppo", "a2c", "trpo", "lecture_ac", "lecture_gae_ac", "lecture_mc_pg")
QUICK = dict(envs=["CartPole-v1", "Pendulum-v1"], seeds=2, timesteps=["12000"])
"""
44 runs of 12k steps, trained as two populations of 22 (one per env): 5.4 CPU-minutes, 7.8 minutes with --jobs 2
beside three other training processes (measured 2026-11-30; one process per run: 17 CPU-minutes, 2026-11-25).
"""
RANDOM_EPISODES = 100


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m sb3_lecture_ppo.ablation", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--envs", nargs="+", default=["HalfCheetah-v5", "Hopper-v5", "Walker2d-v5"], help="gymnasium env ids")
    parser.add_argument("--seeds", type=_positive_int("--seeds"), default=3, help="number of seeds (0, 1, ...)")
    parser.add_argument("--timesteps", nargs="+", default=["1e6"], metavar="[ENV=]N", help="training budget per run")
    parser.add_argument("--setting", default="paper", help="paper (the PPO paper's MuJoCo setting) or shipped (our yml entry)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), help=f"objective variants: {', '.join(VARIANTS)}")
    parser.add_argument("--compare", nargs="*", default=[], help=f"other algorithms as columns: {', '.join(COMPARISONS)}")
    parser.add_argument("--out", type=Path, default=Path("ablation-results"), help="output folder")
    parser.add_argument("--jobs", type=_positive_int("--jobs"), default=1, help="local runs at a time (one process each)")
    parser.add_argument("--storage", default=None, help="Optuna storage shared by the workers: a journal file or an RDB URL")
    parser.add_argument("--study-name", default=None, help="the sweep's study name on --storage")
    parser.add_argument(
        "--heartbeat", type=_positive_float("--heartbeat"), default=30.0, help="seconds between a worker's signs of life"
    )
    parser.add_argument(
        "--grace",
        type=_positive_float("--grace"),
        default=120.0,
        help="seconds without a sign of life after which a cell is rerun elsewhere (longer than --heartbeat)",
    )
    add_backend_arguments(parser)
    parser.add_argument(
        "--quick", action="store_true", help="CartPole-v1 and Pendulum-v1, 2 seeds, 12k steps (--jobs 2 on 2 cores)"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="delete the runs of OUT made with other settings or an entry that has changed since",
    )
    parser.add_argument("--report-only", action="store_true", help="write the report from the finished runs, train nothing")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.quick:
        apply_quick(parser, args, QUICK, sys.argv[1:] if argv is None else argv)
    return args


def variant_of(run: dict[str, Any]) -> str:
    """The variant (or comparison algorithm) a run belongs to."""
    overrides = run["cell"]["overrides"]
    for name, settings in VARIANTS.items():
        if overrides == settings:
            return name
    return str(run["cell"]["contestant"])


def sweep_cells(args: argparse.Namespace) -> tuple[list[Cell], dict[str, dict[str, Any]]]:
    """Variant x env x seed cells (and the comparison algorithms'), interleaved by seed."""
    if args.setting not in SETTINGS:
        raise UsageError(f"--setting: unknown setting {args.setting!r}: use paper or shipped")
    for name in args.variants:
        if name not in VARIANTS:
            raise UsageError(f"--variants: unknown variant {name!r}: use some of {', '.join(VARIANTS)}")
    for name in args.compare:
        if name not in CONTESTANTS:
            raise UsageError(f"--compare: unknown algorithm {name!r}: use some of {', '.join(COMPARISONS)}")
    _check_envs(args.envs)
    budgets = _per_env("--timesteps", args.timesteps, args.envs, {})
    settings = {}
    for env_id in args.envs:
        if budgets.get(env_id, 0) < 1:
            raise UsageError(f"--timesteps: the budget of {env_id} must be a positive number of steps")
        timesteps = int(budgets[env_id])
        settings[env_id] = dict(timesteps=timesteps, eval_freq=timesteps, eval_episodes=5, final_eval_episodes=10)
    contestant = SETTINGS[args.setting]
    for name in [contestant, *args.compare]:
        for env_id in args.envs:
            try:
                get_contestant(name).hyperparams(env_id)
            except ValueError as error:
                option = "--setting shipped" if name == contestant else "--compare"
                raise UsageError(f"{option}: {error}") from None
    cells: list[Cell] = []
    for seed in range(args.seeds):
        variants = args.variants if seed % 2 == 0 else list(reversed(args.variants))
        for env_id in args.envs:
            common = dict(env_id=env_id, seed=seed, **settings[env_id])
            cells.extend(Cell.make(contestant=contestant, overrides=VARIANTS[name], **common) for name in variants)
            cells.extend(Cell.make(contestant=name, **common) for name in args.compare)
    return cells, settings


def random_policy_scores(env_ids: Sequence[str], out: Path) -> dict[str, float]:
    """Mean return of a uniformly random policy over 100 seeded episodes per env, cached in ``OUT/random_scores.json``."""
    import gymnasium as gym

    path = out / "random_scores.json"
    cached: dict[str, float] = json.loads(path.read_text()) if path.exists() else {}
    for env_id in env_ids:
        if env_id in cached:
            continue
        env = gym.make(env_id)
        env.action_space.seed(0)
        returns = []
        for episode in range(RANDOM_EPISODES):
            env.reset(seed=episode)
            total, done = 0.0, False
            while not done:
                _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
                total += float(reward)
                done = terminated or truncated
            returns.append(total)
        cached[env_id] = float(np.mean(returns))
    path.write_text(json.dumps(cached, indent=1))
    return cached


def write_report(cells: Sequence[Cell], out: Path, env_ids: Sequence[str], setting: str) -> str:
    """``results.json``, ``results.md`` (the paper's layout), ``curves_<env>.png``, ``intervals.png``."""
    from sb3_lecture_ppo.evaluation.report import interval_estimates, normalized_scores, plot_curves, plot_interval_estimates
    from sb3_lecture_ppo.evaluation.runner import load_run, run_path

    runs = [run for cell in cells if (run := load_run(run_path(out, cell))) is not None]
    header = f"# Objective ablation ({setting} setting): {len(runs)} of {len(cells)} runs finished\n\n"
    (out / "results.json").write_text(json.dumps({"runs": runs}, indent=1))
    raw: dict[str, dict[str, list[float]]] = {}
    for run in runs:
        score = run["last_100_training_episodes"]
        if score is not None:
            raw.setdefault(variant_of(run), {}).setdefault(run["cell"]["env_id"], []).append(float(score))
    n_seeds = len({cell.seed for cell in cells})
    complete = {
        name: per_env for name, per_env in raw.items() if all(len(per_env.get(env_id, [])) == n_seeds for env_id in env_ids)
    }
    if not complete:
        (out / "results.md").write_text(header + "No algorithm has finished every env and seed yet.\n")
        return header
    random_scores = random_policy_scores(env_ids, out)
    variants_done = {name: per_env for name, per_env in complete.items() if name in VARIANTS}
    reference = None
    if variants_done:  # the best variant is 1; the comparison algorithms are scored on the same scale
        reference = {env_id: max(float(np.mean(per_env[env_id])) for per_env in variants_done.values()) for env_id in env_ids}
    scores = normalized_scores(complete, random_scores, reference)
    best = BEST if BEST in scores else next(iter(scores))
    aggregates, improvements = interval_estimates(scores, best)
    table = _table(scores, aggregates, improvements, complete, random_scores, env_ids, best)
    table += _per_task_tables(runs, list(scores), random_scores, reference, env_ids)
    (out / "results.md").write_text(header + table)
    plot_interval_estimates(aggregates, out / "intervals.png", xlabel="normalized score (random 0, best variant 1)")
    for env_id in env_ids:
        plot_curves(
            runs,
            out / f"curves_{env_id}.png",
            curve="training_curve",
            value_key="episode_return_mean",
            ylabel="mean return, last 100 training episodes",
            label=variant_of,
            env_ids=[env_id],
        )
    return header + table


def _table(
    scores: dict[str, np.ndarray],
    aggregates: dict[str, tuple[float, float, float]],
    improvements: dict[str, tuple[float, float, float]],
    raw: dict[str, dict[str, list[float]]],
    random_scores: dict[str, float],
    env_ids: Sequence[str],
    best: str,
) -> str:
    lines = [
        "Score of a run: mean return of its last 100 training episodes. Normalized per task: random policy 0, best variant 1.",
        f"IQM and P({best} > row): rliable, stratified bootstrap, 95% intervals.",
        "",
        "| algorithm | paper (avg. normalized) | ours: avg. normalized | IQM [95% CI] "
        f"| P({best} > row) [95% CI] | " + " | ".join(f"{env_id} mean return" for env_id in env_ids) + " |",
        "|---|---|---|---|---|" + "---|" * len(env_ids),
    ]
    for name in _row_order(scores):
        paper_row, paper_score = PAPER_TABLE.get(name, (name, None))
        iqm, low, high = aggregates[name]
        improvement = "-" if name not in improvements else "{:.2f} [{:.2f}, {:.2f}]".format(*improvements[name])
        returns = " | ".join(f"{np.mean(raw[name][env_id]):,.1f}" for env_id in env_ids)
        lines.append(
            f"| {paper_row} | {'' if paper_score is None else f'{paper_score:.2f}'} | {scores[name].mean():.2f} "
            f"| {iqm:.2f} [{low:.2f}, {high:.2f}] | {improvement} | {returns} |"
        )
    lines.append(
        "| random policy | 0 | 0.00 | | | " + " | ".join(f"{random_scores[env_id]:,.1f}" for env_id in env_ids) + " |"
    )
    return "\n".join(lines) + "\n"


def _row_order(names: Iterable[str]) -> list[str]:
    """The paper's variants in the paper's order, then the comparison algorithms in theirs."""
    names = list(names)
    return [name for name in VARIANTS if name in names] + [name for name in names if name not in VARIANTS]


def _per_task_tables(
    runs: Sequence[dict[str, Any]],
    names: Sequence[str],
    random_scores: dict[str, float],
    reference: dict[str, float] | None,
    env_ids: Sequence[str],
) -> str:
    """Per task, each algorithm's score and peak seed by seed, and its normalized mean over seeds."""
    by_cell = {(variant_of(run), run["cell"]["env_id"], run["cell"]["seed"]): run for run in runs}
    seeds = sorted({seed for _, _, seed in by_cell})
    seed_list = " / ".join(str(seed) for seed in seeds)
    sections = []
    for env_id in env_ids:
        finished: dict[str, list[dict[str, Any]]] = {}
        for name in _row_order(names):
            per_seed = [run for seed in seeds if (run := by_cell.get((name, env_id, seed))) is not None]
            if len(per_seed) == len(seeds):
                finished[name] = per_seed
        if not finished:
            continue
        best = max(float(np.mean([run["last_100_training_episodes"] for run in per_seed])) for per_seed in finished.values())
        one = reference[env_id] if reference is not None else best
        lines = [
            "",
            f"## {env_id}",
            "",
            f"Normalized: random policy 0 ({random_scores[env_id]:,.1f}), 1 = {one:,.1f}. "
            "Peak: the highest mean return of the last 100 training episodes, logged during training or at the end.",
            "",
            f"| algorithm | score, seeds {seed_list} | peak, seeds {seed_list} | normalized (mean of seeds) |",
            "|---|---|---|---|",
        ]
        rows = {
            name: ([float(run["last_100_training_episodes"]) for run in per_seed], [_peak(run) for run in per_seed])
            for name, per_seed in finished.items()
        }
        # returns of a few units (Reacher's) keep a decimal; thousands (HalfCheetah's) do not need one
        decimals = 1 if max(abs(value) for finals, peaks in rows.values() for value in finals + peaks) < 100 else 0
        for name, (finals, peaks) in rows.items():
            normalized = (np.mean(finals) - random_scores[env_id]) / (one - random_scores[env_id])
            lines.append(
                f"| {PAPER_TABLE.get(name, (name, None))[0]} | {' / '.join(f'{value:,.{decimals}f}' for value in finals)} "
                f"| {' / '.join(f'{value:,.{decimals}f}' for value in peaks)} | {normalized:.2f} |"
            )
        sections.append("\n".join(lines))
    return "\n".join(sections) + ("\n" if sections else "")


def _peak(run: dict[str, Any]) -> float:
    """The highest mean return of the last 100 training episodes, logged during training or at the end."""
    logged = [value for value in run["training_curve"]["episode_return_mean"] if value is not None]
    return float(max([*logged, run["last_100_training_episodes"]]))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.grace <= args.heartbeat:
        print(f"ablation: error: --grace {args.grace:g} must be longer than --heartbeat {args.heartbeat:g}", file=sys.stderr)
        return 2
    try:
        cells, settings = sweep_cells(args)
        check_output_folder(args.out, settings, args.overwrite)
        check_stale_runs(cells, args.out, args.overwrite)
    except UsageError as error:
        print(f"ablation: error: {error}", file=sys.stderr)
        return 2
    failed: list[Cell] = []
    if not args.report_only:
        from sb3_lecture_ppo.evaluation.distributed import StorageError, run_sweep

        try:
            failed = run_sweep(
                cells,
                args.out,
                score=lambda run: float(run["last_100_training_episodes"] or 0.0),
                jobs=args.jobs,
                storage=args.storage,
                study_name=args.study_name,
                show_progress=not args.no_progress,
                heartbeat_seconds=args.heartbeat,
                grace_seconds=args.grace,
                backend=args.backend,
                population_size=args.population_size,
            )
        except StorageError as error:
            print(f"ablation: error: {error}", file=sys.stderr)
            return 2
    print(write_report(cells, args.out, args.envs, args.setting))
    if failed:
        print(f"ablation: {len(failed)} runs failed; rerun the same command to retry them", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
