"""The PPO lecture ("12강 Actor-Critic: PPO") as Stable-Baselines3 algorithms."""

from sb3_lecture_ppo.actor_critic import LectureActorCritic, LectureGAEActorCritic, LectureMonteCarloPG
from sb3_lecture_ppo.ppo import LecturePPO

__version__ = "0.1.0"

__all__ = ["LectureActorCritic", "LectureGAEActorCritic", "LectureMonteCarloPG", "LecturePPO", "__version__"]
