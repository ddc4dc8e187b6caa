from sb3_lecture_ppo.ppo.policies import MlpPolicy
from sb3_lecture_ppo.ppo.ppo import LecturePPO

__all__ = ["LecturePPO", "MlpPolicy"]
