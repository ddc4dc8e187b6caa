from sb3_lecture_ppo.ppo.policies import CnnPolicy, MlpPolicy, MultiInputPolicy
from sb3_lecture_ppo.ppo.ppo import LecturePPO

__all__ = ["CnnPolicy", "LecturePPO", "MlpPolicy", "MultiInputPolicy"]
