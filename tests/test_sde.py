"""gSDE (SB3's semantics) for every algorithm: noise resampling, the exact KL of its Gaussian, squashing, save/load."""

from collections import defaultdict

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.distributions import StateDependentNoiseDistribution
from stable_baselines3.common.env_util import make_vec_env
from torch.distributions import Normal, kl_divergence

from sb3_lecture_ppo import LectureActorCritic, LectureGAEActorCritic, LectureMonteCarloPG, LecturePPO
from sb3_lecture_ppo.common.distributions import distribution_params, kl_from_params
from sb3_lecture_ppo.common.policies import distribution_and_values
from tests.helpers import collected_model, tiny_kwargs
from tests.test_dict_obs import algorithm_kwargs

ALGORITHMS = [LecturePPO, LectureActorCritic, LectureGAEActorCritic, LectureMonteCarloPG]


@pytest.mark.parametrize("algo", ALGORITHMS)
@pytest.mark.parametrize("sde_sample_freq", [-1, 1, 4])
@pytest.mark.parametrize("advantage_scope", ["segment", "rollout"])
def test_noise_is_resampled_at_each_rollout_start_and_every_sde_sample_freq_steps(algo, sde_sample_freq, advantage_scope):
    env = make_vec_env("Pendulum-v1", n_envs=2, seed=0)
    kwargs = algorithm_kwargs(algo, use_sde=True, sde_sample_freq=sde_sample_freq, advantage_scope=advantage_scope)
    model = algo("MlpPolicy", env, **kwargs)
    assert isinstance(model.policy.action_dist, StateDependentNoiseDistribution)
    calls = []
    reset_noise = model.policy.reset_noise
    model.policy.reset_noise = lambda n_envs=1: calls.append(n_envs) or reset_noise(n_envs)  # type: ignore[method-assign]
    model.learn(2 * model.n_steps * 2)  # two rollouts
    per_rollout = 1 + (model.n_steps // sde_sample_freq if sde_sample_freq > 0 else 0)
    assert calls == [2] * (2 * per_rollout)
    for value in model.policy.state_dict().values():
        assert th.isfinite(value).all()


def test_fixed_noise_gives_the_same_action_for_the_same_state_within_a_rollout():
    model = LecturePPO("MlpPolicy", "Pendulum-v1", **tiny_kwargs(use_sde=True))
    model.policy.reset_noise(1)
    observation = th.as_tensor(model.observation_space.sample()[None])
    with th.no_grad():
        first, second = model.policy(observation)[0], model.policy(observation)[0]
    th.testing.assert_close(first, second)
    model.policy.reset_noise(1)
    with th.no_grad():
        assert not th.allclose(model.policy(observation)[0], first)


@pytest.mark.parametrize("policy_kwargs", [dict(), dict(full_std=False), dict(use_expln=True), dict(squash_output=True)])
def test_stored_distribution_is_the_state_dependent_gaussian_and_its_kl_is_exact(policy_kwargs):
    model = collected_model("Pendulum-v1", use_sde=True, policy_kwargs=dict(hidden_size=16, **policy_kwargs))
    buffer = model.rollout_buffer
    observations = buffer.observation_tensor()
    with th.no_grad():
        distribution, _ = distribution_and_values(model.policy, observations)
        stored = buffer.tensor("distribution_params")
        # before any update the stored behaviour distribution is the current one, and so are the log-probabilities
        th.testing.assert_close(stored, distribution_params(distribution))
        actions = buffer.tensor("actions")
        th.testing.assert_close(buffer.tensor("log_probs"), distribution.log_prob(actions), atol=1e-4, rtol=1e-4)
        for param in model.policy.parameters():
            param.add_(0.05 * th.randn_like(param))
        moved, _ = distribution_and_values(model.policy, observations)
        mean, std = th.chunk(stored, 2, dim=1)
        expected = kl_divergence(Normal(mean, std), Normal(moved.distribution.mean, moved.distribution.stddev)).sum(dim=1)
        th.testing.assert_close(kl_from_params(stored, moved), expected)
        assert (expected > 0).all()


@pytest.mark.parametrize("objective", ["clip", "none", "kl_fixed", "kl_adaptive", "clip_kl_adaptive"])
def test_every_objective_trains_with_gsde(objective):
    stats: dict[str, list] = defaultdict(list)
    model = collected_model("Pendulum-v1", use_sde=True, objective=objective)
    model._minibatch_loss(model.rollout_buffer.sample_steps(16, model._recomputes_segment_advantages()), stats)
    # the first minibatch meets the behaviour policy itself: ratio 1, KL 0
    assert abs(stats["approx_kl"][0].item()) < 1e-6 and abs(stats["kl"][0].item()) < 1e-6
    model.train()
    for value in model.policy.state_dict().values():
        assert th.isfinite(value).all()


@pytest.mark.parametrize("algo", ALGORITHMS)
def test_save_load_with_gsde_keeps_the_noise_setting_and_predictions(tmp_path, algo):
    model = algo("MlpPolicy", "Pendulum-v1", **algorithm_kwargs(algo, use_sde=True, sde_sample_freq=4)).learn(64)
    observations = np.stack([model.observation_space.sample() for _ in range(10)])
    actions, _ = model.predict(observations, deterministic=True)
    model.save(tmp_path / "model")
    loaded = algo.load(tmp_path / "model", device="cpu")
    assert loaded.use_sde and loaded.sde_sample_freq == 4
    np.testing.assert_allclose(loaded.predict(observations, deterministic=True)[0], actions, rtol=1e-6)
    loaded.set_env(make_vec_env("Pendulum-v1", n_envs=1))
    loaded.learn(64)


def test_use_sde_with_discrete_actions_says_so():
    with pytest.raises(ValueError, match=r"use_sde=True needs a Box action space.*drop use_sde"):
        LecturePPO("MlpPolicy", make_vec_env("CartPole-v1"), **tiny_kwargs(use_sde=True))


def test_use_sde_of_the_wrong_type_says_so():
    with pytest.raises(TypeError, match="use_sde='yes' must be True or False"):
        LecturePPO("MlpPolicy", "Pendulum-v1", **tiny_kwargs(use_sde="yes"))
