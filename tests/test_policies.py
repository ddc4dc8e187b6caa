"""The lecture's actor-critic network: its encoder options, SB3's network as a special case, save / load."""

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import FlattenExtractor
from torch import nn

from sb3_lecture_ppo import LecturePPO
from sb3_lecture_ppo.common.policies import LectureEncoder
from tests.helpers import tiny_kwargs

SB3_NETWORK = dict(encoder_layers=0, net_arch=dict(pi=[64, 64], vf=[64, 64]), activation_fn=nn.Tanh)


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_no_encoder_with_sb3_heads_is_sb3_network_weight_for_weight(env_id):
    ours = LecturePPO("MlpPolicy", env_id, **tiny_kwargs(policy_kwargs=SB3_NETWORK)).policy
    sb3 = LecturePPO(ActorCriticPolicy, env_id, **tiny_kwargs(policy_kwargs={})).policy
    assert isinstance(ours.features_extractor, FlattenExtractor)
    ours_state, sb3_state = ours.state_dict(), sb3.state_dict()
    assert list(ours_state) == list(sb3_state)
    for name, value in ours_state.items():
        th.testing.assert_close(value, sb3_state[name], rtol=0, atol=0, msg=name)
    observations = th.as_tensor(np.stack([ours.observation_space.sample() for _ in range(8)]))
    actions = sb3._predict(observations, deterministic=True)
    ours_outputs, sb3_outputs = ours.evaluate_actions(observations, actions), sb3.evaluate_actions(observations, actions)
    for ours_out, sb3_out in zip(ours_outputs, sb3_outputs, strict=True):
        th.testing.assert_close(ours_out, sb3_out, rtol=0, atol=0)


@pytest.mark.parametrize("encoder_layers", [1, 2, 3])
def test_encoder_layers_are_linear_elu_of_hidden_size(encoder_layers):
    policy_kwargs = dict(hidden_size=16, encoder_layers=encoder_layers)
    policy = LecturePPO("MlpPolicy", "CartPole-v1", **tiny_kwargs(policy_kwargs=policy_kwargs)).policy
    assert isinstance(policy.features_extractor, LectureEncoder)
    linears = [layer for layer in policy.features_extractor.encoder if isinstance(layer, nn.Linear)]
    assert [(layer.in_features, layer.out_features) for layer in linears] == [(4, 16)] + [(16, 16)] * (encoder_layers - 1)
    assert sum(isinstance(layer, nn.ELU) for layer in policy.features_extractor.encoder) == encoder_layers


def test_default_encoder_is_the_lectures_two_layers():
    policy = LecturePPO("MlpPolicy", "CartPole-v1", **tiny_kwargs()).policy
    assert policy.encoder_layers == 2 and len(policy.features_extractor.encoder) == 5  # Flatten + 2 x (Linear, ELU)


def test_no_encoder_survives_save_and_load(tmp_path):
    model = LecturePPO("MlpPolicy", "CartPole-v1", **tiny_kwargs(policy_kwargs=SB3_NETWORK))
    model.save(tmp_path / "model")
    loaded = LecturePPO.load(tmp_path / "model", device="cpu")
    assert loaded.policy.encoder_layers == 0 and isinstance(loaded.policy.features_extractor, FlattenExtractor)
    for name, value in model.policy.state_dict().items():
        th.testing.assert_close(value, loaded.policy.state_dict()[name])


@pytest.mark.parametrize("encoder_layers", [-1, 1.5, "2"])
def test_bad_encoder_layers_names_the_argument(encoder_layers):
    with pytest.raises(ValueError, match="encoder_layers="):
        LecturePPO("MlpPolicy", "CartPole-v1", **tiny_kwargs(policy_kwargs=dict(encoder_layers=encoder_layers)))
