"""
``gae-lambda``: the GAE slides' claim that lambda trades bias for variance (lambda = 0 is the
one-step TD error, lambda -> 1 the Monte-Carlo return minus the baseline).

Two measurements:

* **bias and variance** of the GAE(lambda) advantage at chosen state-action pairs of a fixed,
  partly trained CartPole-v1 policy. For each pair (s, a) the env is restored to s, a is taken and
  the policy continues: many continuations give the ground truth ``Q^pi(s, a) - V(s)`` (the
  Monte-Carlo mean minus the critic's baseline, what the policy gradient needs), other
  continuations give samples of the package's GAE estimate (``td_errors`` and
  ``generalized_advantages``) for every lambda; bias^2 and variance are averaged over the pairs;
* **learning curves** of LecturePPO and the GAE actor-critic for each lambda, through the
  evaluation engine (shipped zoo entries with ``gae_lambda`` overridden, resumable runs).
"""

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import torch as th

from sb3_lecture_ppo.common.segments import generalized_advantages, td_errors
from sb3_lecture_ppo.evaluation.cells import Cell
from sb3_lecture_ppo.evaluation.report import curve_band, group_runs
from sb3_lecture_ppo.evaluation.runner import RUNS_FOLDER, load_run, run_cells
from sb3_lecture_ppo.experiments.common import (
    ENV_ID,
    ExperimentConfig,
    ExperimentOutput,
    fixed_policy,
    markdown_table,
    progress,
    pyplot,
    seeded,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from sb3_lecture_ppo.ppo import LecturePPO

NAME = "gae-lambda"
CLAIM = "λ trades bias for variance: λ = 0 (one-step TD) has the most bias and the least variance, λ = 1 the reverse."
LAMBDAS = (0.0, 0.5, 0.9, 0.95, 0.99, 1.0)
QUICK_LAMBDAS = (0.0, 0.9, 1.0)
ALGORITHMS = ("lecture_ppo", "lecture_gae_ac")
FULL_BUDGETS = {"CartPole-v1": 30_000, "HalfCheetah-v5": 300_000}
POLICY_TIMESTEPS = 4_096
"""Training of the fixed policy: its episodes still end at different times, so continuations differ."""
HORIZON = 400
"""Steps of a continuation (gamma^400 < 3e-4 at CartPole's gamma 0.98): the rest of the return is negligible."""


# ------------------------------------------------------------------------------------ bias and variance
def sample_state_actions(model: "LecturePPO", count: int, seed: int) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """``count`` (physical state, observation, action) triples visited by the policy, drawn uniformly from its episodes."""
    env = gym.make(ENV_ID).unwrapped
    rng = np.random.default_rng(seed)
    visited: list[tuple[np.ndarray, np.ndarray, int]] = []
    observation, _ = env.reset(seed=seed)
    while len(visited) < 20 * count:
        action, _ = model.predict(observation, deterministic=False)
        visited.append(
            (
                np.array(env.state, dtype=np.float64),  # type: ignore[attr-defined]
                observation.copy(),
                int(action),
            )
        )
        observation, _, terminated, _, _ = env.step(int(action))
        if terminated or len(visited) % 500 == 0:
            observation, _ = env.reset(seed=int(rng.integers(2**31)))
    picks = rng.choice(len(visited), size=count, replace=False)
    return [visited[index] for index in picks]


def continuations(model: "LecturePPO", state: np.ndarray, action: int, count: int, seed: int) -> dict[str, th.Tensor]:
    """
    ``count`` continuations from ``state``: ``action`` first, then the policy, at most ``HORIZON`` steps.

    :return: (HORIZON, count) rewards, values V(s_k), next values V(s_{k+1}), terminations and
        ``alive`` (the step was taken), all tensors
    """
    envs = [gym.make(ENV_ID).unwrapped for _ in range(count)]
    for index, env in enumerate(envs):
        env.reset(seed=seed + index)
        env.state = state.copy()  # type: ignore[attr-defined]
    observations = np.repeat(np.asarray(state, dtype=np.float32)[None], count, axis=0)
    rewards, observation_history = np.zeros((HORIZON, count), np.float32), np.zeros((HORIZON + 1, count, 4), np.float32)
    terminations, alive = np.zeros((HORIZON, count), bool), np.zeros((HORIZON, count), bool)
    running = np.ones(count, dtype=bool)
    observation_history[0] = observations
    actions: np.ndarray = np.full(count, action)
    for step in range(HORIZON):
        if step > 0:
            actions, _ = model.predict(observations, deterministic=False)
        alive[step] = running
        for index in np.flatnonzero(running).tolist():
            observation, reward, terminated, _, _ = envs[index].step(int(actions[index]))
            observations[index], rewards[step, index], terminations[step, index] = observation, reward, terminated
        observation_history[step + 1] = observations
        running &= ~terminations[step]
        if not running.any():
            break
    with th.no_grad():
        values = model.policy.predict_values(th.as_tensor(observation_history.reshape(-1, 4))).reshape(HORIZON + 1, count)
    return {
        "rewards": th.as_tensor(rewards),
        "values": values[:-1],
        "next_values": values[1:],
        "terminations": th.as_tensor(terminations),
        "alive": th.as_tensor(alive),
    }


def gae_at_start(data: dict[str, th.Tensor], gamma: float, gae_lambda: float) -> th.Tensor:
    """The package's GAE(gamma, lambda) advantage of the first step of each continuation, (count,)."""
    deltas = td_errors(data["rewards"], data["values"], data["next_values"], data["terminations"], gamma)
    continues = th.zeros_like(data["alive"])
    continues[:-1] = data["alive"][1:]  # the next step was taken (not after a termination, not past the horizon)
    return generalized_advantages(deltas, continues, gamma, gae_lambda)[0]


def discounted_return(data: dict[str, th.Tensor], gamma: float) -> th.Tensor:
    """The Monte-Carlo return of each continuation, (count,)."""
    discounts = gamma ** th.arange(data["rewards"].shape[0], dtype=th.float32)
    return (discounts[:, None] * th.where(data["alive"], data["rewards"], 0.0)).sum(dim=0)


def bias_and_variance(config: ExperimentConfig, lambdas: tuple[float, ...]) -> dict[str, Any]:
    model = fixed_policy(config, timesteps=POLICY_TIMESTEPS)
    n_pairs, n_samples = config.size(12, 40), config.size(48, 200)
    pairs = sample_state_actions(model, n_pairs, config.seed)
    squared_bias, variance = np.zeros((n_pairs, len(lambdas))), np.zeros((n_pairs, len(lambdas)))
    for index, (state, observation, action) in enumerate(progress(pairs, desc="state-action pairs")):
        seed = config.seed + 1_000_000 * (index + 1)
        truth_data = continuations(model, state, action, n_samples, seed)
        with th.no_grad():
            baseline = model.policy.predict_values(th.as_tensor(observation[None])).item()
        truth = discounted_return(truth_data, model.gamma).mean().item() - baseline
        estimate_data = continuations(model, state, action, n_samples, seed + n_samples)
        for column, gae_lambda in enumerate(lambdas):
            estimates = gae_at_start(estimate_data, model.gamma, gae_lambda).numpy()
            squared_bias[index, column] = (estimates.mean() - truth) ** 2
            variance[index, column] = estimates.var(ddof=1)
    return {
        "state_action_pairs": n_pairs,
        "samples_per_pair": n_samples,
        "gamma": model.gamma,
        "lambdas": list(lambdas),
        "squared_bias": squared_bias.mean(axis=0).tolist(),
        "variance": variance.mean(axis=0).tolist(),
    }


# ------------------------------------------------------------------------------------ learning curves
def curve_cells(config: ExperimentConfig, lambdas: tuple[float, ...]) -> list[Cell]:
    """One engine cell per algorithm x env x lambda x seed."""
    envs = config.size({"CartPole-v1": 8_000}, FULL_BUDGETS)
    eval_freq = {"CartPole-v1": 2_000, "HalfCheetah-v5": 10_000}
    seeds = config.seed_range(1, 2)
    return [
        Cell.make(
            {"gae_lambda": gae_lambda},
            contestant=algorithm,
            env_id=env_id,
            seed=seed,
            timesteps=timesteps,
            eval_freq=eval_freq[env_id],
            eval_episodes=config.size(5, 10),
            final_eval_episodes=config.size(5, 100),
        )
        for env_id, timesteps in envs.items()
        if config.envs is None or env_id in config.envs
        for seed in seeds
        for gae_lambda in lambdas
        for algorithm in ALGORITHMS
    ]


def _settings_without_seed(cell: dict[str, Any]) -> str:
    return json.dumps({key: value for key, value in cell.items() if key != "seed"}, sort_keys=True)


def report_runs(config: ExperimentConfig, lambdas: tuple[float, ...], runs_dir: Path) -> list[dict[str, Any]]:
    """
    Every finished run in ``runs_dir`` made with this mode's settings, whatever its env or seed: a run with other
    ``--envs`` or ``--seeds`` adds to the report instead of replacing it (runs of the other mode are left out).
    """
    every_env = dataclasses.replace(config, envs=None, seeds=1)
    wanted = {_settings_without_seed(cell.to_dict()) for cell in curve_cells(every_env, lambdas)}
    runs = [run for path in sorted((runs_dir / RUNS_FOLDER).glob("*.json")) if (run := load_run(path)) is not None]
    runs = [run for run in runs if _settings_without_seed(run["cell"]) in wanted]
    order = {env_id: index for index, env_id in enumerate(config.size({"CartPole-v1": 0}, FULL_BUDGETS))}
    return sorted(
        runs,
        key=lambda run: (
            order.get(run["cell"]["env_id"], len(order)),
            ALGORITHMS.index(run["cell"]["contestant"]),
            run["cell"]["overrides"]["gae_lambda"],
            run["cell"]["seed"],
        ),
    )


def _lambda_label(run: dict[str, Any]) -> str:
    cell = run["cell"]
    return f"{cell['contestant']} λ={cell['overrides']['gae_lambda']:g} on {cell['env_id']}"


def run(config: ExperimentConfig) -> dict[str, Any]:
    seeded(config.seed)
    lambdas = config.size(QUICK_LAMBDAS, LAMBDAS)
    estimates = bias_and_variance(config, lambdas)
    cells = curve_cells(config, lambdas)
    runs_dir = config.out_dir / f"{NAME}-runs"
    failed = run_cells(cells, runs_dir, jobs=config.jobs, show_progress=not config.quiet)
    runs = report_runs(config, lambdas, runs_dir)
    finals = {
        label: [run["final_evaluation"]["mean"] for run in group]
        for (label, _), group in group_runs(runs, _lambda_label).items()
    }
    variance, squared_bias = estimates["variance"], estimates["squared_bias"]
    holds = variance[-1] > variance[0] and squared_bias[0] > squared_bias[-1]
    numbers = {
        "claim_holds": holds,
        "bias_variance": estimates,
        "final_evaluations": finals,
        "failed_runs": [cell.label for cell in failed],
    }
    rows = [
        [f"{gae_lambda:g}", bias, var, bias + var]
        for gae_lambda, bias, var in zip(lambdas, squared_bias, variance, strict=True)
    ]
    final_rows = [
        [label, f"{np.median(values):.1f}", f"{min(values):.1f}-{max(values):.1f}", len(values)]
        for label, values in finals.items()
    ]
    markdown = (
        f"# {NAME}\n\n{CLAIM}\n\nBias and variance of GAE(λ) at {estimates['state_action_pairs']} state-action pairs of a "
        f"partly trained CartPole-v1 LecturePPO, {estimates['samples_per_pair']} continuations each for the truth "
        "(Q(s,a) - V(s)) and for the estimates (gamma "
        f"{estimates['gamma']}).\n\n"
        + markdown_table(["λ", "bias²", "variance", "mean squared error"], rows)
        + "\n\nFinal evaluations (deterministic) of the learning runs, shipped zoo entries with gae_lambda overridden:\n\n"
        + markdown_table(["run", "median", "min-max", "seeds"], final_rows)
        + f"\n\nClaim holds: {'yes' if holds else 'no'} (variance at λ=1 above λ=0, bias² at λ=0 above λ=1).\n"
    )
    ExperimentOutput(config.out_dir, NAME).write(_plot(estimates, runs), numbers, markdown)
    return numbers


def _plot(estimates: dict[str, Any], runs: list[dict[str, Any]]) -> "Figure":
    plt = pyplot()
    panels = sorted({(run["cell"]["env_id"], run["cell"]["contestant"]) for run in runs})
    figure, axes = plt.subplots(1, 1 + len(panels), figsize=(5 * (1 + len(panels)), 3.9), squeeze=False)
    lambdas = estimates["lambdas"]
    positions = np.arange(len(lambdas))
    bias_axis = axes[0][0]
    bias_axis.plot(positions, estimates["squared_bias"], "o-", color="C3", label="bias²")
    bias_axis.plot(positions, estimates["variance"], "s-", color="C0", label="variance")
    bias_axis.set_xticks(positions, [f"{value:g}" for value in lambdas])
    bias_axis.set_yscale("symlog", linthresh=1e-3)  # the one-step estimate's variance can be exactly 0
    bias_axis.set_ylim(bottom=0)
    bias_axis.set_xlabel("λ")
    bias_axis.set_title("GAE(λ) advantage vs Monte-Carlo truth")
    bias_axis.legend(fontsize=8)
    colors = plt.get_cmap("viridis")(np.linspace(0, 0.9, len(lambdas)))
    for axis, (env_id, algorithm) in zip(axes[0][1:], panels, strict=True):
        panel_runs = [run for run in runs if (run["cell"]["env_id"], run["cell"]["contestant"]) == (env_id, algorithm)]
        for group in group_runs(panel_runs, _lambda_label).values():
            gae_lambda = group[0]["cell"]["overrides"]["gae_lambda"]
            steps, median, low, high = curve_band(group, "evaluations", "mean")
            color = colors[lambdas.index(gae_lambda)] if gae_lambda in lambdas else "grey"
            axis.plot(steps, median, color=color, label=f"λ={gae_lambda:g} ({len(group)} seeds)")
            axis.fill_between(steps, low, high, color=color, alpha=0.15, linewidth=0)
        axis.set_title(f"{algorithm} on {env_id}")
        axis.set_xlabel("env steps")
        axis.set_ylabel("evaluation return")
        axis.ticklabel_format(axis="x", style="sci", scilimits=(0, 3))
        axis.legend(fontsize=7)
    for axis in axes[0]:
        axis.grid(alpha=0.3)
    figure.tight_layout()
    return figure
