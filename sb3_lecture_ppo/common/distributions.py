"""
The old action distribution as a flat parameter vector, and the exact KL divergence
KL[pi_old(.|s), pi(.|s)] between a stored old distribution and the current one.

One flat vector per step keeps the rollout buffer a plain array whatever the action space:

* ``Discrete(n)``: the n normalized logits;
* ``MultiDiscrete(nvec)``: the concatenated logits of each sub-space;
* ``MultiBinary(n)``: the n Bernoulli logits;
* ``Box(d)``: the d means followed by the d standard deviations of the diagonal Gaussian; with
  gSDE the Gaussian whose standard deviations depend on the state (``sqrt(latent^2 @ std^2)``),
  before any tanh squashing (a bijection, which leaves the KL unchanged).
"""

import contextlib
import math
from typing import NamedTuple

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.distributions import (
    BernoulliDistribution,
    CategoricalDistribution,
    DiagGaussianDistribution,
    Distribution,
    MultiCategoricalDistribution,
    StateDependentNoiseDistribution,
)
from stable_baselines3.common.policies import ActorCriticPolicy
from torch.distributions import Bernoulli, Normal, kl_divergence

HALF_LOG_TWO_PI = 0.5 * math.log(2 * math.pi)


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
    if isinstance(distribution, (DiagGaussianDistribution, StateDependentNoiseDistribution)):
        normal = distribution.distribution
        return th.cat([normal.loc, normal.scale.expand_as(normal.loc)], dim=1)
    raise TypeError(f"The exact KL is not implemented for {type(distribution).__name__}.")


def categorical_kl(old_logits: th.Tensor, new_logits: th.Tensor) -> th.Tensor:
    """
    ``KL[p, q] = sum_a p(a) (log p(a) - log q(a))`` of two categorical distributions given by
    logits (normalized or not), without building distribution objects. An action that ``p``
    never takes adds 0, one that ``q`` never takes but ``p`` does adds inf (as torch's KL).

    :param old_logits: (batch, n) logits of p
    :param new_logits: (batch, n) logits of q
    :return: (batch,)
    """
    new_log_probs = new_logits - new_logits.logsumexp(dim=-1, keepdim=True)
    return categorical_kl_to_log_probs(old_logits, new_log_probs)


def categorical_kl_to_log_probs(old_logits: th.Tensor, new_log_probs: th.Tensor) -> th.Tensor:
    """:func:`categorical_kl` where q is already given by its log-probabilities (a log-softmax)."""
    old_log_probs = old_logits - old_logits.logsumexp(dim=-1, keepdim=True)
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
    if isinstance(distribution, (DiagGaussianDistribution, StateDependentNoiseDistribution)):
        mean, std = th.chunk(old_params, 2, dim=1)
        return kl_divergence(Normal(mean, std), distribution.distribution).sum(dim=1)
    raise TypeError(f"The exact KL is not implemented for {type(distribution).__name__}.")


class SampledActions(NamedTuple):
    """Actions drawn from the policy for a rollout step, each ``(batch, ...)``."""

    actions: th.Tensor
    """The actions, as SB3's ``get_actions()``: (batch,) for Discrete, (batch, action_dim) for Box."""
    log_prob: th.Tensor
    """log pi(a|s), (batch,)."""
    params: th.Tensor
    """The distribution's flat parameters (:func:`distribution_params`), (batch, n_params)."""


def sample_actions(policy: ActorCriticPolicy, latent_pi: th.Tensor) -> SampledActions:
    """
    Draw actions from the policy's distribution at ``latent_pi`` with their log-probabilities and
    the distribution's parameters. For ``Discrete`` and ``Box`` actions the same operations as
    torch's ``Categorical`` / ``Normal`` behind SB3's distributions, so the same random draws give
    the same actions (tested), without building the objects; other spaces go through SB3's.

    :param policy: the actor-critic
    :param latent_pi: (batch, latent_dim_pi) the actor's latent; for ``Discrete`` and ``Box`` actions any leading
        dimensions (a population's ``(members, batch, latent_dim_pi)``, its heads stacked alike)
    """
    action_dist = policy.action_dist
    if isinstance(action_dist, CategoricalDistribution):
        logits = policy.action_net(latent_pi)
        log_probs = logits - logits.logsumexp(dim=-1, keepdim=True)  # Categorical's normalized logits
        probs = th.softmax(log_probs, dim=-1)
        actions = th.multinomial(probs.reshape(-1, probs.shape[-1]), 1, True).reshape(probs.shape[:-1])
        return SampledActions(actions, log_probs.gather(-1, actions.unsqueeze(-1)).squeeze(-1), log_probs)
    if isinstance(action_dist, DiagGaussianDistribution):
        mean = policy.action_net(latent_pi)
        std = th.ones_like(mean) * policy.log_std.exp()
        actions = mean + th.empty_like(mean).normal_() * std  # Normal.rsample
        log_prob = -((actions - mean) ** 2) / (2 * std**2) - std.log() - math.log(math.sqrt(2 * math.pi))
        return SampledActions(actions, log_prob.sum(dim=-1), th.cat([mean, std], dim=-1))
    distribution = policy._get_action_dist_from_latent(latent_pi)
    actions = distribution.get_actions()
    return SampledActions(actions, distribution.log_prob(actions), distribution_params(distribution))


class ActionTerms(NamedTuple):
    """What the loss needs of the current action distribution on a minibatch, each ``(batch,)``."""

    log_prob: th.Tensor
    """log pi(a|s) of the taken actions (with gradient)."""
    entropy: th.Tensor
    """Entropy of pi(.|s)."""
    kl: th.Tensor
    """Exact KL[pi_old(.|s), pi(.|s)]."""


def action_terms(
    policy: ActorCriticPolicy,
    latent_pi: th.Tensor,
    actions: th.Tensor,
    old_params: th.Tensor,
    entropy_grad: bool = True,
    kl_grad: bool = True,
) -> ActionTerms:
    """
    log pi(a|s), the entropy and the exact KL to the old distribution, from the actor's latent.
    For ``Discrete`` and ``Box`` actions (SB3's categorical and diagonal Gaussian) in closed
    form on the action head's output, one log-softmax and no distribution object: on small
    networks the objects and their re-normalizations cost as much as a layer. The other
    spaces go through SB3's distribution. Equal to SB3's ``log_prob`` / ``entropy`` and to
    :func:`kl_from_params` (tested).

    :param policy: the actor-critic whose action head and distribution to use
    :param latent_pi: (batch, latent_dim_pi) the actor's latent; for ``Discrete`` and ``Box`` actions any leading
        dimensions (a population's members), the other arguments alike
    :param actions: (batch, action_dim) the actions taken, as stored in the rollout buffer
    :param old_params: (batch, distribution_params_dim) the behaviour policy's parameters
    :param entropy_grad: build the entropy's graph (else it is a statistic, computed without gradient)
    :param kl_grad: build the KL's graph
    """
    action_dist = policy.action_dist
    if isinstance(action_dist, CategoricalDistribution):
        log_probs = th.log_softmax(policy.action_net(latent_pi), dim=-1)
        log_prob = log_probs.gather(-1, actions.long().reshape(*log_probs.shape[:-1], 1)).squeeze(-1)
        with _grad_if(entropy_grad):
            # clamped as torch's Categorical.entropy: an action of probability 0 adds 0, not 0 * -inf
            entropy = -(log_probs.clamp(min=th.finfo(log_probs.dtype).min) * log_probs.exp()).sum(dim=-1)
        with _grad_if(kl_grad):
            kl = categorical_kl_to_log_probs(old_params, log_probs)
        return ActionTerms(log_prob, entropy, kl)
    if isinstance(action_dist, DiagGaussianDistribution):
        mean = policy.action_net(latent_pi)
        log_std = policy.log_std
        std = log_std.exp()
        log_prob = (-((actions - mean) ** 2) / (2 * std**2) - log_std - HALF_LOG_TWO_PI).sum(dim=-1)
        with _grad_if(entropy_grad):
            entropy = (0.5 + HALF_LOG_TWO_PI + log_std).sum(dim=-1).expand(mean.shape[:-1])
        with _grad_if(kl_grad):
            old_mean, old_std = th.chunk(old_params, 2, dim=-1)
            variance_ratio = (old_std / std) ** 2
            kl = (0.5 * (variance_ratio + ((old_mean - mean) / std) ** 2 - 1 - variance_ratio.log())).sum(dim=-1)
        return ActionTerms(log_prob, entropy, kl)
    distribution = policy._get_action_dist_from_latent(latent_pi)
    log_prob = distribution.log_prob(actions)
    with _grad_if(entropy_grad):
        sb3_entropy = distribution.entropy()
        entropy = -log_prob if sb3_entropy is None else sb3_entropy
    with _grad_if(kl_grad):
        kl = kl_from_params(old_params, distribution)
    return ActionTerms(log_prob, entropy, kl)


def _grad_if(enabled: bool) -> contextlib.AbstractContextManager:
    return contextlib.nullcontext() if enabled else th.no_grad()
