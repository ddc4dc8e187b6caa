"""The minibatch loss: masking, the first ratio, the c1/c2/c3 weights and the time-limit bootstrap."""

import numpy as np
from gymnasium.wrappers import TimeLimit
import pytest
import torch as th
from stable_baselines3.common.env_util import make_vec_env

from sb3_lecture_ppo import LecturePPO
from tests.helpers import CountingEnv, all_segments, collected_model, loss_and_gradients, tiny_kwargs

SETTINGS = [
    dict(advantage_scope="segment", recompute_advantage=True, value_target="td"),
    dict(advantage_scope="segment", recompute_advantage=False, value_target="mc"),
    dict(advantage_scope="rollout", recompute_advantage=False, value_target="lambda"),
]


def poison_pads(samples, value: float):
    """Replace every float field on pad steps by ``value``."""
    pad = ~samples.mask
    poisoned = {}
    for name, tensor in samples._asdict().items():
        if name == "mask" or not tensor.is_floating_point():
            poisoned[name] = tensor
            continue
        tensor = tensor.clone()
        tensor[pad] = value
        poisoned[name] = tensor
    return type(samples)(**poisoned)


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
@pytest.mark.parametrize("settings", SETTINGS)
@pytest.mark.parametrize("poison", [float("nan"), float("inf")])
def test_pad_steps_change_neither_loss_nor_gradient(env_id, settings, poison):
    model = collected_model(env_id, n_envs=3, seq_length=5, batch_size=30, **settings)
    samples = all_segments(model)
    assert (~samples.mask).any(), "the test needs pad steps"
    clean_loss, clean_grads, clean_stats = loss_and_gradients(model, samples)
    poisoned_loss, poisoned_grads, poisoned_stats = loss_and_gradients(model, poison_pads(samples, poison))
    assert th.isfinite(clean_loss)
    th.testing.assert_close(clean_loss, poisoned_loss)
    assert clean_grads.keys() == poisoned_grads.keys()
    for name, grad in clean_grads.items():
        th.testing.assert_close(grad, poisoned_grads[name], msg=name)
    assert clean_stats == poisoned_stats


def test_ratio_is_one_on_the_first_minibatch_of_the_first_epoch():
    model = collected_model(n_epochs=3)
    ratios = []
    surrogate = model._policy_surrogate

    def recording_surrogate(ratio, *args):
        ratios.append(ratio.detach().clone())
        return surrogate(ratio, *args)

    model._policy_surrogate = recording_surrogate
    model.train()
    assert len(ratios) > 1
    th.testing.assert_close(ratios[0], th.ones_like(ratios[0]), atol=1e-5, rtol=0)
    assert not th.allclose(ratios[-1], th.ones_like(ratios[-1]), atol=1e-5)


def actor_head_parameters(grads):
    prefixes = ("action_net", "mlp_extractor.policy_net", "log_std")
    return {name: grad for name, grad in grads.items() if name.startswith(prefixes)}


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_pg_coef_zero_gives_the_policy_head_no_gradient(env_id):
    model = collected_model(env_id, pg_coef=0.0, vf_coef=1.0, ent_coef=0.0)
    _, grads, _ = loss_and_gradients(model, all_segments(model))
    policy_head = actor_head_parameters(grads)
    assert policy_head, "the policy head must be found"
    for name, grad in policy_head.items():
        assert th.count_nonzero(grad) == 0, name
    assert any(th.count_nonzero(grad) > 0 for name, grad in grads.items() if name.startswith("value_net"))

    model.pg_coef = 1.0
    _, grads, _ = loss_and_gradients(model, all_segments(model))
    assert any(th.count_nonzero(grad) > 0 for grad in actor_head_parameters(grads).values())


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_ent_coef_scales_only_the_entropy_term(env_id):
    model = collected_model(env_id, ent_coef=0.0)
    samples = all_segments(model)
    loss_without, grads_without, stats = loss_and_gradients(model, samples)
    model.ent_coef = 0.3
    loss_with, grads_with, _ = loss_and_gradients(model, samples)
    entropy_loss = stats["entropy_loss"][0]
    assert loss_with.item() == pytest.approx(loss_without.item() + 0.3 * entropy_loss, abs=1e-5)

    # gradient of the entropy term alone
    model.ent_coef, model.vf_coef, model.pg_coef = 1.0, 0.0, 0.0
    _, entropy_grads, _ = loss_and_gradients(model, samples)
    for name, grad in grads_with.items():
        expected = grads_without[name] + 0.3 * entropy_grads.get(name, th.zeros_like(grad))
        th.testing.assert_close(grad, expected, atol=1e-6, rtol=1e-5, msg=name)


def test_truncation_keeps_the_true_final_observation_and_bootstraps_from_it():
    """A TimeLimit of 5 steps on a counter env: the step that is truncated leads to observation 5."""
    env = make_vec_env(CountingEnv, n_envs=1, seed=0, wrapper_class=TimeLimit, wrapper_kwargs=dict(max_episode_steps=5))
    model = LecturePPO("MlpPolicy", env, **tiny_kwargs(n_steps=12, batch_size=8, seq_length=4, gae_lambda=0.0, gamma=0.9))
    _, callback = model._setup_learn(12, callback=None)
    model.collect_rollouts(model.env, callback, model.rollout_buffer, 12)
    buffer = model.rollout_buffer

    observations = buffer.observations[:, 0, 0]
    next_observations = buffer.next_observations[:, 0, 0]
    assert observations.tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1]
    assert next_observations.tolist() == [1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 1, 2]
    assert buffer.dones[:, 0].tolist() == [False] * 4 + [True] + [False] * 4 + [True] + [False] * 2
    assert not buffer.terminations.any()

    with th.no_grad():
        value_of_final = model.policy.predict_values(th.tensor([[5.0]])).item()
        value_of_reset = model.policy.predict_values(th.tensor([[0.0]])).item()
    # lambda = 0: A_4 = r + gamma * V(final observation 5) - V(4), not V(0) of the next episode
    expected = 1.0 + 0.9 * value_of_final - buffer.values[4, 0]
    assert buffer.advantages[4, 0] == pytest.approx(expected, abs=1e-5)
    assert abs(value_of_final - value_of_reset) > 1e-4
    # segments: [0..3], [4], [5..8], [9], [10, 11]: the truncated step 4 ends its segment
    assert buffer.n_segments == 5
    np.testing.assert_allclose(buffer.pad_fraction, 1 - 12 / 20)


def test_clip_range_vf_clips_the_value_change_as_sb3():
    model = collected_model(clip_range_vf=0.1)
    samples = all_segments(model)
    samples = samples._replace(old_values=samples.old_values + 3.0)  # far from the current values
    _, _, stats = loss_and_gradients(model, samples)
    mask = samples.mask
    with th.no_grad():
        values = model.policy.predict_values(samples.observations[mask]).flatten()
        _, targets = model._minibatch_advantages(samples, values)
    old_values = samples.old_values[mask]
    clipped = old_values + th.clamp(values - old_values, -0.1, 0.1)
    assert stats["value_loss"][0] == pytest.approx(((targets - clipped) ** 2).mean().item(), rel=1e-5)


def test_bad_clip_range_vf():
    with pytest.raises(ValueError, match=r"clip_range_vf=0\.0 is out of range"):
        LecturePPO("MlpPolicy", "CartPole-v1", **tiny_kwargs(clip_range_vf=0.0))
