"""
Slow, obvious reference implementations (plain Python loops over steps) and random rollouts
with terminations, truncations and episode starts, for the unit tests.
"""

from dataclasses import dataclass

import numpy as np


@dataclass
class RandomRollout:
    """(n_steps, n_envs) arrays of a rollout whose episode ends are consistent with its starts."""

    rewards: np.ndarray
    values: np.ndarray
    next_values: np.ndarray
    episode_starts: np.ndarray
    dones: np.ndarray
    terminations: np.ndarray


def random_rollout(n_steps: int, n_envs: int, seed: int, end_probability: float = 0.15) -> RandomRollout:
    rng = np.random.default_rng(seed)
    dones = rng.random((n_steps, n_envs)) < end_probability
    terminations = dones & (rng.random((n_steps, n_envs)) < 0.5)  # the others are truncations
    episode_starts = np.zeros_like(dones)
    episode_starts[0] = rng.random(n_envs) < 0.5
    episode_starts[1:] = dones[:-1]
    return RandomRollout(
        rewards=rng.normal(size=(n_steps, n_envs)).astype(np.float32),
        values=rng.normal(size=(n_steps, n_envs)).astype(np.float32),
        next_values=rng.normal(size=(n_steps, n_envs)).astype(np.float32),
        episode_starts=episode_starts,
        dones=dones,
        terminations=terminations,
    )


def reference_segments(episode_starts: np.ndarray, seq_length: int) -> list[list[int]]:
    """Segments as lists of flat indices ``t * n_envs + env``, env by env, in time order."""
    n_steps, n_envs = episode_starts.shape
    segments = []
    for env in range(n_envs):
        current: list[int] = []
        for step in range(n_steps):
            if current and (episode_starts[step, env] or len(current) == seq_length):
                segments.append(current)
                current = []
            current.append(step * n_envs + env)
        segments.append(current)
    return segments


def reference_chains(rollout: RandomRollout, scope: str, seq_length: int) -> list[list[int]]:
    """The runs of flat indices over which a backward sum may flow, for one scope."""
    n_steps, n_envs = rollout.dones.shape
    if scope == "segment":
        return reference_segments(rollout.episode_starts, seq_length)
    chains = []
    for env in range(n_envs):
        current: list[int] = []
        for step in range(n_steps):
            current.append(step * n_envs + env)
            if rollout.dones[step, env]:
                chains.append(current)
                current = []
        if current:
            chains.append(current)
    return chains


def reference_advantages_and_targets(
    rollout: RandomRollout, scope: str, seq_length: int, gamma: float, gae_lambda: float, value_target: str
) -> tuple[np.ndarray, np.ndarray]:
    """Flat (n_steps * n_envs,) GAE advantages and value targets, one step at a time."""
    rewards = rollout.rewards.reshape(-1).astype(np.float64)
    values = rollout.values.reshape(-1).astype(np.float64)
    next_values = rollout.next_values.reshape(-1).astype(np.float64)
    terminations = rollout.terminations.reshape(-1)
    advantages = np.zeros_like(rewards)
    targets = np.zeros_like(rewards)
    for chain in reference_chains(rollout, scope, seq_length):
        advantage = 0.0
        reward_to_go = 0.0
        for position in reversed(range(len(chain))):
            i = chain[position]
            is_last = position == len(chain) - 1
            next_value = 0.0 if terminations[i] else next_values[i]
            delta = rewards[i] + gamma * next_value - values[i]
            advantage = delta if is_last else delta + gamma * gae_lambda * advantage
            reward_to_go = rewards[i] + gamma * (next_value if is_last else reward_to_go)
            advantages[i] = advantage
            if value_target == "td":
                targets[i] = rewards[i] + gamma * next_value
            elif value_target == "lambda":
                targets[i] = advantage + values[i]
            else:
                targets[i] = reward_to_go
    return advantages, targets
