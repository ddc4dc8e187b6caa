"""
The old action distribution as a flat parameter vector, and the exact KL divergence
KL[pi_old(.|s), pi(.|s)] between a stored old distribution and the current one.

One flat vector per step keeps the rollout buffer a plain array whatever the action space:

* ``Discrete(n)``: the n normalized logits;
* ``MultiDiscrete(nvec)``: the concatenated logits of each sub-space;
* ``MultiBinary(n)``: the n Bernoulli logits;
* ``Box(d)``: the d means followed by the d standard deviations of the diagonal Gaussian.
"""

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.distributions import (
    BernoulliDistribution,
    CategoricalDistribution,
    DiagGaussianDistribution,
    Distribution,
    MultiCategoricalDistribution,
)
from torch.distributions import Bernoulli, Normal, kl_divergence


def distribution_params_dim(action_space: spaces.Space) -> int:
    """
    Length of the flat parameter vector of the action distribution of ``action_space``.

    :param action_space: Discrete, MultiDiscrete, MultiBinary or Box
    :return: number of parameters per step
    """
    if isinstance(action_space, spaces.Discrete):
        return int(action_space.n)
    if isinstance(action_space, spaces.MultiDiscrete):
        return int(np.sum(action_space.nvec))
    if isinstance(action_space, spaces.MultiBinary):
        return int(np.prod(action_space.shape))
    if isinstance(action_space, spaces.Box):
        return 2 * int(np.prod(action_space.shape))
    raise TypeError(
        f"Unsupported action space {action_space}: use Discrete, MultiDiscrete, MultiBinary or Box "
        "(for Dict or Tuple action spaces, flatten them with a gymnasium wrapper)."
    )


def distribution_params(distribution: Distribution) -> th.Tensor:
    """
    Flat parameters of an SB3 action distribution.

    :param distribution: an SB3 distribution after ``proba_distribution(...)``
    :return: (batch, distribution_params_dim)
    """
    if isinstance(distribution, (CategoricalDistribution, BernoulliDistribution)):
        return distribution.distribution.logits.reshape(distribution.distribution.logits.shape[0], -1)
    if isinstance(distribution, MultiCategoricalDistribution):
        return th.cat([categorical.logits for categorical in distribution.distribution], dim=1)
    if isinstance(distribution, DiagGaussianDistribution):
        normal = distribution.distribution
        return th.cat([normal.loc, normal.scale.expand_as(normal.loc)], dim=1)
    raise TypeError(
        f"The exact KL is not implemented for {type(distribution).__name__} (gSDE is not supported: pass use_sde=False)."
    )


def categorical_kl(old_logits: th.Tensor, new_logits: th.Tensor) -> th.Tensor:
    """
    ``KL[p, q] = sum_a p(a) (log p(a) - log q(a))`` of two categorical distributions given by
    logits (normalized or not), without building distribution objects. An action that ``p``
    never takes adds 0, one that ``q`` never takes but ``p`` does adds inf (as torch's KL).

    :param old_logits: (batch, n) logits of p
    :param new_logits: (batch, n) logits of q
    :return: (batch,)
    """
    old_log_probs = old_logits - old_logits.logsumexp(dim=-1, keepdim=True)
    new_log_probs = new_logits - new_logits.logsumexp(dim=-1, keepdim=True)
    old_probs = old_log_probs.exp()
    terms = old_probs * (old_log_probs - new_log_probs)
    # 0 * log 0: an action outside p's support contributes nothing, whatever q says of it
    return th.where(old_probs > 0, terms, th.zeros_like(terms)).sum(dim=-1)


def kl_from_params(old_params: th.Tensor, distribution: Distribution) -> th.Tensor:
    """
    Exact KL[pi_old, pi] per step, ``pi_old`` given by its flat parameters and ``pi`` the
    current SB3 distribution (with gradient). Independent dimensions are summed.

    :param old_params: (batch, distribution_params_dim)
    :param distribution: current SB3 distribution over the same batch
    :return: (batch,)
    """
    if isinstance(distribution, CategoricalDistribution):
        return categorical_kl(old_params, distribution.distribution.logits)
    if isinstance(distribution, MultiCategoricalDistribution):
        old_splits = th.split(old_params, list(distribution.action_dims), dim=1)
        kls = [categorical_kl(old, new.logits) for old, new in zip(old_splits, distribution.distribution, strict=True)]
        return th.stack(kls, dim=1).sum(dim=1)
    if isinstance(distribution, BernoulliDistribution):
        return kl_divergence(Bernoulli(logits=old_params), distribution.distribution).sum(dim=1)
    if isinstance(distribution, DiagGaussianDistribution):
        mean, std = th.chunk(old_params, 2, dim=1)
        return kl_divergence(Normal(mean, std), distribution.distribution).sum(dim=1)
    raise TypeError(f"The exact KL is not implemented for {type(distribution).__name__}.")
