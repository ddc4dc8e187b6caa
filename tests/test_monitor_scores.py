"""Training scores from a zoo run's Monitor files, against a plain reading of the CSVs."""

import csv
import json

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.monitor import Monitor

from sb3_lecture_ppo.evaluation.monitor_scores import score_at, training_scores


def play_random_episodes(folder, rank: int, episodes: int) -> None:
    env = Monitor(gym.make("CartPole-v1"), str(folder / f"{rank}"))
    env.action_space.seed(rank)
    env.reset(seed=rank)
    for _ in range(episodes):
        done = False
        while not done:
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            done = terminated or truncated
        env.reset()
    env.close()


def reference_scores(folder, frames_per_step: int) -> tuple[np.ndarray, np.ndarray]:
    rows = []
    for path in sorted(folder.glob("*.monitor.csv")):
        with path.open() as file:
            start = json.loads(next(file)[1:])["t_start"]  # "#{...}": when the env was created
            rows += [(start + float(row["t"]), float(row["l"]), float(row["r"])) for row in csv.DictReader(file)]
    rows.sort()
    lengths = np.array([length for _, length, _ in rows])
    return np.cumsum(lengths) / frames_per_step, np.array([ret for _, _, ret in rows])


def test_training_scores_merge_every_env_in_the_order_episodes_ended(tmp_path):
    for rank in range(3):
        play_random_episodes(tmp_path, rank, episodes=40)
    steps, scores = training_scores(tmp_path, frames_per_step=4)
    expected_steps, expected_scores = reference_scores(tmp_path, frames_per_step=4)
    assert len(scores) == 120
    np.testing.assert_allclose(steps, expected_steps)
    np.testing.assert_allclose(scores, expected_scores)
    assert score_at(steps, scores, budget=steps[-1]) == pytest.approx(scores[-100:].mean())
    middle = steps[109]
    assert score_at(steps, scores, budget=middle, window=10) == pytest.approx(scores[100:110].mean())


def test_too_few_episodes_or_no_monitor_files_are_named(tmp_path):
    play_random_episodes(tmp_path, 0, episodes=5)
    steps, scores = training_scores(tmp_path)
    with pytest.raises(ValueError, match=r"only 5 episodes ended by .* fewer than window=100"):
        score_at(steps, scores, budget=steps[-1])
    with pytest.raises(FileNotFoundError, match=r"no \*.monitor.csv in .*logs/<algo>/<env>_<id>"):
        training_scores(tmp_path / "empty")
