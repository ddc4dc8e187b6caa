"""Policy objectives, the exact KL and the adaptive KL rule."""

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.distributions import (
    BernoulliDistribution,
    CategoricalDistribution,
    DiagGaussianDistribution,
    MultiCategoricalDistribution,
)

from sb3_lecture_ppo.common.distributions import distribution_params, kl_from_params
from sb3_lecture_ppo.common.objectives import adapt_kl_coef, clipped_surrogate, kl_penalized_surrogate

N_MONTE_CARLO = 200_000


def reference_clip_gradient(ratio: float, advantage: float, epsilon: float) -> float:
    """d/d ratio of min(r A, clip(r, 1-eps, 1+eps) A), one case at a time."""
    if advantage >= 0 and ratio > 1 + epsilon:
        return 0.0
    if advantage < 0 and ratio < 1 - epsilon:
        return 0.0
    return advantage


@pytest.mark.parametrize("epsilon", [0.1, 0.2, 0.3])
def test_clip_gradient_vanishes_outside_the_trust_region_on_the_selected_side(epsilon):
    generator = th.Generator().manual_seed(0)
    ratio = (th.rand(2000, generator=generator) * 2).requires_grad_()
    advantages = th.randn(2000, generator=generator)
    clipped_surrogate(ratio, advantages, epsilon).sum().backward()
    expected = [reference_clip_gradient(r, a, epsilon) for r, a in zip(ratio.tolist(), advantages.tolist(), strict=True)]
    np.testing.assert_allclose(ratio.grad.numpy(), expected, atol=1e-6)
    # both kinds of zero-gradient case occur in the sample
    assert ((advantages > 0) & (ratio > 1 + epsilon)).any() and ((advantages < 0) & (ratio < 1 - epsilon)).any()


def test_clip_range_none_and_huge_are_the_unclipped_surrogate():
    ratio = th.rand(100) * 3
    advantages = th.randn(100)
    th.testing.assert_close(clipped_surrogate(ratio, advantages, None), ratio * advantages)
    th.testing.assert_close(clipped_surrogate(ratio, advantages, 100.0), ratio * advantages)


def test_kl_penalty_with_zero_beta_is_the_surrogate():
    surrogate, kl = th.randn(10), th.rand(10)
    th.testing.assert_close(kl_penalized_surrogate(surrogate, kl, 0.0), surrogate)
    th.testing.assert_close(kl_penalized_surrogate(surrogate, kl, 2.0), surrogate - 2 * kl)


def random_distribution(kind: str, batch: int, generator: th.Generator):
    if kind == "categorical":
        return CategoricalDistribution(4).proba_distribution(th.randn(batch, 4, generator=generator))
    if kind == "multicategorical":
        return MultiCategoricalDistribution([2, 3]).proba_distribution(th.randn(batch, 5, generator=generator))
    if kind == "bernoulli":
        return BernoulliDistribution(3).proba_distribution(th.randn(batch, 3, generator=generator))
    mean = th.randn(batch, 2, generator=generator)
    log_std = th.randn(2, generator=generator) * 0.5
    return DiagGaussianDistribution(2).proba_distribution(mean, log_std)


def monte_carlo_log_ratios(old, new, n: int) -> th.Tensor:
    """log pi_old(x) - log pi_new(x) for n samples x ~ pi_old, independent dimensions summed."""
    if isinstance(old, MultiCategoricalDistribution):
        parts = [monte_carlo_log_ratios_of(o, n_, n) for o, n_ in zip(old.distribution, new.distribution, strict=True)]
        return th.stack(parts).sum(dim=0)
    log_ratios = monte_carlo_log_ratios_of(old.distribution, new.distribution, n)
    return log_ratios if isinstance(old, CategoricalDistribution) else log_ratios.sum(dim=-1)


def monte_carlo_log_ratios_of(old: th.distributions.Distribution, new: th.distributions.Distribution, n: int):
    samples = old.sample((n,))
    return old.log_prob(samples) - new.log_prob(samples)


@pytest.mark.parametrize("kind", ["categorical", "multicategorical", "bernoulli", "gaussian"])
def test_exact_kl_matches_a_monte_carlo_estimate(kind):
    generator = th.Generator().manual_seed(1)
    old = random_distribution(kind, batch=3, generator=generator)
    new = random_distribution(kind, batch=3, generator=generator)
    exact = kl_from_params(distribution_params(old), new)

    th.manual_seed(2)
    log_ratios = monte_carlo_log_ratios(old, new, N_MONTE_CARLO)  # (n, batch)
    estimate = log_ratios.mean(dim=0)
    standard_error = log_ratios.std(dim=0) / np.sqrt(len(log_ratios))
    assert (exact >= 0).all()
    assert ((exact - estimate).abs() < 5 * standard_error + 1e-4).all(), (exact, estimate, standard_error)


@pytest.mark.parametrize("kind", ["categorical", "multicategorical", "bernoulli", "gaussian"])
def test_exact_kl_of_identical_distributions_is_zero(kind):
    distribution = random_distribution(kind, batch=5, generator=th.Generator().manual_seed(3))
    kl = kl_from_params(distribution_params(distribution), distribution)
    th.testing.assert_close(kl, th.zeros(5), atol=1e-6, rtol=0)


def test_adaptive_rule_on_a_scripted_kl_sequence():
    target = 0.01
    kls = [0.001, 0.006, 0.0067, 0.01, 0.015, 0.0151, 0.2, 0.0066]
    # d < d_targ / 1.5 = 0.00667 halves; d > 1.5 d_targ = 0.015 doubles; otherwise unchanged
    expected = [0.5, 0.25, 0.25, 0.25, 0.25, 0.5, 1.0, 0.5]
    beta, betas = 1.0, []
    for kl in kls:
        beta = adapt_kl_coef(beta, kl, target)
        betas.append(beta)
    assert betas == expected
