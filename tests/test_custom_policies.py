"""A user's SB3 policy class that overrides SB3's methods trains through them; custom rollout buffers; policy_kwargs typos."""

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.policies import ActorCriticPolicy

from sb3_lecture_ppo import LectureMonteCarloPG, LecturePPO
from sb3_lecture_ppo.common.buffers import SegmentRolloutBuffer
from tests.helpers import tiny_kwargs


class ConstantValuePolicy(ActorCriticPolicy):
    """SB3's test_gae policy: the value of ``forward()`` is a constant."""

    constant_value = 3.0

    def forward(self, obs, deterministic=False):
        actions, values, log_prob = super().forward(obs, deterministic)
        return actions, th.full_like(values, self.constant_value), log_prob


class ScaledLogProbPolicy(ActorCriticPolicy):
    """``evaluate_actions`` reports twice the log-probability: the update must see it."""

    calls = 0

    def evaluate_actions(self, obs, actions):
        ScaledLogProbPolicy.calls += 1
        values, log_prob, entropy = super().evaluate_actions(obs, actions)
        return values, 2 * log_prob, entropy


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_an_overridden_forward_gives_the_rollout_values(env_id):
    model = LecturePPO(ConstantValuePolicy, env_id, **tiny_kwargs(policy_kwargs=dict(net_arch=[8])))
    model.learn(32)
    np.testing.assert_array_equal(model.rollout_buffer.values, 3.0)


def test_an_overridden_evaluate_actions_is_what_trains():
    ScaledLogProbPolicy.calls = 0
    model = LecturePPO(ScaledLogProbPolicy, "CartPole-v1", **tiny_kwargs(policy_kwargs=dict(net_arch=[8]), n_epochs=1))
    model.learn(32)
    assert ScaledLogProbPolicy.calls >= 1
    # already the first minibatch's ratio is pi^2 / pi_old, not 1: the approximate KL is not 0
    assert model.logger.name_to_value["train/approx_kl"] > 1e-3


def test_the_lecture_policy_keeps_its_fast_path():
    model = LecturePPO("MlpPolicy", "CartPole-v1", **tiny_kwargs())
    assert not model._through_policy_methods


def test_a_segment_buffer_subclass_is_used_with_its_kwargs():
    class CountingBuffer(SegmentRolloutBuffer):
        def __init__(self, *args, label: str = "", **kwargs):
            super().__init__(*args, **kwargs)
            self.label = label

    model = LecturePPO(
        "MlpPolicy",
        "CartPole-v1",
        rollout_buffer_class=CountingBuffer,
        rollout_buffer_kwargs=dict(label="mine"),
        **tiny_kwargs(),
    ).learn(32)
    assert isinstance(model.rollout_buffer, CountingBuffer) and model.rollout_buffer.label == "mine"
    assert model.rollout_buffer.seq_length == model.seq_length


def test_a_buffer_that_is_not_a_segment_buffer_says_so():
    with pytest.raises(TypeError, match=r"rollout_buffer_class=.*RolloutBuffer.*not a SegmentRolloutBuffer"):
        LecturePPO("MlpPolicy", "CartPole-v1", rollout_buffer_class=RolloutBuffer, **tiny_kwargs())


def test_buffer_kwargs_that_belong_to_the_algorithm_say_so():
    with pytest.raises(ValueError, match=r"rollout_buffer_kwargs \['seq_length'\].*LecturePPO\(\.\.\.\)"):
        LecturePPO("MlpPolicy", "CartPole-v1", rollout_buffer_kwargs=dict(seq_length=4), **tiny_kwargs())


def test_a_policy_kwargs_typo_names_the_policy_and_its_keys():
    with pytest.raises(TypeError, match=r"'hiden_size' unknown to LectureActorCriticPolicy: it takes hidden_size, encoder"):
        LecturePPO("MlpPolicy", "CartPole-v1", **tiny_kwargs(policy_kwargs=dict(hiden_size=8)))


def test_a_precursor_option_of_the_wrong_type_says_so():
    with pytest.raises(TypeError, match="baseline='yes' must be True"):
        LectureMonteCarloPG("MlpPolicy", "CartPole-v1", baseline="yes")


def test_gpu_warning_names_the_lecture_policy(monkeypatch):
    model = LecturePPO("MlpPolicy", "CartPole-v1", **tiny_kwargs())
    model.device = th.device("cuda")  # only the warning's check reads it
    with pytest.warns(UserWarning, match="GPU"):
        model._maybe_recommend_cpu()
