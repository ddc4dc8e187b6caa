"""Bad input fails at construction with a message that names the argument and the fix."""

import gymnasium as gym
import numpy as np
import pytest

from sb3_lecture_ppo import LecturePPO
from tests.helpers import tiny_kwargs


class TupleObservationEnv(gym.Env):
    observation_space = gym.spaces.Tuple((gym.spaces.Box(-1, 1, (2,)), gym.spaces.Discrete(2)))
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}


class TupleActionEnv(gym.Env):
    observation_space = gym.spaces.Box(-1, 1, (2,))
    action_space = gym.spaces.Tuple((gym.spaces.Discrete(2), gym.spaces.Discrete(3)))

    def reset(self, *, seed=None, options=None):
        return np.zeros(2, dtype=np.float32), {}

    def step(self, action):
        return np.zeros(2, dtype=np.float32), 0.0, False, False, {}


@pytest.mark.parametrize(
    "overrides, error, pattern",
    [
        (dict(seq_length=0), ValueError, "seq_length=0 must be a positive integer"),
        (dict(seq_length=64), ValueError, "seq_length=64 is longer than n_steps=32"),
        (dict(batch_size=20), ValueError, "batch_size=20 is not a multiple of seq_length=8.*use batch_size=16"),
        (dict(batch_size=128), ValueError, "needs 16 .*lower batch_size or raise n_steps or n_envs"),
        (dict(advantage_scope="episode"), ValueError, "advantage_scope='episode' is unknown"),
        (dict(value_target="gae"), ValueError, "value_target='gae' is unknown"),
        (dict(sampling="shuffle"), ValueError, "sampling='shuffle' is unknown"),
        (dict(objective="trpo"), ValueError, "objective='trpo' is unknown"),
        (dict(vf_coef=-1.0), ValueError, "vf_coef=-1.0 is out of range"),
        (dict(pg_coef=-0.5), ValueError, "pg_coef=-0.5 is out of range"),
        (dict(ent_coef=-0.1), ValueError, "ent_coef=-0.1 is out of range"),
        (dict(clip_range=0.0), ValueError, "clip_range=0.0 is out of range.*None turns clipping off"),
        (dict(clip_range=-0.2), ValueError, "clip_range=-0.2 is out of range"),
        (dict(gamma=1.5), ValueError, "gamma=1.5 is out of range"),
        (dict(gae_lambda=-0.1), ValueError, "gae_lambda=-0.1 is out of range"),
        (dict(max_grad_norm=0.0), ValueError, "max_grad_norm=0.0 is out of range.*None"),
        (dict(n_epochs=0), ValueError, "n_epochs=0 must be a positive integer"),
        (dict(learning_rate=-1e-3), ValueError, "learning_rate=-0.001 is out of range"),
        (dict(vf_coef="1"), TypeError, "vf_coef='1' must be a finite number"),
        (dict(vf_coef=float("nan")), TypeError, "vf_coef=nan must be a finite number"),
    ],
)
def test_bad_arguments(overrides, error, pattern):
    with pytest.raises(error, match=pattern):
        LecturePPO("MlpPolicy", "CartPole-v1", **tiny_kwargs(**overrides))


def test_unknown_kwarg_is_a_type_error():
    with pytest.raises(TypeError, match="eps_clip"):
        LecturePPO("MlpPolicy", "CartPole-v1", eps_clip=0.2)


def test_unsupported_observation_space():
    with pytest.raises(TypeError, match="FlattenObservation, or make it a Dict space"):
        LecturePPO("MlpPolicy", TupleObservationEnv(), **tiny_kwargs())


def test_unsupported_action_space():
    with pytest.raises(TypeError, match="does not support the action space"):
        LecturePPO("MlpPolicy", TupleActionEnv(), **tiny_kwargs())


def test_bad_hidden_size():
    with pytest.raises(ValueError, match="hidden_size=0"):
        LecturePPO("MlpPolicy", "CartPole-v1", **tiny_kwargs(policy_kwargs=dict(hidden_size=0)))


class NonFiniteEnv(gym.Env):
    """Finite for ``bad_step - 1`` steps, then NaN or inf in the chosen field."""

    observation_space = gym.spaces.Box(-1, 1, (2,))
    action_space = gym.spaces.Discrete(2)

    def __init__(self, field: str, bad_step: int = 5, value: float = float("nan")):
        self.field, self.bad_step, self.value = field, bad_step, value

    def reset(self, *, seed=None, options=None):
        self.t = 0
        observation = np.zeros(2, dtype=np.float32)
        if self.field == "reset":
            observation[0] = self.value
        return observation, {}

    def step(self, action):
        self.t += 1
        bad = self.t == self.bad_step
        observation = np.full(2, self.value if bad and self.field == "observation" else 0.0, dtype=np.float32)
        reward = self.value if bad and self.field == "reward" else 1.0
        terminated = bad and self.field == "terminal"
        if terminated:
            observation[:] = self.value
        return observation, reward, terminated, False, {}


@pytest.mark.parametrize(
    "field, message",
    [
        ("observation", "env 1 returned a non-finite observation at step 10"),
        ("reward", "env 1 returned a non-finite reward at step 10"),
        ("terminal", "env 1 returned a non-finite terminal observation"),
        ("reset", "env 0 returned a non-finite observation at step 0"),
    ],
)
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_nan_or_inf_from_the_env_stops_training_naming_env_step_and_field(tmp_path, field, message, value):
    from stable_baselines3.common.vec_env import DummyVecEnv

    from sb3_lecture_ppo.common.on_policy_algorithm import NonFiniteEnvValueError

    good = NonFiniteEnv(field, bad_step=10**6)
    env = DummyVecEnv([lambda: good, lambda: NonFiniteEnv(field, bad_step=5, value=value)])
    if field == "reset":
        env = DummyVecEnv([lambda: NonFiniteEnv(field, value=value), lambda: good])
    model = LecturePPO("MlpPolicy", env, **tiny_kwargs())
    model.save(tmp_path / "good")
    before = (tmp_path / "good.zip").read_bytes()
    with pytest.raises(NonFiniteEnvValueError, match=message) as error:
        model.learn(64)
    assert "\n" not in str(error.value)
    for param in model.policy.parameters():
        assert np.isfinite(param.detach().numpy()).all()
    assert (tmp_path / "good.zip").read_bytes() == before


@pytest.mark.parametrize("entry_point", ["init", "set_env", "load"])
def test_an_env_argument_that_is_not_an_env_says_what_it_got(tmp_path, entry_point):
    model = LecturePPO("MlpPolicy", "CartPole-v1", **tiny_kwargs())
    model.save(tmp_path / "model")
    calls = {
        "init": lambda: LecturePPO("MlpPolicy", 42, **tiny_kwargs()),
        "set_env": lambda: model.set_env(42),
        "load": lambda: LecturePPO.load(tmp_path / "model", env=42),
    }
    with pytest.raises(TypeError, match=r"env=42 \(int\) is not an environment: pass a gymnasium.Env, an SB3 VecEnv"):
        calls[entry_point]()


def test_load_and_set_env_name_the_models_space_and_the_envs(tmp_path):
    from stable_baselines3.common.env_util import make_vec_env

    model = LecturePPO("MlpPolicy", "CartPole-v1", **tiny_kwargs())
    model.save(tmp_path / "model")
    with pytest.raises(
        ValueError, match=r"^load: observation spaces do not match: the model in .* has Box\(.*\(4,\).*the env has Box\("
    ):
        LecturePPO.load(tmp_path / "model", env=make_vec_env("Pendulum-v1"))
    with pytest.raises(
        ValueError, match=r"^set_env: observation spaces do not match: the model has .*\(4,\).*the env has .*\(3,\)"
    ):
        model.set_env(make_vec_env("Pendulum-v1"))


def test_load_takes_an_env_id_as_the_constructor_does(tmp_path):
    LecturePPO("MlpPolicy", "CartPole-v1", **tiny_kwargs()).save(tmp_path / "model")
    LecturePPO.load(tmp_path / "model", env="CartPole-v1").learn(32)


def test_learn_without_an_env_says_how_to_give_one(tmp_path):
    LecturePPO("MlpPolicy", "CartPole-v1", **tiny_kwargs()).save(tmp_path / "model")
    with pytest.raises(ValueError, match=r"learn\(\) needs an env.*set_env"):
        LecturePPO.load(tmp_path / "model").learn(32)
