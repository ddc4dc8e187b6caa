"""
Policy objectives of the lecture (and of the PPO paper's Table 1), per step, to be maximized:

* ``clip``: ``min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A)`` (PPO-Clip);
* ``none``: ``ratio * A``, the off-policy actor-critic with importance sampling
  (the paper's "no clipping or penalty");
* ``kl_fixed``: ``ratio * A - beta * KL[pi_old, pi]`` with a fixed (or scheduled) beta;
* ``kl_adaptive``: the same, beta adapted after every update by :func:`adapt_kl_coef`;
* ``clip_kl_fixed`` / ``clip_kl_adaptive``: the clipped surrogate minus the KL penalty.

The precursors of the lecture (actor-critic, REINFORCE) use :func:`policy_gradient_surrogate`.
"""

from typing import NamedTuple

import torch as th


class ObjectiveSpec(NamedTuple):
    """What a named objective is made of."""

    clipped: bool
    """Whether the ratio term is PPO's clipped surrogate."""
    kl_penalty: str | None
    """``None``, ``"fixed"`` or ``"adaptive"``."""


OBJECTIVES: dict[str, ObjectiveSpec] = {
    "clip": ObjectiveSpec(clipped=True, kl_penalty=None),
    "none": ObjectiveSpec(clipped=False, kl_penalty=None),
    "kl_fixed": ObjectiveSpec(clipped=False, kl_penalty="fixed"),
    "kl_adaptive": ObjectiveSpec(clipped=False, kl_penalty="adaptive"),
    "clip_kl_fixed": ObjectiveSpec(clipped=True, kl_penalty="fixed"),
    "clip_kl_adaptive": ObjectiveSpec(clipped=True, kl_penalty="adaptive"),
}


def clipped_surrogate(ratio: th.Tensor, advantages: th.Tensor, clip_range: float | None) -> th.Tensor:
    """
    PPO's ``min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A)``; ``clip_range=None`` gives ``ratio * A``.

    :param ratio: pi(a|s) / pi_old(a|s), any shape
    :param advantages: same shape
    :param clip_range: epsilon, or None for no clipping
    :return: same shape
    """
    unclipped = ratio * advantages
    if clip_range is None:
        return unclipped
    clipped = th.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range) * advantages
    return th.min(unclipped, clipped)


def kl_penalized_surrogate(surrogate: th.Tensor, kl: th.Tensor, kl_coef: float) -> th.Tensor:
    """
    ``surrogate - beta * KL[pi_old, pi]`` (the TRPO penalty form of the "Objective" slide).
    """
    return surrogate - kl_coef * kl


def policy_gradient_surrogate(log_prob: th.Tensor, advantages: th.Tensor) -> th.Tensor:
    """
    ``sg(A) * log pi(a|s)``, the actor objective of the lecture's actor-critic slides
    (its gradient is ``A * grad log pi``, no importance ratio).
    """
    return advantages.detach() * log_prob


def adapt_kl_coef(kl_coef: float, kl: float, kl_target: float) -> float:
    """
    The PPO paper's adaptive KL rule, applied once after each policy update:
    ``d < d_targ / 1.5`` halves beta, ``d > 1.5 * d_targ`` doubles it, otherwise beta stays.

    :param kl_coef: beta before the update
    :param kl: d, the mean KL[pi_old, pi_new] of the update
    :param kl_target: d_targ
    :return: beta for the next update
    """
    if kl < kl_target / 1.5:
        return kl_coef / 2.0
    if kl > kl_target * 1.5:
        return kl_coef * 2.0
    return kl_coef
