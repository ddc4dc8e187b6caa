from sb3_lecture_ppo.actor_critic.actor_critic import LectureActorCritic, LectureGAEActorCritic, LectureMonteCarloPG
from sb3_lecture_ppo.actor_critic.policies import CnnPolicy, MlpPolicy, MultiInputPolicy

__all__ = ["CnnPolicy", "LectureActorCritic", "LectureGAEActorCritic", "LectureMonteCarloPG", "MlpPolicy", "MultiInputPolicy"]
