"""
``value-target``: the value-loss slides' three critic targets, TD(0) ``r + gamma V(s')``, the
lambda-return ``A_GAE + V(s)`` and the Monte-Carlo reward-to-go.

Trains LecturePPO on CartPole-v1 with the shipped settings and each ``value_target``, and every
few thousand steps measures on fresh episodes of the current (stochastic) policy:

* the critic's error against the discounted return-to-go of those episodes, the same yardstick for
  all three targets (SB3's ``train/explained_variance`` compares the critic with its own target,
  which differs between them): the root mean squared error over the mean return-to-go, over the
  steps whose return-to-go is not cut by the time limit (its explained variance is kept too, but
  it says nothing once the policy is perfect: every return-to-go is then the same);
* the mean episode return.

Each finished run is saved as its own JSON, so an interrupted experiment resumes.
"""

import json
from typing import TYPE_CHECKING, Any

import numpy as np
import torch as th
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.utils import explained_variance

from sb3_lecture_ppo.common.segments import VALUE_TARGETS, discounted_backward_sum
from sb3_lecture_ppo.experiments.common import (
    POLICY_ENVS,
    POLICY_SETTINGS,
    ExperimentConfig,
    ExperimentOutput,
    make_env,
    markdown_table,
    progress,
    pyplot,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

NAME = "value-target"
CLAIM = (
    "The slides regress V on the Monte-Carlo return-to-go (PPO-Clip line 7), the lecture's code on a TD target: "
    "each target makes V fit the return of the current policy."
)
RUN_FORMAT = "v2"
"""Part of a saved run's file name: runs of an older format are not read."""
CUT_MARGIN = 200
"""Steps before a time-limit truncation left out of the explained variance (gamma^200 < 0.02 at gamma 0.98)."""


class CriticProbe(BaseCallback):
    """Every ``probe_freq`` steps, on fresh episodes: the critic's explained variance of the return-to-go, the mean return."""

    def __init__(self, probe_freq: int, n_episodes: int, seed: int) -> None:
        super().__init__()
        self.probe_freq, self.n_episodes, self.seed = probe_freq, n_episodes, seed
        self.history: dict[str, list[float]] = {
            "timesteps": [],
            "relative_value_error": [],
            "explained_variance": [],
            "episode_return": [],
        }
        self._next_probe = 0

    def _on_step(self) -> bool:
        return True

    def _on_rollout_start(self) -> None:
        if self.num_timesteps >= self._next_probe:
            self._probe()
            self._next_probe += self.probe_freq

    def _on_training_end(self) -> None:
        self._probe()

    def _probe(self) -> None:
        values, returns, episode_returns = [], [], []
        env = make_env(1, self.seed + len(self.history["timesteps"]))
        gamma = self.model.gamma  # type: ignore[attr-defined]
        for _ in range(self.n_episodes):
            observations, rewards, truncated = self._episode(env)
            with th.no_grad():
                predicted = self.model.policy.predict_values(  # type: ignore[operator]
                    th.as_tensor(np.asarray(observations))
                ).flatten()
            rewards_tensor = th.as_tensor(rewards, dtype=th.float32)[:, None]
            continues = th.ones_like(rewards_tensor, dtype=th.bool)
            continues[-1] = False
            return_to_go = discounted_backward_sum(rewards_tensor, gamma, continues).flatten()
            kept = len(rewards) - CUT_MARGIN if truncated else len(rewards)
            values.append(predicted[:kept].numpy())
            returns.append(return_to_go[:kept].numpy())
            episode_returns.append(float(np.sum(rewards)))
        predicted_values, true_returns = np.concatenate(values), np.concatenate(returns)
        self.history["timesteps"].append(self.num_timesteps)
        error = np.sqrt(np.mean((predicted_values - true_returns) ** 2)) / max(abs(float(np.mean(true_returns))), 1e-8)
        self.history["relative_value_error"].append(float(error))
        self.history["explained_variance"].append(float(explained_variance(predicted_values, true_returns)))
        self.history["episode_return"].append(float(np.mean(episode_returns)))

    def _episode(self, env: Any) -> tuple[list[np.ndarray], list[float], bool]:
        """One episode of the stochastic policy: observations, rewards, whether the time limit cut it."""
        observation = env.reset()
        observations, rewards = [], []
        while True:
            observations.append(observation[0].copy())
            action, _ = self.model.predict(observation, deterministic=False)
            observation, reward, done, infos = env.step(action)
            rewards.append(float(reward[0]))
            if done[0]:
                return observations, rewards, bool(infos[0].get("TimeLimit.truncated", False))


def train_run(value_target: str, seed: int, timesteps: int, probe_freq: int, n_episodes: int) -> dict[str, Any]:
    from sb3_lecture_ppo.ppo import LecturePPO

    model = LecturePPO(
        "MlpPolicy", make_env(POLICY_ENVS, seed), seed=seed, device="cpu", **{**POLICY_SETTINGS, "value_target": value_target}
    )
    probe = CriticProbe(probe_freq, n_episodes, seed + 10_000)
    model.learn(timesteps, callback=probe)
    return {"value_target": value_target, "seed": seed, "timesteps": timesteps, **probe.history}


def run(config: ExperimentConfig) -> dict[str, Any]:
    timesteps, probe_freq = config.size(12_000, 50_000), config.size(3_000, 2_500)
    n_episodes = config.size(3, 10)
    seeds = list(config.seed_range(1, 3))
    runs_dir = config.out_dir / f"{NAME}-runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    runs: list[dict[str, Any]] = []
    for value_target, seed in progress([(target, seed) for seed in seeds for target in VALUE_TARGETS], desc="runs"):
        path = runs_dir / f"{value_target}-seed{seed}-{timesteps}-{RUN_FORMAT}.json"
        if not path.exists():
            path.write_text(json.dumps(train_run(value_target, seed, timesteps, probe_freq, n_episodes)))
        runs.append(json.loads(path.read_text()))

    summary = {target: _final(runs, target) for target in VALUE_TARGETS}
    holds = all(summary[target]["final_error_median"] < summary[target]["first_error_median"] for target in VALUE_TARGETS)
    best = min(VALUE_TARGETS, key=lambda target: summary[target]["mean_error_median"])
    numbers = {
        "claim_holds": holds,
        "best_target_over_training": best,
        "timesteps": timesteps,
        "seeds": seeds,
        "episodes_per_probe": n_episodes,
        "summary": summary,
        "runs": runs,
    }
    columns = ("first_error_median", "mean_error_median", "final_error_median", "episode_return_median")
    rows = [[target, *(summary[target][column] for column in columns)] for target in VALUE_TARGETS]
    markdown = (
        f"# {NAME}\n\n{CLAIM}\n\nLecturePPO, shipped CartPole-v1 settings with each value_target, {timesteps} steps, seeds "
        f"{seeds}; every {probe_freq} steps {n_episodes} fresh episodes of the stochastic policy. Value error: root mean "
        "squared error of V against the discounted return-to-go, over the mean return-to-go (0 is perfect); medians "
        "over seeds.\n\n"
        + markdown_table(["target", "first value error", "mean over training", "final value error", "final return"], rows)
        + f"\n\nClaim holds: {'yes' if holds else 'no'} (with every target the value error falls between the first and "
        f"the last measurement). Lowest error over training: {best}.\n"
    )
    ExperimentOutput(config.out_dir, NAME).write(_plot(runs), numbers, markdown)
    return numbers


def _final(runs: list[dict[str, Any]], target: str) -> dict[str, float]:
    chosen = [run for run in runs if run["value_target"] == target]
    errors = [run["relative_value_error"] for run in chosen]
    return {
        "first_error_median": float(np.median([error[0] for error in errors])),
        "mean_error_median": float(np.median([np.mean(error) for error in errors])),
        "final_error_median": float(np.median([error[-1] for error in errors])),
        "final_explained_variance_median": float(np.median([run["explained_variance"][-1] for run in chosen])),
        "episode_return_median": float(np.median([run["episode_return"][-1] for run in chosen])),
    }


def _plot(runs: list[dict[str, Any]]) -> "Figure":
    plt = pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(11, 3.9))
    labels = {
        "td": "TD(0): r + γV(s')",  # noqa: RUF001
        "lambda": "λ-return: A + V(s)",
        "mc": "Monte-Carlo reward-to-go",
    }
    for color, target in zip(("C0", "C1", "C2"), VALUE_TARGETS, strict=True):
        chosen = [run for run in runs if run["value_target"] == target]
        length = min(len(run["timesteps"]) for run in chosen)
        steps = np.asarray(chosen[0]["timesteps"][:length])
        for axis, key in zip(axes, ("relative_value_error", "episode_return"), strict=True):
            values = np.asarray([run[key][:length] for run in chosen])
            axis.plot(steps, np.median(values, axis=0), color=color, label=f"{labels[target]} ({len(chosen)} seeds)")
            axis.fill_between(steps, values.min(axis=0), values.max(axis=0), color=color, alpha=0.15, linewidth=0)
    axes[0].set_ylabel("RMSE(V, return-to-go) / mean return-to-go")
    axes[0].set_yscale("log")
    axes[1].set_ylabel("mean episode return (stochastic policy)")
    for axis in axes:
        axis.set_xlabel("env steps")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    figure.suptitle("critic targets: median over seeds, band min-max", fontsize=9)
    figure.tight_layout()
    return figure
