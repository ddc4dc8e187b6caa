"""
Training scores from the Monitor files of a zoo run (``<log folder>/<algo>/<env>_<id>/*.monitor.csv``): the
full-game, unclipped episode returns that Atari results are reported in (the zoo wraps ``Monitor`` inside the
``AtariWrapper``, so life losses and reward clipping do not show in them).
"""

from pathlib import Path

import numpy as np
from stable_baselines3.common.monitor import load_results

FRAME_SKIP = 4  # AtariWrapper's: the Monitor counts emulator frames, the agent acts every 4th


def training_scores(run_folder: str | Path, frames_per_step: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """
    Episode returns of every env of a run, in the order they ended, against the env steps taken by then.

    :param run_folder: the folder holding the run's ``*.monitor.csv`` files
    :param frames_per_step: env frames per agent step counted by the Monitor (``FRAME_SKIP`` for Atari's
        ``NoFrameskip`` envs under ``AtariWrapper``), so that the steps are agent steps summed over the envs
    :return: (env steps when each episode ended, its return)
    """
    folder = Path(run_folder)
    if not any(folder.glob("*monitor.csv")):
        raise FileNotFoundError(f"no *.monitor.csv in {folder}: pass the run folder of a zoo run (logs/<algo>/<env>_<id>)")
    episodes = load_results(str(folder))  # sorted by the time each episode ended
    steps = np.cumsum(episodes["l"].to_numpy()) / frames_per_step
    return steps, episodes["r"].to_numpy(dtype=np.float64)


def score_at(steps: np.ndarray, scores: np.ndarray, budget: float, window: int = 100) -> float:
    """
    Mean return of the last ``window`` episodes ended by ``budget`` env steps (the Atari papers' training score).

    :raises ValueError: when fewer than ``window`` episodes ended by then
    """
    ended = int(np.searchsorted(steps, budget, side="right"))
    if ended < window:
        raise ValueError(f"only {ended} episodes ended by {budget:,.0f} steps: fewer than window={window}")
    return float(np.mean(scores[ended - window : ended]))
