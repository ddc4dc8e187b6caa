"""The precursors: hand-computed update steps, equivalences, the Monte-Carlo cut, SB3 behaviour."""

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize

from sb3_lecture_ppo import LectureActorCritic, LectureGAEActorCritic, LectureMonteCarloPG, LecturePPO
from sb3_lecture_ppo.common.policies import distribution_and_values
from tests.helpers import assert_train_is_one_sgd_step, parameters
from tests.reference import RandomRollout, reference_advantages_and_targets

PRECURSORS = [LectureActorCritic, LectureGAEActorCritic, LectureMonteCarloPG]
SGD_POLICY = dict(hidden_size=16, optimizer_class=th.optim.SGD, optimizer_kwargs={})


def precursor_kwargs(**overrides):
    kwargs = dict(n_steps=24, seq_length=8, policy_kwargs=dict(hidden_size=16), seed=0, device="cpu")
    kwargs.update(overrides)
    return kwargs


def collected_precursor(algo, env_id="CartPole-v1", **overrides):
    env = make_vec_env(env_id, n_envs=2, seed=0)
    model = algo("MlpPolicy", env, **precursor_kwargs(**overrides))
    _, callback = model._setup_learn(model.n_steps * 2, callback=None)
    assert model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)
    return model


def rollout_of(model) -> RandomRollout:
    """The buffer's rollout with V(s') of the current critic, for the reference implementation."""
    buffer = model.rollout_buffer
    with th.no_grad():
        next_values = (
            model.policy.predict_values(buffer.observation_tensor("next_observations")).numpy().reshape(buffer.rewards.shape)
        )
    return RandomRollout(
        rewards=buffer.rewards,
        values=buffer.values,
        next_values=next_values,
        episode_starts=buffer.episode_starts.astype(bool),
        dones=buffer.dones,
        terminations=buffer.terminations,
    )


CASES = [
    (LectureActorCritic, dict(), "segment"),
    (LectureGAEActorCritic, dict(gae_lambda=0.9), "segment"),
    (LectureMonteCarloPG, dict(baseline=True), "rollout"),
    (LectureMonteCarloPG, dict(baseline=False), "rollout"),
    (LectureMonteCarloPG, dict(baseline=True, advantage_scope="segment"), "segment"),
]


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
@pytest.mark.parametrize("algo, overrides, scope", CASES)
def test_one_update_equals_a_hand_computed_gradient_step(env_id, algo, overrides, scope):
    learning_rate, vf_coef, pg_coef, ent_coef = 0.05, 0.7, 0.5, 0.01
    model = collected_precursor(
        algo,
        env_id,
        learning_rate=learning_rate,
        vf_coef=vf_coef,
        pg_coef=pg_coef,
        ent_coef=ent_coef,
        max_grad_norm=None,
        policy_kwargs=SGD_POLICY,
        **overrides,
    )
    gae_lambda = model.gae_lambda
    value_target = model.value_target
    advantages, targets = reference_advantages_and_targets(
        rollout_of(model), scope, model.seq_length, model.gamma, gae_lambda, value_target
    )
    if algo is LectureMonteCarloPG and not model.baseline:
        advantages = targets

    buffer = model.rollout_buffer
    actions = buffer.tensor("actions")
    if env_id == "CartPole-v1":
        actions = actions.long().flatten()
    distribution, values = distribution_and_values(model.policy, buffer.observation_tensor("observations"))
    critic_loss = ((th.as_tensor(targets, dtype=th.float32) - values) ** 2).mean()
    actor_loss = -(th.as_tensor(advantages, dtype=th.float32) * distribution.log_prob(actions)).mean()
    exploration_loss = -distribution.entropy().mean()
    hand_loss = vf_coef * critic_loss + pg_coef * actor_loss + ent_coef * exploration_loss
    assert_train_is_one_sgd_step(model, hand_loss, learning_rate, atol=1e-5)


def test_gae_actor_critic_with_lambda_zero_is_the_td_actor_critic():
    # construct and train one after the other: construction re-seeds the global generators
    td_params = parameters(LectureActorCritic("MlpPolicy", "CartPole-v1", **precursor_kwargs()).learn(96))
    gae = LectureGAEActorCritic("MlpPolicy", "CartPole-v1", **precursor_kwargs(gae_lambda=0.0))
    for name, value in parameters(gae.learn(96)).items():
        th.testing.assert_close(value, td_params[name])


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_actor_critic_update_equals_lecture_ppo_without_ratio_constraint(env_id):
    shared = dict(
        learning_rate=1e-3,
        n_steps=24,
        seq_length=8,
        gae_lambda=0.0,
        value_target="td",
        advantage_scope="segment",
        normalize_advantage=False,
        max_grad_norm=None,
        policy_kwargs=dict(hidden_size=16),
        seed=0,
        device="cpu",
    )
    ppo = LecturePPO(
        "MlpPolicy", make_vec_env(env_id, n_envs=2, seed=0), objective="none", n_epochs=1, batch_size=None, **shared
    )
    ppo_params = parameters(ppo.learn(48))
    actor_critic = LectureActorCritic("MlpPolicy", make_vec_env(env_id, n_envs=2, seed=0), **shared)
    for name, value in parameters(actor_critic.learn(48)).items():
        th.testing.assert_close(value, ppo_params[name], atol=1e-6, rtol=1e-5, msg=name)


@pytest.mark.parametrize("baseline", [True, False])
def test_monte_carlo_return_is_bootstrapped_where_the_rollout_cuts_the_episode(baseline):
    model = collected_precursor(LectureMonteCarloPG, "Pendulum-v1", baseline=baseline, gamma=0.9)
    buffer = model.rollout_buffer
    assert not buffer.dones[-1].any(), "Pendulum episodes (200 steps) are cut by the 24-step rollout"
    with th.no_grad():
        last_next_values = model.policy.predict_values(th.as_tensor(buffer.next_observations[-1])).flatten().numpy()
    np.testing.assert_allclose(buffer.returns[-1], buffer.rewards[-1] + 0.9 * last_next_values, rtol=1e-5)
    # inside the rollout: G_t = r_t + gamma G_{t+1}
    np.testing.assert_allclose(buffer.returns[:-1], buffer.rewards[:-1] + 0.9 * buffer.returns[1:], rtol=1e-5, atol=1e-5)
    samples = buffer._get_samples(np.arange(buffer.n_segments))
    advantages, _ = model._minibatch_advantages(samples, th.zeros(int(samples.mask.sum())))
    expected = samples.returns if not baseline else samples.returns - samples.old_values
    th.testing.assert_close(advantages, expected[samples.mask], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("algo", PRECURSORS)
@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_precursors_run_save_load_and_vec_normalize(tmp_path, algo, env_id):
    env = VecNormalize(make_vec_env(env_id, n_envs=2, seed=0))
    model = algo("MlpPolicy", env, **precursor_kwargs())
    model.learn(96, log_interval=1)
    for key in ("train/value_loss", "train/policy_gradient_loss", "train/entropy_loss", "train/explained_variance"):
        assert np.isfinite(model.logger.name_to_value[key]), key
    observations = np.stack([env.observation_space.sample() for _ in range(10)])
    actions, _ = model.predict(observations, deterministic=True)
    model.save(tmp_path / "model")
    loaded = algo.load(tmp_path / "model")
    np.testing.assert_allclose(loaded.predict(observations, deterministic=True)[0], actions)
    assert type(loaded) is algo


def test_precursors_refuse_each_others_files(tmp_path):
    LectureActorCritic("MlpPolicy", "CartPole-v1", **precursor_kwargs()).save(tmp_path / "ac")
    with pytest.raises(ValueError, match=r"saved by LectureActorCritic.*LectureActorCritic\.load"):
        LectureMonteCarloPG.load(tmp_path / "ac")


def test_monte_carlo_refuses_gae_lambda():
    with pytest.raises(TypeError, match="fixes gae_lambda"):
        LectureMonteCarloPG("MlpPolicy", "CartPole-v1", gae_lambda=0.5)


def test_precursor_bad_input_is_checked():
    with pytest.raises(ValueError, match="pg_coef=-1"):
        LectureActorCritic("MlpPolicy", "CartPole-v1", pg_coef=-1)


def test_precursor_seeding():
    first = parameters(LectureGAEActorCritic("MlpPolicy", "CartPole-v1", **precursor_kwargs(seed=5)).learn(96))
    second = parameters(LectureGAEActorCritic("MlpPolicy", "CartPole-v1", **precursor_kwargs(seed=5)).learn(96))
    for name, value in first.items():
        th.testing.assert_close(value, second[name])
