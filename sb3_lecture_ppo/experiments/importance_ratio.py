"""
``importance-ratio``: the off-policy policy-gradient slides' "this value could be very big".

Collects one rollout with a partly trained CartPole-v1 policy, then runs the epochs of one update
on it twice from the same start (same weights, optimizer state and minibatch order): once with the
``none`` objective (the ratio-weighted surrogate ``r A`` of the off-policy actor-critic) and once
with ``clip``. After every epoch it measures, on the whole rollout, the per-step ratio
``r = pi(a|s) / pi_old(a|s)`` and its product along each trajectory of the rollout (the
importance weight of the whole trajectory).
"""

import copy
from typing import TYPE_CHECKING, Any

import numpy as np
import torch as th
from stable_baselines3.common.utils import FloatSchedule

from sb3_lecture_ppo.common.policies import distribution_and_values
from sb3_lecture_ppo.experiments.common import (
    ExperimentConfig,
    ExperimentOutput,
    collect_rollout,
    fixed_policy,
    markdown_table,
    progress,
    pyplot,
    seeded,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from sb3_lecture_ppo.ppo import LecturePPO

NAME = "importance-ratio"
CLAIM = "Without clipping the importance ratios drift far from 1 over the epochs of an update, their products further still."
CLIP_RANGE = 0.2
UPDATE_SETTINGS: dict[str, Any] = dict(n_steps=256, batch_size=256, n_epochs=10, clip_range=CLIP_RANGE)
"""A rollout of 8 x 256 steps, minibatches of 256: 8 gradient steps per epoch."""
PERCENTILES = (5, 25, 50, 75, 95)


def trajectory_ids(episode_starts: np.ndarray) -> th.Tensor:
    """
    The trajectory of every step of a rollout, in the buffer's flat ``t * n_envs + env`` order: a
    trajectory is an env's run of steps between two episode starts (or the rollout's edges).

    :param episode_starts: (n_steps, n_envs)
    """
    starts = episode_starts.astype(bool).copy()
    starts[0] = True
    per_env = np.cumsum(starts, axis=0) - 1  # (n_steps, n_envs): trajectory number within the env
    offsets = np.concatenate([[0], np.cumsum(per_env[-1] + 1)[:-1]])
    return th.as_tensor((per_env + offsets[None, :]).reshape(-1))


def rollout_log_ratios(model: "LecturePPO") -> th.Tensor:
    """log pi(a|s) - log pi_old(a|s) of the current policy on every step of the rollout buffer."""
    buffer = model.rollout_buffer
    with th.no_grad():
        distribution, _ = distribution_and_values(model.policy, buffer.observation_tensor("observations"))
        actions = buffer.tensor("actions").long().flatten()
        return distribution.log_prob(actions) - buffer.tensor("log_probs")


def ratio_statistics(log_ratio: th.Tensor, trajectories: th.Tensor) -> dict[str, Any]:
    """Percentiles of the per-step ratio and of the log10 of its product along each trajectory."""
    ratio = log_ratio.exp().numpy()
    log_products = th.zeros(int(trajectories.max()) + 1, dtype=log_ratio.dtype).index_add_(0, trajectories, log_ratio)
    log10_products = (log_products / np.log(10)).numpy()
    return {
        "ratio_percentiles": dict(zip(PERCENTILES, np.percentile(ratio, PERCENTILES).tolist(), strict=True)),
        "ratio_min": float(ratio.min()),
        "ratio_max": float(ratio.max()),
        "outside_clip_range": float((np.abs(ratio - 1) > CLIP_RANGE).mean()),
        "log10_product_percentiles": dict(zip(PERCENTILES, np.percentile(log10_products, PERCENTILES).tolist(), strict=True)),
        "log10_product_max_abs": float(np.abs(log10_products).max()),
    }


def update_epoch_by_epoch(model: "LecturePPO", objective: str, start: dict[str, Any], epochs: int, seed: int) -> list[dict]:
    """Run ``epochs`` epochs of one update from ``start`` with ``objective``; statistics before and after each."""
    model.policy.load_state_dict(start["policy"])
    model.policy.optimizer.load_state_dict(start["optimizer"])
    model.objective = objective
    model.clip_range = FloatSchedule(CLIP_RANGE) if objective == "clip" else None
    model.n_epochs = 1
    trajectories = trajectory_ids(model.rollout_buffer.episode_starts)
    seeded(seed)  # the same minibatch order for both objectives
    statistics = [ratio_statistics(rollout_log_ratios(model), trajectories)]
    for _ in progress(range(epochs), desc=f"{objective}: epochs"):
        model.train()
        statistics.append(ratio_statistics(rollout_log_ratios(model), trajectories))
    return statistics


def run(config: ExperimentConfig) -> dict[str, Any]:
    epochs = config.size(10, 20)
    model = fixed_policy(config, timesteps=config.size(8_192, 20_480), **UPDATE_SETTINGS)
    seeded(config.seed)
    collect_rollout(model)
    start = {
        "policy": copy.deepcopy(model.policy.state_dict()),
        "optimizer": copy.deepcopy(model.policy.optimizer.state_dict()),
    }
    by_objective = {
        objective: update_epoch_by_epoch(model, objective, start, epochs, config.seed) for objective in ("none", "clip")
    }
    last = {objective: statistics[-1] for objective, statistics in by_objective.items()}
    holds = (
        last["none"]["log10_product_max_abs"] > last["clip"]["log10_product_max_abs"]
        and last["none"]["outside_clip_range"] > last["clip"]["outside_clip_range"]
    )
    numbers = {
        "claim_holds": holds,
        "epochs": epochs,
        "rollout_steps": model.n_steps * model.n_envs,
        "batch_size": model.batch_size,
        "learning_rate": model.learning_rate if isinstance(model.learning_rate, float) else "schedule",
        "by_objective": by_objective,
    }
    rows = [
        [
            objective,
            epoch,
            statistics["ratio_percentiles"][5],
            statistics["ratio_percentiles"][95],
            statistics["ratio_max"],
            statistics["outside_clip_range"],
            statistics["log10_product_max_abs"],
        ]
        for objective, history in by_objective.items()
        for epoch, statistics in enumerate(history)
        if epoch in (1, epochs // 2, epochs)
    ]
    markdown = (
        f"# {NAME}\n\n{CLAIM}\n\nOne rollout of {numbers['rollout_steps']} steps of a partly trained CartPole-v1 LecturePPO, "
        f"{epochs} epochs of minibatches of {model.batch_size}, the same start and minibatch order for both objectives.\n\n"
        + markdown_table(
            [
                "objective",
                "epoch",
                "r 5%",
                "r 95%",
                "r max",
                f"share outside 1 ± {CLIP_RANGE}",
                "largest abs log10 Π r of a trajectory",
            ],
            rows,
        )
        + f"\n\nClaim holds: {'yes' if holds else 'no'}.\n"
    )
    ExperimentOutput(config.out_dir, NAME).write(_plot(by_objective), numbers, markdown)
    return numbers


def _plot(by_objective: dict[str, list[dict[str, Any]]]) -> "Figure":
    plt = pyplot()
    figure, (steps_axis, trajectory_axis) = plt.subplots(1, 2, figsize=(11, 4))
    for color, (objective, history) in zip(("C3", "C0"), by_objective.items(), strict=True):
        epochs = np.arange(len(history))
        label = "none (r·A)" if objective == "none" else f"clip (ε = {CLIP_RANGE})"
        low, median, high = (np.array([statistics["ratio_percentiles"][q] for statistics in history]) for q in (5, 50, 95))
        steps_axis.plot(epochs, median, color=color, linewidth=2, label=f"{label}: median, band 5-95%")
        steps_axis.fill_between(epochs, low, high, color=color, alpha=0.2, linewidth=0)
        steps_axis.plot(
            epochs, [statistics["ratio_max"] for statistics in history], color=color, linestyle=":", label="min and max"
        )
        steps_axis.plot(epochs, [statistics["ratio_min"] for statistics in history], color=color, linestyle=":")
        low, median, high = (
            np.array([statistics["log10_product_percentiles"][q] for statistics in history]) for q in (5, 50, 95)
        )
        trajectory_axis.plot(epochs, median, color=color, linewidth=2, label=f"{label}: median, band 5-95%")
        trajectory_axis.fill_between(epochs, low, high, color=color, alpha=0.2, linewidth=0)
        trajectory_axis.plot(
            epochs,
            [statistics["log10_product_max_abs"] for statistics in history],
            color=color,
            linestyle=":",
            label="max |.|",
        )
    steps_axis.axhspan(1 - CLIP_RANGE, 1 + CLIP_RANGE, color="grey", alpha=0.15, label="clip range")
    steps_axis.set_yscale("log")
    steps_axis.set_title("per-step ratio r on the rollout")
    steps_axis.set_ylabel("r = π(a|s) / π_old(a|s)")
    trajectory_axis.axhline(0, color="grey", linewidth=0.8)
    trajectory_axis.set_title("ratio product along each trajectory")
    trajectory_axis.set_ylabel("log10 Π r over the trajectory")
    for axis in (steps_axis, trajectory_axis):
        axis.set_xlabel("epochs of the update")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7, loc="lower left")
    figure.tight_layout()
    return figure
