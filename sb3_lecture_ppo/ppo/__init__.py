from sb3_lecture_ppo.ppo.policies import CnnPolicy, MlpPolicy
from sb3_lecture_ppo.ppo.ppo import LecturePPO

__all__ = ["CnnPolicy", "LecturePPO", "MlpPolicy"]
