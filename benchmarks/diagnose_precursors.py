"""
Why the precursors' tuned HalfCheetah-v5 entries fell behind SB3's A2C: one change at a time from
A2C's settings, through the benchmark's runner (the zoo's ExperimentManager, VecNormalize), seed 0.

    python benchmarks/diagnose_precursors.py                    # the 300k-step diagnosis
    python benchmarks/diagnose_precursors.py --timesteps 1000000 --variants ac_a2c gae_lambda_0.5 gae_lambda_0.8

Finished runs are kept under ``--out`` (one JSON per run, as the benchmark's) and skipped on a rerun;
the table of every finished variant is printed at the end. A run stopped before its end (Ctrl-C, or
``timeout -s INT``) keeps its evaluations so far in its work folder; ``--json`` writes the table, those
unfinished runs' evaluations included, as JSON; ``--from-json`` reads such tables back (from other
machines, say) instead of training, and ``--plot`` draws every seed's final evaluation per variant.

    python benchmarks/diagnose_precursors.py --timesteps 1000000 --eval-freq 50000 --jobs 15 \\
        --variants ac_a2c gae_lambda_0.25 gae_lambda_0.5 --seeds 5 6 7 8 9 --json screen.json
    python benchmarks/diagnose_precursors.py --from-json screen.json --plot screen.png

``--curves`` draws the finished runs' learning curves per variant (median and min-max over seeds), e.g. the
1-step against the GAE actor-critic with 32-step rollouts (README):

    python benchmarks/diagnose_precursors.py --timesteps 1000000 --eval-freq 50000 --seeds 10 11 12 13 14 15 16 17 18 19 20 \\
        --variants gae_n_steps_32_lambda_0.95 ac_n_steps_32 --out benchmarks/results/precursors/rollout_32 \\
        --curves curves.png
"""

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from sb3_lecture_ppo.evaluation.cells import Cell
from sb3_lecture_ppo.evaluation.report import plot_curves, plot_final_returns
from sb3_lecture_ppo.evaluation.runner import WORK_FOLDER, StaleRunsError, load_run, refuse_stale_runs, run_cells, run_path

RMSPROP = "optimizer_class=th.optim.RMSprop, optimizer_kwargs=dict(alpha=0.99, eps=1e-5, weight_decay=0)"
A2C_SETTINGS: dict[str, Any] = {
    # SB3 A2C's defaults (its zoo HalfCheetah entry adds only normalize: true) on 8 envs x 8 steps
    "policy": "stable_baselines3.common.policies.ActorCriticPolicy",  # 64x64 tanh, log std 0, orthogonal init
    "policy_kwargs": f"dict({RMSPROP})",
    "n_envs": 8,
    "n_steps": 8,
    "seq_length": 8,
    "advantage_scope": "rollout",
    "gamma": 0.99,
    "learning_rate": 0.0007,
    "ent_coef": 0.0,
    "vf_coef": 0.5,
    "max_grad_norm": 0.5,
    "normalize_advantage": False,
}
AC = {**A2C_SETTINGS, "gae_lambda": 0.0, "value_target": "td"}
TUNED_LOG_STD = -1.285770665772809
TUNED_NETWORK = (
    f"log_std_init={TUNED_LOG_STD}, hidden_size=128, share_features_extractor=False, net_arch=dict(pi=[128], vf=[128])"
)
TUNED_AC: dict[str, Any] = {
    # the zoo-tuned lecture_ac entry this diagnosis replaced (trial 11 of a 12-trial TPE study at 300k steps)
    "policy": "MlpPolicy",
    "policy_kwargs": f"dict( {TUNED_NETWORK} )",  # as the yml's folded string read
    "n_envs": 8,
    "n_steps": 16,
    "seq_length": 16,
    "gamma": 0.9976658707728996,
    "learning_rate": 0.0011839215961427611,
    "ent_coef": 3.0835788685533704e-06,
    "vf_coef": 0.7620803776160473,
    "max_grad_norm": 0.44256027445002355,
    "normalize_advantage": True,
}
MC_PG_NETWORK = {
    # lecture_mc_pg's HalfCheetah settings (it reaches ~3,000) on the 1-step TD actor-critic
    "policy_kwargs": "dict(log_std_init=-1, hidden_size=256)",
    "gamma": 0.99,
    "learning_rate": 0.0007,
    "normalize_advantage": False,
    "ent_coef": 0.0,
    "vf_coef": 0.5,
    "max_grad_norm": 0.5,
}

MC_PG_SETTINGS: dict[str, Any] = {
    **MC_PG_NETWORK,
    "policy": "MlpPolicy",
    "n_envs": 8,
    "n_steps": 512,
    "seq_length": 16,
    "advantage_scope": "rollout",
    "gae_lambda": 0.95,
    "value_target": "td",
}

VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "ac_entry_tuned": ("lecture_ac", TUNED_AC),
    "ac_entry_tuned_linear_lr": ("lecture_ac", {**TUNED_AC, "learning_rate": "lin_0.0011839215961427611"}),
    "ac_entry_tuned_rmsprop": (
        "lecture_ac",
        {**TUNED_AC, "learning_rate": 0.0007, "policy_kwargs": f"dict({TUNED_NETWORK}, {RMSPROP})"},
    ),
    "ac_mc_pg_network": ("lecture_ac", {**TUNED_AC, **MC_PG_NETWORK}),
    "ac_mc_pg_network_n_steps_64": ("lecture_ac", {**TUNED_AC, **MC_PG_NETWORK, "n_steps": 64, "seq_length": 64}),
    "ac_a2c": ("lecture_ac", AC),
    "ac_a2c_adam": ("lecture_ac", {**AC, "policy_kwargs": "dict()"}),
    "ac_a2c_lecture_net": (
        "lecture_ac",
        {**AC, "policy": "MlpPolicy", "policy_kwargs": f"dict(log_std_init=0.0, {RMSPROP})"},
    ),
    "ac_a2c_log_std_tuned": ("lecture_ac", {**AC, "policy_kwargs": f"dict(log_std_init={TUNED_LOG_STD}, {RMSPROP})"}),
    "ac_a2c_normalized_advantage": ("lecture_ac", {**AC, "normalize_advantage": True}),
    "a2c_replica_1_env_5_steps": (
        "lecture_gae_ac",
        {**A2C_SETTINGS, "n_envs": 1, "n_steps": 5, "seq_length": 5, "gae_lambda": 1.0, "value_target": "lambda"},
    ),
    "a2c_like_gae_lambda_1": ("lecture_gae_ac", {**A2C_SETTINGS, "gae_lambda": 1.0, "value_target": "lambda"}),
    "a2c_like_gae_lambda_0.95": ("lecture_gae_ac", {**A2C_SETTINGS, "gae_lambda": 0.95, "value_target": "lambda"}),
    "gae_lambda_0.95": ("lecture_gae_ac", {**AC, "gae_lambda": 0.95}),
    "gae_lambda_0.95_lr_3.5e-4": ("lecture_gae_ac", {**AC, "gae_lambda": 0.95, "learning_rate": 0.00035}),
    "gae_lambda_0.8": ("lecture_gae_ac", {**AC, "gae_lambda": 0.8}),
    "gae_lambda_0.5": ("lecture_gae_ac", {**AC, "gae_lambda": 0.5}),
    "gae_lambda_0.25": ("lecture_gae_ac", {**AC, "gae_lambda": 0.25}),
    # the shipped entries with the zoo's tuned A2C PyBullet HalfCheetah settings (lambda 0.9, a linear learning-rate
    # decay from 9.6e-4, vf_coef 0.4; not its gSDE or log std -2)
    "gae_zoo_bullet": ("lecture_gae_ac", {"gae_lambda": 0.9, "learning_rate": "lin_0.00096", "vf_coef": 0.4}),
    "ac_zoo_bullet": ("lecture_ac", {"learning_rate": "lin_0.00096", "vf_coef": 0.4}),
    "gae_lambda_0.9": ("lecture_gae_ac", {"gae_lambda": 0.9}),
    # 32-step rollouts (8 envs: 256 transitions a gradient step), where GAE's sum can run 4x further than in 8 steps
    "gae_n_steps_32_lambda_0.95": ("lecture_gae_ac", {"n_steps": 32, "seq_length": 32, "gae_lambda": 0.95}),
    "ac_n_steps_32": ("lecture_ac", {"n_steps": 32, "seq_length": 32}),
    # halfway: 16-step rollouts (7,812 gradient steps in 1M), lambda 0.9
    "gae_n_steps_16_lambda_0.9": ("lecture_gae_ac", {"n_steps": 16, "seq_length": 16, "gae_lambda": 0.9}),
    "ac_n_steps_16": ("lecture_ac", {"n_steps": 16, "seq_length": 16}),
    # 16-step GAE climbs steadily but slowly (1,100-1,450 at 1M, still rising): twice the learning rate for half
    # the gradient steps of the 8-step entries
    "gae_n_steps_16_lambda_0.9_lr_1.4e-3": (
        "lecture_gae_ac",
        {"n_steps": 16, "seq_length": 16, "gae_lambda": 0.9, "learning_rate": 0.0014},
    ),
    # the GAE actor-critic on lecture_mc_pg's entry (8 envs x 512 steps, GAE over the rollout, width 256, log std -1,
    # Adam): Monte-Carlo PG is GAE with lambda 1, so these sit between it and the 1-step actor-critic
    "gae_mc_pg_settings": ("lecture_gae_ac", MC_PG_SETTINGS),
    "gae_mc_pg_settings_n_steps_128": ("lecture_gae_ac", {**MC_PG_SETTINGS, "n_steps": 128}),
    "ac_mc_pg_settings": ("lecture_ac", {**MC_PG_SETTINGS, "gae_lambda": 0.0}),
    "mc_pg_entry": ("lecture_mc_pg", {}),
}


def variant_cell(name: str, timesteps: int, seed: int, eval_freq: int | None = None) -> Cell:
    contestant, overrides = VARIANTS[name]
    return Cell.make(
        contestant=contestant,
        env_id="HalfCheetah-v5",
        seed=seed,
        timesteps=timesteps,
        eval_freq=eval_freq or timesteps // 3,
        eval_episodes=5,
        final_eval_episodes=10,
        overrides=overrides,
    )


def unfinished_evaluations(out_dir: Path, cell: Cell) -> dict[str, list[float]] | None:
    """The evaluations so far of a run of ``cell`` that was stopped before its end (SB3's ``evaluations.npz``)."""
    for log in sorted((out_dir / WORK_FOLDER).glob(f"{cell.id}-*/evaluations.npz")):
        try:
            with np.load(log) as data:
                return {
                    "timesteps": [int(step) for step in data["timesteps"]],
                    "mean": [float(np.mean(returns)) for returns in data["results"]],
                }
        except (OSError, ValueError, KeyError):  # a file cut off by the stop
            continue
    return None


def variant_rows(cells: dict[tuple[str, int], Cell], out_dir: Path) -> list[dict[str, Any]]:
    """One row per variant and seed with a finished run or an unfinished run's evaluations."""
    rows = []
    for (name, seed), cell in cells.items():
        if (run := load_run(run_path(out_dir, cell))) is not None:
            evaluations, final = run["evaluations"], run["final_evaluation"]["mean"]
        elif (evaluations := unfinished_evaluations(out_dir, cell)) is not None:
            final = None
        else:
            continue
        rows.append({"variant": name, "seed": seed, "evaluations": evaluations, "final": final})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--timesteps", type=int, default=300_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/precursors/diagnosis"))
    parser.add_argument("--eval-freq", type=int, default=None, help="env steps between evaluations (timesteps / 3)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (one process each)")
    parser.add_argument("--report-only", action="store_true", help="print the table of the finished runs")
    parser.add_argument("--json", type=Path, default=None, help="also write the table as JSON")
    parser.add_argument("--from-json", type=Path, nargs="+", default=None, help="tables written by --json: train nothing")
    parser.add_argument("--plot", type=Path, default=None, help="PNG of every seed's final evaluation per variant")
    parser.add_argument("--curves", type=Path, default=None, help="PNG of the finished runs' learning curves per variant")
    args = parser.parse_args()
    if args.from_json is not None:
        rows = [row for path in args.from_json for row in json.loads(path.read_text())]
    else:
        cells = {
            (name, seed): variant_cell(name, args.timesteps, seed, args.eval_freq)
            for seed in args.seeds  # seed-major: a sweep stopped early has every variant on its first seeds
            for name in args.variants
        }
        try:  # a finished run of an entry retuned since would be read (or kept) as today's
            refuse_stale_runs(cells.values(), args.out)
        except StaleRunsError as error:
            parser.error(f"--out: {error}")
        if not args.report_only:
            try:
                run_cells(list(cells.values()), args.out, jobs=args.jobs)
            except KeyboardInterrupt:
                print("stopped: the unfinished runs' evaluations so far are in the table")
        rows = variant_rows(cells, args.out)
    rows.sort(key=lambda row: (row["variant"], row["seed"]))
    print("| variant (HalfCheetah-v5) | seed | evaluations (5 episodes) | mean of the evaluations | final (10 episodes) |")
    print("|---|---|---|---|---|")
    for row in rows:
        evaluations = " / ".join(f"{value:.0f}" for value in row["evaluations"]["mean"])
        final = "unfinished" if row["final"] is None else f"{row['final']:.0f}"
        curve_mean = np.mean(row["evaluations"]["mean"])  # the area under the curve per env step: how soon it learns
        print(f"| `{row['variant']}` | {row['seed']} | {evaluations} | {curve_mean:.0f} | {final} |")
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=1))
    if args.plot is not None:
        finals: dict[str, list[float]] = {}
        for row in rows:
            if row["final"] is not None:
                finals.setdefault(row["variant"], []).append(row["final"])
        plot_final_returns({"HalfCheetah-v5": finals}, args.plot, "final evaluation (10 episodes, deterministic)")
    if args.curves is not None:
        plot_curves(curve_runs(rows), args.curves, ylabel="evaluation return (5 episodes, deterministic)")


def curve_runs(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The finished rows as the runs ``plot_curves`` draws, one label per variant."""
    return [
        {
            "cell": {"contestant": row["variant"], "env_id": "HalfCheetah-v5", "seed": row["seed"]},
            "evaluations": row["evaluations"],
        }
        for row in rows
        if row["final"] is not None
    ]


if __name__ == "__main__":
    main()
