"""save / load: predictions, lecture kwargs, continued training, and refusals."""

import io

import numpy as np
import pytest
import torch as th
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env

from sb3_lecture_ppo import LecturePPO
from tests.helpers import tiny_kwargs

LECTURE_KWARGS = dict(
    seq_length=4,
    advantage_scope="rollout",
    recompute_advantage=False,
    value_target="mc",
    sampling="random",
    pg_coef=0.7,
    vf_coef=0.9,
    ent_coef=0.01,
    gae_lambda=0.8,
    max_grad_norm=None,
    normalize_advantage=False,
)


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_save_load_same_predictions_and_kwargs(tmp_path, env_id):
    model = LecturePPO("MlpPolicy", env_id, **tiny_kwargs(batch_size=16, **LECTURE_KWARGS))
    model.learn(64)
    observations = np.stack([model.observation_space.sample() for _ in range(20)])
    actions, _ = model.predict(observations, deterministic=True)
    model.save(tmp_path / "model")

    loaded = LecturePPO.load(tmp_path / "model", device="cpu")
    loaded_actions, _ = loaded.predict(observations, deterministic=True)
    np.testing.assert_allclose(actions, loaded_actions)
    for name, value in LECTURE_KWARGS.items():
        assert getattr(loaded, name) == value, name
    for name, value in model.policy.state_dict().items():
        th.testing.assert_close(value, loaded.policy.state_dict()[name])


def test_load_and_continue_training(tmp_path):
    model = LecturePPO("MlpPolicy", "CartPole-v1", **tiny_kwargs())
    model.learn(64)
    model.save(tmp_path / "model")
    loaded = LecturePPO.load(tmp_path / "model", env=make_vec_env("CartPole-v1", n_envs=2, seed=1))
    loaded.learn(64, reset_num_timesteps=False)
    assert loaded.num_timesteps == 64 + 64


def test_save_load_through_a_file_object():
    model = LecturePPO("MlpPolicy", "CartPole-v1", **tiny_kwargs())
    buffer = io.BytesIO()
    model.save(buffer)
    buffer.seek(0)
    loaded = LecturePPO.load(buffer)
    assert loaded.seq_length == model.seq_length


def test_loading_a_file_of_another_algorithm_says_so(tmp_path):
    PPO("MlpPolicy", "CartPole-v1", n_steps=32, batch_size=32).save(tmp_path / "sb3_ppo")
    with pytest.raises(ValueError, match="not saved by sb3_lecture_ppo"):
        LecturePPO.load(tmp_path / "sb3_ppo")


def test_loading_a_corrupt_file_says_so(tmp_path):
    path = tmp_path / "corrupt.zip"
    path.write_bytes(b"this is not a zip file")
    with pytest.raises(ValueError, match=r"not a model saved by model\.save"):
        LecturePPO.load(path)


def test_loading_onto_an_env_with_other_spaces_says_so(tmp_path):
    LecturePPO("MlpPolicy", "CartPole-v1", **tiny_kwargs()).save(tmp_path / "model")
    with pytest.raises(ValueError, match="spaces do not match"):
        LecturePPO.load(tmp_path / "model", env=make_vec_env("Pendulum-v1"))
