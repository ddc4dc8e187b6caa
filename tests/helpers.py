from collections import defaultdict
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3.common.env_util import make_vec_env

from sb3_lecture_ppo import LecturePPO

TINY_POLICY = dict(hidden_size=16)


def tiny_kwargs(**overrides: Any) -> dict[str, Any]:
    """Small, fast settings shared by the smoke and unit tests."""
    kwargs: dict[str, Any] = dict(
        n_steps=32, batch_size=32, n_epochs=2, seq_length=8, policy_kwargs=dict(TINY_POLICY), seed=0, device="cpu"
    )
    kwargs.update(overrides)
    return kwargs


def collected_model(env_id: str = "CartPole-v1", n_envs: int = 2, algo: type = LecturePPO, **overrides: Any):
    """A model that has collected one rollout (and not trained on it)."""
    env = make_vec_env(env_id, n_envs=n_envs, seed=0)
    model = algo("MlpPolicy", env, **tiny_kwargs(**overrides))
    _, callback = model._setup_learn(model.n_steps * n_envs, callback=None)
    assert model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)
    if hasattr(model, "_on_train_start"):
        model._on_train_start()
    return model


def all_segments(model):
    buffer = model.rollout_buffer
    return buffer._get_samples(np.arange(buffer.n_segments))


def loss_and_gradients(model, samples) -> tuple[th.Tensor, dict[str, th.Tensor], dict[str, list[float]]]:
    stats: dict[str, list[th.Tensor]] = defaultdict(list)
    model.policy.zero_grad()
    loss, _ = model._minibatch_loss(samples, stats)
    loss.backward()
    grads = {name: param.grad.clone() for name, param in model.policy.named_parameters() if param.grad is not None}
    return loss.detach(), grads, {key: [value.item() for value in values] for key, values in stats.items()}


def parameters(model) -> dict[str, th.Tensor]:
    return {name: value.clone() for name, value in model.policy.state_dict().items()}


class CountingEnv(gym.Env):
    """Observation = step counter; never terminates, truncated by a TimeLimit; reward 1 per step."""

    observation_space = gym.spaces.Box(0.0, 100.0, (1,), dtype=np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.count = 0
        return np.array([self.count], dtype=np.float32), {}

    def step(self, action):
        self.count += 1
        return np.array([self.count], dtype=np.float32), 1.0, False, False, {}


def make_space_env(space: str) -> gym.Env:
    """SB3's identity envs, for the MultiDiscrete and MultiBinary action spaces."""
    from stable_baselines3.common.envs import IdentityEnvMultiBinary, IdentityEnvMultiDiscrete

    return IdentityEnvMultiDiscrete(dim=3) if space == "MultiDiscrete" else IdentityEnvMultiBinary(dim=3)


def assert_train_is_one_sgd_step(model, hand_loss: th.Tensor, learning_rate: float, atol: float = 1e-6) -> None:
    """``model.train()`` moves every parameter by ``-learning_rate * grad(hand_loss)`` (plain SGD)."""
    before = {name: value.detach().clone() for name, value in model.policy.named_parameters()}
    model.policy.zero_grad()
    hand_loss.backward()
    expected = {
        name: before[name] if param.grad is None else before[name] - learning_rate * param.grad
        for name, param in model.policy.named_parameters()
    }
    model.train()
    for name, param in model.policy.named_parameters():
        th.testing.assert_close(param.detach(), expected[name], atol=atol, rtol=1e-4, msg=name)


class SplitDictEnv(gym.Wrapper):
    """
    A Box-observation env whose observations become ``{"head": x[:split], "tail": x[split:]}``
    (and, with ``image=True``, a uint8 image made from the same numbers): the same data as a Dict
    space, to compare against the array-observation path.
    """

    def __init__(self, env: gym.Env, split: int = 2, image: bool = False) -> None:
        super().__init__(env)
        low, high = env.observation_space.low, env.observation_space.high
        subspaces: dict[str, gym.spaces.Space] = {
            "head": gym.spaces.Box(low[:split], high[:split], dtype=np.float32),
            "tail": gym.spaces.Box(low[split:], high[split:], dtype=np.float32),
        }
        if image:
            subspaces["image"] = gym.spaces.Box(0, 255, (36, 36, 1), dtype=np.uint8)
        self.observation_space = gym.spaces.Dict(subspaces)
        self.split, self.image = split, image

    def observation(self, observation: np.ndarray) -> dict[str, np.ndarray]:
        split = {"head": observation[: self.split], "tail": observation[self.split :]}
        if self.image:
            level = int(np.clip(abs(observation[0]) * 100, 0, 255))
            split["image"] = np.full((36, 36, 1), level, dtype=np.uint8)
        return split

    def reset(self, **kwargs: Any):
        observation, info = self.env.reset(**kwargs)
        return self.observation(observation), info

    def step(self, action):
        observation, reward, terminated, truncated, info = self.env.step(action)
        return self.observation(observation), reward, terminated, truncated, info
