"""The PPO lecture ("12강 Actor-Critic: PPO") as Stable-Baselines3 algorithms."""

from sb3_lecture_ppo.ppo import LecturePPO

__version__ = "0.1.0"

__all__ = ["LecturePPO", "__version__"]
