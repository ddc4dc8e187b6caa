"""
``baseline-variance``: the advantage-function slides' claim that subtracting a baseline keeps the
policy gradient's mean and lowers its variance.

On a fixed, partly trained CartPole-v1 policy (and its critic) it draws many independent batches
(rollouts of the package's buffer) and, on each, the policy-gradient estimate
``mean_t w_t * grad log pi(a_t|s_t)`` for five weights ``w_t``:

* ``G_t``: the reward-to-go (Monte-Carlo, bootstrapped only where the rollout cuts an episode);
* ``n-step Q``: ``r_t + ... + gamma^(n-1) r_{t+n-1} + gamma^n V(s_{t+n})``, a Q-value estimate;
* ``G_t - V(s_t)``: the advantage with the critic as baseline;
* ``TD error``: ``r_t + gamma V(s_{t+1}) - V(s_t)`` (GAE with lambda = 0);
* ``GAE(lambda)``.

It reports each estimator's total variance (the sum over parameters of the variance across
batches) and the cosine of its mean gradient with a reference gradient: the mean of the
``G_t - V(s_t)`` estimate over a separate, larger set of batches.
"""

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch as th

from sb3_lecture_ppo.common.objectives import policy_gradient_surrogate
from sb3_lecture_ppo.common.policies import distribution_and_values
from sb3_lecture_ppo.common.segments import (
    generalized_advantages,
    monte_carlo_returns,
    rollout_continues,
    td_errors,
)
from sb3_lecture_ppo.experiments.common import (
    ExperimentConfig,
    ExperimentOutput,
    collect_rollout,
    fixed_policy,
    markdown_table,
    policy_parameters,
    progress,
    pyplot,
    seeded,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from sb3_lecture_ppo.ppo import LecturePPO

NAME = "baseline-variance"
CLAIM = "A baseline leaves the policy gradient's mean unchanged and lowers its variance: G_t, then Q, then A = G_t - V(s_t)."
N_STEP = 5
GAE_LAMBDA = 0.95
BATCH_SETTINGS: dict[str, Any] = dict(n_steps=128, advantage_scope="rollout")
"""A batch is one rollout of 8 envs x 128 steps, the whole rollout in one advantage scope."""
ESTIMATORS = ("G_t", f"{N_STEP}-step Q", "G_t - V(s_t)", "TD error", f"GAE(λ={GAE_LAMBDA})")
REFERENCE = "G_t - V(s_t)"


class RolloutData(dict):
    """The (n_steps, n_envs) tensors of one rollout that the weights are made of."""


def rollout_data(model: "LecturePPO") -> RolloutData:
    """Rewards, V(s), V(s'), terminations and dones of the model's rollout buffer, (n_steps, n_envs)."""
    buffer = model.rollout_buffer
    shape = (buffer.buffer_size, buffer.n_envs)
    values = buffer.tensor("values")
    next_values = buffer.next_values(values, model._critic_values)
    return RolloutData(
        rewards=buffer.tensor("rewards").reshape(shape),
        values=values.reshape(shape),
        next_values=next_values.reshape(shape),
        terminations=buffer.tensor("terminations").reshape(shape),
        continues=rollout_continues(buffer.tensor("dones").reshape(shape)),
    )


def n_step_returns(data: RolloutData, gamma: float, n: int) -> th.Tensor:
    """
    ``sum_{k<m} gamma^k r_{t+k} + gamma^m V(s_{t+m})`` with ``m = n``, or fewer steps where the
    episode or rollout ends first (then bootstrapped as there: 0 after a termination).
    """
    rewards, continues = data["rewards"], data["continues"]
    returns = th.empty_like(rewards)
    for step in range(rewards.shape[0]):
        total = th.zeros_like(rewards[0])
        discount = 1.0
        alive = th.ones_like(continues[0])
        for k in range(step, min(step + n, rewards.shape[0])):
            total = total + th.where(alive, discount * rewards[k], th.zeros_like(total))
            ends_here = ~continues[k] | (k == step + n - 1)
            bootstrap = th.where(data["terminations"][k], th.zeros_like(total), data["next_values"][k])
            total = total + th.where(alive & ends_here, discount * gamma * bootstrap, th.zeros_like(total))
            alive = alive & ~ends_here
            discount *= gamma
        returns[step] = total
    return returns


def estimator_weights(data: RolloutData, gamma: float) -> dict[str, th.Tensor]:
    """The five weights of the policy-gradient estimators, (n_steps, n_envs) each."""
    arguments = (data["rewards"], data["next_values"], data["terminations"], data["continues"], gamma)
    reward_to_go = monte_carlo_returns(*arguments)
    deltas = td_errors(data["rewards"], data["values"], data["next_values"], data["terminations"], gamma)
    return {
        ESTIMATORS[0]: reward_to_go,
        ESTIMATORS[1]: n_step_returns(data, gamma, N_STEP),
        ESTIMATORS[2]: reward_to_go - data["values"],
        ESTIMATORS[3]: deltas,
        ESTIMATORS[4]: generalized_advantages(deltas, data["continues"], gamma, GAE_LAMBDA),
    }


def gradient_estimates(model: "LecturePPO", weights: dict[str, th.Tensor]) -> dict[str, np.ndarray]:
    """``grad_theta mean_t w_t log pi(a_t|s_t)`` for every weight, flattened over the actor's parameters."""
    buffer = model.rollout_buffer
    parameters = policy_parameters(model)
    distribution, _ = distribution_and_values(model.policy, buffer.observation_tensor("observations"))
    log_prob = distribution.log_prob(buffer.tensor("actions").long().flatten())
    estimates = {}
    for name, weight in weights.items():
        objective = policy_gradient_surrogate(log_prob, weight.reshape(-1)).mean()
        gradients = th.autograd.grad(objective, parameters, retain_graph=True, allow_unused=True)
        estimates[name] = th.cat(
            [th.zeros_like(p).flatten() if g is None else g.flatten() for p, g in zip(parameters, gradients, strict=True)]
        ).numpy()
    return estimates


def draw_estimates(model: "LecturePPO", count: int, desc: str) -> dict[str, np.ndarray]:
    """``count`` independent batches: estimator name -> (count, n_parameters) gradient estimates."""
    draws: dict[str, list[np.ndarray]] = {name: [] for name in ESTIMATORS}
    for _ in progress(range(count), desc=desc):
        collect_rollout(model)
        for name, estimate in gradient_estimates(model, estimator_weights(rollout_data(model), model.gamma)).items():
            draws[name].append(estimate)
    return {name: np.stack(estimates) for name, estimates in draws.items()}


def cosine(first: np.ndarray, second: np.ndarray) -> float:
    return float(first @ second / (np.linalg.norm(first) * np.linalg.norm(second) + 1e-30))


def summarize(estimates: dict[str, np.ndarray], reference: np.ndarray) -> dict[str, dict[str, float]]:
    """Per estimator: total and mean per-parameter variance across batches, and its mean's cosine with ``reference``."""
    summary = {}
    for name, draws in estimates.items():
        variance = draws.var(axis=0, ddof=1)
        summary[name] = {
            "total_variance": float(variance.sum()),
            "mean_parameter_variance": float(variance.mean()),
            "cosine_with_reference": cosine(draws.mean(axis=0), reference),
            "mean_gradient_norm": float(np.linalg.norm(draws.mean(axis=0))),
        }
    return summary


def run(config: ExperimentConfig, draw: Callable[..., dict[str, np.ndarray]] = draw_estimates) -> dict[str, Any]:
    model = fixed_policy(config, timesteps=config.size(8_192, 16_384), **BATCH_SETTINGS)
    seeded(config.seed)
    n_batches, n_reference = config.size(40, 300), config.size(40, 300)
    estimates = draw(model, n_batches, "batches")
    reference = draw(model, n_reference, "reference batches")[REFERENCE].mean(axis=0)
    summary = summarize(estimates, reference)
    variances = [summary[name]["total_variance"] for name in ESTIMATORS]
    holds = variances[2] < variances[0] and summary[REFERENCE]["cosine_with_reference"] > 0.9
    q_below_monte_carlo = variances[1] < variances[0]
    numbers = {
        "claim_holds": holds,
        "q_variance_below_monte_carlo": q_below_monte_carlo,
        "batches": n_batches,
        "reference_batches": n_reference,
        "steps_per_batch": model.n_steps * model.n_envs,
        "gamma": model.gamma,
        "estimators": summary,
    }
    rows = [
        [name, summary[name]["total_variance"], summary[name]["cosine_with_reference"], summary[name]["mean_gradient_norm"]]
        for name in ESTIMATORS
    ]
    markdown = (
        f"# {NAME}\n\n{CLAIM}\n\n{n_batches} independent batches of {numbers['steps_per_batch']} steps of a partly trained "
        f"CartPole-v1 LecturePPO (gamma {model.gamma}); reference: the mean {REFERENCE} estimate over {n_reference} other "
        "batches.\n\n"
        + markdown_table(["weight", "total variance", "cosine of mean with reference", "norm of mean"], rows)
        + f"\n\nClaim holds: {'yes' if holds else 'no'} (G_t - V(s_t) has a lower variance than G_t and its mean points "
        f"along the reference). {_q_sentence(q_below_monte_carlo)}\n"
    )
    ExperimentOutput(config.out_dir, NAME).write(_plot(summary, n_batches), numbers, markdown)
    return numbers


def _q_sentence(q_below_monte_carlo: bool) -> str:
    if q_below_monte_carlo:
        return f"The {N_STEP}-step Q weight has a lower variance than G_t, as the slides order them."
    return (
        f"The {N_STEP}-step Q weight has a higher variance than G_t here: without a baseline the weights' common offset "
        "(the value of the state) dominates the variance."
    )


def _plot(summary: dict[str, dict[str, float]], n_batches: int) -> "Figure":
    plt = pyplot()
    figure, (variance_axis, cosine_axis) = plt.subplots(1, 2, figsize=(11, 3.8))
    positions = np.arange(len(ESTIMATORS))
    colors = [f"C{index}" for index in positions]
    variance_axis.bar(positions, [summary[name]["total_variance"] for name in ESTIMATORS], color=colors)
    variance_axis.set_yscale("log")
    variance_axis.set_ylabel("total variance of the gradient estimate")
    variance_axis.set_title(f"variance across {n_batches} batches (lower is better)")
    cosine_axis.bar(positions, [summary[name]["cosine_with_reference"] for name in ESTIMATORS], color=colors)
    cosine_axis.set_ylim(min(0.0, *(summary[name]["cosine_with_reference"] for name in ESTIMATORS)), 1.0)
    cosine_axis.set_ylabel("cosine(mean estimate, reference)")
    cosine_axis.set_title("direction of the mean gradient")
    for axis in (variance_axis, cosine_axis):
        axis.set_xticks(positions, ESTIMATORS, rotation=15, fontsize=8)
        axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    return figure
