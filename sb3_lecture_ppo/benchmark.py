"""
Side-by-side benchmark of the lecture's algorithms against SB3's, on the same seeds::

    python -m sb3_lecture_ppo.benchmark --algos lecture_ppo ppo --envs CartPole-v1 --seeds 5
    python -m sb3_lecture_ppo.benchmark --quick

Every contestant trains with its RL Zoo entry (ours from our yml, SB3's read from the installed
rl_zoo3). Runs are interleaved (A B, then B A on the next seed) so that machine drift hits all
contestants alike, each in its own process. Every finished run is saved on its own under
``OUT/runs/``: an interrupted sweep resumes where it stopped, and a rerun skips what is done.
Writes into OUT: ``results.json`` (every run), ``results.md`` (the table), ``curves.png``,
``training_curves.png``, ``final.png`` (every seed's final evaluation) and ``throughput.png``.
"""

import argparse
import json
import math
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sb3_lecture_ppo.evaluation.cells import RESULTS_FORMAT_VERSION, Cell
from sb3_lecture_ppo.evaluation.contestants import CONTESTANTS, get_contestant

DEFAULT_TIMESTEPS = {"CartPole-v1": 100_000, "HalfCheetah-v5": 1_000_000, "Pendulum-v1": 100_000}
DEFAULT_EVAL_FREQ = {"CartPole-v1": 2_000, "HalfCheetah-v5": 10_000}
FALL_LEVELS = {"CartPole-v1": 400.0}
"""Per env, the return below which an evaluation after the first reach of the threshold counts as falling back."""
EVALUATIONS_PER_RUN = 50
"""Evaluations of a run on an env without a default evaluation frequency."""

QUICK = dict(algos=["lecture_ppo", "ppo"], envs=["CartPole-v1"], seeds=2, timesteps=["20000"], eval_freq=["4000"])
QUICK_EPISODES = dict(eval_episodes=5, final_eval_episodes=20)

SETTINGS_FILE = "sweep.json"
OUTPUTS = ("results.json", "results.md", "curves.png", "training_curves.png", "final.png", "throughput.png")


class UsageError(ValueError):
    """Bad command-line input: reported as one line naming the option."""


def _positive_float(option: str) -> Any:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value <= 0:
            raise argparse.ArgumentTypeError(f"{option} must be a positive number of seconds, got {text!r}")
        return value

    return parse


def _positive_int(option: str, minimum: int = 1) -> Any:
    kind = "positive" if minimum == 1 else "non-negative"

    def parse(text: str) -> int:
        try:
            value = int(float(text))
        except ValueError:
            value = minimum - 1
        if value < minimum or value != float(text):
            raise argparse.ArgumentTypeError(f"{option} must be a {kind} integer, got {text!r}")
        return value

    return parse


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m sb3_lecture_ppo.benchmark",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--algos", nargs="+", default=["lecture_ppo", "ppo"], help=f"contestants: {', '.join(CONTESTANTS)}")
    parser.add_argument("--envs", nargs="+", default=["CartPole-v1"], help="gymnasium env ids")
    parser.add_argument("--seeds", type=_positive_int("--seeds"), default=5, help="number of seeds (0, 1, ...)")
    parser.add_argument(
        "--first-seed",
        type=_positive_int("--first-seed", minimum=0),
        default=0,
        help="seed of the first run: extends a sweep (e.g. --seeds 5 --first-seed 5 adds seeds 5-9)",
    )
    parser.add_argument(
        "--timesteps",
        nargs="+",
        default=[],
        metavar="[ENV=]N",
        help=f"training budget, for all envs or per env (defaults: {DEFAULT_TIMESTEPS})",
    )
    parser.add_argument(
        "--eval-freq",
        nargs="+",
        default=[],
        metavar="[ENV=]N",
        help=f"env steps between evaluations (defaults: {DEFAULT_EVAL_FREQ}, else budget / {EVALUATIONS_PER_RUN})",
    )
    parser.add_argument("--eval-episodes", type=_positive_int("--eval-episodes"), default=10, help="episodes per evaluation")
    parser.add_argument(
        "--final-eval-episodes",
        type=_positive_int("--final-eval-episodes"),
        default=100,
        help="episodes of the final evaluation",
    )
    parser.add_argument(
        "--eval-envs",
        type=_positive_int("--eval-envs"),
        default=1,
        help="envs an evaluation steps at once (its episodes split evenly over them): the same evaluation, "
        "a fraction of its time on a small network",
    )
    parser.add_argument(
        "--threshold",
        nargs="+",
        default=[],
        metavar="ENV=R",
        help="return to reach (default: the env spec's reward_threshold)",
    )
    parser.add_argument("--out", type=Path, default=Path("benchmark-results"), help="output folder")
    parser.add_argument("--jobs", type=_positive_int("--jobs"), default=1, help="runs at a time (one process each)")
    add_backend_arguments(parser)
    parser.add_argument("--quick", action="store_true", help="CartPole-v1, 2 seeds, 20k steps: a few minutes")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="delete the runs of OUT made with other settings or an entry that has changed since",
    )
    parser.add_argument("--report-only", action="store_true", help="write the report from the finished runs, train nothing")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.quick:
        apply_quick(parser, args, {**QUICK, **QUICK_EPISODES}, sys.argv[1:] if argv is None else argv)
    return args


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    """``--backend`` and ``--population-size``, shared by the sweeps' command lines."""
    parser.add_argument(
        "--backend",
        choices=("population", "runs"),
        default="population",
        help="population: cells that differ only in seed and objective settings (LecturePPO in the paper setting or "
        "with the lecture's segments) train together in one process; runs: one process per cell",
    )
    parser.add_argument(
        "--population-size",
        type=_positive_int("--population-size"),
        default=64,
        help="most runs in one population (lower it where memory is short, or to spread a checkpointed population "
        "over more --jobs: each smaller group resumes its members from the larger checkpoint)",
    )


def apply_quick(
    parser: argparse.ArgumentParser, args: argparse.Namespace, settings: Mapping[str, Any], argv: Sequence[str]
) -> None:
    """Set ``--quick``'s values, refusing in one line the options given beside it (in ``argv``) that it would override."""
    given_options = {token.split("=")[0] for token in argv if token.startswith("--")}
    given = [
        action.dest for action in parser._actions if action.dest in settings and given_options & set(action.option_strings)
    ]
    if given:
        options = ", ".join("--" + key.replace("_", "-") for key in given)
        parser.exit(2, f"{parser.prog}: error: --quick sets {options} itself: drop --quick, or drop {options}\n")
    for key, value in settings.items():
        setattr(args, key, value)


def _per_env(option: str, values: Sequence[str], env_ids: Sequence[str], default: Mapping[str, float]) -> dict[str, float]:
    """``N`` (all envs) or ``ENV=N`` items -> value per env."""
    result = {env_id: default[env_id] for env_id in env_ids if env_id in default}
    for item in values:
        env_id, _, text = item.rpartition("=")
        try:
            value = float(text)
        except ValueError:
            raise UsageError(f"{option} {item!r}: expected N or ENV=N with a number N") from None
        if env_id and env_id not in env_ids:
            raise UsageError(f"{option} {item!r}: {env_id} is not among --envs {' '.join(env_ids)}")
        for target in [env_id] if env_id else env_ids:
            result[target] = value
    return result


def _check_envs(env_ids: Sequence[str]) -> None:
    import gymnasium as gym

    from sb3_lecture_ppo.zoo import register

    register()  # rl_zoo3.import_envs registers the zoo's extra envs
    for env_id in env_ids:
        if env_id not in gym.registry:
            raise UsageError(f"--envs: unknown env {env_id!r} (not in gymnasium's registry): check the id and its version")


def _thresholds(values: Sequence[str], env_ids: Sequence[str]) -> dict[str, float]:
    import gymnasium as gym

    defaults = {}
    for env_id in env_ids:
        threshold = gym.spec(env_id).reward_threshold
        if threshold is not None:
            defaults[env_id] = float(threshold)
    return _per_env("--threshold", values, env_ids, defaults)


def sweep_cells(args: argparse.Namespace) -> tuple[list[Cell], dict[str, dict[str, Any]]]:
    """The cells of the sweep, interleaved, and the per-env settings that decide their outcome."""
    for name in args.algos:
        try:
            get_contestant(name)
        except ValueError as error:
            raise UsageError(f"--algos: {error}") from None
    _check_envs(args.envs)
    budgets = _per_env("--timesteps", args.timesteps, args.envs, DEFAULT_TIMESTEPS)
    for env_id in args.envs:
        if env_id not in budgets:
            raise UsageError(f"--timesteps: no default budget for {env_id}: give --timesteps {env_id}=N")
        if budgets[env_id] < 1:
            raise UsageError(
                f"--timesteps: the budget of {env_id} must be a positive number of steps, got {budgets[env_id]:g}"
            )
    eval_freqs = _per_env("--eval-freq", args.eval_freq, args.envs, DEFAULT_EVAL_FREQ)
    settings = {}
    for env_id in args.envs:
        eval_freq = int(eval_freqs.get(env_id, max(1, budgets[env_id] // EVALUATIONS_PER_RUN)))
        if eval_freq < 1:
            raise UsageError(f"--eval-freq: must be a positive number of steps for {env_id}")
        settings[env_id] = dict(
            timesteps=int(budgets[env_id]),
            eval_freq=eval_freq,
            eval_episodes=args.eval_episodes,
            final_eval_episodes=args.final_eval_episodes,
        )
        if args.eval_envs != 1:  # (absent where 1: the folders and cell ids of earlier sweeps stay valid)
            if args.eval_episodes % args.eval_envs or args.final_eval_episodes % args.eval_envs:
                raise UsageError(
                    f"--eval-envs {args.eval_envs} must divide --eval-episodes ({args.eval_episodes}) and "
                    f"--final-eval-episodes ({args.final_eval_episodes}): every env plays the same number of episodes"
                )
            settings[env_id]["eval_envs"] = args.eval_envs
    for name in args.algos:
        for env_id in args.envs:
            try:
                get_contestant(name).hyperparams(env_id)
            except ValueError as error:
                raise UsageError(f"--algos: {error}") from None
    cells: list[Cell] = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        order = args.algos if seed % 2 == 0 else list(reversed(args.algos))
        for env_id in args.envs:
            cells.extend(Cell.make(contestant=name, env_id=env_id, seed=seed, **settings[env_id]) for name in order)
    return cells, settings


def check_output_folder(out: Path, settings: dict[str, dict[str, Any]], overwrite: bool) -> None:
    """Refuse a folder holding runs made with other settings for the same env, unless ``overwrite``."""
    path = out / SETTINGS_FILE
    saved: dict[str, Any] = {}
    if path.exists():
        try:
            saved_file = json.loads(path.read_text())
            saved = saved_file["settings"]
        except (ValueError, KeyError, TypeError):
            raise UsageError(f"--out: {path} is not a benchmark settings file: pick another --out") from None
        if saved_file.get("format_version") != RESULTS_FORMAT_VERSION:
            raise UsageError(
                f"--out: {path} is results format {saved_file.get('format_version')}, this version reads and writes "
                f"format {RESULTS_FORMAT_VERSION}: pick another --out"
            )
    conflicts = [env_id for env_id in settings if env_id in saved and saved[env_id] != settings[env_id]]
    if conflicts and not overwrite:
        env_id = conflicts[0]
        raise UsageError(
            f"--out: {out} holds {env_id} runs made with other settings ({saved[env_id]}, now {settings[env_id]}): "
            "use another --out, the same settings, or --overwrite to delete them"
        )
    if conflicts:
        shutil.rmtree(out / "runs", ignore_errors=True)
        saved = {}
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"format_version": RESULTS_FORMAT_VERSION, "settings": {**saved, **settings}}, indent=1))


def check_stale_runs(cells: Sequence[Cell], out: Path, overwrite: bool) -> None:
    """Refuse finished runs that trained with other hyperparameters than their entry gives now, unless ``overwrite``."""
    from sb3_lecture_ppo.evaluation.runner import other_format_message, run_path, stale_cells

    if (message := other_format_message(cells, out)) is not None:
        raise UsageError(f"--out: {message}")
    stale = stale_cells(cells, out)
    if stale and not overwrite:
        raise UsageError(
            f"--out: {out} holds {len(stale)} finished runs whose zoo entry has changed since they trained "
            f"(first: {stale[0].label}): use --overwrite to retrain them, or another --out"
        )
    for cell in stale:
        run_path(out, cell).unlink()


def write_report(cells: Sequence[Cell], out: Path, thresholds: dict[str, float]) -> list[dict[str, Any]]:
    """Write ``results.json``, ``results.md`` and the figures from the finished runs of ``cells``."""
    from sb3_lecture_ppo.evaluation.report import (
        final_return_panels,
        markdown_table,
        plot_curves,
        plot_final_returns,
        plot_throughput,
        summarize,
    )
    from sb3_lecture_ppo.evaluation.runner import load_run, run_path

    runs = [run for cell in cells if (run := load_run(run_path(out, cell))) is not None]
    rows = summarize(runs, thresholds, FALL_LEVELS)
    (out / "results.json").write_text(json.dumps({"summary": rows, "runs": runs}, indent=1))
    header = f"# Benchmark: {len(runs)} of {len(cells)} runs finished\n\n"
    (out / "results.md").write_text(header + (markdown_table(rows) if rows else "No finished run yet.\n"))
    if runs:
        plot_curves(runs, out / "curves.png", thresholds)
        plot_curves(
            runs,
            out / "training_curves.png",
            thresholds,
            curve="training_curve",
            value_key="episode_return_mean",
            ylabel="mean return, last 100 training episodes",
        )
        plot_throughput(rows, out / "throughput.png")
        plot_final_returns(final_return_panels(runs), out / "final.png", "final evaluation (deterministic)")
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cells, settings = sweep_cells(args)
        thresholds = _thresholds(args.threshold, args.envs)
        check_output_folder(args.out, settings, args.overwrite)
        check_stale_runs(cells, args.out, args.overwrite)
    except UsageError as error:
        print(f"benchmark: error: {error}", file=sys.stderr)
        return 2
    failed = []
    if not args.report_only:
        from sb3_lecture_ppo.evaluation.runner import run_cells

        failed = run_cells(
            cells,
            args.out,
            jobs=args.jobs,
            show_progress=not args.no_progress,
            backend=args.backend,
            population_size=args.population_size,
        )
    write_report(cells, args.out, thresholds)
    print((args.out / "results.md").read_text())
    if failed:
        print(f"benchmark: {len(failed)} runs failed; rerun the same command to retry them", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
