"""
All members' envs stepped as one: one SB3 ``DummyVecEnv`` over every member's underlying envs, and the members'
``VecNormalize`` statistics as stacked arrays updated and applied for all members at once, with VecNormalize's own
maths in the same order (so each member's statistics, observations and rewards are those its VecNormalize would
give, tested). The members' VecNormalize objects stay the statistics' home between rollouts: :meth:`load` reads them
at a rollout's start and :meth:`store` writes them back at its end.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

SHARED_NORMALIZER_SETTINGS = ("training", "norm_obs", "norm_reward", "clip_obs", "clip_reward", "gamma", "epsilon")


def can_vectorize(envs: Sequence[Any]) -> bool:
    """Whether every member's env is a ``VecNormalize`` over a ``DummyVecEnv`` of Box observations, set up alike."""
    if not all(isinstance(env, VecNormalize) and isinstance(env.venv, DummyVecEnv) for env in envs):
        return False
    if not all(isinstance(env.observation_space, spaces.Box) for env in envs):
        return False
    first = envs[0]
    return all(getattr(env, name) == getattr(first, name) for env in envs for name in SHARED_NORMALIZER_SETTINGS)


class PopulationEnvs:
    """
    :param normalizers: each member's ``VecNormalize`` (over a ``DummyVecEnv``), all set up alike (:func:`can_vectorize`)
    """

    def __init__(self, normalizers: Sequence[VecNormalize]) -> None:
        self.normalizers = list(normalizers)
        first = self.normalizers[0]
        self.n_members = len(self.normalizers)
        self.n_envs = first.num_envs
        envs: list[Any] = [env for normalizer in self.normalizers for env in normalizer.venv.envs]  # type: ignore[attr-defined]
        self.venv = _InfoKeepingDummyVecEnv([_returning(env) for env in envs])  # the members' env objects themselves
        self.settings = {name: getattr(first, name) for name in SHARED_NORMALIZER_SETTINGS}
        self.load()

    def load(self) -> None:
        """Read every member's statistics into the stacked arrays (a rollout's start)."""
        normalizers = self.normalizers
        self.obs_mean = np.stack([n.obs_rms.mean for n in normalizers])  # type: ignore[union-attr, attr-defined]  # (K, *obs_shape)
        self.obs_var = np.stack([n.obs_rms.var for n in normalizers])  # type: ignore[union-attr, attr-defined]
        for index, normalizer in enumerate(normalizers):
            # views, updated in place at every step: a member's VecNormalize normalizes as the rollout's (an
            # EvalCallback mid-rollout copies these) until store() writes the whole statistics back
            normalizer.obs_rms.mean = self.obs_mean[index]  # type: ignore[union-attr, attr-defined]
            normalizer.obs_rms.var = self.obs_var[index]  # type: ignore[union-attr, attr-defined]
        self.obs_count = np.array([n.obs_rms.count for n in normalizers], dtype=np.float64)  # type: ignore[attr-defined]
        self.ret_mean = np.array([n.ret_rms.mean for n in normalizers], dtype=np.float64)
        self.ret_var = np.array([n.ret_rms.var for n in normalizers], dtype=np.float64)
        self.ret_count = np.array([n.ret_rms.count for n in normalizers], dtype=np.float64)
        self.returns = np.stack([n.returns for n in normalizers])  # (K, n_envs)
        self.old_obs: np.ndarray | None = None
        self.old_reward: np.ndarray | None = None

    def store(self) -> None:
        """Write the stacked statistics back into every member's VecNormalize (a rollout's end)."""
        for index, normalizer in enumerate(self.normalizers):
            normalizer.obs_rms.mean = self.obs_mean[index].copy()  # type: ignore[union-attr, attr-defined]
            normalizer.obs_rms.var = self.obs_var[index].copy()  # type: ignore[union-attr, attr-defined]
            normalizer.obs_rms.count = float(self.obs_count[index])  # type: ignore[union-attr, attr-defined]
            normalizer.ret_rms.mean = self.ret_mean[index].copy()
            normalizer.ret_rms.var = self.ret_var[index].copy()
            normalizer.ret_rms.count = float(self.ret_count[index])
            normalizer.returns = self.returns[index].copy()
            if self.old_obs is not None and self.old_reward is not None:
                normalizer.old_obs = self.old_obs[index]
                normalizer.old_reward = self.old_reward[index]

    def step_stacked(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        """
        Step every member's envs: ``actions`` is ``(K * n_envs, ...)``, member after member; returns the normalized
        observations ``(K, n_envs, ...)``, rewards and dones ``(K, n_envs)`` and the ``K * n_envs`` infos.
        """
        raw_obs, raw_rewards, all_dones, all_infos = self.venv.step(actions)
        shape = (self.n_members, self.n_envs)
        obs = np.asarray(raw_obs).reshape(*shape, *np.asarray(raw_obs).shape[1:])
        rewards, dones = raw_rewards.reshape(shape), all_dones.reshape(shape)
        self.old_obs, self.old_reward = obs, rewards
        settings = self.settings
        if settings["training"] and settings["norm_obs"]:
            self.obs_mean[...], self.obs_var[...], self.obs_count = _update(self.obs_mean, self.obs_var, self.obs_count, obs)
        normalized = self._normalize_obs(obs)
        if settings["training"]:
            self.returns = self.returns * settings["gamma"] + rewards
            self.ret_mean, self.ret_var, self.ret_count = _update(self.ret_mean, self.ret_var, self.ret_count, self.returns)
        if settings["norm_reward"]:
            scale = np.sqrt(self.ret_var + settings["epsilon"])[:, None]
            rewards = np.clip(rewards / scale, -settings["clip_reward"], settings["clip_reward"])
        rewards = rewards.astype(np.float32)
        for flat_index in np.flatnonzero(all_dones):
            info = all_infos[flat_index]
            if "terminal_observation" in info:
                member = int(flat_index) // self.n_envs
                info["terminal_observation"] = self._normalize_obs(info["terminal_observation"][None, None], member)[0, 0]
        self.returns[dones] = 0
        return normalized, rewards, dones, all_infos

    def _normalize_obs(self, obs: np.ndarray, member: int | None = None) -> np.ndarray:
        """VecNormalize's ``normalize_obs`` of ``(K, n_envs, ...)`` observations (or of one member's, ``member``)."""
        if not self.settings["norm_obs"]:
            return obs.copy()
        mean, var = (
            (self.obs_mean, self.obs_var)
            if member is None
            else (self.obs_mean[member : member + 1], self.obs_var[member : member + 1])
        )
        mean, var = mean[:, None], var[:, None]  # broadcast over each member's envs
        clip = self.settings["clip_obs"]
        return np.clip((obs - mean) / np.sqrt(var + self.settings["epsilon"]), -clip, clip).astype(np.float32)


class _InfoKeepingDummyVecEnv(DummyVecEnv):
    """
    SB3's ``DummyVecEnv`` without the deep copy of the infos at every step (a fifth of the population's env time on
    HalfCheetah): each step's info dicts are new ones that only the population reads.
    """

    def step_wait(self) -> Any:
        for env_idx in range(self.num_envs):
            obs, self.buf_rews[env_idx], terminated, truncated, self.buf_infos[env_idx] = self.envs[env_idx].step(
                self.actions[env_idx]  # type: ignore[index]
            )
            self.buf_dones[env_idx] = terminated or truncated
            self.buf_infos[env_idx]["TimeLimit.truncated"] = truncated and not terminated
            if self.buf_dones[env_idx]:
                self.buf_infos[env_idx]["terminal_observation"] = obs
                obs, self.reset_infos[env_idx] = self.envs[env_idx].reset()
            self._save_obs(env_idx, obs)
        return (self._obs_from_buf(), np.copy(self.buf_rews), np.copy(self.buf_dones), list(self.buf_infos))


def _returning(env: Any) -> Any:
    """An env factory for ``DummyVecEnv`` that returns an existing env."""
    return lambda: env


def _update(
    mean: np.ndarray, var: np.ndarray, count: np.ndarray, batch: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``RunningMeanStd.update`` of every member at once: member k's statistics with member k's ``(n_envs, ...)`` batch."""
    if batch.shape[1] == 1 and np.issubdtype(batch.dtype, np.floating):
        # one env per member (the paper's setting): NumPy's mean and variance of one value, without their overhead
        batch_mean = batch[:, 0].copy()
        batch_var = np.square(batch_mean - batch_mean)  # 0, or NaN where the value is not finite, as np.var gives
    else:
        batch_mean = np.mean(batch, axis=1)
        batch_var = np.var(batch, axis=1)
    batch_count = batch.shape[1]
    counts = count.reshape(-1, *([1] * (mean.ndim - 1)))  # (K, 1, ...) against (K, ...)
    delta = batch_mean - mean
    tot_count = counts + batch_count
    new_mean = mean + delta * batch_count / tot_count
    m_a = var * counts
    m_b = batch_var * batch_count
    m_2 = m_a + m_b + np.square(delta) * counts * batch_count / (counts + batch_count)
    new_var = m_2 / (counts + batch_count)
    return new_mean, new_var, count + batch_count
