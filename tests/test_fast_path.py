"""
The faster training loop against the plain computations it replaces: flat minibatches, next
values from the stored values, the merged critic pass of the segment recompute, the closed-form
categorical KL, fused Adam, and LecturePPO in SB3's settings reproducing SB3's PPO.
"""

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.policies import ActorCriticPolicy
from torch.distributions import Categorical, kl_divergence

from sb3_lecture_ppo import LecturePPO
from sb3_lecture_ppo.common.distributions import categorical_kl
from sb3_lecture_ppo.common.segments import advantages_and_targets, segment_continues
from sb3_lecture_ppo.common.type_aliases import MinibatchSteps
from tests.helpers import all_segments, collected_model, tiny_kwargs

SEGMENT_RECOMPUTE = dict(advantage_scope="segment", recompute_advantage=True, value_target="td")
ROLLOUT_ONCE = dict(advantage_scope="rollout", recompute_advantage=False, value_target="lambda")


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
@pytest.mark.parametrize("with_segments", [True, False])
def test_flat_minibatch_equals_the_masked_segments(env_id, with_segments):
    model = collected_model(env_id, n_envs=3, n_steps=40, seq_length=6, batch_size=30)
    buffer = model.rollout_buffer
    segment_ids = np.random.default_rng(0).permutation(buffer.n_segments)[:7]
    fast = buffer.minibatch_steps(segment_ids, with_segments)
    plain = MinibatchSteps.from_segments(buffer._get_samples(segment_ids), with_segments)
    for name in ("observations", "actions", "old_values", "old_log_prob", "old_distribution_params", "advantages", "returns"):
        assert th.equal(getattr(fast, name), getattr(plain, name)), name
    assert (fast.segments is None) == (plain.segments is None) == (not with_segments)
    if with_segments:
        for name in fast.segments._fields:
            assert th.equal(getattr(fast.segments, name), getattr(plain.segments, name)), name


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
@pytest.mark.parametrize("with_segments", [True, False])
@pytest.mark.parametrize("batch_size", [12, 16, None])
def test_get_steps_yields_the_minibatches_of_get(env_id, with_segments, batch_size):
    # CartPole: segments cut short by episode ends, and a last minibatch with fewer segments
    model = collected_model(env_id, n_envs=3, n_steps=60, seq_length=4, batch_size=12)
    buffer = model.rollout_buffer
    np.random.seed(3)
    plain = [MinibatchSteps.from_segments(samples, with_segments) for samples in buffer.get(batch_size)]
    np.random.seed(3)
    fast = list(buffer.get_steps(batch_size, with_segments))
    assert len(fast) == len(plain) and (len(plain) > 1 or batch_size is None)
    for fast_batch, plain_batch in zip(fast, plain, strict=True):
        for name in MinibatchSteps._fields[:-1]:
            assert th.equal(getattr(fast_batch, name), getattr(plain_batch, name)), name
        if with_segments:
            for name in fast_batch.segments._fields:
                assert th.equal(getattr(fast_batch.segments, name), getattr(plain_batch.segments, name)), name
        else:
            assert fast_batch.segments is None


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_next_values_from_stored_values_equal_the_critic_on_next_observations(env_id):
    # CartPole ends episodes inside the rollout; Pendulum is truncated at 200 steps
    model = collected_model(env_id, n_envs=2, n_steps=256, seq_length=8, batch_size=64)
    buffer = model.rollout_buffer
    assert buffer.dones.any()
    values = model._critic_values(buffer.tensor("observations"))
    expected = model._critic_values(buffer.tensor("next_observations"))
    th.testing.assert_close(buffer.next_values(values, model._critic_values), expected, atol=1e-6, rtol=1e-5)


def plain_segment_advantages(model, samples):
    """The segment-scope recompute as written first: the critic on every real step's s', a separate pass."""
    mask = samples.mask
    with th.no_grad():
        values = model.policy.predict_values(samples.observations[mask]).flatten()
        next_values = model.policy.predict_values(samples.next_observations[mask]).flatten()
    segment_values = th.zeros_like(samples.rewards).masked_scatter(mask, values)
    segment_next_values = th.zeros_like(samples.rewards).masked_scatter(mask, next_values)
    advantages, targets = advantages_and_targets(
        samples.rewards,
        segment_values,
        segment_next_values,
        samples.terminations,
        segment_continues(mask),
        model.gamma,
        model.gae_lambda,
        model.value_target,
    )
    return values, advantages[mask], targets[mask]


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
@pytest.mark.parametrize("value_target", ["td", "lambda", "mc"])
def test_segment_recompute_equals_the_plain_recompute(env_id, value_target):
    # 3 envs x 240 steps in segments of 7: CartPole's episodes end inside, Pendulum's are truncated at 200
    model = collected_model(env_id, n_envs=3, n_steps=240, seq_length=7, batch_size=70, value_target=value_target)
    samples = all_segments(model)
    assert (~samples.mask).any(), "the test needs segments cut short by episode ends"
    # move the critic away from the rollout's, as after some gradient steps
    with th.no_grad():
        model.policy.value_net.bias += 0.7
    values, expected_advantages, expected_targets = plain_segment_advantages(model, samples)
    advantages, targets = model._minibatch_advantages(samples, values)
    th.testing.assert_close(advantages, expected_advantages, atol=1e-5, rtol=1e-5)
    th.testing.assert_close(targets, expected_targets, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("seed", range(3))
def test_categorical_kl_matches_torch(seed):
    generator = th.Generator().manual_seed(seed)
    old_logits = th.randn(50, 5, generator=generator) * 3
    new_logits = th.randn(50, 5, generator=generator) * 3
    old_logits[0, 1] = -float("inf")  # an action the old policy never takes adds nothing
    th.testing.assert_close(
        categorical_kl(old_logits, new_logits), kl_divergence(Categorical(logits=old_logits), Categorical(logits=new_logits))
    )
    new_logits[1, 2] = -float("inf")  # one the new policy never takes but the old one does: infinite
    assert categorical_kl(old_logits, new_logits)[1] == float("inf")


def test_adam_is_fused_unless_the_user_chose():
    defaults = LecturePPO("MlpPolicy", "CartPole-v1", **tiny_kwargs()).policy.optimizer.defaults
    assert defaults["fused"] and defaults["eps"] == 1e-5  # SB3's eps stays
    chosen = tiny_kwargs(policy_kwargs=dict(hidden_size=16, optimizer_kwargs=dict(foreach=True)))
    optimizer = LecturePPO("MlpPolicy", "CartPole-v1", **chosen).policy.optimizer
    assert optimizer.defaults["foreach"] and not optimizer.defaults["fused"]
    sgd = tiny_kwargs(policy_kwargs=dict(hidden_size=16, optimizer_class=th.optim.SGD))
    assert isinstance(LecturePPO("MlpPolicy", "CartPole-v1", **sgd).policy.optimizer, th.optim.SGD)


def test_fused_adam_trains_as_the_plain_adam():
    def trained(optimizer_kwargs):
        env = make_vec_env("CartPole-v1", n_envs=2, seed=0)
        kwargs = tiny_kwargs(policy_kwargs=dict(hidden_size=16, optimizer_kwargs=optimizer_kwargs))
        return LecturePPO("MlpPolicy", env, **kwargs).learn(256).policy.state_dict()

    fused, plain = trained(dict(fused=True)), trained(dict(foreach=False))
    for name, value in plain.items():
        th.testing.assert_close(fused[name], value, atol=1e-5, rtol=1e-4, msg=name)


def test_distribution_validation_is_restored_after_learning():
    before = th.distributions.Distribution._validate_args
    LecturePPO("MlpPolicy", "CartPole-v1", **tiny_kwargs()).learn(64)
    assert th.distributions.Distribution._validate_args == before


class NaNRewardEnv(gym.Env):
    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, dtype=np.float32), {}

    def step(self, action):
        return np.zeros(2, dtype=np.float32), float("nan"), False, False, {}


def test_a_nan_loss_stops_training_with_a_clear_message():
    model = LecturePPO("MlpPolicy", NaNRewardEnv(), **tiny_kwargs())
    with pytest.raises(FloatingPointError, match="VecCheckNan"):
        model.learn(64)


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_lecture_ppo_in_sb3_settings_trains_as_sb3_ppo(env_id):
    """Same seed, same network class, SB3's semantics and one-step segments: the same parameters after 3 updates."""
    settings = dict(n_steps=64, batch_size=32, n_epochs=3, seed=0, device="cpu", policy_kwargs=dict(net_arch=[32]))
    sb3 = PPO("MlpPolicy", make_vec_env(env_id, n_envs=2, seed=0), **settings).learn(384)
    ours = LecturePPO(
        ActorCriticPolicy,
        make_vec_env(env_id, n_envs=2, seed=0),
        seq_length=1,
        **ROLLOUT_ONCE,
        **settings,
    )
    ours.learn(384)
    for name, value in sb3.policy.state_dict().items():
        th.testing.assert_close(ours.policy.state_dict()[name], value, atol=1e-4, rtol=1e-3, msg=name)
