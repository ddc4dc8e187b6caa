"""Smoke runs over settings and spaces, and what SB3 users rely on."""

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.callbacks import BaseCallback, EvalCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.utils import LinearSchedule
from stable_baselines3.common.vec_env import VecNormalize

from sb3_lecture_ppo import LecturePPO
from tests.helpers import make_space_env, tiny_kwargs

ENVS = ["CartPole-v1", "Pendulum-v1"]
LOGGER_KEYS = [
    "train/value_loss",
    "train/policy_gradient_loss",
    "train/entropy_loss",
    "train/loss",
    "train/approx_kl",
    "train/kl",
    "train/clip_fraction",
    "train/explained_variance",
    "train/n_updates",
    "train/pad_fraction",
]


@pytest.mark.parametrize("env_id", ENVS)
@pytest.mark.parametrize("advantage_scope", ["segment", "rollout"])
@pytest.mark.parametrize("recompute_advantage", [True, False])
@pytest.mark.parametrize("value_target", ["td", "lambda", "mc"])
def test_settings_run(env_id, advantage_scope, recompute_advantage, value_target):
    model = LecturePPO(
        "MlpPolicy",
        env_id,
        **tiny_kwargs(advantage_scope=advantage_scope, recompute_advantage=recompute_advantage, value_target=value_target),
    )
    model.learn(64)
    for key in LOGGER_KEYS:
        assert np.isfinite(model.logger.name_to_value[key]), key


@pytest.mark.parametrize("sampling", ["epochs", "random"])
@pytest.mark.parametrize("batch_size", [8, 32, None])
def test_sampling_modes(sampling, batch_size):
    updates = []

    model = LecturePPO("MlpPolicy", "CartPole-v1", **tiny_kwargs(sampling=sampling, batch_size=batch_size, n_epochs=3))
    step = model.policy.optimizer.step

    def counting_step(*args, **kwargs):
        updates.append(1)
        return step(*args, **kwargs)

    model.policy.optimizer.step = counting_step
    model.learn(32)
    n_segments = model.rollout_buffer.n_segments
    per_epoch = 1 if sampling == "random" or batch_size is None else -(-n_segments // (batch_size // 8))
    assert len(updates) == 3 * per_epoch


@pytest.mark.parametrize(
    "env_id, space",
    [("CartPole-v1", "Discrete"), ("Pendulum-v1", "Box"), ("MultiDiscrete", "MultiDiscrete"), ("MultiBinary", "MultiBinary")],
)
def test_action_spaces(env_id, space):
    env = make_space_env(space) if space in ("MultiDiscrete", "MultiBinary") else env_id
    model = LecturePPO("MlpPolicy", env, **tiny_kwargs(objective="clip_kl_adaptive"))
    model.learn(64)
    assert np.isfinite(model.logger.name_to_value["train/kl"])


def test_separate_actor_and_critic_networks():
    model = LecturePPO(
        "MlpPolicy", "CartPole-v1", **tiny_kwargs(policy_kwargs=dict(hidden_size=16, share_features_extractor=False))
    )
    assert model.policy.pi_features_extractor is not model.policy.vf_features_extractor
    model.learn(64)


def test_lecture_network_architecture():
    model = LecturePPO("MlpPolicy", "CartPole-v1", **tiny_kwargs(policy_kwargs=dict(hidden_size=128)))
    policy = model.policy
    encoder = [type(layer).__name__ for layer in policy.features_extractor.encoder]
    assert encoder == ["Flatten", "Linear", "ELU", "Linear", "ELU"]
    assert [type(layer).__name__ for layer in policy.mlp_extractor.policy_net] == ["Linear", "ELU"]
    assert [type(layer).__name__ for layer in policy.mlp_extractor.value_net] == ["Linear", "ELU"]
    assert policy.action_net.out_features == 2 and policy.value_net.out_features == 1
    assert policy.features_extractor.encoder[1].out_features == 128


def test_callbacks_progress_bar_tensorboard_and_evaluation(tmp_path):
    calls = []

    class CountingCallback(BaseCallback):
        def _on_step(self) -> bool:
            calls.append(self.num_timesteps)
            return True

    eval_env = make_vec_env("CartPole-v1", n_envs=1, seed=1)
    model = LecturePPO("MlpPolicy", "CartPole-v1", tensorboard_log=str(tmp_path), **tiny_kwargs())
    callbacks = [CountingCallback(), EvalCallback(eval_env, eval_freq=32, n_eval_episodes=2)]
    model.learn(64, callback=callbacks, progress_bar=True)
    assert len(calls) == 64
    assert any(tmp_path.glob("LecturePPO_1/events.out.tfevents.*"))
    mean_reward, _ = evaluate_policy(model, eval_env, n_eval_episodes=3)
    assert mean_reward > 0


def test_callback_can_stop_training_in_the_middle_of_a_rollout():
    class StopCallback(BaseCallback):
        def _on_step(self) -> bool:
            return self.num_timesteps < 10

    model = LecturePPO("MlpPolicy", "CartPole-v1", **tiny_kwargs())
    model.learn(64, callback=StopCallback())
    assert model.num_timesteps == 10


def test_vec_normalize():
    env = VecNormalize(make_vec_env("Pendulum-v1", n_envs=2, seed=0))
    model = LecturePPO("MlpPolicy", env, **tiny_kwargs())
    model.learn(128)
    assert np.isfinite(model.logger.name_to_value["train/value_loss"])
    assert env.obs_rms.count > 1


def test_schedules_for_learning_rate_and_clip_range():
    model = LecturePPO(
        "MlpPolicy",
        "CartPole-v1",
        **tiny_kwargs(learning_rate=LinearSchedule(1e-3, 0.0, 1.0), clip_range=LinearSchedule(0.3, 0.1, 1.0)),
    )
    model.learn(128)
    assert model.logger.name_to_value["train/clip_range"] < 0.3
    assert model.policy.optimizer.param_groups[0]["lr"] < 1e-3


def test_same_seed_same_parameters():
    def trained(seed: int) -> dict[str, th.Tensor]:
        model = LecturePPO("MlpPolicy", "CartPole-v1", **tiny_kwargs(seed=seed, sampling="random"))
        model.learn(96)
        return model.policy.state_dict()

    first, second, other = trained(3), trained(3), trained(4)
    for name, value in first.items():
        th.testing.assert_close(value, second[name])
    assert any(not th.equal(value, other[name]) for name, value in first.items())


def test_device_auto():
    model = LecturePPO("MlpPolicy", "CartPole-v1", **tiny_kwargs(device="auto"))
    model.learn(32)
    assert model.device.type in ("cpu", "cuda")


def test_target_kl_stops_the_epoch_loop_early():
    model = LecturePPO("MlpPolicy", "CartPole-v1", **tiny_kwargs(target_kl=1e-9, n_epochs=5, learning_rate=1e-2))
    model.learn(32)
    assert model.logger.name_to_value["train/n_updates"] < 5


def test_train_command_prints_the_evaluation(capsys):
    from sb3_lecture_ppo.train import main

    mean_reward = main(["--env", "CartPole-v1", "--timesteps", "64", "--eval-episodes", "2", "--algo", "lecture_gae_ac"])
    assert "mean_reward=" in capsys.readouterr().out
    assert mean_reward > 0
