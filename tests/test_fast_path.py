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
from sb3_lecture_ppo.common.on_policy_algorithm import clip_grad_norm
from sb3_lecture_ppo.common.distributions import (
    action_terms,
    categorical_kl,
    distribution_params,
    kl_from_params,
    sample_actions,
)
from sb3_lecture_ppo.common.segments import advantages_and_targets, segment_continues
from sb3_lecture_ppo.common.policies import actor_latent_and_values
from sb3_lecture_ppo.common.type_aliases import PER_STEP_FIELDS, MinibatchSteps
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
        for name in PER_STEP_FIELDS:
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
    values = model._critic_values(buffer.observation_tensor("observations"))
    expected = model._critic_values(buffer.observation_tensor("next_observations"))
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


ACTION_SPACES = {
    "Discrete": gym.spaces.Discrete(4),
    "Box": gym.spaces.Box(-1.0, 1.0, (3,), dtype=np.float32),
    "MultiDiscrete": gym.spaces.MultiDiscrete([3, 2]),
    "MultiBinary": gym.spaces.MultiBinary(3),
}


@pytest.mark.parametrize("space", ACTION_SPACES)
@pytest.mark.parametrize("with_grad", [True, False])
def test_action_terms_equal_sb3_distributions_and_their_gradients(space, with_grad):
    """The closed forms of the training loss against SB3's distribution objects and the KL of torch's."""
    th.manual_seed(0)
    observation_space = gym.spaces.Box(-1.0, 1.0, (5,), dtype=np.float32)
    policy = ActorCriticPolicy(observation_space, ACTION_SPACES[space], lambda _: 1e-3, net_arch=[16], log_std_init=-0.3)
    observations = th.randn(40, 5)
    with th.no_grad():
        behaviour = policy.get_distribution(observations)
        actions = behaviour.get_actions().float().reshape(40, -1)
        old_params = distribution_params(behaviour)
        for parameter in policy.parameters():  # the current policy: some gradient steps away
            parameter.add_(0.3 * th.randn_like(parameter))

    def gradients(total):
        policy.zero_grad()
        total.backward()
        return {name: parameter.grad.clone() for name, parameter in policy.named_parameters() if parameter.grad is not None}

    latent_pi, _ = actor_latent_and_values(policy, observations)
    terms = action_terms(policy, latent_pi, actions, old_params, entropy_grad=with_grad, kl_grad=with_grad)
    assert [term.shape for term in terms] == [(40,)] * 3
    fast_gradients = gradients(terms.log_prob.sum() + terms.entropy.sum() + terms.kl.sum())
    distribution = policy.get_distribution(observations)
    sb3_actions = actions.long().flatten() if space == "Discrete" else actions
    log_prob, entropy = distribution.log_prob(sb3_actions), distribution.entropy()
    kl = kl_from_params(old_params, distribution)
    for fast, plain in zip(terms, (log_prob, entropy, kl), strict=True):
        th.testing.assert_close(fast, plain.detach(), atol=1e-5, rtol=1e-5)
    assert terms.kl.min() > 0 and terms.entropy.requires_grad == terms.kl.requires_grad == with_grad
    extra = (entropy.sum() + kl.sum()) if with_grad else 0.0
    plain_gradients = gradients(log_prob.sum() + extra)
    assert fast_gradients.keys() == plain_gradients.keys()
    for name, value in plain_gradients.items():
        th.testing.assert_close(fast_gradients[name], value, atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("space", ACTION_SPACES)
def test_sampled_actions_are_sb3_draws_from_the_same_seed(space):
    """The rollout's sampling: the same random draws as SB3's distribution objects, the same log-probs and parameters."""
    th.manual_seed(0)
    observation_space = gym.spaces.Box(-1.0, 1.0, (5,), dtype=np.float32)
    policy = ActorCriticPolicy(observation_space, ACTION_SPACES[space], lambda _: 1e-3, net_arch=[16], log_std_init=-0.3)
    observations = th.randn(64, 5)
    with th.no_grad():
        latent_pi, _ = actor_latent_and_values(policy, observations)
        th.manual_seed(1)
        fast = sample_actions(policy, latent_pi)
        th.manual_seed(1)
        distribution = policy.get_distribution(observations)
        actions = distribution.get_actions()
    assert th.equal(fast.actions, actions)
    th.testing.assert_close(fast.log_prob, distribution.log_prob(actions), atol=1e-6, rtol=1e-6)
    th.testing.assert_close(fast.params, distribution_params(distribution), atol=1e-6, rtol=1e-6)
    assert len(th.unique(fast.actions)) > 1


@pytest.mark.parametrize("batch_size", [10, 32, None])
def test_one_step_segments_yield_the_minibatches_of_get(batch_size):
    model = collected_model("CartPole-v1", n_envs=2, n_steps=32, seq_length=1, batch_size=16)
    buffer = model.rollout_buffer
    np.random.seed(5)
    plain = [MinibatchSteps.from_segments(samples, with_segments=False) for samples in buffer.get(batch_size)]
    np.random.seed(5)
    fast = list(buffer.get_steps(batch_size, with_segments=False))
    assert [len(batch.observations) for batch in fast] == [len(batch.observations) for batch in plain]
    for fast_batch, plain_batch in zip(fast, plain, strict=True):
        assert fast_batch.segments is None
        for name in PER_STEP_FIELDS:
            assert th.equal(getattr(fast_batch, name), getattr(plain_batch, name)), name


@pytest.mark.parametrize("max_norm", [0.05, 0.5, 1e3])
def test_gradient_clipping_equals_torch(max_norm):
    def clipped(clip):
        th.manual_seed(0)
        network = th.nn.Sequential(th.nn.Linear(4, 8), th.nn.Tanh(), th.nn.Linear(8, 2))
        network(th.randn(16, 4)).pow(2).sum().backward()
        network[2].bias.grad = None  # a parameter without gradient is skipped
        clip(list(network.parameters()), max_norm)
        return [parameter.grad for parameter in network.parameters()]

    plain = clipped(lambda parameters, norm: th.nn.utils.clip_grad_norm_(parameters, norm, foreach=True))
    for fast, expected in zip(clipped(clip_grad_norm), plain, strict=True):
        assert (fast is None) == (expected is None)
        if fast is not None:
            th.testing.assert_close(fast, expected, atol=0.0, rtol=1e-6)


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


def test_a_nan_loss_stops_training_with_a_clear_message(monkeypatch):
    model = LecturePPO("MlpPolicy", "CartPole-v1", **tiny_kwargs())
    minibatch_loss = model._minibatch_loss

    def nan_loss(*args, **kwargs):  # a loss gone NaN inside the update (the env's values are finite)
        loss, approx_kl = minibatch_loss(*args, **kwargs)
        return loss * float("nan"), approx_kl

    monkeypatch.setattr(model, "_minibatch_loss", nan_loss)
    with pytest.raises(FloatingPointError, match=r"the loss became NaN or inf.*VecCheckNan"):
        model.learn(64)


def test_nan_rewards_stop_training_before_the_update():
    from sb3_lecture_ppo.common.on_policy_algorithm import NonFiniteEnvValueError

    model = LecturePPO("MlpPolicy", NaNRewardEnv(), **tiny_kwargs())
    with pytest.raises(NonFiniteEnvValueError, match="non-finite reward"):
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
